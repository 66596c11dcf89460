/* SPDX-License-Identifier: MIT */
/*
 * dmirror: the kernel's test_hmm device, re-created. Its commands read and
 * write client memory through the device MMU (devices/mmu.c), and report
 * cpages and faults as test_hmm does; its snapshot reports what the CPU's
 * page table says, as test_hmm's does.
 */
#include "../../core/device.h"
#include "../../core/mmu.h"
#include "../../core/cpu_pages.h"
#include "../../core/migrate.h"
#include "../../core/client_mem.h"
#include "../../core/command.h"
#include "../../core/mirror.h"
#include "../../core/process.h"
#include "../../lib/scratch.h"
#include "../../core/accounts.h"

#include "../../common/page.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

/* Commands move data between client and device this much at a time. */
#define CHUNK_PAGES 1024u


static struct dev_mmu *mmu_of(struct hmmu_mirror *m)
{
	return m->dev_priv;
}

static int dmirror_create(struct hmmu_device *dev, const char *args)
{
	(void)dev;
	if (args && *args)
		return -EINVAL; /* no options yet */
	return 0;
}

static void dmirror_destroy(struct hmmu_device *dev)
{
	(void)dev;
}

static int dmirror_attach(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	struct dev_mmu *mmu = malloc(sizeof(*mmu));
	int err;

	(void)dev;
	if (!mmu)
		return -ENOMEM;
	err = mmu_init(mmu, m, 1);
	if (err) {
		free(mmu);
		return err;
	}
	m->dev_priv = mmu;
	return 0;
}

static void dmirror_invalidate(struct hmmu_device *dev, struct hmmu_mirror *m,
			       uint64_t start, uint64_t end)
{
	(void)dev;
	mmu_invalidate(mmu_of(m), start, end);
}

static void dmirror_release(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	/* The process is gone: nothing to write back; detach drops all. */
	(void)dev;
	(void)m;
}

static void dmirror_detach(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	(void)dev;
	mmu_fini(mmu_of(m));
	free(m->dev_priv);
	m->dev_priv = NULL;
}

static int do_read(struct hmmu_mirror *m, const struct hmmu_wire_device_cmd *cmd,
		   struct hmmu_wire_cmd_result *res)
{
	uint64_t chunk = CHUNK_PAGES * page_size();
	uint64_t end = cmd->addr + cmd->npages * page_size();
	int faulted = 0, chunk_faulted, err;
	struct iovec *pages;
	char *bounce;

	if (cmd->buf_len < cmd->npages * page_size())
		return -EINVAL;
	/* As test_hmm: everything is faulted in before anything is copied. */
	err = mmu_fault_in(mmu_of(m), cmd->addr, end, 0, &faulted);
	if (err)
		return err;
	bounce = scratch_get(SCRATCH_COMMAND,
			     end - cmd->addr < chunk ? end - cmd->addr : chunk);
	if (!bounce)
		return -ENOMEM;
	pages = scratch_get(SCRATCH_PINNED, CHUNK_PAGES * sizeof(*pages));
	if (!pages)
		return -ENOMEM;
	for (uint64_t a = cmd->addr; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;
		uint64_t to = cmd->buf + (a - cmd->addr);

		if ((err = command_check()))
			break;
		/*
		 * Straight from the device's page copies when it holds them
		 * all; else (invalidated meanwhile, or in device memory)
		 * through the bounce buffer, faulting what is missing.
		 */
		if (mmu_pin(mmu_of(m), a, ce, pages)) {
			err = client_writev(m->proc, to, pages,
					       (ce - a) / page_size(), ce - a);
			mmu_unpin(mmu_of(m));
		} else {
			err = mmu_read(mmu_of(m), a, ce, bounce, &chunk_faulted);
			if (!err)
				err = client_write(m->proc, to, bounce, ce - a);
		}
		if (!err)
			res->cpages += (ce - a) / page_size();
	}
	res->faults = (uint64_t)faulted;
	account_count(m->acct, device_faults, (uint64_t)faulted);
	return err;
}

static int do_write(struct hmmu_mirror *m, const struct hmmu_wire_device_cmd *cmd,
		    struct hmmu_wire_cmd_result *res)
{
	uint64_t chunk = CHUNK_PAGES * page_size();
	uint64_t end = cmd->addr + cmd->npages * page_size();
	int faulted = 0, chunk_faulted, err;
	char *bounce;

