/* SPDX-License-Identifier: MIT */
/*
 * dmirror: the kernel's test_hmm device, re-created on the driver API. Its
 * commands read and write client memory through the device MMU the core
 * keeps for each mirror, and report cpages and faults as test_hmm does;
 * its snapshot reports what the CPU's page table says, as test_hmm's does;
 * its migrations are the core's three steps, as test_hmm's are the
 * kernel's migrate_vma_*().
 *
 * It needs no state of its own: no bind, no notifier (the device MMU is
 * invalidated by the core), no lock.
 */
#include <hmmu/driver.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Commands move data between client and device this much at a time. */
#define CHUNK_PAGES 1024u

/*
 * A command's buffers: the worker's own, kept warm from one command to the
 * next (a fresh 4 MiB buffer costs a page fault per page every time).
 */
struct bounce {
	char *buf;
	struct iovec *pages;
};

static int bounce_get(struct bounce *b, uint64_t bytes)
{
	b->buf = hmmu_thread_buffer(0, bytes);
	b->pages = hmmu_thread_buffer(1, CHUNK_PAGES * sizeof(*b->pages));
	return b->buf && b->pages ? 0 : -ENOMEM;
}

static int do_read(struct hmmu_mirror *m, const struct hmmu_command *cmd,
		   struct hmmu_command_result *res)
{
	uint64_t ps = hmmu_page_size(), chunk = CHUNK_PAGES * ps;
	uint64_t end = cmd->addr + cmd->npages * ps;
	int faulted = 0, chunk_faulted, err;
	struct bounce b = { NULL, NULL };

	if (cmd->buf_len < cmd->npages * ps)
		return hmmu_fail(-EINVAL, "the buffer of %llu bytes is smaller "
				 "than %llu pages", (unsigned long long)cmd->buf_len,
				 (unsigned long long)cmd->npages);
	/*
	 * As test_hmm, a hole or PROT_NONE page anywhere fails the read
	 * before anything is copied; but each chunk is copied out as soon as
	 * it is faulted in, while its copies are still in the cache (faulting
	 * everything first, then copying, ran at half the speed of a single
	 * copy, docs/benchmark.md).
	 */
	err = hmmu_dma_check(m, cmd->addr, end, false);
	for (uint64_t a = cmd->addr; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;
		uint64_t to = cmd->buf + (a - cmd->addr);
		void *direct;

		if ((err = hmmu_should_stop()))
			break;
		/*
		 * Into memory the daemon maps too (hmmu_buffer_create()): one
		 * copy, straight from the client's pages or our copies.
		 */
		direct = hmmu_dma_map(m, to, ce - a);
		if (direct) {
			chunk_faulted = 0;
			err = hmmu_mmu_read_direct(m, a, ce, direct,
						   &chunk_faulted);
			faulted |= chunk_faulted;
			if (!err)
				res->cpages += (ce - a) / ps;
			continue;
		}
		err = hmmu_mmu_fault(m, a, ce, false, &faulted);
		if (err)
			break;
		/*
		 * Straight from the device's page copies when it holds them
		 * all; else (invalidated meanwhile, or in device memory)
		 * through the bounce buffer, faulting what is missing.
		 */
		if (!b.pages && !(b.pages = hmmu_thread_buffer(
					  1, CHUNK_PAGES * sizeof(*b.pages)))) {
			err = -ENOMEM;
			break;
		}
		if (hmmu_mmu_pin(m, a, ce, b.pages)) {
			err = hmmu_dma_writev(m, to, b.pages, (ce - a) / ps);
			hmmu_mmu_unpin(m);
		} else {
			if (!b.buf && (err = bounce_get(&b, end - a < chunk ?
							      end - a : chunk)))
				break;
			err = hmmu_mmu_read(m, a, ce, b.buf, &chunk_faulted);
			faulted |= chunk_faulted;
			if (!err)
				err = hmmu_dma_write(m, to, b.buf, ce - a);
		}
		if (!err)
			res->cpages += (ce - a) / ps;
	}
	res->faults = (uint64_t)faulted;
	hmmu_count_device_faults(m, (uint64_t)faulted);
	return err;
}

