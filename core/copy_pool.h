/* SPDX-License-Identifier: MIT */
/*
 * The pool of page copies: where every device MMU's copy of a client page
 * comes from, daemon-wide. Reading a client page into memory never touched
 * before pays the first-touch fault inside the read (17.8 µs against 2.3
 * µs into a warm page on a 2-vCPU VM), so the pool hands out pages that
 * have been written once already, and a background thread warms more ahead
 * of demand (MADV_POPULATE_WRITE). Copies freed by mirrors come back here
 * and outlive the mirror, up to a cap (--limit copy-pool-mib); the pool
 * gives its memory back when it has not been used for a while
 * (--limit copy-pool-idle-seconds) or when the system is short of memory.
 *
 * Ownership: a page handed out belongs to its caller (a device MMU, which
 * charges its user's copy quota for it, as before); a page in the pool
 * belongs to nobody and is charged to no one. A page handed out holds
 * whatever its last user left in it: the caller must overwrite all of it
 * before anything else can see it (docs/design.md, "Page copies").
 *
 * Thread-safe; every call is a leaf (takes no lock of the caller's). Never
 * waits for a refill: with the pool empty, an allocation takes pages that
 * are not warm yet (a miss) and wakes the refiller.
 */
#ifndef HMMUD_COPY_POOL_H
#define HMMUD_COPY_POOL_H

#include <stdint.h>
#include <sys/uio.h>

/*
 * @n page copies into iov[0..n) (iov_base, and iov_len = one page): 0, or
 * -ENOMEM with nothing taken.
 */
int copy_pool_alloc(struct iovec *iov, unsigned n);

/* One page back into the pool. Nothing may read or write it after. */
void copy_pool_free(void *page);

struct copy_pool_stats {
	uint64_t idle_pages;  /* warm pages held, not handed out */
	uint64_t cold_pages;  /* address space kept with no memory behind it */
	uint64_t used_pages;  /* handed out now */
	uint64_t hits;	      /* allocations served from warm pages alone */
	uint64_t misses;      /* allocations that found too few warm pages */
	uint64_t refills;     /* refill steps run by the background thread */
	uint64_t trimmed;     /* pages given back to the kernel */
	uint64_t pressure;    /* memory pressure events seen */
};

void copy_pool_stats(struct copy_pool_stats *st);

/*
 * For tests: the cap and idle time instead of the limits' (0 idle_ms: the
 * limits' value), and a way to wait for the background thread: run one
 * round of its work now (refill, trim) and return when it is done.
 */
void copy_pool_configure(uint64_t cap_bytes, uint64_t idle_ms);

/*
 * Start the pool's thread and open what it watches (an eventfd, the PSI
 * trigger) now rather than at the first allocation: hmmud calls it once
 * it serves (after detaching, which a thread would not survive), so that
 * its descriptors are the daemon's from the start, not a client's doing.
 */
void copy_pool_start(void);
void copy_pool_sync(void);

#endif
