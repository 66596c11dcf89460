/* SPDX-License-Identifier: MIT */
/* Listing what the daemon holds, a reply's worth of entries at a time. */
#include "internal.h"

#include <errno.h>
#include <string.h>

/*
 * Calls @fill for entries 0..min(total, max) and returns the total.
 * A reply that says more than it carries is a protocol error.
 */
static int list(struct hmmu *h, unsigned what, unsigned max,
		void (*fill)(void *out, unsigned i,
			     const struct hmmu_wire_list_entry *e),
		void *out)
{
	struct {
		struct hmmu_wire_list_reply head;
		struct hmmu_wire_list_entry e[HMMU_LIST_PER_REPLY];
	} rep;
	uint32_t start = 0, total;
	int err;

	hmmu_clear_detail();
	if (!h || (max && !out))
		return -EINVAL;
	do {
		struct hmmu_wire_list req = { .what = what, .start = start };

		memset(&rep, 0, sizeof(rep));
		err = hmmu_call(h, HMMU_OP_LIST, &req, sizeof(req), -1, &rep,
				sizeof(rep));
		if (err)
			return err;
		if (rep.head.count > HMMU_LIST_PER_REPLY || rep.head.total > INT32_MAX)
			return -EPROTO;
		total = rep.head.total;
		for (uint32_t i = 0; i < rep.head.count && start + i < max; i++)
			fill(out, start + i, &rep.e[i]);
		start += rep.head.count;
	} while (rep.head.count && start < total && start < max);
	return (int)total;
}

static void fill_process(void *out, unsigned i,
			 const struct hmmu_wire_list_entry *e)
{
	struct hmmu_process_info *p = (struct hmmu_process_info *)out + i;

	*p = (struct hmmu_process_info){
		.pid = e->pid, .uid = e->uid, .mirrors = e->mirrors,
	};
}

static void fill_mirror(void *out, unsigned i,
			const struct hmmu_wire_list_entry *e)
{
	struct hmmu_mirror_info *m = (struct hmmu_mirror_info *)out + i;

	memset(m, 0, sizeof(*m));
	m->pid = e->pid;
	m->uid = e->uid;
	memcpy(m->device, e->device, sizeof(m->device) - 1);
	m->device_pages = e->device_pages;
}

HMMU_EXPORT int hmmu_list_processes(struct hmmu *h,
				    struct hmmu_process_info *out, unsigned max)
{
	return list(h, HMMU_LIST_PROCESSES, max, fill_process, out);
}

HMMU_EXPORT int hmmu_list_mirrors(struct hmmu *h, struct hmmu_mirror_info *out,
				  unsigned max)
{
	return list(h, HMMU_LIST_MIRRORS, max, fill_mirror, out);
}
