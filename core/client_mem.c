/* SPDX-License-Identifier: MIT */
#include "client_mem.h"
#include "migrate.h"
#include "process.h"
#include "uffdio.h"
#include "../common/page.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Resolving one page may need a retry: an ioctl says EAGAIN while a
 * userfaultfd event is queued (the loop thread reads it soon), a page may
 * be in the middle of a migration (settled by the client's next request,
 * or undone when it dies). Both are bounded by the one retry policy
 * (uffdio.h), with the migration lock dropped, never waited out. So is a
 * page that resolves yet still will not read: every try that moves no
 * byte counts.
 */

bool client_mm_alive(struct process *p)
{
	char c;

	/*
	 * The file reads nothing at all once its address space has no user
	 * left; while it has, address 0 (never mapped) reads as an error.
	 */
	return pread(p->mem_fd, &c, 1, 0) != 0;
}

/* Where a copy stands: which buffer, how far into it. */
struct iov_cursor {
	const struct iovec *iov;
	unsigned long n;
	struct iovec *rest; /* a copy, made at the first partial transfer */
};

/* Skip @done bytes; the cursor then describes what is left. */
static int iov_advance(struct iov_cursor *c, uint64_t done)
{
	unsigned long i = 0;

	while (i < c->n && done >= c->iov[i].iov_len)
		done -= c->iov[i++].iov_len;
	if (!c->rest) {
		c->rest = malloc(c->n * sizeof(*c->rest));
		if (!c->rest)
			return -ENOMEM;
	}
	memmove(c->rest, c->iov + i, (c->n - i) * sizeof(*c->rest));
	c->n -= i;
	if (c->n) {
		c->rest[0].iov_base = (char *)c->rest[0].iov_base + done;
		c->rest[0].iov_len -= done;
	}
	c->iov = c->rest;
	return 0;
}

/*
 * One transfer: bytes moved, 0 if the address space is gone, or -errno.
 * An inaccessible page reads as EIO: unmapped, or a userfault we must
 * resolve first.
 */
static ssize_t transfer(struct process *p, int write, uint64_t remote,
			const struct iovec *iov, unsigned long n)
{
	static _Thread_local struct iovec merged[IOV_MAX];
	unsigned long m = 0;
	ssize_t r;

	if (n > IOV_MAX)
		n = IOV_MAX;
	/*
	 * Buffers that follow each other in memory go as one: the mem file
	 * takes a call per iovec, each with its own bounce page and its own
	 * hold on the address space (a third of a device read's time, with
	 * page copies handed out in address order).
	 */
	for (unsigned long i = 0; i < n; i++) {
		if (m && (char *)merged[m - 1].iov_base + merged[m - 1].iov_len ==
				 (char *)iov[i].iov_base)
			merged[m - 1].iov_len += iov[i].iov_len;
		else
			merged[m++] = iov[i];
	}
	r = write ? pwritev(p->mem_fd, merged, (int)m, (off_t)remote) :
		    preadv(p->mem_fd, merged, (int)m, (off_t)remote);
	if (r < 0)
		return errno == EIO ? -EFAULT : -errno;
	if (r == 0 && !client_mm_alive(p))
		return 0;
	return r;
}

/*
 * Make the page at @page present for the CPU, with the migration lock
 * held: 0, -EAGAIN (try again, after dropping the lock), -EBUSY, -EFAULT.
 */
static int resolve_locked(struct process *p, uint64_t page, bool fill_reserved)
{
	int err = migrate_fault_in_locked(p, page, fill_reserved);

	return err == -ENOENT || err == -EINVAL ? -EFAULT : err;
}

/* Read the rest of the copy, resolving pages that would raise a userfault. */
static int read_loop(struct process *p, uint64_t remote, struct iov_cursor *c,
		     uint64_t len, bool fill_reserved)
{
	struct uffdio_retry retry = { 0 };
	uint64_t done = 0;
	int err = 0;

	while (done < len) {
		ssize_t r = transfer(p, 0, remote + done, c->iov, c->n);

		if (r == 0)
			return -ESRCH;
		if (r > 0) {
			done += (uint64_t)r;
			retry = (struct uffdio_retry){ 0 };
			if (done < len && (err = iov_advance(c, (uint64_t)r)))
				return err;
			continue;
		}
		if (r != -EFAULT)
			return (int)r;
		if (!uffdio_try(&retry))
			return -EBUSY;
		pthread_mutex_lock(&p->migrate_lock);
		err = resolve_locked(p, page_down(remote + done), fill_reserved);
		pthread_mutex_unlock(&p->migrate_lock);
		if (err == -EAGAIN || err == -EBUSY) {
			uffdio_pause();
			continue;
		}
		if (err)
			return err;
	}
	return 0;
}

