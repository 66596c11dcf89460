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
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static int migrate(struct hmmu_mirror *m, struct hmmu_cmd *c, unsigned prepare)
{
	long page = sysconf(_SC_PAGESIZE);
	struct hmmu_cmd finish;
	uint8_t *map;
	int err;

	hmmu_clear_detail();
	if (!m || !c || !c->npages || c->npages > HMMU_CMD_MAX_PAGES)
		return -EINVAL;
	map = calloc(c->npages, 1);
	if (!map)
		return -ENOMEM;
	err = hmmu_device_cmd(m, c, prepare, map, c->npages);
	if (err)
		goto out;

	/*
	 * Discard each run the daemon copied. A page we fail to discard (an
	 * mlock'ed one, say) simply stays with the CPU: finish sees it.
	 */
	for (uint64_t i = 0; i < c->npages;) {
		uint64_t j = i;

		if (!map[i]) {
			i++;
			continue;
		}
		while (j < c->npages && map[j])
			j++;
		(void)madvise((char *)(uintptr_t)c->addr + i * (uint64_t)page,
			      (j - i) * (uint64_t)page, MADV_DONTNEED);
		i = j;
	}

	finish = *c;
	err = hmmu_device_cmd(m, &finish, HMMU_CMD_MIGRATE_FINISH, NULL, 0);
	c->cpages = finish.cpages;
	c->faults = 0;
out:
	free(map);
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
