/* SPDX-License-Identifier: MIT */
/*
 * The range fault and its sequence protocol.
 *
 *   1. register the range's VMAs with the process's userfaultfd (WP mode);
 *   2. seq = read_begin(): wait until no invalidation is in flight, sample
 *      the process's invalidation sequence;
 *   3. write-protect the range: from now on a CPU write to any of its pages
 *      faults into the daemon, which invalidates before letting it go on;
 *   4. copy the pages (client_mem.c: through the address space's own file);
 *   5. under the device's page-table lock: if the sequence is unchanged,
 *      no CPU write, unmap, discard or move touched the process since step
 *      2, so the copy is current: commit it. Otherwise retry from step 2.
 *
 * Why step 2 waits: the write-protect fault handler invalidates, then
 * un-protects the page. If we protected and copied the page between those
 * two, its un-protect would leave our copy unguarded. The handler keeps an
 * invalidation "in flight" until after the un-protect, and the sequence it
 * bumped at the start makes us retry if we sampled too early.
 *
 * Step 3 relies on UFFD_FEATURE_WP_UNPOPULATED to protect pages the client
 * never touched. Without it, those are skipped by the kernel, and the copy in
 * step 4 maps the zero page unprotected: so without it we copy once before
 * protecting (which populates), and once after.
 *
 * In a coarse-grained process (coherence.h) a CPU write after step 3 does
 * not fault: the kernel clears the page's protection, and the next command
 * boundary finds it and invalidates. Step 3 is then a PAGEMAP_SCAN that
 * protects the written pages of the range and reports them, and each is
 * invalidated in every mirror (another device may hold an older copy):
 * that moves the sequence, so the attempt retries. range_fault() collects
 * once before its loop, so that usually the attempt in the loop finds
 * nothing written and commits at once.
 */
#include "fault.h"
#include "../common/page.h"
#include "client_mem.h"
#include "coherence.h"
#include "command.h"
#include "counters.h"
#include "../lib/log.h"
#include "mirror.h"
#include "process.h"
#include "../common/kernel_uapi.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRIES 1000

/*
 * How long read_begin() sleeps before it looks again: the end of an
 * invalidation wakes it at once, but nothing announces the end of a zap
 * (it is seen in pagemap), nor a command's cancellation or deadline.
 * Zaps usually end within microseconds of our reading their REMOVE, so
 * the first looks come soon and the later ones less often.
 */
#define ZAP_LOOK_FIRST_NS 20000l
#define ZAP_LOOK_MAX_NS 1000000l
#define CHECK_NS 1000000l

/*
 * 0 and the sequence in *@seq, or the command's error: a client that keeps
 * invalidating (writing, discarding) delays its own range faults, up to
 * the command's deadline, never forever.
 */
int fault_read_begin(struct process *p, uint64_t *seq)
{
	long zap_look = ZAP_LOOK_FIRST_NS;
	int err;

	for (;;) {
		/*
		 * The sequence first: an invalidation raises inval_active
		 * before it bumps seq, so if we read its new seq we also see
		 * it active, and wait it out. Sampled after the check, seq
		 * could come from an invalidation that is still letting go of
		 * the CPU side (its un-protect not done yet), and our copy,
		 * protected before that un-protect, would pass the retry
		 * check and go stale.
		 */
		uint64_t s = atomic_load(&p->seq);
		bool zaps;

		if (!atomic_load(&p->inval_active)) {
			*seq = s;
			return 0;
		}
		/* Zaps announced by REMOVE keep it raised until seen done. */
		zaps = process_settle_zaps(p);
		if ((err = command_check()))
			return err;
		process_wait_invalidations(p, zaps ? zap_look : CHECK_NS);
		if (zaps && zap_look < ZAP_LOOK_MAX_NS)
			zap_look *= 2;
	}
}

static int read_retry(struct process *p, uint64_t seq)
{
	return atomic_load(&p->seq) != seq;
}

/* fault_snapshot() into @n iovecs. */
static int snapshot(struct process *p, uint64_t start, uint64_t end,
		    const struct iovec *pages, unsigned long npages)
{
	uint64_t len = end - start;
	int err;

	if (p->coarse) {
		err = coherence_collect(p, start, end, NULL);
		return err ? err :
			client_readv_checked(p, start, pages, npages, len);
	}
	if (!(p->uffd_features & UFFD_FEATURE_WP_UNPOPULATED)) {
		err = client_readv_checked(p, start, pages, npages, len);
		if (err)
			return err;
	}
	err = process_write_protect(p, start, len, true);
	if (err)
		return err;
	return client_readv_checked(p, start, pages, npages, len);
}

int fault_snapshot(struct process *p, uint64_t start, uint64_t end,
		   const struct iovec *pages)
{
	return snapshot(p, start, end, pages, (end - start) / page_size());
}

int range_fault(struct range_fault *rf)
{
	struct process *p = rf->m->proc;
	int max = rf->max_tries ? rf->max_tries : MAX_TRIES;
	int err;

	err = process_register_range(p, rf->start, rf->end, rf->write);
	if (!err && p->coarse)
		err = coherence_collect(p, rf->start, rf->end, NULL);
	if (err)
		return err;

	for (int tries = 0; tries < max; tries++) {
		uint64_t seq;

		err = fault_read_begin(p, &seq);
		if (err)
			return err;
		err = snapshot(p, rf->start, rf->end, rf->pages,
			       rf->niov ? rf->niov :
					  (rf->end - rf->start) / page_size());
		if (err)
			return err;

		pthread_mutex_lock(rf->lock);
		if (!read_retry(p, seq)) {
			err = rf->commit(rf);
			pthread_mutex_unlock(rf->lock);
			return err;
		}
		pthread_mutex_unlock(rf->lock);
	}
	if (rf->max_tries)
		return -EAGAIN;
	log_warn("client %d: range fault %#" PRIx64 "-%#" PRIx64
		 " invalidated %d times in a row",
		 p->pid, rf->start, rf->end, MAX_TRIES);
	return -EAGAIN;
}
