/* SPDX-License-Identifier: MIT */
/*
 * The driver API of hmmu/driver.h, on the core's parts: most functions are
 * the core's own, under the names and shapes a device model sees. Notifiers
 * are in notifier.c, the migration steps in migrate.c.
 */
#include <hmmu/driver.h>

#include "accounts.h"
#include "client_mem.h"
#include "command.h"
#include "cpu_pages.h"
#include "device.h"
#include "explain.h"
#include "fault.h"
#include "faultbuf.h"
#include "migrate.h"
#include "mirror.h"
#include "mmu.h"
#include "process.h"
#include "../common/page.h"
#include "../lib/log.h"
#include "../lib/placement.h"
#include "../lib/scratch.h"
#include "../lib/workers.h"

#include <errno.h>
#include <numa.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- devices and mirrors ------------------------------------------------ */

const char *hmmu_device_name(const struct hmmu_device *dev)
{
	return dev->name;
}

int hmmu_device_node(const struct hmmu_device *dev)
{
	return dev->numa_node;
}

void hmmu_device_set_drvdata(struct hmmu_device *dev, void *data)
{
	dev->drvdata = data;
}

void *hmmu_device_get_drvdata(const struct hmmu_device *dev)
{
	return dev->drvdata;
}

int hmmu_device_set_prefetch(struct hmmu_device *dev, unsigned pages)
{
	if (pages == 0 || pages > 512)
		return -EINVAL;
	dev->prefetch = pages;
	return 0;
}

int hmmu_device_set_fault_buffer(struct hmmu_device *dev, unsigned entries,
				 unsigned density_pct)
{
	if ((entries && entries < FAULTBUF_MIN_ENTRIES) ||
	    entries > FAULTBUF_MAX_ENTRIES || density_pct > 100)
		return -EINVAL;
	dev->fault_entries = entries;
	dev->density_pct = density_pct;
	return 0;
}

struct hmmu_device *hmmu_mirror_device(const struct hmmu_mirror *m)
{
	return m->dev;
}

int hmmu_mirror_pid(const struct hmmu_mirror *m)
{
	return m->owner.pid;
}

void hmmu_mirror_set_drvdata(struct hmmu_mirror *m, void *data)
{
	m->drvdata = data;
}

void *hmmu_mirror_get_drvdata(const struct hmmu_mirror *m)
{
	return m->drvdata;
}

/*
 * Every error an access to client memory gives a model is explained here,
 * for the client, where the range is known (explain.h).
 */
static int explained(struct hmmu_mirror *m, int err, uint64_t start,
		     uint64_t end, bool write)
{
	if (err)
		explain_access(m->proc, err, start, end, write);
	return err;
}

/* ---- the device MMU ------------------------------------------------------ */

int hmmu_mmu_fault(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		   bool write, int *faulted)
{
	return explained(m, mmu_fault_in(&m->mmu, start, end, write, faulted),
			 start, end, write);
}

int hmmu_mmu_read(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		  void *buf, int *faulted)
{
	return explained(m, mmu_read(&m->mmu, start, end, buf, faulted), start,
			 end, false);
}

int hmmu_mmu_read_direct(struct hmmu_mirror *m, uint64_t start,
			 uint64_t end, void *dst, int *faulted)
{
	return explained(m, mmu_read_direct(&m->mmu, start, end, dst, faulted),
			 start, end, false);
}

int hmmu_mmu_write(struct hmmu_mirror *m, uint64_t addr, uint64_t len,
		   const void *buf, int *faulted)
{
	return explained(m, mmu_write(&m->mmu, addr, len, buf, faulted), addr,
			 addr + len, true);
}

int hmmu_mmu_load(struct hmmu_mirror *m, uint64_t addr, void *dst,
		  uint64_t len, uint64_t *faults)
{
	return explained(m, mmu_load(&m->mmu, addr, dst, len, faults), addr,
			 addr + len, false);
}

int hmmu_mmu_fault_replayable(struct hmmu_mirror *m, uint64_t addr)
{
	if (!m->mmu.fb.cap)
		return -EOPNOTSUPP;
	if (addr >= HMMU_VA_LIMIT)
		return -EFAULT;
	return faultbuf_fault(&m->mmu, page_down(addr));
}

int hmmu_mmu_pin(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		 struct iovec *pages)
{
	return mmu_pin(&m->mmu, start, end, pages);
}

void hmmu_mmu_unpin(struct hmmu_mirror *m)
{
	mmu_unpin(&m->mmu);
}

