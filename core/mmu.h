/* SPDX-License-Identifier: MIT */
/*
 * The device MMU: what every device model uses to see a client's memory.
 * One per registered mirror: the device's page table for that process,
 * holding the device's own copy of each mirrored page, filled by range
 * faults and emptied by invalidations.
 *
 * Locking: lock protects pt and the limbo of pinned copies (the copies
 * themselves come from copy_pool.c, whose locks are leaves). It is taken
 * inside the process lock (by invalidations) and by the range fault's
 * commit; nothing that waits for the client runs under it. Calls that read
 * or write client memory run on a worker, never on the loop thread.
 */
#ifndef HMMU_DEVICE_MMU_H
#define HMMU_DEVICE_MMU_H

#include <pthread.h>
#include <stdint.h>
#include <sys/uio.h>

#include "faultbuf.h"

struct hmmu_mirror;
struct pt;

/* Page-table entry flags. */
#define MMU_READ 0x1u
#define MMU_WRITE 0x2u /* faulted in for a device write */
/*
 * The page read as zeros: the entry points at one shared zero page, not a
 * copy of its own. A device read of never-touched memory (16 GiB of
 * MAP_NORESERVE, say) then costs the daemon nothing per page.
 */
#define MMU_ZERO 0x4u

struct dev_mmu {
	pthread_mutex_t lock;
	struct pt *pt;
	struct hmmu_mirror *m;
	/*
	 * Pages a load fault brings in at once (1: just the page). Like a
	 * GPU's replayable fault buffer with prefetch: the neighbours of a
	 * faulting page come in the same write-protect call and the same
	 * process_vm_readv, and count as one fault.
	 */
	unsigned prefetch;
	/*
	 * Copies freed while a reader uses page copies without the lock
	 * (mmu_pin()) wait in limbo until the last reader is done. Limbo is
	 * an array, not a list through the pages: a reader may still be
	 * copying them, so not a byte of theirs may change.
	 */
	unsigned readers;
	void **limbo;
	unsigned nlimbo, limbo_cap;
	struct account *acct; /* charged for the copies in use (may be NULL) */
	/*
	 * Where load faults go to be serviced in batches (faultbuf.h);
	 * fb.cap 0: each is taken alone.
	 */
	struct fault_buf fb;
};

/*
 * @fault_entries: the replayable fault buffer's size (0: none), and
 * @density_pct its density rule (0: none), faultbuf.h.
 */
int mmu_init(struct dev_mmu *mmu, struct hmmu_mirror *m, unsigned prefetch,
	     unsigned fault_entries, unsigned density_pct);
/* Drop every page and free the table. */
void mmu_fini(struct dev_mmu *mmu);

/* Drop the device's copies of [start, end). Never waits for the client. */
void mmu_invalidate(struct dev_mmu *mmu, uint64_t start, uint64_t end);

/*
 * Make every page of [start, end) present in the device page table (with
 * write permission if @write), with range faults. *@faulted is set to 1 if
 * a fault was taken (left alone otherwise). Errors as mmu_read().
 */
int mmu_fault_in(struct dev_mmu *mmu, uint64_t start, uint64_t end, int write,
		 int *faulted);

/*
 * Device reads [start, end) (page aligned) into @buf, faulting in pages it
 * does not hold. All pages are faulted in before any byte is copied, so an
 * error leaves @buf untouched. *@faulted is set to 1 if a range fault was
 * taken. -EFAULT (unmapped or PROT_NONE), -EPERM (memory that cannot be
 * tracked), -ESRCH (process gone).
 */
int mmu_read(struct dev_mmu *mmu, uint64_t start, uint64_t end, void *buf,
	     int *faulted);

/*
 * The same into @dst, in one copy and keeping none: pages the device holds
 * are read from its copies, the others straight from the client's memory
 * under the range fault's protocol (so @dst holds what mmu_read() would
 * have put there), without page copies. Each 1024-page chunk is done before
 * the next is looked at: an error leaves the chunks before it read.
 */
int mmu_read_direct(struct dev_mmu *mmu, uint64_t start, uint64_t end,
		    void *dst, int *faulted);

/*
 * DMA write of @len bytes of @buf to the client's @addr (any alignment):
 * every device's copy of the pages is invalidated, client memory is written
 * (exactly those bytes), and this device's copy of the pages is refreshed
 * from it. -EPERM for read-only memory, -EFAULT as mmu_read(); those are
 * found before anything is written. *@faulted as mmu_fault_in().
 */
int mmu_write(struct dev_mmu *mmu, uint64_t addr, uint64_t len,
	      const void *buf, int *faulted);

/*
 * Device load of @len bytes at @addr (any alignment) into @dst, through the
 * page table, a page at a time: each page the device does not hold is one
 * device fault, added to *@faults, which brings in mmu->prefetch pages
 * (or, through the fault buffer, what its batch plan gives the page)
 * from there (fewer where the mapping ends).
 */
int mmu_load(struct dev_mmu *mmu, uint64_t addr, void *dst, uint64_t len,
	     uint64_t *faults);

/*
 * The device's copies of [start, end) (at most 1024 pages) as one iovec a
 * page, valid without the lock until mmu_unpin(): an invalidation still
 * drops them from the page table, but their memory is not reused until
 * then. 1 if every page is in the page table, 0 (nothing pinned) if not.
 */
int mmu_pin(struct dev_mmu *mmu, uint64_t start, uint64_t end,
	    struct iovec *pages);
void mmu_unpin(struct dev_mmu *mmu);

/*
 * For the fault buffer's servicer (faultbuf.c), no lock held:
 * mmu_fault_run() brings [start, end) (at most 1024 pages) in with one
 * range fault: one write-protect and one scattered read. mmu_held_map()
 * sets a bit in @map for each page of [block, block + bytes) the device
 * holds, and returns how many. mmu_window_end() is where a fault's
 * prefetch window from @page ends; mmu_mapping() the mapping around @page
 * ([page, page + 1 page) if it cannot tell).
 */
int mmu_fault_run(struct dev_mmu *mmu, uint64_t start, uint64_t end);
unsigned mmu_held_map(struct dev_mmu *mmu, uint64_t block, uint64_t bytes,
		      uint64_t *map);
uint64_t mmu_window_end(struct dev_mmu *mmu, uint64_t page);
void mmu_mapping(struct dev_mmu *mmu, uint64_t page, uint64_t *lo,
		 uint64_t *hi);

/* Number of pages the device holds. */
uint64_t mmu_pages(struct dev_mmu *mmu);

/* The entry flags of the page at @addr, 0 if the device does not hold it. */
uint32_t mmu_page_flags(struct dev_mmu *mmu, uint64_t addr);

#endif
