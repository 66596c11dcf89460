/* SPDX-License-Identifier: MIT */
/*
 * Migration to device memory, the client's part. The daemon cannot discard
 * a page of this process (process_madvise refuses MADV_DONTNEED for another
 * process), so the library does it between the daemon's two steps: the
 * daemon copies and write-protects the pages and says which to discard; we
 * discard them; the daemon settles which became device-private.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static uint64_t page_size_of(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Discard each run of pages the daemon copied (bit set in @discard). */
static void discard(uint64_t addr, uint64_t npages, const uint8_t *map)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	for (uint64_t i = 0; i < npages;) {
		uint64_t j = i;

		if (!(map[i / 8] & (1u << (i % 8)))) {
			i++;
			continue;
		}
		while (j < npages && (map[j / 8] & (1u << (j % 8))))
			j++;
		/*
		 * A page we fail to discard (an mlock'ed one, say) simply
		 * stays with the CPU: finish sees it.
		 */
		(void)madvise((char *)(uintptr_t)(addr + i * page),
			      (j - i) * page, MADV_DONTNEED);
		i = j;
	}
}

/*
 * Prepare, discard, finish: one chunk of at most HMMU_PREPARE_MAX_PAGES.
 *
 * The mirror handle is heap memory, which may lie among the pages being
 * moved: once they are discarded, reading it is a missing fault that
 * brings its page back before FINISH (which then does not count it). So
 * what the steps after PREPARE need of it is read before.
 */
static int migrate_chunk(struct hmmu_mirror *m, uint64_t addr, uint64_t npages,
			 unsigned prepare, uint64_t *cpages)
{
	struct hmmu *h = m->h;
	struct hmmu_wire_device_cmd req = {
		.mirror = m->id,
		.cmd = prepare,
		.addr = addr,
		.npages = npages,
	};
	struct hmmu_wire_device_cmd fin = req;
	uint64_t end = addr + npages * page_size_of();
	struct hmmu_wire_prepare_result rep;
	int err, held;

	fin.cmd = HMMU_CMD_MIGRATE_FINISH;
	/*
	 * Before a page is thrown away, this connection holds what brings
	 * it home should hmmud die (failsafe.c). Armed before PREPARE: from
	 * PREPARE to FINISH, this thread's writes to the pages being moved
	 * (its heap's, in pthread_create() say) would wait for itself. A
	 * daemon that cannot (-EOPNOTSUPP: coarse) refuses PREPARE too.
	 */
	err = hmmu_failsafe_update(m, 0);
	if (err && err != -EOPNOTSUPP)
		return err;
	for (int attempt = 0;; attempt++) {
		struct hmmu_wire_cmd_result done = { 0, 0 };
		struct pending p = { .op = HMMU_OP_DEVICE_CMD, .req = &req,
				     .req_len = sizeof(req), .fd = -1,
				     .out = &rep, .cap = sizeof(rep) };

		memset(&rep, 0, sizeof(rep));
		err = hmmu_request(h, &p);
		/*
		 * Sent again after a restart (reconnect.c), it may have run on
		 * the daemon that died: the successor adopted those pages as
		 * being migrated, and only a FINISH lets them go (they stay
		 * with the CPU: nothing was discarded).
		 */
		if (err && p.resent) {
			char detail[HMMU_DETAIL_MAX];

			snprintf(detail, sizeof(detail), "%s",
				 hmmu_error_detail());
			hmmu_call(h, HMMU_OP_DEVICE_CMD, &fin, sizeof(fin), -1,
				  &done, sizeof(done));
			hmmu_set_detail("%s", detail);
		}
		if (err)
			return err;
		/*
		 * Not the file held (the process's state was made anew since):
		 * discard nothing, let FINISH roll the chunk back, take the new
		 * file and prepare again. An older daemon names none: as before.
		 */
		held = rep.devfile && rep.devfile != hmmu_failsafe_gen(h) ?
			       -ESTALE : 0;
		if (!held)
			held = hmmu_discard_begin(h, addr, end);
		if (!held) {
			discard(addr, npages, rep.discard);
			hmmu_discard_end(h, addr, end);
		}
		err = hmmu_call(h, HMMU_OP_DEVICE_CMD, &fin, sizeof(fin), -1,
				&done, sizeof(done));
		*cpages += done.cpages;
		if (held != -ESTALE || err || attempt)
			return held == -ESTALE ? -EAGAIN : held ? held : err;
		err = hmmu_failsafe_update(m, rep.devfile);
		if (err)
			return err;
	}
}

