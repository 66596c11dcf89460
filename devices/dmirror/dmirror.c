/* SPDX-License-Identifier: MIT */
/*
 * dmirror: the kernel's test_hmm device, re-created. Each mirror has a
 * device page table holding the device's own copy of each mirrored page;
 * commands read and write client memory through it, faulting pages in with
 * the daemon's range fault, and the daemon's invalidations drop copies.
 */
#include "../device.h"
#include "../pagetable.h"
#include "../../daemon/counters.h"
#include "../../daemon/fault.h"
#include "../../daemon/mirror.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Entry flags. */
#define DM_READ 0x1u
#define DM_WRITE 0x2u

/* Commands work through this many pages at a time. */
#define CHUNK_PAGES 1024u

struct dmirror_mirror {
	pthread_mutex_t lock; /* protects pt; taken inside the process lock */
	struct pt *pt;
};

static uint64_t page_size(void)
{
	static uint64_t ps;

	if (!ps)
		ps = (uint64_t)sysconf(_SC_PAGESIZE);
	return ps;
}

static struct dmirror_mirror *dm_of(struct mirror *m)
{
	return m->dev_priv;
}

static int dmirror_create(struct device *dev, const char *args)
{
	if (args && *args)
		return -EINVAL; /* no options yet */
	dev->mem_bytes = 0;
	dev->numa_node = -1;
	return 0;
}

static void dmirror_destroy(struct device *dev)
{
	(void)dev;
}

static int dmirror_attach(struct device *dev, struct mirror *m)
{
	struct dmirror_mirror *dm = calloc(1, sizeof(*dm));
	int err;

	(void)dev;
	if (!dm)
		return -ENOMEM;
	err = pt_create(&dm->pt);
	if (err) {
		free(dm);
		return err;
	}
	pthread_mutex_init(&dm->lock, NULL);
	m->dev_priv = dm;
	return 0;
}

static void free_page(struct pt_entry *e, void *arg)
{
	(void)arg;
	free(e->data);
}

static void drop_range(struct dmirror_mirror *dm, uint64_t start, uint64_t end)
{
	uint64_t n = pt_clear_range(dm->pt, start, end, free_page, NULL);

	counter_sub(&counters.device_pages, n);
}

static void dmirror_invalidate(struct device *dev, struct mirror *m,
			       uint64_t start, uint64_t end)
{
	struct dmirror_mirror *dm = dm_of(m);

	(void)dev;
	pthread_mutex_lock(&dm->lock);
	drop_range(dm, start, end);
	pthread_mutex_unlock(&dm->lock);
}

static void dmirror_release(struct device *dev, struct mirror *m)
{
	/* The process is gone: nothing to write back, detach drops all. */
	(void)dev;
	(void)m;
}

static void dmirror_detach(struct device *dev, struct mirror *m)
{
	struct dmirror_mirror *dm = dm_of(m);

	(void)dev;
	pthread_mutex_lock(&dm->lock);
	drop_range(dm, 0, PT_VA_LIMIT);
	pthread_mutex_unlock(&dm->lock);
	pt_destroy(dm->pt, NULL, NULL);
	pthread_mutex_destroy(&dm->lock);
	free(dm);
	m->dev_priv = NULL;
}

/* dm->lock held: copy the chunk out of the page table, if all present. */
static int copy_out_if_present(struct dmirror_mirror *dm, uint64_t start,
			       uint64_t end, char *buf)
{
	for (uint64_t a = start; a < end; a += page_size()) {
		struct pt_entry *e = pt_lookup(dm->pt, a);

		if (!e)
			return 0;
		memcpy(buf + (a - start), e->data, page_size());
	}
	return 1;
}

