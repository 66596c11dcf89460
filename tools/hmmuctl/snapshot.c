/* SPDX-License-Identifier: MIT */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define STAT(f) offsetof(struct hmmu_stats, f), sizeof(((struct hmmu_stats *)0)->f)

/* In the order `hmmuctl stats` has always printed them. */
const struct stat_field stat_fields[] = {
	{ "connections", "connections", "", "hmmu_connections",
	  "Open client connections to hmmud.", STAT_GAUGE, false,
	  STAT(sessions) },
	{ "processes", "processes", "", "hmmu_processes",
	  "Processes with per-process state in hmmud (registered mirrors).",
	  STAT_GAUGE, false, STAT(processes) },
	{ "mirrors", "mirrors", "", "hmmu_mirrors", "Registered mirrors.",
	  STAT_GAUGE, false, STAT(mirrors) },
	{ "device_pages", "device pages", " (copies in device page tables)",
	  "hmmu_device_table_pages",
	  "Pages held in device page tables (copies of system memory), all devices.",
	  STAT_GAUGE, false, STAT(device_pages) },
	{ "device_mem_pages", "device memory pages", " (migrated)",
	  "hmmu_device_memory_used_bytes",
	  "Device memory holding pages migrated to it, all devices.",
	  STAT_GAUGE, true, STAT(device_mem_pages) },
	{ "device_faults", "device faults", "", "hmmu_device_faults_total",
	  "Device page faults served (a range fault counts once).",
	  STAT_COUNTER, false, STAT(device_faults) },
	{ "cpu_faults", "cpu faults", "", "hmmu_cpu_faults_total",
	  "CPU faults on mirrored pages served (writes to write-protected pages, accesses to migrated pages).",
	  STAT_COUNTER, false, STAT(cpu_faults) },
	{ "invalidations", "invalidations", "", "hmmu_invalidations_total",
	  "Invalidations of device page tables after CPU-side changes.",
	  STAT_COUNTER, false, STAT(invalidations) },
	{ "migrated_to_device_pages", "migrated to device", " pages",
	  "hmmu_migrated_to_device_pages_total",
	  "Pages migrated from system memory to device memory.", STAT_COUNTER,
	  false, STAT(migrated_to_device) },
	{ "migrated_to_system_pages", "migrated to system", " pages",
	  "hmmu_migrated_to_system_pages_total",
	  "Pages migrated from device memory back to system memory.",
	  STAT_COUNTER, false, STAT(migrated_to_system) },
	{ "releases", "releases", "", "hmmu_mirror_releases_total",
	  "Mirrors released because their process exited or hung up.",
	  STAT_COUNTER, false, STAT(releases) },
	/* Replayable fault buffers, then their rule (0: no device has one). */
	{ "fault_batches", "fault batches", "", "hmmu_fault_batches_total",
	  "Batches drained from devices' replayable fault buffers.",
	  STAT_COUNTER, false, STAT(fault_batches) },
	{ "fault_entries", "faults batched", "", "hmmu_fault_entries_total",
	  "Device faults posted to fault buffers and drained in batches.",
	  STAT_COUNTER, false, STAT(fault_entries) },
	{ "fault_duplicates", "faults dropped", " (duplicates, held)",
	  "hmmu_fault_duplicates_total",
	  "Batched faults dropped: the same page twice in a batch, or a page held already.",
	  STAT_COUNTER, false, STAT(fault_duplicates) },
	{ "fault_blocks", "fault blocks", " (2 MiB, per batch)",
	  "hmmu_fault_blocks_total",
	  "2 MiB blocks with faults to serve, counted once per batch.",
	  STAT_COUNTER, false, STAT(fault_blocks) },
	{ "fault_runs", "fault runs", " (write-protect + read each)",
	  "hmmu_fault_runs_total",
	  "Range faults taken for batches: one write-protect and one read each.",
	  STAT_COUNTER, false, STAT(fault_runs) },
	{ "density_fetches", "density fetches", " (whole blocks)",
	  "hmmu_fault_density_fetches_total",
	  "2 MiB blocks fetched whole by the density rule.",
	  STAT_COUNTER, false, STAT(density_fetches) },
	{ "fault_window_pages", "fault window", " pages",
	  "hmmu_fault_window_pages",
	  "Pages a device fault prefetches, the largest of the devices with a fault buffer.",
	  STAT_GAUGE, false, STAT(fault_window_pages) },
	{ "fault_density_pct", "density threshold", " % of a block",
	  "hmmu_fault_density_percent",
	  "Share of a 2 MiB block held or faulting past which the block is fetched whole (0: never).",
	  STAT_GAUGE, false, STAT(fault_density_pct) },
	{ "fault_batch_max", "fault batch", " faults at most",
	  "hmmu_fault_batch_max", "The most faults one batch drains.",
	  STAT_GAUGE, false, STAT(fault_batch_max) },
	{ "fault_block_pages", "density block", " pages",
	  "hmmu_fault_block_pages", "Pages of the density rule's block (2 MiB).",
	  STAT_GAUGE, false, STAT(fault_block_pages) },
};

