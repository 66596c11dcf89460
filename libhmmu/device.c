/* SPDX-License-Identifier: MIT */
/* Devices, counters and device commands. */
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

HMMU_EXPORT int hmmu_device_count(struct hmmu *h)
{
	struct hmmu_wire_count rep;
	int err;

	hmmu_clear_detail();
	if (!h)
		return -EINVAL;
	err = hmmu_call(h, HMMU_OP_DEVICE_COUNT, NULL, 0, -1, &rep, sizeof(rep));
	return err ? err : (int)rep.count;
}

HMMU_EXPORT int hmmu_device_info(struct hmmu *h, unsigned index,
				 struct hmmu_device_info *out)
{
	struct hmmu_wire_index req = { .index = index };
	struct hmmu_wire_device_info rep;
	int err;

	hmmu_clear_detail();
	if (!h || !out)
		return -EINVAL;
	err = hmmu_call(h, HMMU_OP_DEVICE_INFO, &req, sizeof(req), -1, &rep,
			sizeof(rep));
	if (err)
		return err;
	memset(out, 0, sizeof(*out));
	memcpy(out->name, rep.name, sizeof(out->name) - 1);
	memcpy(out->model, rep.model, sizeof(out->model) - 1);
	out->mem_bytes = rep.mem_bytes;
	out->numa_node = rep.numa_node;
	out->page_size = rep.page_size;
	return 0;
}

/* Where each counter of the reply goes in struct hmmu_stats, in reply order. */
#define STAT_FIELD(f)                                                          \
	{ offsetof(struct hmmu_stats, f), sizeof(((struct hmmu_stats *)0)->f) }

static const struct {
	size_t offset, size;
} stat_fields[HMMU_STAT_NR_] = {
	[HMMU_STAT_PROCESSES] = STAT_FIELD(processes),
	[HMMU_STAT_MIRRORS] = STAT_FIELD(mirrors),
	[HMMU_STAT_MY_STATE] = STAT_FIELD(my_state),
	[HMMU_STAT_MY_MIRRORS] = STAT_FIELD(my_mirrors),
	[HMMU_STAT_DEVICE_FAULTS] = STAT_FIELD(device_faults),
	[HMMU_STAT_CPU_FAULTS] = STAT_FIELD(cpu_faults),
	[HMMU_STAT_INVALIDATIONS] = STAT_FIELD(invalidations),
	[HMMU_STAT_MIGRATED_TO_DEVICE] = STAT_FIELD(migrated_to_device),
	[HMMU_STAT_MIGRATED_TO_SYSTEM] = STAT_FIELD(migrated_to_system),
	[HMMU_STAT_RELEASES] = STAT_FIELD(releases),
	[HMMU_STAT_SESSIONS] = STAT_FIELD(sessions),
	[HMMU_STAT_DEVICE_PAGES] = STAT_FIELD(device_pages),
	[HMMU_STAT_DEVICE_MEM_PAGES] = STAT_FIELD(device_mem_pages),
	[HMMU_STAT_FAULT_BATCHES] = STAT_FIELD(fault_batches),
	[HMMU_STAT_FAULT_ENTRIES] = STAT_FIELD(fault_entries),
	[HMMU_STAT_FAULT_DUPLICATES] = STAT_FIELD(fault_duplicates),
	[HMMU_STAT_FAULT_BLOCKS] = STAT_FIELD(fault_blocks),
	[HMMU_STAT_FAULT_RUNS] = STAT_FIELD(fault_runs),
	[HMMU_STAT_DENSITY_FETCHES] = STAT_FIELD(density_fetches),
	[HMMU_STAT_FAULT_WINDOW_PAGES] = STAT_FIELD(fault_window_pages),
	[HMMU_STAT_FAULT_DENSITY_PCT] = STAT_FIELD(fault_density_pct),
	[HMMU_STAT_FAULT_BATCH_MAX] = STAT_FIELD(fault_batch_max),
	[HMMU_STAT_FAULT_BLOCK_PAGES] = STAT_FIELD(fault_block_pages),
};

/*
 * One field per counter, in the same order: a counter added to the wire
 * needs its field appended to struct hmmu_stats and its entry above.
 */
_Static_assert(HMMU_STAT_NR_ == 23, "a new counter needs a stat_fields entry");
_Static_assert(sizeof(struct hmmu_stats) ==
		       offsetof(struct hmmu_stats, fault_block_pages) +
			       sizeof(uint64_t),
	       "struct hmmu_stats has a field without a counter");
_Static_assert(sizeof(struct hmmu_stats) >= HMMU_STATS_SIZE_VER0,
	       "struct hmmu_stats shrank below its first version");

/*
 * Size-versioned, as sched_getattr(2): the caller's struct may be older
 * (smaller) or newer (larger) than ours, and the daemon may send fewer
 * counters than we know (an older one). We fill what all three have, and
 * say how much that is.
 */
HMMU_EXPORT int hmmu_stats(struct hmmu *h, struct hmmu_stats *out, size_t size)
{
	struct hmmu_wire_stats rep;
	struct hmmu_stats st;
	size_t got = 0, known = 0;
	int err;

	hmmu_clear_detail();
	if (!h || !out || size < HMMU_STATS_SIZE_VER0)
		return -EINVAL;
	memset(&rep, 0, sizeof(rep));
	err = hmmu_call_len(h, HMMU_OP_STATS, NULL, 0, -1, &rep, sizeof(rep),
			    &got);
	if (err)
		return err;
	memset(&st, 0, sizeof(st));
	for (unsigned i = 0; i < HMMU_STAT_NR_ && i < got / sizeof(uint64_t);
	     i++) {
		uint64_t v = rep.value[i];
		uint32_t v32 = (uint32_t)v;

		memcpy((char *)&st + stat_fields[i].offset,
		       stat_fields[i].size == sizeof(v32) ? (void *)&v32 :
							     (void *)&v,
		       stat_fields[i].size);
		known = stat_fields[i].offset + stat_fields[i].size;
	}
	if (known > size)
		known = size;
	memcpy(out, &st, known);
	return (int)known;
}

