/* SPDX-License-Identifier: MIT */
/*
 * The range fault: the counterpart of the kernel's hmm_range_fault() with
 * mmu_interval_read_begin()/read_retry(). A device that needs pages of the
 * client it does not hold asks for a snapshot of them; the snapshot is
 * handed to the device's commit() under the device's page-table lock, and
 * only if no invalidation of the process happened since the snapshot began.
 *
 * Runs on a worker, never on the loop thread: reading the client's memory
 * may wait for the client's userfaultfd, which the loop thread services.
 */
#ifndef HMMUD_FAULT_H
#define HMMUD_FAULT_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

struct hmmu_mirror;

struct range_fault {
	struct hmmu_mirror *m;
	uint64_t start, end; /* page aligned */
	int write;	     /* the device wants to write: need a writable VMA */
	/*
	 * Where the snapshot goes: one buffer a page each (the device's own
	 * page copies, so that the snapshot needs no second copy), one
	 * iovec per page of [start, end), at most IOV_MAX of them.
	 */
	const struct iovec *pages;
	/*
	 * How many iovecs pages has, if not one a page: a reader that keeps
	 * no copy may take the snapshot into one buffer (mmu_read_direct()).
	 */
	unsigned long niov;
	pthread_mutex_t *lock; /* the device's page-table lock */
	/* With *lock held and the snapshot still valid: install it. */
	int (*commit)(struct range_fault *rf);
	void *arg; /* the device's */
	/*
	 * Attempts before -EAGAIN: 0 for the default (1000), after which
	 * the client is named in the log. A batched run (faultbuf.c) asks
	 * for few and gives up quietly: under a stream of CPU writes a
	 * whole 2 MiB block may never see a quiet moment, and its units
	 * then fault their own windows, which do.
	 */
	int max_tries;
};

/*
 * Take a snapshot of [start, end) into rf->pages and commit it. Errors:
 * -EFAULT (part of the range is not mapped, or PROT_NONE), -EPERM (write to
 * a read-only mapping, or memory userfaultfd cannot write-protect), -ESRCH
 * (the process is gone), -EAGAIN (invalidated on every one of many tries),
 * or commit's.
 */
int range_fault(struct range_fault *rf);

struct process;

/*
 * The steps of a range fault, for hmmu_range_fault() (driver.c), which
 * leaves the retry loop to the model as the kernel's does.
 * fault_read_begin(): wait until no invalidation of @p is in flight, and
 * sample its sequence; the command's error if it must stop.
 * fault_snapshot(): write-protect [start, end) (registered already) and
 * copy it into @pages, one page-sized buffer each.
 */
int fault_read_begin(struct process *p, uint64_t *seq);
int fault_snapshot(struct process *p, uint64_t start, uint64_t end,
		   const struct iovec *pages);

#endif