void hmmu_mmu_invalidate(struct hmmu_mirror *m, uint64_t start, uint64_t end)
{
	mmu_invalidate(&m->mmu, start, end);
}

uint64_t hmmu_mmu_pages(struct hmmu_mirror *m)
{
	return mmu_pages(&m->mmu);
}

/* ---- range fault --------------------------------------------------------- */

static bool range_ok(uint64_t start, uint64_t end)
{
	return start < end && end <= HMMU_VA_LIMIT && !(start % page_size()) &&
	       !(end % page_size());
}

/* No fault: each page's state, as the CPU's page table and ours say. */
static int range_states(struct hmmu_range *range)
{
	struct hmmu_mirror *m = range->notifier->mirror;
	uint64_t npages = (range->end - range->start) / page_size();
	uint8_t *st;
	int err;

	if (npages > HMMU_COMMAND_MAX_PAGES || !range->hmm_pfns)
		return -EINVAL;
	st = malloc(npages);
	if (!st)
		return -ENOMEM;
	err = cpu_pages_snapshot(m->proc, range->start, npages, st);
	for (uint64_t i = 0; !err && i < npages; i++) {
		/* A page in device memory is missing from the CPU's table. */
		uint8_t dev = migrate_page_state(m, range->start + i * page_size());

		range->hmm_pfns[i] = dev ? dev : st[i];
	}
	free(st);
	return err;
}

int hmmu_range_fault(struct hmmu_range *range)
{
	struct hmmu_interval_notifier *n = range->notifier;
	bool write = range->default_flags & HMMU_PFN_REQ_WRITE;
	uint64_t npages;
	int err;

	if (!n || !n->mirror || !range_ok(range->start, range->end))
		return -EINVAL;
	if (!(range->default_flags & HMMU_PFN_REQ_FAULT))
		return range_states(range);
	npages = (range->end - range->start) / page_size();
	if (npages > 1024 || !range->pages)
		return -EINVAL;
	err = process_register_range(n->mirror->proc, range->start, range->end,
				     write);
	if (!err)
		err = fault_snapshot(n->mirror->proc, range->start, range->end,
				     range->pages);
	explained(n->mirror, err, range->start, range->end, write);
	if (!err && hmmu_interval_read_retry(n, range->notifier_seq))
		err = -EBUSY;
	for (uint64_t i = 0; !err && range->hmm_pfns && i < npages; i++)
		range->hmm_pfns[i] = HMMU_PFN_VALID | (write ? HMMU_PFN_WRITE : 0);
	return err;
}

/* ---- DMA ------------------------------------------------------------------ */

void *hmmu_dma_map(struct hmmu_mirror *m, uint64_t addr, uint64_t len)
{
	(void)m;
	return command_dma_map(addr, len);
}

/*
 * A transfer wholly inside the command's shared buffer is a memcpy in the
 * daemon's own mapping of it. Any other, even one overlapping the buffer,
 * goes through the client's memory, where the same pages are mapped: the
 * same bytes either way.
 */
int hmmu_dma_read(struct hmmu_mirror *m, uint64_t addr, void *buf,
		  uint64_t len)
{
	const void *local = command_dma_map(addr, len);

	if (local) {
		memcpy(buf, local, len);
		return 0;
	}
	return explained(m, client_read(m->proc, addr, buf, len), addr,
			 addr + len, false);
}

int hmmu_dma_write(struct hmmu_mirror *m, uint64_t addr, const void *buf,
		   uint64_t len)
{
	void *local = command_dma_map(addr, len);

	if (local) {
		memcpy(local, buf, len);
		return 0;
	}
	return explained(m, client_write(m->proc, addr, buf, len), addr,
			 addr + len, true);
}

int hmmu_dma_writev(struct hmmu_mirror *m, uint64_t addr,
		    const struct iovec *iov, unsigned long iovcnt)
{
	uint64_t len = 0;

	char *local;

	for (unsigned long i = 0; i < iovcnt; i++)
		len += iov[i].iov_len;
	local = command_dma_map(addr, len);
	if (local) {
		for (unsigned long i = 0; i < iovcnt; i++) {
			memcpy(local, iov[i].iov_base, iov[i].iov_len);
			local += iov[i].iov_len;
		}
		return 0;
	}
	return explained(m, client_writev(m->proc, addr, iov, iovcnt, len),
			 addr, addr + len, true);
}

