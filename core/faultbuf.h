/* SPDX-License-Identifier: MIT */
/*
 * The replayable fault buffer of a device MMU: device loads that miss post
 * their page here instead of each taking a range fault alone, as a GPU's
 * compute units post faults into the fault buffer that NVIDIA's UVM driver
 * drains. One is kept per device MMU (a device bound to one address space):
 * a batch then holds one address space's faults only, which one
 * write-protect and one read of that address space can serve, and a
 * cancelled job or a dead client of one mirror never holds up the faults
 * of another.
 *
 * Who services: no thread of its own. A faulting thread (a compute unit,
 * or a request worker running a model's load) that finds no servicer at
 * work becomes it: it drains up to FAULTBUF_BATCH entries (its own among
 * them), plans them (faultbuf_plan(): duplicates dropped, grouped by 2 MiB
 * block, the density rule applied, contiguous runs merged), and services
 * each run with one range fault (core/fault.c: one UFFDIO_WRITEPROTECT
 * over the run, one scattered preadv into the run's page copies, the
 * sequence check and the commit under the page-table lock). It stops once
 * its own entry is done. The other faulting threads sleep on the buffer's
 * condition until theirs is, waking every millisecond to check their own
 * command's deadline and cancellation (so none waits forever for a batch
 * that a dead client or a cancelled servicer will never finish) and to
 * take over as servicer if the last one left with entries pending.
 *
 * Replay: completion says only that a batch took the entry. The faulting
 * thread retries its access; the page may still be missing (the run
 * failed, or an invalidation dropped it since): it then faults alone
 * (mmu.c), which reports the exact error. A batch's copies are installed
 * by the range fault's own sequence protocol, so a batch racing an
 * invalidation never installs stale data.
 *
 * Locking: fb.lock protects the ring and the tickets. It is a leaf: it is
 * never held across a range fault, nor while taking the device MMU's lock.
 */
#ifndef HMMUD_FAULTBUF_H
#define HMMUD_FAULTBUF_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct dev_mmu;

/* Entries a servicer drains at once (UVM drains its buffer by 256, too). */
#define FAULTBUF_BATCH 256u
/* The buffer's default size and its bounds (hmmu_device_set_fault_buffer()). */
#define FAULTBUF_DEFAULT_ENTRIES 1024u
#define FAULTBUF_MIN_ENTRIES FAULTBUF_BATCH
#define FAULTBUF_MAX_ENTRIES 65536u
/* The density rule's block: a 2 MiB huge page, UVM's VA block. */
#define FAULTBUF_BLOCK_BYTES (2ull << 20)

struct fault_buf {
	pthread_mutex_t lock; /* leaf: protects everything below */
	pthread_cond_t cond;  /* a batch done, or the servicer left */
	uint64_t *ring;	      /* page addresses, at [ticket % cap] */
	unsigned cap;	      /* 0: no buffer, every fault alone */
	unsigned density_pct; /* 0: no density rule */
	uint64_t head;	      /* ticket of the oldest entry not taken */
	uint64_t next;	      /* next ticket; next - head entries wait */
	uint64_t done;	      /* every ticket below it has been serviced */
	bool servicing;	      /* a thread is servicing */
};

/*
 * @entries 0: no buffer (faults are taken alone); else its size.
 * @density_pct 0: no density rule. 0 or -ENOMEM.
 */
int faultbuf_init(struct fault_buf *fb, unsigned entries, unsigned density_pct);
void faultbuf_fini(struct fault_buf *fb);

/*
 * Post a fault on @page (page aligned) of @mmu's address space and return
 * once a batch has serviced it (the caller replays its access), or with
 * the calling command's error (command_check()) if it must stop first.
 * Request workers and compute threads; no lock held.
 */
int faultbuf_fault(struct dev_mmu *mmu, uint64_t page);

/* ---- planning a batch, separate for its unit test ---------------------- */

/* What faultbuf_plan() needs to know of the device MMU. */
struct fault_plan_ops {
	/*
	 * Pages of the block at @block (FAULTBUF_BLOCK_BYTES aligned) the
	 * device holds, one bit each in @map (bit i: block + i pages);
	 * returns how many.
	 */
	unsigned (*held_map)(void *arg, uint64_t block, uint64_t *map);
	/* The end of a fault's prefetch window from @page. */
	uint64_t (*window_end)(void *arg, uint64_t page);
	/* The mapping around @page: [*lo, *hi), or just the page if unknown. */
	void (*mapping)(void *arg, uint64_t page, uint64_t *lo, uint64_t *hi);
	void *arg;
};

struct fault_run {
	uint64_t start, end;
};

/* What a plan did, for the counters. */
struct fault_plan_stats {
	uint64_t duplicates; /* entries dropped: twice in the batch, or held */
	uint64_t blocks;     /* 2 MiB blocks with a fault to service */
	uint64_t dense;	     /* blocks fetched whole by the density rule */
};

/*
 * Plan the service of @n faults at @pages (sorted in place): drop
 * duplicates and pages the device holds already, group the rest by 2 MiB
 * block, and give each block either its faulting pages' prefetch windows
 * or, by the density rule, every page of it the device does not hold
 * (within the faulting page's mapping): when the pages the device holds
 * in the block plus the block's faulting pages reach @density_pct percent
 * of the block (0: never). Overlapping or adjacent ranges merge into one
 * run, of at most @max_run_pages pages. At most @cap runs go to @runs;
 * returns their number.
 */
unsigned faultbuf_plan(uint64_t *pages, unsigned n, unsigned density_pct,
		       uint64_t page_bytes, uint64_t max_run_pages,
		       const struct fault_plan_ops *ops, struct fault_run *runs,
		       unsigned cap, struct fault_plan_stats *st);

#endif