static int do_write(struct hmmu_mirror *m, const struct hmmu_command *cmd,
		    struct hmmu_command_result *res)
{
	uint64_t ps = hmmu_page_size(), chunk = CHUNK_PAGES * ps;
	uint64_t end = cmd->addr + cmd->npages * ps;
	int faulted = 0, chunk_faulted, err;
	struct bounce b;

	if (cmd->buf_len < cmd->npages * ps)
		return hmmu_fail(-EINVAL, "the buffer of %llu bytes is smaller "
				 "than %llu pages", (unsigned long long)cmd->buf_len,
				 (unsigned long long)cmd->npages);
	err = bounce_get(&b, end - cmd->addr < chunk ? end - cmd->addr : chunk);
	/* The whole target is checked before the first byte is written. */
	if (!err)
		err = hmmu_dma_check(m, cmd->addr, end, true);
	for (uint64_t a = cmd->addr; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;

		if ((err = hmmu_should_stop()))
			break;
		err = hmmu_dma_read(m, cmd->buf + (a - cmd->addr), b.buf, ce - a);
		if (!err)
			err = hmmu_mmu_write(m, a, ce - a, b.buf, &chunk_faulted);
		if (!err) {
			faulted |= chunk_faulted;
			res->cpages += (ce - a) / ps;
		}
	}
	res->faults = (uint64_t)faulted;
	hmmu_count_device_faults(m, (uint64_t)faulted);
	return err;
}

/* The snapshot's bytes are hmmu.h's page states, from the range's flags. */
static uint8_t page_state(unsigned long pfn)
{
	uint8_t huge = pfn & HMMU_PFN_HUGE ? HMMU_PAGE_HUGE : 0;

	if (pfn & HMMU_PFN_ERROR)
		return HMMU_PAGE_ERROR;
	if (pfn & HMMU_PFN_DEVICE_PRIVATE)
		return pfn & HMMU_PFN_DEVICE_OWNER ? HMMU_PAGE_DEV_LOCAL :
						     HMMU_PAGE_DEV_REMOTE;
	if (pfn & HMMU_PFN_ZERO)
		return HMMU_PAGE_ZERO;
	if (!(pfn & HMMU_PFN_VALID))
		return HMMU_PAGE_NONE;
	return (pfn & HMMU_PFN_WRITE ? HMMU_PAGE_WRITE : HMMU_PAGE_READ) | huge;
}

/* A snapshot keeps nothing that an invalidation could make stale. */
static bool ignore_invalidate(struct hmmu_interval_notifier *n,
			      const struct hmmu_notifier_range *range,
			      uint64_t cur_seq)
{
	(void)range;
	hmmu_interval_set_seq(n, cur_seq);
	return true;
}

/*
 * As test_hmm's snapshot: hmm_range_fault() without faulting, under a
 * notifier of its own for the range.
 */
static int do_snapshot(struct hmmu_mirror *m, const struct hmmu_command *cmd,
		       struct hmmu_command_result *res)
{
	static const struct hmmu_interval_notifier_ops no_ops = {
		.invalidate = ignore_invalidate,
	};
	struct hmmu_interval_notifier n;
	struct hmmu_range range = {
		.notifier = &n,
		.start = cmd->addr,
		.end = cmd->addr + cmd->npages * hmmu_page_size(),
	};
	uint8_t *states;
	int err;

	if (cmd->buf_len < cmd->npages)
		return hmmu_fail(-EINVAL, "the state buffer of %llu bytes is "
				 "smaller than %llu pages",
				 (unsigned long long)cmd->buf_len,
				 (unsigned long long)cmd->npages);
	range.hmm_pfns = malloc(cmd->npages * sizeof(*range.hmm_pfns));
	states = malloc(cmd->npages);
	err = range.hmm_pfns && states ? 0 : -ENOMEM;
	if (!err)
		err = hmmu_interval_notifier_insert(&n, m, range.start,
						    range.end - range.start,
						    &no_ops);
	if (!err) {
		err = hmmu_range_fault(&range);
		hmmu_interval_notifier_remove(&n);
	}
	for (uint64_t i = 0; !err && i < cmd->npages; i++)
		states[i] = page_state(range.hmm_pfns[i]);
	if (!err)
		err = hmmu_dma_write(m, cmd->buf, states, cmd->npages);
	if (!err)
		res->cpages = cmd->npages;
	free(states);
	free(range.hmm_pfns);
	return err;
}

