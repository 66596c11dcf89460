/* SPDX-License-Identifier: MIT */
/*
 * What each message means for the mirrors, and the order we act in:
 *
 *  UNMAP, REMAP: sent once the kernel has changed the page tables; every
 *    mirror drops its copies of the range before we handle the next
 *    message. The thread doing munmap or mremap is released when we read
 *    the event, a moment before we handle it: but its next request to us
 *    comes through its socket, which the same loop thread reads only after
 *    this batch, and a range fault already in flight sees the sequence
 *    move and retries. So no device access that follows the CPU operation
 *    sees the old pages (rule 7).
 *  REMOVE (madvise): sent before the kernel zaps the pages, which happens
 *    after we read it. The invalidation stays open until the zap is seen
 *    done (process_remove_begin()), so no range fault snapshots the pages
 *    in between.
 *  FORK: the kernel put a userfaultfd for the child in our fd table. The
 *    child is not mirrored: close it, which unregisters the child's ranges.
 *  PAGEFAULT with the WP flag: the CPU writes a page some device mirrors.
 *    Invalidate, then un-protect the page, which also wakes the writer.
 *
 * Within one batch, events are handled before faults: a fault can be read
 * before an earlier REMOVE of the same range, and must see its effect.
 *
 * Every UFFDIO_* ioctl fails with EAGAIN while an event is queued but not
 * yet read. A fault that hits EAGAIN is kept, more messages are read, and it
 * is retried; the faulting thread is asleep and will not send anything new,
 * so we must not wait for another readiness notification to retry.
 */
#include "uffd_events.h"
#include "../common/page.h"
#include "accounts.h"
#include "counters.h"
#include "migrate.h"
#include "../lib/log.h"
#include "process.h"
#include "uffdio.h"
#include "../common/kernel_uapi.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BATCH 64

