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
#include <string.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* Prepare, discard, finish: one chunk of at most HMMU_PREPARE_MAX_PAGES. */
static int migrate_chunk(struct hmmu_mirror *m, uint64_t addr, uint64_t npages,
			 unsigned prepare, uint64_t *cpages)
{
	struct hmmu_wire_device_cmd req = {
		.mirror = m->id,
		.cmd = prepare,
		.addr = addr,
		.npages = npages,
	};
	struct hmmu_wire_prepare_result rep;
	struct hmmu_cmd finish = { .addr = addr, .npages = npages };
	int err;

	memset(&rep, 0, sizeof(rep));
	err = hmmu_call(m->h, HMMU_OP_DEVICE_CMD, &req, sizeof(req), -1, &rep,
			sizeof(rep));
	if (err)
		return err;
	discard(addr, npages, rep.discard);
	err = hmmu_device_cmd(m, &finish, HMMU_CMD_MIGRATE_FINISH, NULL, 0);
	*cpages += finish.cpages;
	return err;
}

static int migrate(struct hmmu_mirror *m, struct hmmu_cmd *c, unsigned prepare)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
	int err = 0;

	hmmu_clear_detail();
	if (!m || !c || !c->npages || c->npages > HMMU_CMD_MAX_PAGES ||
	    c->addr % page || c->addr + c->npages * page < c->addr)
		return -EINVAL;
	c->cpages = 0;
	c->faults = 0;
	for (uint64_t i = 0; i < c->npages && !err; i += HMMU_PREPARE_MAX_PAGES) {
		uint64_t n = c->npages - i < HMMU_PREPARE_MAX_PAGES ?
				     c->npages - i : HMMU_PREPARE_MAX_PAGES;

		err = migrate_chunk(m, c->addr + i * page, n, prepare, &c->cpages);
	}
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