/*
 * Steps 1 and 2 of a migration. The discard map goes back in the reply,
 * not into client memory: the pages are write-protected and held until
 * FINISH, and a buffer of the client's may well lie among them.
 */
static int do_migrate_prepare(struct hmmu_mirror *m,
			      const struct hmmu_command *cmd,
			      struct hmmu_command_result *res, bool exclusive)
{
	uint8_t src[HMMU_MIGRATE_MAX_PAGES];
	struct hmmu_migrate_vma args = {
		.mirror = m,
		.start = cmd->addr,
		.end = cmd->addr + cmd->npages * hmmu_page_size(),
		.src = src,
		.flags = HMMU_MIGRATE_VMA_SELECT_SYSTEM |
			 (exclusive ? HMMU_MIGRATE_VMA_EXCLUSIVE : 0),
	};
	int err;

	if (cmd->npages > HMMU_MIGRATE_MAX_PAGES)
		return -EINVAL;
	err = hmmu_migrate_vma_setup(&args);
	if (!err)
		err = hmmu_migrate_vma_pages(&args, res->discard);
	res->cpages = args.cpages;
	return err;
}

static int do_migrate_finish(struct hmmu_mirror *m,
			     const struct hmmu_command *cmd,
			     struct hmmu_command_result *res)
{
	struct hmmu_migrate_vma args = {
		.mirror = m,
		.start = cmd->addr,
		.end = cmd->addr + cmd->npages * hmmu_page_size(),
	};
	int err = hmmu_migrate_vma_finalize(&args);

	res->cpages = args.cpages;
	return err;
}

static int dmirror_command(struct hmmu_mirror *m, const struct hmmu_command *cmd,
			   struct hmmu_command_result *res)
{
	uint64_t end = cmd->addr + cmd->npages * hmmu_page_size();

	switch (cmd->cmd) {
	case HMMU_COMMAND_READ:
		return do_read(m, cmd, res);
	case HMMU_COMMAND_WRITE:
		return do_write(m, cmd, res);
	case HMMU_COMMAND_SNAPSHOT:
		return do_snapshot(m, cmd, res);
	case HMMU_COMMAND_MIGRATE_PREPARE:
		return do_migrate_prepare(m, cmd, res, false);
	case HMMU_COMMAND_EXCLUSIVE_PREPARE:
		return do_migrate_prepare(m, cmd, res, true);
	case HMMU_COMMAND_MIGRATE_FINISH:
		return do_migrate_finish(m, cmd, res);
	case HMMU_COMMAND_MIGRATE_TO_SYSTEM:
		return hmmu_migrate_device_range(m, cmd->addr, end, &res->cpages);
	case HMMU_COMMAND_CHECK_EXCLUSIVE:
		return hmmu_device_exclusive_check(m, cmd->addr, end);
	case HMMU_COMMAND_RELEASE: {
		int err = hmmu_migrate_device_range(m, 0, 0, &res->cpages);

		/* The device is gone: so are its copies. */
		hmmu_mmu_invalidate(m, 0, HMMU_VA_LIMIT);
		return err;
	}
	default:
		return -EOPNOTSUPP;
	}
}

/*
 * The CPU touched a page in our memory, as test_hmm's
 * dmirror_devmem_fault(): it gets the page's contents back.
 */
static int dmirror_migrate_to_ram(struct hmmu_mirror *m, uint64_t addr,
				  const void *src, void *dst)
{
	(void)m;
	(void)addr;
	memcpy(dst, src, hmmu_page_size());
	return 0;
}

static const struct hmmu_device_ops dmirror_ops = {
	.command = dmirror_command,
	.migrate_to_ram = dmirror_migrate_to_ram,
};

const struct hmmu_driver_module hmmu_model_dmirror = {
	.api_version = HMMU_DRIVER_API_VERSION,
	.struct_size = sizeof(struct hmmu_driver_module),
	.model = "dmirror",
	.ops = &dmirror_ops,
};
