/* SPDX-License-Identifier: MIT */
/*
 * What each message means for the mirrors, and the order we act in:
 *
 *  UNMAP, REMOVE, REMAP: the CPU range changed; every mirror drops its
 *    copies before we read the next message, and the thread doing munmap,
 *    madvise or mremap sleeps until we have read this one. So the device
 *    copy is gone before the CPU operation completes (rule 7).
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
#include "counters.h"
#include "log.h"
#include "process.h"
#include "../common/uffd_uapi.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAX_EAGAIN_ROUNDS 64

static uint64_t page_size_;

static uint64_t page_size(void)
{
	if (!page_size_)
		page_size_ = (uint64_t)sysconf(_SC_PAGESIZE);
	return page_size_;
}

static void handle_event(struct process *p, const struct uffd_msg *msg)
{
	switch (msg->event) {
	case UFFD_EVENT_FORK:
		close((int)msg->arg.fork.ufd);
		break;
	case UFFD_EVENT_REMAP: {
		uint64_t from = msg->arg.remap.from, to = msg->arg.remap.to;
		uint64_t len = msg->arg.remap.len;

		process_invalidate(p, from, from + len);
		/* The VMA moved with its registration. */
		process_forget_range(p, from, from + len);
		process_add_range(p, to, to + len);
		break;
	}
	case UFFD_EVENT_REMOVE:
		/* The VMA stays registered; only its pages went. */
		process_invalidate(p, msg->arg.remove.start, msg->arg.remove.end);
		break;
	case UFFD_EVENT_UNMAP:
		process_invalidate(p, msg->arg.remove.start, msg->arg.remove.end);
		process_forget_range(p, msg->arg.remove.start,
				     msg->arg.remove.end);
		break;
	default:
		log_warn("client %d: unexpected userfaultfd event %u", p->pid,
			 msg->event);
	}
}

/* Returns 0 when handled, -EAGAIN to retry after reading more. */
static int handle_fault(struct process *p, const struct uffd_msg *msg)
{
	uint64_t addr = msg->arg.pagefault.address & ~(page_size() - 1);
	struct uffdio_writeprotect wp = {
		.range = { .start = addr, .len = page_size() },
		.mode = 0, /* un-protect, and wake the writer */
	};

	if (!(msg->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
		log_warn("client %d: missing fault at %#" PRIx64
			 " in a range registered for write-protect only",
			 p->pid, addr);
		return 0;
	}
	/*
	 * The window stays open until the page is writable again, so that a
	 * range fault cannot protect and copy the page in between, only to
	 * see our un-protect make its copy stale (fault.c).
	 */
	process_invalidate_start(p, addr, addr + page_size());
	if (ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
		process_invalidate_end(p);
		if (errno == EAGAIN)
			return -EAGAIN;
		/* ESRCH/ENOENT: the process or the VMA went away. */
		if (errno != ESRCH && errno != ENOENT)
			log_err("client %d: UFFDIO_WRITEPROTECT %#" PRIx64
				": %s",
				p->pid, addr, strerror(errno));
		return 0;
	}
	process_invalidate_end(p);
	counter_add(&counters.cpu_faults, 1);
	return 0;
}

void uffd_events_handle(struct process *p, unsigned revents)
{
	struct uffd_msg msgs[BATCH], deferred[BATCH];
	unsigned ndeferred = 0, rounds = 0;

	(void)revents;
	for (;;) {
		ssize_t n = read(p->uffd, msgs, sizeof(msgs));
		unsigned count, kept = 0;

		if (n < 0 && errno == EINTR)
			continue;
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

		/* Faults: the deferred ones first, then the new ones. */
		for (unsigned i = 0; i < ndeferred; i++)
			if (handle_fault(p, &deferred[i]) == -EAGAIN)
				deferred[kept++] = deferred[i];
		for (unsigned i = 0; i < count; i++) {
			if (msgs[i].event != UFFD_EVENT_PAGEFAULT)
				continue;
			if (handle_fault(p, &msgs[i]) == -EAGAIN) {
				if (kept < BATCH)
					deferred[kept++] = msgs[i];
				else
					log_err("client %d: fault dropped, too many deferred",
						p->pid);
			}
		}
		ndeferred = kept;

		if (count == 0 && ndeferred == 0)
			return;
		if (count == 0 && ++rounds > MAX_EAGAIN_ROUNDS) {
			/*
			 * Nothing to read, yet the ioctl keeps saying EAGAIN.
			 * The faulting threads stay asleep; the next message
			 * brings us back. Should not happen: report it.
			 */
			log_err("client %d: %u faults still get EAGAIN with no event queued",
				p->pid, ndeferred);
			return;
		}
		if (count == 0) {
			/*
			 * The thread whose event we just read lowers the
			 * kernel's mmap_changing only when it runs again:
			 * give it a moment before retrying.
			 */
			struct timespec ts = { 0, 20000 };

			nanosleep(&ts, NULL);
		}
	}
}