int client_readv_checked(struct process *p, uint64_t remote,
			 const struct iovec *local, unsigned long nlocal,
			 uint64_t len)
{
	struct iov_cursor c = { .iov = local, .n = nlocal };
	int err = read_loop(p, remote, &c, len, false);

	free(c.rest);
	return err;
}

int client_readv(struct process *p, uint64_t remote, const struct iovec *local,
		 unsigned long nlocal, uint64_t len)
{
	int err = process_check_access(p, page_down(remote),
				       page_up(remote + len), 0);

	if (err)
		return err == -EPERM ? -EFAULT : err;
	return client_readv_checked(p, remote, local, nlocal, len);
}

int client_read_reserved(struct process *p, uint64_t remote, void *dst,
			 uint64_t len)
{
	struct iovec iov = { .iov_base = dst, .iov_len = len };
	struct iov_cursor c = { .iov = &iov, .n = 1 };
	int err = read_loop(p, remote, &c, len, true);

	free(c.rest);
	return err;
}

int client_read(struct process *p, uint64_t remote, void *dst, uint64_t len)
{
	struct iovec iov = { .iov_base = dst, .iov_len = len };

	return client_readv(p, remote, &iov, 1, len);
}

/*
 * The slow path of a write, from @remote on: a store to pages a device may
 * hold. Inside one invalidation window (so no range fault snapshots a page
 * half-written, and every device drops its copy), with the migration lock
 * held from the check that no page is being migrated to the end of the
 * write (so no migration can copy a page between our un-protect and our
 * write and then lose the write): un-protect, write, and resolve whatever
 * page still refuses, page by page.
 */
static int write_slow(struct process *p, uint64_t remote, struct iov_cursor *c,
		      uint64_t len)
{
	uint64_t start = page_down(remote), end = page_up(remote + len);
	struct uffdio_retry retry = { 0 };
	uint64_t done = 0, before;
	int err = 0;

	process_invalidate_start(p, start, end, HMMU_NOTIFY_WRITE);
	while (done < len) {
		ssize_t r = 0;

		if (!uffdio_try(&retry)) {
			err = -EBUSY;
			break;
		}
		before = done;
		pthread_mutex_lock(&p->migrate_lock);
		if (migrate_busy_locked(p, page_down(remote + done), end))
			err = -EBUSY;
		else
			err = process_unprotect(p, page_down(remote + done), end);
		while (!err && done < len) {
			r = transfer(p, 1, remote + done, c->iov, c->n);
			if (r <= 0)
				break;
			done += (uint64_t)r;
			if (done < len)
				err = iov_advance(c, (uint64_t)r);
		}
		if (!err && r == 0 && done < len)
			err = -ESRCH;
		else if (!err && r < 0)
			err = r == -EFAULT ? resolve_locked(p, page_down(remote + done), false) :
					     (int)r;
		pthread_mutex_unlock(&p->migrate_lock);
		if (done > before)
			retry = (struct uffdio_retry){ 0 };
		if (err == -EAGAIN || err == -EBUSY) {
			err = 0;
			uffdio_pause();
			continue;
		}
		if (err)
			break;
	}
	process_invalidate_end(p);
	return err;
}

int client_writev(struct process *p, uint64_t remote, const struct iovec *local,
		  unsigned long nlocal, uint64_t len)
{
	struct iov_cursor c = { .iov = local, .n = nlocal };
	ssize_t r;
	int err;

	err = process_check_access(p, page_down(remote), page_up(remote + len), 1);
	if (err)
		return err == -EPERM ? -EFAULT : err;
	/*
	 * Fast path: no page of the range is write-protected by us, so no
	 * device holds a copy of any (a copy is only ever taken of a
	 * protected page), and the store needs nothing else.
	 */
	r = transfer(p, 1, remote, c.iov, c.n);
	if (r == (ssize_t)len)
		return 0;
	if (r == 0)
		return -ESRCH;
	if (r < 0 && r != -EFAULT)
		return (int)r;
	if (r < 0)
		r = 0;
	err = iov_advance(&c, (uint64_t)r);
	if (!err)
		err = write_slow(p, remote + (uint64_t)r, &c, len - (uint64_t)r);
	free(c.rest);
	return err;
}

int client_write(struct process *p, uint64_t remote, const void *src,
		 uint64_t len)
{
	struct iovec iov = { .iov_base = (void *)src, .iov_len = len };

	return client_writev(p, remote, &iov, 1, len);
}