	if (cmd->buf_len < cmd->npages * page_size())
		return -EINVAL;
	bounce = scratch_get(SCRATCH_COMMAND,
			     end - cmd->addr < chunk ? end - cmd->addr : chunk);
	if (!bounce)
		return -ENOMEM;
	/* The whole target is checked before the first byte is written. */
	err = process_register_range(m->proc, cmd->addr, end, 1);
	for (uint64_t a = cmd->addr; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;

		if ((err = command_check()))
			break;
		err = client_read(m->proc, cmd->buf + (a - cmd->addr), bounce, ce - a);
		if (!err)
			err = mmu_write(mmu_of(m), a, ce - a, bounce, &chunk_faulted);
		if (!err) {
			faulted |= chunk_faulted;
			res->cpages += (ce - a) / page_size();
		}
	}
	res->faults = (uint64_t)faulted;
	account_count(m->acct, device_faults, (uint64_t)faulted);
	return err;
}

static int do_snapshot(struct hmmu_mirror *m, const struct hmmu_wire_device_cmd *cmd,
		       struct hmmu_wire_cmd_result *res)
{
	uint8_t *states;
	int err;

	if (cmd->buf_len < cmd->npages)
		return -EINVAL;
	states = malloc(cmd->npages);
	if (!states)
		return -ENOMEM;
	err = cpu_pages_snapshot(m->proc, cmd->addr, cmd->npages, states);
	/* Pages in device memory are missing from the CPU's page table. */
	for (uint64_t i = 0; !err && i < cmd->npages; i++) {
		uint8_t dev = migrate_page_state(m, cmd->addr + i * page_size());

		if (dev)
			states[i] = dev;
	}
	if (!err)
		err = client_write(m->proc, cmd->buf, states, cmd->npages);
	if (!err)
		res->cpages = cmd->npages;
	free(states);
	return err;
}

/*
 * The map goes back in the reply, not into client memory: the pages are
 * write-protected and held until FINISH, and a buffer of the client's may
 * well lie among them.
 */
static int do_migrate_prepare(struct hmmu_mirror *m,
			      const struct hmmu_wire_device_cmd *cmd,
			      struct hmmu_wire_prepare_result *res, int exclusive)
{
	uint8_t map[HMMU_PREPARE_MAX_PAGES];
	int err;

	err = migrate_prepare(m, cmd->addr, cmd->npages, map, exclusive,
			      &res->cpages);
	for (uint64_t i = 0; !err && i < cmd->npages; i++)
		if (map[i])
			res->discard[i / 8] |= (uint8_t)(1u << (i % 8));
	return err;
}

static int dmirror_command(struct hmmu_device *dev, struct hmmu_mirror *m,
			   const struct hmmu_wire_device_cmd *cmd,
			   struct hmmu_wire_cmd_result *res)
{
	uint64_t end = cmd->addr + cmd->npages * page_size();

	(void)dev;
	if (cmd->addr % page_size() || end < cmd->addr || end > (1ull << 48))
		return -EINVAL;
	switch (cmd->cmd) {
	case HMMU_CMD_READ:
		return do_read(m, cmd, res);
	case HMMU_CMD_WRITE:
		return do_write(m, cmd, res);
	case HMMU_CMD_SNAPSHOT:
		return do_snapshot(m, cmd, res);
	case HMMU_CMD_MIGRATE_PREPARE:
		return do_migrate_prepare(m, cmd, (void *)res, 0);
	case HMMU_CMD_EXCLUSIVE_PREPARE:
		return do_migrate_prepare(m, cmd, (void *)res, 1);
	case HMMU_CMD_MIGRATE_FINISH:
		return migrate_finish(m, cmd->addr, cmd->npages, &res->cpages);
	case HMMU_CMD_MIGRATE_TO_SYSTEM:
		return migrate_to_system(m, cmd->addr, end, &res->cpages);
	case HMMU_CMD_CHECK_EXCLUSIVE:
		return migrate_check_exclusive(m, cmd->addr, end);
	case HMMU_CMD_RELEASE: {
		int err = migrate_to_system(m, 0, 0, &res->cpages);

		/* The device is gone: so are its copies. */
		mmu_invalidate(mmu_of(m), 0, 1ull << 48);
		return err;
	}
	default:
		return -EOPNOTSUPP;
	}
}

static uint64_t dmirror_pages(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	(void)dev;
	return mmu_pages(m->dev_priv);
}

const struct device_ops dmirror_ops = {
	.model = "dmirror",
	.create = dmirror_create,
	.destroy = dmirror_destroy,
	.attach = dmirror_attach,
	.invalidate = dmirror_invalidate,
	.release = dmirror_release,
	.detach = dmirror_detach,
	.pages = dmirror_pages,
	.command = dmirror_command,
};
