/* SPDX-License-Identifier: MIT */
/*
 * The range fault and its sequence protocol.
 *
 *   1. register the range's VMAs with the process's userfaultfd (WP mode);
 *   2. seq = read_begin(): wait until no invalidation is in flight, sample
 *      the process's invalidation sequence;
 *   3. write-protect the range: from now on a CPU write to any of its pages
 *      faults into the daemon, which invalidates before letting it go on;
 *   4. copy the pages with process_vm_readv;
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
 */
#include "fault.h"
#include "counters.h"
#include "log.h"
#include "mirror.h"
#include "process.h"
#include "../common/uffd_uapi.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAX_TRIES 1000

static void short_pause(void)
{
	struct timespec ts = { 0, 10000 };

	nanosleep(&ts, NULL);
}

static uint64_t read_begin(struct process *p)
{
	/* Zaps announced by REMOVE keep it raised until we see them done. */
	while (atomic_load(&p->inval_active)) {
		process_settle_zaps(p);
		sched_yield();
	}
	return atomic_load(&p->seq);
}

static int read_retry(struct process *p, uint64_t seq)
{
	return atomic_load(&p->seq) != seq;
}

/*
 * The pid is only a name: make sure it still names the process we hold a
 * pidfd of, just before using it. (Reuse within the one syscall that
 * follows would need the whole pid space to wrap around meanwhile.)
 */
int process_alive(struct process *p)
{
	struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };

	/* A pidfd turns readable when its process exits. */
	return poll(&pfd, 1, 0) == 0 ? 0 : -ESRCH;
}

/* Scatter [start, start + len) of the client into @local (nlocal iovecs). */
static int copy_from_client_iov(struct process *p, uint64_t start,
				const struct iovec *local, unsigned long nlocal,
				uint64_t len)
{
	struct iovec remote = { .iov_base = (void *)(uintptr_t)start,
				.iov_len = len };
	ssize_t n;

	if (process_alive(p))
		return -ESRCH;
	n = process_vm_readv(p->pid, local, nlocal, &remote, 1, 0);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : -EFAULT;
	return (uint64_t)n == len ? 0 : -EFAULT;
}

static int copy_from_client(struct process *p, uint64_t start, void *buf,
			    uint64_t len)
{
	struct iovec local = { .iov_base = buf, .iov_len = len };

	return copy_from_client_iov(p, start, &local, 1, len);
}

static int write_protect(struct process *p, uint64_t start, uint64_t len,
			 int protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	for (int tries = 0; tries < MAX_TRIES; tries++) {
		if (ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		/* An event is queued: the loop thread will read it. */
		if (errno != EAGAIN)
			return errno == ESRCH ? -ESRCH : -errno;
		short_pause();
	}
	return -EAGAIN;
}

int range_fault(struct range_fault *rf)
{
	struct process *p = rf->m->proc;
	uint64_t len = rf->end - rf->start;
	unsigned long npages = len / (uint64_t)sysconf(_SC_PAGESIZE);
	int populate = !(p->uffd_features & UFFD_FEATURE_WP_UNPOPULATED);
	int err;

	err = process_register_range(p, rf->start, rf->end, rf->write);
	if (err)
		return err;

	for (int tries = 0; tries < MAX_TRIES; tries++) {
		uint64_t seq = read_begin(p);

		if (populate) {
			err = copy_from_client_iov(p, rf->start, rf->pages,
						   npages, len);
			if (err)
				return err;
		}
		err = write_protect(p, rf->start, len, 1);
		if (err)
			return err;
		err = copy_from_client_iov(p, rf->start, rf->pages, npages, len);
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
	log_warn("client %d: range fault %#" PRIx64 "-%#" PRIx64
		 " invalidated %d times in a row",
		 p->pid, rf->start, rf->end, MAX_TRIES);
	return -EAGAIN;
}

int client_protect(struct mirror *m, uint64_t start, uint64_t len)
{
	return write_protect(m->proc, start, len, 1);
}

int client_unprotect(struct mirror *m, uint64_t start, uint64_t len)
{
	return write_protect(m->proc, start, len, 0);
}

int client_read(struct mirror *m, uint64_t remote, void *dst, uint64_t len)
{
	return copy_from_client(m->proc, remote, dst, len);
}

int client_write_iov(struct mirror *m, uint64_t remote,
		     const struct iovec *local, unsigned long nlocal,
		     uint64_t len)
{
	struct process *p = m->proc;
	struct iovec rem = { .iov_base = (void *)(uintptr_t)remote,
			     .iov_len = len };
	ssize_t n;

	if (process_alive(p))
		return -ESRCH;
	n = process_vm_writev(p->pid, local, nlocal, &rem, 1, 0);
	if (n < 0)
		return errno == ESRCH ? -ESRCH : -EFAULT;
	return (uint64_t)n == len ? 0 : -EFAULT;
}

int client_write(struct mirror *m, uint64_t remote, const void *src,
		 uint64_t len)
{
	struct iovec local = { .iov_base = (void *)src, .iov_len = len };

	return client_write_iov(m, remote, &local, 1, len);
}