/* Migrate [start, end) in chunks; cpages add up in @c. */
static int migrate_range(struct hmmu_mirror *m, uint64_t start, uint64_t end,
			 unsigned prepare, struct hmmu_cmd *c)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	int err = 0;

	for (uint64_t a = start; a < end && !err;
	     a += HMMU_PREPARE_MAX_PAGES * page) {
		uint64_t n = (end - a) / page < HMMU_PREPARE_MAX_PAGES ?
				     (end - a) / page : HMMU_PREPARE_MAX_PAGES;

		err = migrate_chunk(m, a, n, prepare, &c->cpages);
	}
	return err;
}

/*
 * Between PREPARE and FINISH the daemon holds every CPU write to the pages
 * being migrated, and this thread sends FINISH: a write of its own to one
 * of them would wait for itself. So the pages this thread writes meanwhile
 * stay with the CPU: the connection handle's own mapping, and the stack
 * below the caller's frame (ours, and what libc calls under us).
 */
#define STACK_GUARD_BYTES (64u << 10)

static int migrate(struct hmmu_mirror *m, struct hmmu_cmd *c, unsigned prepare)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	uint64_t here = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	uint64_t keep[2][2], start, end;
	int err = 0;

	hmmu_clear_detail();
	if (!m || !c)
		return -EINVAL;
	if ((err = hmmu_check_range(c)))
		return err;
	/* Sorted by address. */
	keep[0][0] = (uint64_t)(uintptr_t)m->h;
	keep[0][1] = keep[0][0] + hmmu_handle_bytes();
	keep[1][0] = (here - STACK_GUARD_BYTES) & ~(page - 1);
	keep[1][1] = (here + page) & ~(page - 1);
	if (keep[0][0] > keep[1][0]) {
		uint64_t t0 = keep[0][0], t1 = keep[0][1];

		keep[0][0] = keep[1][0];
		keep[0][1] = keep[1][1];
		keep[1][0] = t0;
		keep[1][1] = t1;
	}
	c->cpages = 0;
	c->faults = 0;
	start = c->addr;
	end = c->addr + c->npages * page;
	for (int k = 0; k < 2 && !err; k++) {
		if (keep[k][1] <= start || keep[k][0] >= end)
			continue;
		if (start < keep[k][0])
			err = migrate_range(m, start, keep[k][0], prepare, c);
		start = keep[k][1] > start ? keep[k][1] : start;
	}
	if (!err && start < end)
		err = migrate_range(m, start, end, prepare, c);
	return err;
}

HMMU_EXPORT int hmmu_migrate_to_device(struct hmmu_mirror *m,
				       struct hmmu_cmd *c)
{
	return migrate(m, c, HMMU_CMD_MIGRATE_PREPARE);
}

HMMU_EXPORT int hmmu_make_exclusive(struct hmmu_mirror *m, struct hmmu_cmd *c)
{
	return migrate(m, c, HMMU_CMD_EXCLUSIVE_PREPARE);
}

HMMU_EXPORT int hmmu_migrate_to_system(struct hmmu_mirror *m,
				       struct hmmu_cmd *c)
{
	hmmu_clear_detail();
	return hmmu_device_cmd(m, c, HMMU_CMD_MIGRATE_TO_SYSTEM, NULL, 0);
}

HMMU_EXPORT int hmmu_check_exclusive(struct hmmu_mirror *m, struct hmmu_cmd *c)
{
	hmmu_clear_detail();
	return hmmu_device_cmd(m, c, HMMU_CMD_CHECK_EXCLUSIVE, NULL, 0);
}

HMMU_EXPORT int hmmu_device_release(struct hmmu_mirror *m)
{
	struct hmmu_cmd c = { .addr = 0, .npages = 1 };

	hmmu_clear_detail();
	return hmmu_device_cmd(m, &c, HMMU_CMD_RELEASE, NULL, 0);
}
