/* SPDX-License-Identifier: MIT */
/*
 * What hmmuctl reads from hmmud, in one place: the devices, the processes
 * and mirrors (as many as there are), and the counters. Every output
 * (tables, JSON, metrics, watch) renders a snapshot; none talks to the
 * daemon itself.
 */
#ifndef HMMUCTL_SNAPSHOT_H
#define HMMUCTL_SNAPSHOT_H

#include <hmmu/hmmu.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum snapshot_part {
	SNAP_DEVICES = 1 << 0,
	SNAP_PROCESSES = 1 << 1,
	SNAP_MIRRORS = 1 << 2,
	SNAP_STATS = 1 << 3,
	SNAP_ALL = SNAP_DEVICES | SNAP_PROCESSES | SNAP_MIRRORS | SNAP_STATS,
	SNAP_VERSION = 1 << 4, /* not in SNAP_ALL: watch does not show it */
};

struct snapshot {
	struct hmmu_device_info *devices;
	unsigned ndevices;
	struct hmmu_process_info *processes;
	unsigned nprocesses;
	struct hmmu_mirror_info *mirrors;
	unsigned nmirrors;
	struct hmmu_stats stats;
	size_t stats_filled;	 /* bytes of @stats the daemon filled; 0: none */
	struct timespec stats_at; /* CLOCK_MONOTONIC, right after reading them */
	const char *daemon_version; /* hmmu_daemon_version(); "" if unknown */
	const char *failed;	 /* the call that failed, for the error line */
};

/*
 * snapshot_take - read the @parts (enum snapshot_part) of what hmmud holds
 * into @s, which it clears first. Returns 0, or the negative errno of the
 * call named in s->failed; snapshot_free() is needed either way.
 */
int snapshot_take(struct hmmu *h, unsigned parts, struct snapshot *s);
void snapshot_free(struct snapshot *s);

/* The registered mirrors on device @name, and the pages they hold there. */
void snapshot_device_use(const struct snapshot *s, const char *name,
			 unsigned *mirrors, uint64_t *pages);

/*
 * The daemon's counters, as every output names them. A gauge is a value
 * now; a counter only grows (what watch turns into a rate). hmmuctl's own
 * fields of struct hmmu_stats (my_state, my_mirrors) are not listed: they
 * describe hmmuctl, which has no mirrors.
 */
enum stat_kind { STAT_GAUGE, STAT_COUNTER };

struct stat_field {
	const char *key;    /* JSON member */
	const char *label;  /* the text table's */
	const char *suffix; /* after the text table's number */
	const char *metric; /* Prometheus name */
	const char *help;   /* Prometheus HELP */
	enum stat_kind kind;
	bool pages_to_bytes; /* the metric is in bytes, the counter in pages */
	size_t offset, size; /* in struct hmmu_stats */
};

extern const struct stat_field stat_fields[];
extern const size_t stat_field_count;

/* The field named @key, or NULL. */
const struct stat_field *stat_field_find(const char *key);

/* Field @f of @s's stats into @out; false if the daemon did not send it. */
bool stat_value(const struct snapshot *s, const struct stat_field *f,
		uint64_t *out);

#endif
