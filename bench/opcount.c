/* SPDX-License-Identifier: MIT */
/*
 * hmmu-bench --ops N: exactly N operations of a class, untimed, with no
 * floor and no warm-up, for bench/opcounts.sh, which counts the system
 * calls and context switches of the daemon and of this process around a
 * run with N and a run with 0 and divides the difference by N. So the
 * setup (connect, mirror, memory, the first fault of a VMA, which also
 * registers it) is the same in both runs, and only the operations differ.
 */
#include "opcount.h"

#include <errno.h>
#include <hmmu/hmmu.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* One operation: hmmu_device_count, as the request class. */
static int ops_request(struct bench *b, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		int count = hmmu_device_count(b->h);

		if (count < 0)
			return count;
	}
	return 0;
}

static int mirror_on(struct bench *b, const char *device,
		     struct hmmu_mirror **m)
{
	int err = hmmu_mirror_create(b->h, device, m);

	if (!err && (err = hmmu_mirror_register(*m)) < 0) {
		hmmu_mirror_destroy(*m);
		*m = NULL;
	}
	if (err)
		warnx_("--ops: mirror on %s: %s %s", device, strerror(-err),
		       hmmu_error_detail());
	return err;
}

/*
 * One operation: hmmu_device_read of one cold, written page, as the
 * device-fault class. Page 0 is read in both runs: the VMA's first fault.
 */
static int ops_device_fault(struct bench *b, uint64_t n)
{
	char *p = map_pages(n + 1), *out = map_pages(1);
	struct hmmu_mirror *m = NULL;
	int err = -ENOMEM;

	if (!p || !out)
		goto out;
	touch_pages(p, n + 1);
	touch_pages(out, 1);
	err = mirror_on(b, b->dmirror, &m);
	for (uint64_t i = 0; i <= n && !err; i++) {
		struct hmmu_cmd c = { .addr = (uint64_t)(uintptr_t)(p + i * b->page),
				      .npages = 1 };

		err = hmmu_device_read(m, &c, out);
		if (!err && c.faults != 1) {
			warnx_("--ops device-fault: a read took %" PRIu64
			       " faults", c.faults);
			err = -EPROTO;
		}
	}
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, n + 1);
	unmap_pages(out, 1);
	return err;
}

/*
 * One operation: an accelerator job on one page that faults once (the
 * device brings in a WINDOW_PAGES window from it), the next job on the
 * first page past that window. As the class does (classes.c), the jobs
 * walk only the first windows of each 2 MiB block, fewer than half of it,
 * so that the density rule never fetches a whole block instead. The job's
 * request is counted with it: the class's sample leaves the round trip
 * out, its cost here does not (the request row says what that part costs).
 */
static int ops_device_fault_acc(struct bench *b, uint64_t n)
{
	const uint64_t huge = (2ull << 20) / b->page;
	const uint64_t per_block = (huge / 2 - 1) / WINDOW_PAGES;
	uint64_t blocks = (n + 1) / per_block + 2, np = blocks * huge + huge;
	char *p = map_pages(np), *base;
	struct hmmu_mirror *m = NULL;
	int err = -ENOMEM;

	if (!p)
		goto out;
	if (!b->accel[0]) {
		warnx_("--ops device-fault-acc: the daemon offers no accelerator");
		err = -ENODEV;
		goto out;
	}
	touch_pages(p, np);
	/* From the first 2 MiB boundary on. */
	base = p + (huge - (uintptr_t)p / b->page % huge) % huge * b->page;
	err = mirror_on(b, b->accel, &m);
	for (uint64_t i = 0; i <= n && !err; i++) {
		uint64_t page = i / per_block * huge + i % per_block * WINDOW_PAGES;
		struct hmmu_job job = {
			.kind = HMMU_JOB_SUM64,
			.src = (uint64_t)(uintptr_t)(base + page * b->page),
			.len = 1,
		};

		err = hmmu_job_run(m, &job);
		if (!err && job.faults != 1) {
			warnx_("--ops device-fault-acc: a job took %" PRIu64
			       " faults (a prefetch window other than %d pages?)",
			       job.faults, WINDOW_PAGES);
			err = -EPROTO;
		}
	}
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, np);
	return err;
}

int ops_run(struct bench *b, enum class_id id, uint64_t n)
{
	switch (id) {
	case C_REQUEST:
		return ops_request(b, n);
	case C_DEVICE_FAULT:
		return ops_device_fault(b, n);
	case C_DEVICE_FAULT_ACC:
		return ops_device_fault_acc(b, n);
	default:
		return -EOPNOTSUPP;
	}
}