int hmmu_check_range(const struct hmmu_cmd *c)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (c->addr % page) {
		hmmu_set_detail("address %#llx is not page-aligned: use mmap() "
				"or aligned_alloc(%llu, ...)",
				(unsigned long long)c->addr,
				(unsigned long long)page);
		return -EINVAL;
	}
	if (c->npages == 0 || c->npages > HMMU_CMD_MAX_PAGES) {
		hmmu_set_detail("npages is %llu: a command takes 1 to %llu "
				"pages", (unsigned long long)c->npages,
				HMMU_CMD_MAX_PAGES);
		return -EINVAL;
	}
	if (c->addr + c->npages * page < c->addr) {
		hmmu_set_detail("%llu pages at %#llx wrap around the address "
				"space", (unsigned long long)c->npages,
				(unsigned long long)c->addr);
		return -EINVAL;
	}
	return 0;
}

/* Check a command's arguments at the boundary, before any message goes. */
static int check_cmd(struct hmmu_mirror *m, const struct hmmu_cmd *c)
{
	if (!m || !c)
		return -EINVAL;
	return hmmu_check_range(c);
}

int hmmu_device_cmd(struct hmmu_mirror *m, struct hmmu_cmd *c, unsigned cmd,
		    const void *buf, uint64_t buf_len)
{
	struct hmmu_wire_device_cmd req;
	struct hmmu_wire_cmd_result rep = { 0, 0 };
	int err;

	err = check_cmd(m, c);
	if (err)
		return err;
	req = (struct hmmu_wire_device_cmd){
		.mirror = m->id,
		.cmd = cmd,
		.addr = c->addr,
		.npages = c->npages,
		.buf = (uint64_t)(uintptr_t)buf,
		.buf_len = buf_len,
	};
	err = hmmu_call(m->h, HMMU_OP_DEVICE_CMD, &req, sizeof(req), -1, &rep,
			sizeof(rep));
	c->cpages = rep.cpages;
	c->faults = rep.faults;
	return err;
}

static uint64_t bytes(const struct hmmu_cmd *c)
{
	return c->npages * (uint64_t)sysconf(_SC_PAGESIZE);
}

HMMU_EXPORT int hmmu_device_read(struct hmmu_mirror *m, struct hmmu_cmd *c,
				 void *buf)
{
	struct hmmu_buffer *b;
	uint64_t offset;

	hmmu_clear_detail();
	if (!buf || !c)
		return -EINVAL;
	/* Into a shared buffer, wholly: one copy (hmmu_buffer_create()). */
	if (m &&
	    (b = hmmu_buffer_find(m->h, buf, bytes(c), &offset)))
		return hmmu_buffer_cmd(m, c, b, offset);
	return hmmu_device_cmd(m, c, HMMU_CMD_READ, buf, bytes(c));
}

HMMU_EXPORT int hmmu_device_write(struct hmmu_mirror *m, struct hmmu_cmd *c,
				  const void *buf)
{
	hmmu_clear_detail();
	if (!buf || !c)
		return -EINVAL;
	return hmmu_device_cmd(m, c, HMMU_CMD_WRITE, buf, bytes(c));
}

HMMU_EXPORT int hmmu_snapshot(struct hmmu_mirror *m, struct hmmu_cmd *c,
			      uint8_t *states)
{
	hmmu_clear_detail();
	if (!states || !c)
		return -EINVAL;
	return hmmu_device_cmd(m, c, HMMU_CMD_SNAPSHOT, states, c->npages);
}

int hmmu_job_to_wire(const struct hmmu_job *job, uint64_t mirror,
		     struct hmmu_wire_job *out)
{
	if (job->reserved || job->kind < HMMU_JOB_FILL ||
	    job->kind > HMMU_JOB_LIST_SUM) {
		hmmu_set_detail("a job of kind %u with reserved %u: the kinds "
				"are enum hmmu_job_kind, reserved is 0",
				job->kind, job->reserved);
		return -EINVAL;
	}
	*out = (struct hmmu_wire_job){
		.mirror = mirror,
		.kind = job->kind,
		.dst = job->dst,
		.src = job->src,
		.len = job->len,
		.value = job->value,
		.next_offset = job->next_offset,
		.value_offset = job->value_offset,
	};
	return 0;
}

HMMU_EXPORT int hmmu_job_run(struct hmmu_mirror *m, struct hmmu_job *job)
{
	struct hmmu_wire_job req;
	struct hmmu_wire_job_result rep = { 0, 0, 0 };
	int err;

	hmmu_clear_detail();
	if (!m || !job)
		return -EINVAL;
	err = hmmu_job_to_wire(job, m->id, &req);
	if (err)
		return err;
	err = hmmu_call(m->h, HMMU_OP_JOB, &req, sizeof(req), -1, &rep,
			sizeof(rep));
	job->result = rep.result;
	job->faults = rep.faults;
	job->elapsed_ns = rep.elapsed_ns;
	return err;
}