static void handle_event(struct process *p, const struct uffd_msg *msg)
{
	switch (msg->event) {
	case UFFD_EVENT_FORK:
		/* Only the notifiers hear of it: see process_invalidate_start(). */
		process_invalidate(p, 0, HMMU_VA_LIMIT, HMMU_NOTIFY_FORK);
		migrate_on_fork(p, (int)msg->arg.fork.ufd);
		close((int)msg->arg.fork.ufd);
		break;
	case UFFD_EVENT_REMAP: {
		uint64_t from = msg->arg.remap.from, to = msg->arg.remap.to;
		uint64_t len = msg->arg.remap.len;

		process_invalidate(p, from, from + len, HMMU_NOTIFY_REMAP);
		/* The VMA moved with its registration and device pages. */
		process_forget_range(p, from, from + len);
		process_add_range(p, to, to + len);
		migrate_on_remap(p, from, to, len);
		break;
	}
	case UFFD_EVENT_REMOVE:
		/*
		 * The VMA stays registered; its pages go once we have read
		 * this: the invalidation stays open until they are gone.
		 */
		process_remove_begin(p, msg->arg.remove.start,
				     msg->arg.remove.end);
		migrate_on_remove(p, msg->arg.remove.start, msg->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		process_invalidate(p, msg->arg.remove.start, msg->arg.remove.end,
				   HMMU_NOTIFY_UNMAP);
		process_forget_range(p, msg->arg.remove.start,
				     msg->arg.remove.end);
		migrate_on_unmap(p, msg->arg.remove.start, msg->arg.remove.end);
		break;
	default:
		log_warn("client %d: unexpected userfaultfd event %u", p->pid,
			 msg->event);
	}
}

/*
 * Faults that cannot be handled yet wait in p->held (loop thread only):
 * write faults on a page being migrated, until the migration settles, and
 * faults whose ioctl said EAGAIN, until the queued event has been read.
 */
static void hold(struct process *p, const struct uffd_msg *msg)
{
	if (p->nheld == p->held_cap) {
		unsigned cap = p->held_cap ? 2 * p->held_cap : 16;
		struct uffd_msg *h = realloc(p->held, cap * sizeof(*h));

		if (!h) {
			/* The thread stays asleep until its next fault. */
			log_err("client %d: no room to hold a fault", p->pid);
			return;
		}
		p->held = h;
		p->held_cap = cap;
	}
	p->held[p->nheld++] = *msg;
}

enum { HANDLED, HELD, AGAIN };

static int handle_fault(struct process *p, const struct uffd_msg *msg)
{
	uint64_t addr = msg->arg.pagefault.address & ~(page_size() - 1);
	int err;

	if (!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
		int probe = process_probe_fault(p, addr);

		if (probe)
			return probe == -EAGAIN ? AGAIN : HANDLED;
		return migrate_missing_fault(p, msg) == -EAGAIN ? AGAIN :
								  HANDLED;
	}
	/* Its page is being migrated: the writer waits until that settles. */
	if (migrate_holds_write(p, addr))
		return HELD;
	/*
	 * The window stays open until the page is writable again, so that a
	 * range fault cannot protect and copy the page in between, only to
	 * see our un-protect make its copy stale (fault.c).
	 */
	process_invalidate_start(p, addr, addr + page_size(), HMMU_NOTIFY_WRITE);
	/* Un-protect, which also wakes the writer. */
	err = uffdio_writeprotect(p->uffd, addr, page_size(), false);
	process_invalidate_end(p);
	switch (uffdio_verdict(UFFDIO_WRITEPROTECT, err)) {
	case UFFDIO_DONE:
		account_count(p->acct, cpu_faults, 1);
		return HANDLED;
	case UFFDIO_AGAIN:
		return AGAIN;
	case UFFDIO_FAILED:
		log_err("client %d: UFFDIO_WRITEPROTECT %#" PRIx64 ": %s",
			p->pid, addr, strerror(-err));
		break;
	case UFFDIO_GONE: /* the process or the VMA went away */
		break;
	}
	/* Handled, so its thread must not stay asleep (pitfall 8). */
	(void)uffdio_wake(p->uffd, addr, page_size());
	return HANDLED;
}

/* Handle @msg, or hold it. Returns 1 if it must be retried soon (EAGAIN). */
static int handle_or_hold(struct process *p, const struct uffd_msg *msg)
{
	int r = handle_fault(p, msg);

	if (r != HANDLED)
		hold(p, msg);
	return r == AGAIN;
}

/* Retry every held fault; returns how many still get EAGAIN. */
static unsigned retry_held(struct process *p)
{
	struct uffd_msg *held = p->held;
	unsigned n = p->nheld, again = 0;

	p->held = NULL;
	p->nheld = p->held_cap = 0;
	for (unsigned i = 0; i < n; i++)
		again += (unsigned)handle_or_hold(p, &held[i]);
	free(held);
	return again;
}

void uffd_events_handle(struct process *p, unsigned revents)
{
	struct uffd_msg msgs[BATCH];
	struct uffdio_retry retry = { 0 };

	(void)revents;
	for (;;) {
		ssize_t n;
		unsigned count, again;

		process_events_begin();
		n = read(p->uffd, msgs, sizeof(msgs));

		if (n < 0 && errno == EINTR) {
			process_events_end();
			continue;
		}
		if (n <= 0) {
			/* Empty (EAGAIN) or gone. Nothing more will come now. */
			if (n < 0 && errno != EAGAIN)
				log_err("client %d: read userfaultfd: %s",
					p->pid, strerror(errno));
			count = 0;
		} else {
			count = (unsigned)(n / (ssize_t)sizeof(msgs[0]));
		}

		for (unsigned i = 0; i < count; i++)
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				handle_event(p, &msgs[i]);

		/* Faults: the held ones first, then the new ones. */
		again = retry_held(p);
		for (unsigned i = 0; i < count; i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				again += (unsigned)handle_or_hold(p, &msgs[i]);
		/*
		 * Applied, with what they count: requests may run. (Resolving
		 * a fault lets its thread go before it is counted.)
		 */
		process_events_end();

		/*
		 * A short read emptied the queue: anything new wakes the
		 * poll again, so no read is needed just to see EAGAIN (one
		 * system call less per fault).
		 */
		if (again == 0 && count < BATCH)
			return;
		/*
		 * Nothing new to read, yet the ioctl said EAGAIN: the thread
		 * whose event we just read lowers the kernel's mmap_changing
		 * only when it runs again. Give it a moment, within the one
		 * retry bound (uffdio.h).
		 */
		if (count == 0 && !uffdio_retry(&retry)) {
			/*
			 * The faulting threads stay held; the next message
			 * brings us back. Should not happen: report it.
			 */
			log_err("client %d: %u faults still get EAGAIN with no event queued",
				p->pid, again);
			return;
		}
	}
}

void uffd_events_release_held(struct process *p)
{
	/* A full pass: reads what is queued, retries what is held. */
	if (p->uffd >= 0)
		uffd_events_handle(p, 0);
}