const size_t stat_field_count = sizeof(stat_fields) / sizeof(stat_fields[0]);

const struct stat_field *stat_field_find(const char *key)
{
	for (size_t i = 0; i < stat_field_count; i++)
		if (strcmp(stat_fields[i].key, key) == 0)
			return &stat_fields[i];
	return NULL;
}

bool stat_value(const struct snapshot *s, const struct stat_field *f,
		uint64_t *out)
{
	const char *p = (const char *)&s->stats + f->offset;

	/* hmmu_stats() says how much it filled: an older daemon sends less. */
	if (s->stats_filled < f->offset + f->size)
		return false;
	if (f->size == sizeof(uint32_t)) {
		uint32_t v;

		memcpy(&v, p, sizeof(v));
		*out = v;
	} else {
		memcpy(out, p, sizeof(*out));
	}
	return true;
}

/*
 * The list calls fill at most @max entries and return how many there are:
 * read with room for 64, then for what the daemon said plus a margin, as
 * long as it keeps growing under us (a few times; then what fitted).
 */
typedef int (*list_call)(struct hmmu *h, void *out, unsigned max);

static int list_processes(struct hmmu *h, void *out, unsigned max)
{
	return hmmu_list_processes(h, out, max);
}

static int list_mirrors(struct hmmu *h, void *out, unsigned max)
{
	return hmmu_list_mirrors(h, out, max);
}

static int read_list(struct hmmu *h, list_call call, size_t size, void **out,
		     unsigned *count)
{
	unsigned room = 64;
	void *buf = NULL;

	for (int tries = 0;; tries++) {
		void *grown = reallocarray(buf, room, size);
		int n;

		if (!grown) {
			free(buf);
			return -ENOMEM;
		}
		buf = grown;
		n = call(h, buf, room);
		if (n < 0) {
			free(buf);
			return n;
		}
		if ((unsigned)n <= room || tries == 4) {
			*out = buf;
			*count = (unsigned)n < room ? (unsigned)n : room;
			return 0;
		}
		room = (unsigned)n + (unsigned)n / 4 + 16;
	}
}

static int read_devices(struct hmmu *h, struct snapshot *s)
{
	int n = hmmu_device_count(h);

	if (n < 0) {
		s->failed = "device count";
		return n;
	}
	s->devices = calloc(n ? (size_t)n : 1, sizeof(*s->devices));
	if (!s->devices) {
		s->failed = "device list";
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		int err = hmmu_device_info(h, (unsigned)i, &s->devices[i]);

		if (err) {
			s->failed = "device info";
			return err;
		}
		s->ndevices++;
	}
	return 0;
}

int snapshot_take(struct hmmu *h, unsigned parts, struct snapshot *s)
{
	void *list;
	int err;

	memset(s, 0, sizeof(*s));
	s->daemon_version = "";
	if (parts & SNAP_VERSION)
		s->daemon_version = hmmu_daemon_version(h);
	if (parts & SNAP_STATS) {
		err = hmmu_stats(h, &s->stats, sizeof(s->stats));
		if (err < 0) {
			s->failed = "stats";
			return err;
		}
		s->stats_filled = (size_t)err;
		clock_gettime(CLOCK_MONOTONIC, &s->stats_at);
	}
	if (parts & SNAP_DEVICES) {
		err = read_devices(h, s);
		if (err)
			return err;
	}
	if (parts & SNAP_PROCESSES) {
		err = read_list(h, list_processes, sizeof(*s->processes),
				&list, &s->nprocesses);
		if (err) {
			s->failed = "list processes";
			return err;
		}
		s->processes = list;
	}
	if (parts & SNAP_MIRRORS) {
		err = read_list(h, list_mirrors, sizeof(*s->mirrors), &list,
				&s->nmirrors);
		if (err) {
			s->failed = "list mirrors";
			return err;
		}
		s->mirrors = list;
	}
	return 0;
}

void snapshot_free(struct snapshot *s)
{
	free(s->devices);
	free(s->processes);
	free(s->mirrors);
	memset(s, 0, sizeof(*s));
}

void snapshot_device_use(const struct snapshot *s, const char *name,
			 unsigned *mirrors, uint64_t *pages)
{
	*mirrors = 0;
	*pages = 0;
	for (unsigned i = 0; i < s->nmirrors; i++) {
		if (strncmp(s->mirrors[i].device, name,
			    sizeof(s->mirrors[i].device)) != 0)
			continue;
		(*mirrors)++;
		*pages += s->mirrors[i].device_pages;
	}
}
