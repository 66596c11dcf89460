/* SPDX-License-Identifier: MIT */
/*
 * The UFFDIO_* ioctls on a client's userfaultfd, and the one policy for
 * what their errors mean and how they are retried. Every call site in the
 * core goes through here.
 *
 * Each wrapper makes one try and returns 0 or -errno (uffdio_copy() also
 * UFFDIO_EXISTED). uffdio_verdict() sorts the result:
 *
 *   UFFDIO_DONE    0; and EEXIST from COPY (UFFDIO_EXISTED): someone else
 *                  filled the page first. Nobody was woken then: the
 *                  caller wakes the range (pitfall 7).
 *   UFFDIO_AGAIN   -EAGAIN: an UNMAP/REMOVE/REMAP/FORK event is queued
 *                  unread (the kernel's mmap_changing), and lowered only
 *                  once the loop thread has read it and the thread that
 *                  caused it ran again; also a partial copy. Retry: after
 *                  uffdio_pause(), within uffdio_retry()'s bound. A caller
 *                  that holds a lock the loop thread needs to handle that
 *                  event (p->lock, p->migrate_lock) must not wait under
 *                  it: it returns -EAGAIN and retries once it dropped it.
 *                  The loop thread itself retries by reading more events
 *                  (uffd_events.c).
 *   UFFDIO_GONE    the address space or the range is gone, and there is
 *                  nothing left to do: -ESRCH (the process exited, 4.13),
 *                  -ENOENT from COPY/WRITEPROTECT (no VMA of ours there
 *                  any more: its UNMAP or REMAP event tells the rest).
 *                  From UNREGISTER also -ENOMEM (newer kernels, for an
 *                  address space that is going) and -EINVAL (the range
 *                  is no longer mapped).
 *   UFFDIO_FAILED  anything else: a limit or a bug; the caller logs it.
 */
#ifndef HMMUD_UFFDIO_H
#define HMMUD_UFFDIO_H

#include <stdbool.h>
#include <stdint.h>

enum uffdio_verdict { UFFDIO_DONE, UFFDIO_AGAIN, UFFDIO_GONE, UFFDIO_FAILED };

/* uffdio_copy(): the page was there already (EEXIST). */
#define UFFDIO_EXISTED 1

/* What @err, returned by the wrapper of ioctl @request, means. */
enum uffdio_verdict uffdio_verdict(unsigned long request, int err);

int uffdio_register(int uffd, uint64_t start, uint64_t len, uint64_t mode);
int uffdio_unregister(int uffd, uint64_t start, uint64_t len);
/* Copy @len bytes from @src to @dst (@mode: 0 or UFFDIO_COPY_MODE_WP). */
int uffdio_copy(int uffd, uint64_t dst, const void *src, uint64_t len,
		uint64_t mode);
/* Set (@protect) or lift our write-protection; lifting wakes the range. */
int uffdio_writeprotect(int uffd, uint64_t start, uint64_t len, bool protect);
int uffdio_wake(int uffd, uint64_t start, uint64_t len);

/*
 * The one retry bound: an operation that keeps getting EAGAIN (or a page
 * that stays busy in a migration) is given up after UFFDIO_MAX_TRIES
 * tries in a row, a few tens of milliseconds, and reported: the loop
 * thread normally reads the queued event within microseconds.
 */
#define UFFDIO_MAX_TRIES 1000

struct uffdio_retry {
	unsigned tries;
};

/* Count a try: false once UFFDIO_MAX_TRIES have been made in a row. */
bool uffdio_try(struct uffdio_retry *r);

/* The one pause between tries: long enough for the loop to read an event. */
void uffdio_pause(void);

/*
 * After a try that must be repeated: uffdio_try(), then uffdio_pause() if
 * another is allowed. The caller holds no lock the loop thread needs. A
 * caller that makes progress between tries starts a fresh uffdio_retry.
 */
bool uffdio_retry(struct uffdio_retry *r);

#endif
