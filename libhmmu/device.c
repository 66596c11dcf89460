/* SPDX-License-Identifier: MIT */
/* Devices, counters and device commands. */
#include "internal.h"

#include <errno.h>
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

HMMU_EXPORT int hmmu_stats(struct hmmu *h, struct hmmu_stats *out)
{
	struct hmmu_wire_stats rep;
	int err;

	hmmu_clear_detail();
	if (!h || !out)
		return -EINVAL;
	memset(&rep, 0, sizeof(rep));
	err = hmmu_call(h, HMMU_OP_STATS, NULL, 0, -1, &rep, sizeof(rep));
	if (err)
		return err;
	/* An older daemon sends fewer counters: the rest stay zero. */
	*out = (struct hmmu_stats){
		.processes = rep.value[HMMU_STAT_PROCESSES],
		.mirrors = rep.value[HMMU_STAT_MIRRORS],
		.my_state = (uint32_t)rep.value[HMMU_STAT_MY_STATE],
		.my_mirrors = (uint32_t)rep.value[HMMU_STAT_MY_MIRRORS],
		.device_faults = rep.value[HMMU_STAT_DEVICE_FAULTS],
		.cpu_faults = rep.value[HMMU_STAT_CPU_FAULTS],
		.invalidations = rep.value[HMMU_STAT_INVALIDATIONS],
		.migrated_to_device = rep.value[HMMU_STAT_MIGRATED_TO_DEVICE],
		.migrated_to_system = rep.value[HMMU_STAT_MIGRATED_TO_SYSTEM],
		.releases = rep.value[HMMU_STAT_RELEASES],
		.sessions = rep.value[HMMU_STAT_SESSIONS],
		.device_pages = rep.value[HMMU_STAT_DEVICE_PAGES],
		.device_mem_pages = rep.value[HMMU_STAT_DEVICE_MEM_PAGES],
	};
	return 0;
}

/* Check a command's arguments at the boundary, before any message goes. */
static int check_cmd(struct hmmu_mirror *m, const struct hmmu_cmd *c)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (!m || !c)
		return -EINVAL;
	if (c->addr % page || c->npages == 0 || c->npages > HMMU_CMD_MAX_PAGES)
		return -EINVAL;
	if (c->addr + c->npages * page < c->addr)
		return -EINVAL;
	return 0;
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
	hmmu_clear_detail();
	if (!buf || !c)
		return -EINVAL;
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
HMMU_EXPORT int hmmu_job_run(struct hmmu_mirror *m, struct hmmu_job *job)
{
	struct hmmu_wire_job req;
	struct hmmu_wire_job_result rep = { 0, 0, 0 };
	int err;

	hmmu_clear_detail();
	if (!m || !job || job->reserved || job->kind < HMMU_JOB_FILL ||
	    job->kind > HMMU_JOB_LIST_SUM)
		return -EINVAL;
	req = (struct hmmu_wire_job){
		.mirror = m->id,
		.kind = job->kind,
		.dst = job->dst,
		.src = job->src,
		.len = job->len,
		.value = job->value,
		.next_offset = job->next_offset,
		.value_offset = job->value_offset,
	};
	err = hmmu_call(m->h, HMMU_OP_JOB, &req, sizeof(req), -1, &rep,
			sizeof(rep));
	job->result = rep.result;
	job->faults = rep.faults;
	job->elapsed_ns = rep.elapsed_ns;
	return err;
}