/* Range fault commit: install the snapshot as the device's copy. */
static int install_snapshot(struct range_fault *rf)
{
	struct dmirror_mirror *dm = rf->arg;
	const char *src = rf->buf;
	uint32_t flags = DM_READ | (rf->write ? DM_WRITE : 0);

	for (uint64_t a = rf->start; a < rf->end; a += page_size()) {
		struct pt_entry *e = pt_lookup(dm->pt, a);
		struct pt_entry ne;
		int err;

		if (e) {
			memcpy(e->data, src + (a - rf->start), page_size());
			e->flags = flags;
			continue;
		}
		ne.data = malloc(page_size());
		ne.flags = flags;
		if (!ne.data)
			return -ENOMEM;
		memcpy(ne.data, src + (a - rf->start), page_size());
		err = pt_set(dm->pt, a, &ne, NULL, NULL);
		if (err) {
			free(ne.data);
			return err;
		}
		counter_add(&counters.device_pages, 1);
	}
	return 0;
}

static int do_read(struct mirror *m, const struct hmmu_wire_device_cmd *cmd,
		   struct hmmu_wire_cmd_result *res)
{
	struct dmirror_mirror *dm = dm_of(m);
	uint64_t chunk = CHUNK_PAGES * page_size();
	uint64_t end = cmd->addr + cmd->npages * page_size();
	int faulted = 0, err = 0;
	char *tmp;

	if (cmd->buf_len < cmd->npages * page_size())
		return -EINVAL;
	tmp = malloc(chunk);
	if (!tmp)
		return -ENOMEM;

	/* As test_hmm: all pages are faulted in before any is copied out. */
	for (uint64_t a = cmd->addr; a < end && !err; a += chunk) {
		uint64_t ce = a + chunk < end ? a + chunk : end;
		struct range_fault rf = {
			.m = m, .start = a, .end = ce, .buf = tmp,
			.lock = &dm->lock, .commit = install_snapshot, .arg = dm,
		};
		int present;

		pthread_mutex_lock(&dm->lock);
		present = copy_out_if_present(dm, a, ce, tmp);
		pthread_mutex_unlock(&dm->lock);
		if (present)
			continue;
		err = range_fault(&rf);
		faulted = 1;
	}
	/*
	 * Copy out. A page invalidated since it was faulted in is faulted
	 * again (its new contents are what the device must see); that does
	 * not count as another fault of this command, as in test_hmm.
	 */
	for (uint64_t a = cmd->addr; a < end && !err; a += chunk) {
		uint64_t ce = a + chunk < end ? a + chunk : end;
		struct range_fault rf = {
			.m = m, .start = a, .end = ce, .buf = tmp,
			.lock = &dm->lock, .commit = install_snapshot, .arg = dm,
		};
		int present;

		pthread_mutex_lock(&dm->lock);
		present = copy_out_if_present(dm, a, ce, tmp);
		pthread_mutex_unlock(&dm->lock);
		if (!present)
			err = range_fault(&rf);
		if (!err)
			err = client_write(m, cmd->buf + (a - cmd->addr), tmp,
					   ce - a);
		if (!err)
			res->cpages += (ce - a) / page_size();
	}
	free(tmp);
	res->faults = (uint64_t)faulted;
	counter_add(&counters.device_faults, (uint64_t)faulted);
	return err;
}

static int dmirror_command(struct device *dev, struct mirror *m,
			   const struct hmmu_wire_device_cmd *cmd,
			   struct hmmu_wire_cmd_result *res)
{
	(void)dev;
	if (cmd->addr % page_size())
		return -EINVAL;
	if (cmd->addr + cmd->npages * page_size() < cmd->addr ||
	    cmd->addr + cmd->npages * page_size() > PT_VA_LIMIT)
		return -EINVAL;
	switch (cmd->cmd) {
	case HMMU_CMD_READ:
		return do_read(m, cmd, res);
	default:
		return -EOPNOTSUPP;
	}
}

const struct device_ops dmirror_ops = {
	.model = "dmirror",
	.create = dmirror_create,
	.destroy = dmirror_destroy,
	.attach = dmirror_attach,
	.invalidate = dmirror_invalidate,
	.release = dmirror_release,
	.detach = dmirror_detach,
	.command = dmirror_command,
};