int hmmu_dma_check(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		   bool write)
{
	int err = process_register_range(m->proc, page_down(start),
					  page_up(end), write);

	/*
	 * Memory userfaultfd cannot track is fine for DMA, which keeps no
	 * copy. And the registration remembers a range as writable, while
	 * userfaultfd says nothing of a later mprotect(): so the VMAs
	 * themselves have the last word.
	 */
	if (err == -EPERM || (!err && write))
		err = process_check_access(m->proc, page_down(start),
					   page_up(end), write);
	return explained(m, err, start, end, write);
}

/* ---- migration -------------------------------------------------------------- */

int hmmu_device_exclusive_check(struct hmmu_mirror *m, uint64_t start,
				uint64_t end)
{
	return migrate_check_exclusive(m, start, end);
}

int hmmu_migrate_device_range(struct hmmu_mirror *m, uint64_t start,
			      uint64_t end, uint64_t *cpages)
{
	return migrate_to_system(m, start, end, cpages);
}

/* ---- services ---------------------------------------------------------------- */

/* What a queued hmmu_work carries in its core part. */
struct queued_work {
	struct work work;
	struct command_ctx ctx;
	struct hmmu_work *hw;
};
_Static_assert(sizeof(struct queued_work) <=
		       sizeof(((struct hmmu_work *)0)->core.bytes),
	       "struct hmmu_work has room for the core's part");

static void run_work(struct work *w)
{
	struct queued_work *q = (struct queued_work *)w;

	command_adopt(q->ctx.m ? &q->ctx : NULL);
	q->hw->fn(q->hw);
	command_leave();
}

int hmmu_device_threads_start(struct hmmu_device *dev, unsigned n)
{
	if (n == 0 || n > 64 || dev->threads)
		return -EINVAL;
	/* Compute threads run on the CPUs next to the device's memory. */
	return workers_start(n, placement_bind_self, dev->near, &dev->threads);
}

void hmmu_device_queue_work(struct hmmu_device *dev, struct hmmu_work *w)
{
	struct queued_work *q = (struct queued_work *)w->core.bytes;
	const struct command_ctx *cur = command_current();

	memset(q, 0, sizeof(*q));
	q->work.fn = run_work;
	q->hw = w;
	if (cur)
		q->ctx = *cur; /* the request's deadline and cancellation */
	if (!dev->threads) {
		/*
		 * A model that started no threads: its work runs here, under
		 * the caller's own context, which it must keep afterwards.
		 */
		w->fn(w);
		return;
	}
	workers_queue(dev->threads, &q->work);
}

int hmmu_should_stop(void)
{
	return command_check();
}

int hmmu_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	command_vfail(err, fmt, ap);
	va_end(ap);
	return err;
}

void *hmmu_device_alloc(struct hmmu_device *dev, size_t bytes)
{
	size_t len = page_up(bytes);
	void *p;

	if (!len)
		return NULL;
	if (dev->numa_node >= 0 && numa_available() >= 0) {
		p = numa_alloc_onnode(len, dev->numa_node);
		if (p)
			memset(p, 0, len);
		return p;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		 -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void hmmu_device_free(struct hmmu_device *dev, void *p, size_t bytes)
{
	if (!p)
		return;
	if (dev->numa_node >= 0 && numa_available() >= 0)
		numa_free(p, page_up(bytes));
	else
		munmap(p, page_up(bytes));
}

void hmmu_count_device_faults(struct hmmu_mirror *m, uint64_t n)
{
	account_count(m->acct, device_faults, n);
}

void hmmu_log(const struct hmmu_device *dev, enum hmmu_log_level level,
	      const char *fmt, ...)
{
	static const enum log_level levels[] = {
		[HMMU_LOG_ERROR] = LOG_ERR_,
		[HMMU_LOG_WARNING] = LOG_WARN_,
		[HMMU_LOG_INFO] = LOG_INFO_,
		[HMMU_LOG_DEBUG] = LOG_DEBUG_,
	};
	enum log_level l = (unsigned)level <= HMMU_LOG_DEBUG ? levels[level] :
							       LOG_DEBUG_;
	char line[512];
	va_list ap;

	if (l <= LOG_WARN_)
		atomic_fetch_add(&((struct hmmu_device *)dev)->logged_problems, 1);
	if (!log_enabled(l))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Limited per device: a model cannot flood the journal. */
	log_msg_ratelimited(&((struct hmmu_device *)dev)->log_rl, l, "%s: %s",
			    dev->name, line);
}

void *hmmu_thread_buffer(unsigned slot, size_t bytes)
{
	if (slot > 3)
		return NULL;
	return scratch_get(SCRATCH_MODEL + slot, bytes);
}

uint64_t hmmu_page_size(void)
{
	return page_size();
}
