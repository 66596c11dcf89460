/* SPDX-License-Identifier: MIT */
#include "mmu.h"
#include "../lib/pagetable.h"
#include "copy_pool.h"
#include "counters.h"
#include "accounts.h"
#include "client_mem.h"
#include "command.h"
#include "limits.h"
#include "../lib/log.h"
#include "fault.h"
#include "../common/page.h"
#include "migrate.h"
#include "mirror.h"
#include "process.h"
#include "../lib/scratch.h"
#include "vmas.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/*
 * Work through this many pages at a time: one process_vm_readv takes at
 * most IOV_MAX (1024) page buffers.
 */
#define CHUNK_PAGES 1024u
/* Reads that find their pages invalidated again this often give up. */
#define MAX_REFAULTS 100


/*
 * The device's page copies come from the daemon's pool (copy_pool.c):
 * pages written once already, so that reading a client page into one
 * costs no first-touch fault, kept across mirrors, bounded by its own cap.
 * A copy handed out is charged to the mirror's user until freed, exactly
 * as before the pool; the pool's own idle pages are no one's.
 */

static const char shared_zero[65536] __attribute__((aligned(65536)));

static bool is_zero(const char *page)
{
	return !page[0] && !memcmp(page, page + 1, page_size() - 1);
}

/* mmu->lock held: back to the free list, or to limbo while pinned. */
static void copy_recycle(struct dev_mmu *mmu, void *page)
{
	if (mmu->readers) {
		if (mmu->nlimbo == mmu->limbo_cap) {
			unsigned cap = mmu->limbo_cap ? 2 * mmu->limbo_cap : 64;
			void **l = realloc(mmu->limbo, cap * sizeof(*l));

			/* No room: leak the page rather than corrupt a read. */
			if (!l)
				return;
			mmu->limbo = l;
			mmu->limbo_cap = cap;
		}
		mmu->limbo[mmu->nlimbo++] = page;
		return;
	}
	copy_pool_free(page);
}

/* mmu->lock held: a copy is no longer in use (charged once, freed once). */
static void copy_free(struct dev_mmu *mmu, void *page)
{
	if (page == shared_zero)
		return;
	if (mmu->acct)
		account_uncharge_copies(mmu->acct, 1);
	copy_recycle(mmu, page);
}

int mmu_pin(struct dev_mmu *mmu, uint64_t start, uint64_t end,
	    struct iovec *pages)
{
	uint64_t i = 0;

	pthread_mutex_lock(&mmu->lock);
	for (uint64_t a = start; a < end; a += page_size(), i++) {
		struct pt_entry *e = pt_lookup(mmu->pt, a);

		if (!e) {
			pthread_mutex_unlock(&mmu->lock);
			return 0;
		}
		pages[i] = (struct iovec){ e->data, page_size() };
	}
	mmu->readers++;
	pthread_mutex_unlock(&mmu->lock);
	return 1;
}

void mmu_unpin(struct dev_mmu *mmu)
{
	pthread_mutex_lock(&mmu->lock);
	if (--mmu->readers == 0) {
		while (mmu->nlimbo)
			copy_recycle(mmu, mmu->limbo[--mmu->nlimbo]);
	}
	pthread_mutex_unlock(&mmu->lock);
}

int mmu_init(struct dev_mmu *mmu, struct hmmu_mirror *m, unsigned prefetch,
	     unsigned fault_entries, unsigned density_pct)
{
	int err = pt_create(&mmu->pt);

	if (err)
		return err;
	err = faultbuf_init(&mmu->fb, fault_entries, density_pct);
	if (err) {
		pt_destroy(mmu->pt, NULL, NULL);
		return err;
	}
	pthread_mutex_init(&mmu->lock, NULL);
	mmu->m = m;
	mmu->acct = m->acct;
	mmu->prefetch = prefetch ? prefetch : 1;
	mmu->readers = 0;
	mmu->limbo = NULL;
	mmu->nlimbo = mmu->limbo_cap = 0;
	return 0;
}

static void free_page(struct pt_entry *e, void *arg)
{
	copy_free(arg, e->data);
}

/* mmu->lock held. */
static void drop_range(struct dev_mmu *mmu, uint64_t start, uint64_t end)
{
	uint64_t n = pt_clear_range(mmu->pt, start, end, free_page, mmu);

	counter_sub(&counters.device_pages, n);
}

void mmu_fini(struct dev_mmu *mmu)
{
	pthread_mutex_lock(&mmu->lock);
	drop_range(mmu, 0, PT_VA_LIMIT);
	pthread_mutex_unlock(&mmu->lock);
	pt_destroy(mmu->pt, NULL, NULL);
	mmu->pt = NULL;
	/* No reader is left at the end (its request holds the mirror). */
	while (mmu->nlimbo)
		copy_pool_free(mmu->limbo[--mmu->nlimbo]);
	free(mmu->limbo);
	faultbuf_fini(&mmu->fb);
	pthread_mutex_destroy(&mmu->lock);
}

void mmu_invalidate(struct dev_mmu *mmu, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&mmu->lock);
	drop_range(mmu, start, end);
	pthread_mutex_unlock(&mmu->lock);
}

uint64_t mmu_pages(struct dev_mmu *mmu)
{
	uint64_t n;

	pthread_mutex_lock(&mmu->lock);
	n = pt_count(mmu->pt);
	pthread_mutex_unlock(&mmu->lock);
	return n;
}

uint32_t mmu_page_flags(struct dev_mmu *mmu, uint64_t addr)
{
	struct pt_entry *e;
	uint32_t flags;

	pthread_mutex_lock(&mmu->lock);
	e = pt_lookup(mmu->pt, addr);
	flags = e ? e->flags : 0;
	pthread_mutex_unlock(&mmu->lock);
	return flags;
}

/*
 * Range fault commit, mmu->lock held: the pages the snapshot was read into
 * become our copies (replacing older ones). A page it takes is cleared
 * from rf->pages, so that the caller frees only what was not taken.
 */
static int install_snapshot(struct range_fault *rf)
{
	struct dev_mmu *mmu = rf->arg;
	struct iovec *pages = (struct iovec *)rf->pages;
	uint32_t flags = MMU_READ | (rf->write ? MMU_WRITE : 0);
	uint64_t added = 0, i = 0;
	int err = 0;

	for (uint64_t a = rf->start; a < rf->end; a += page_size(), i++) {
		struct pt_entry *e = pt_lookup(mmu->pt, a);
		struct pt_entry ne = { .data = pages[i].iov_base,
				       .flags = flags };

		/* Zeros need no copy of their own (device writes never go there). */
		if (is_zero(ne.data)) {
			copy_free(mmu, ne.data);
			ne = (struct pt_entry){ .data = (void *)shared_zero,
						.flags = flags | MMU_ZERO };
		}

		if (e) {
			copy_free(mmu, e->data);
			*e = ne;
		} else {
			err = pt_set(mmu->pt, a, &ne, NULL, NULL);
			if (err)
				break;
			added++;
		}
		pages[i].iov_base = NULL;
	}
	counter_add(&counters.device_pages, added);
	return err;
}

/*
 * Copy [start, end) into @buf (if not NULL) from what the device holds: its
 * page table, and for reads its own memory, where pages migrated to it
 * live. Returns 1 if every page was there (with write permission if
 * @write), 0 as soon as one is missing. The page table is walked under one
 * lock; device memory is asked only for a page the table lacks, with the
 * lock dropped: the migration lock nests outside ours.
 */
static int copy_if_present(struct dev_mmu *mmu, uint64_t start, uint64_t end,
			   char *buf, int write)
{
	uint64_t a = start;

	while (a < end) {
		pthread_mutex_lock(&mmu->lock);
		for (; a < end; a += page_size()) {
			struct pt_entry *e = pt_lookup(mmu->pt, a);

			if (!e || (write && !(e->flags & MMU_WRITE)))
				break;
			if (buf)
				memcpy(buf + (a - start), e->data, page_size());
		}
		pthread_mutex_unlock(&mmu->lock);
		if (a == end)
			return 1;
		if (write || migrate_copy_local(mmu->m, a,
						buf ? buf + (a - start) : NULL) < 0)
			return 0;
		a += page_size();
	}
	return 1;
}

static int by_address(const void *a, const void *b)
{
	const char *x = ((const struct iovec *)a)->iov_base;
	const char *y = ((const struct iovec *)b)->iov_base;

	return (x > y) - (x < y);
}

/*
 * One range fault over [start, end) (at most CHUNK_PAGES pages): fresh
 * page copies are taken for the whole range, the client's pages are read
 * straight into them, and the commit installs them.
 */
static int fault_chunk(struct dev_mmu *mmu, uint64_t start, uint64_t end,
		       int write, int max_tries)
{
	uint64_t n = (end - start) / page_size();
	struct iovec *pages = scratch_get(SCRATCH_PAGES, n * sizeof(*pages));
	struct range_fault rf = {
		.m = mmu->m, .start = start, .end = end, .write = write,
		.pages = pages, .lock = &mmu->lock, .commit = install_snapshot,
		.arg = mmu, .max_tries = max_tries,
	};
	int err = 0;

	if (!pages)
		return -ENOMEM;
	/* Charged for a whole chunk at most, until the commit drops the zeros. */
	if (mmu->acct && !account_charge_copies(mmu->acct, n)) {
		log_warn("client %d: its user holds as many page copies as allowed "
			 "(--limit copy-mib-per-user)", mmu->m->owner.pid);
		return command_fail(-EDQUOT, "this user's device page copies "
				    "reached hmmud's limit of %" PRIu64 " MiB "
				    "(--limit copy-mib-per-user): unregister "
				    "mirrors it no longer needs",
				    limits.copy_bytes_per_user >> 20);
	}
	/*
	 * The pool's pages hold what their last user left: the snapshot
	 * overwrites every byte of each before the commit installs it, and a
	 * snapshot that fails installs nothing (docs/design.md, "Page
	 * copies").
	 */
	err = copy_pool_alloc(pages, (unsigned)n);
	if (err) {
		if (mmu->acct)
			account_uncharge_copies(mmu->acct, n);
		return err;
	}
	/*
	 * Which copy holds which page is ours to choose: in address order,
	 * neighbours in a slab become one buffer for the snapshot's read
	 * (client_mem.c merges them), one call of the mem file's instead of
	 * one a page.
	 */
	qsort(pages, n, sizeof(*pages), by_address);
	err = range_fault(&rf);
	/* Give back whatever the commit did not take. */
	pthread_mutex_lock(&mmu->lock);
	for (uint64_t i = 0; i < n; i++)
		if (pages[i].iov_base)
			copy_free(mmu, pages[i].iov_base);
	pthread_mutex_unlock(&mmu->lock);
	return err;
}

/*
 * Memory userfaultfd cannot write-protect (a file mapping on ext4, say):
 * the device keeps no copy of it, so there is nothing to keep coherent and
 * nothing to invalidate. Every access goes to the client's memory itself,
 * the very page the CPU maps (for a file, the page-cache page), through
 * /proc/PID/mem: coherent by construction. docs/design.md, "Memory without
 * copies". 1 if [start, end) holds such memory, 0 if all of it is tracked,
 * or -errno (unmapped, unreadable).
 */
static int untracked(struct dev_mmu *mmu, uint64_t start, uint64_t end)
{
	int err = process_register_range(mmu->m->proc, start, end, 0);

	return err == -EPERM ? 1 : err;
}

int mmu_fault_in(struct dev_mmu *mmu, uint64_t start, uint64_t end, int write,
		 int *faulted)
{
	uint64_t chunk = CHUNK_PAGES * page_size();
	int err = 0;

	/* An empty or wrapped range is a caller's bug: never "success". */
	if (start >= end || end > PT_VA_LIMIT)
		return -EFAULT;
	err = untracked(mmu, start, end);
	if (err) {
		/* Nothing to bring in: each access goes to the client's memory. */
		if (err == 1) {
			*faulted = 1;
			err = process_check_access(mmu->m->proc, start, end, write);
		}
		return err;
	}
	for (uint64_t a = start; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;

		if ((err = command_check()))
			break;
		if (copy_if_present(mmu, a, ce, NULL, write))
			continue;
		err = fault_chunk(mmu, a, ce, write, 0);
		*faulted = 1;
	}
	return err;
}

int mmu_read(struct dev_mmu *mmu, uint64_t start, uint64_t end, void *buf,
	     int *faulted)
{
	uint64_t chunk = CHUNK_PAGES * page_size();
	int err;

	*faulted = 0;
	err = untracked(mmu, start, end);
	if (err == 1) {
		*faulted = 1;
		return client_read(mmu->m->proc, start, buf, end - start);
	}
	/* As test_hmm: the whole range is faulted in before any copy out. */
	if (!err)
		err = mmu_fault_in(mmu, start, end, 0, faulted);
	for (uint64_t a = start; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;
		char *out = (char *)buf + (a - start);

		/*
		 * A page invalidated since it was faulted in is brought in
		 * again: its new contents are what the device must see.
		 */
		for (int tries = 0; !copy_if_present(mmu, a, ce, out, 0); tries++) {
			if (tries == MAX_REFAULTS) {
				err = -EAGAIN;
				break;
			}
			err = fault_chunk(mmu, a, ce, 0, 0);
			if (err)
				break;
		}
	}
	return err;
}

/* A direct read keeps nothing: the snapshot only had to be current. */
static int commit_nothing(struct range_fault *rf)
{
	(void)rf;
	return 0;
}

/*
 * The range fault's protocol over [start, end), its snapshot read straight
 * into @dst: one iovec, so that the mem file is read in one call (it takes
 * one per iovec, each with its own bounce page).
 */
static int read_direct_chunk(struct dev_mmu *mmu, uint64_t start,
			     uint64_t end, char *dst)
{
	struct iovec iov = { dst, end - start };
	struct range_fault rf = {
		.m = mmu->m, .start = start, .end = end, .write = 0,
		.pages = &iov, .niov = 1, .lock = &mmu->lock,
		.commit = commit_nothing, .arg = mmu,
	};

	return range_fault(&rf);
}

int mmu_read_direct(struct dev_mmu *mmu, uint64_t start, uint64_t end,
		    void *dst, int *faulted)
{
	uint64_t chunk = CHUNK_PAGES * page_size();
	int err;

	*faulted = 0;
	err = untracked(mmu, start, end);
	if (err == 1) {
		*faulted = 1;
		return client_read(mmu->m->proc, start, dst, end - start);
	}
	for (uint64_t a = start; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;
		char *out = (char *)dst + (a - start);

		if ((err = command_check()))
			break;
		/* What the device holds, it reads from its copies. */
		if (copy_if_present(mmu, a, ce, out, 0))
			continue;
		/*
		 * The rest straight from the client's pages into @dst: what
		 * it reads is what a copy would have held, and no copy is
		 * taken, charged or installed.
		 */
		err = read_direct_chunk(mmu, a, ce, out);
		*faulted = 1;
	}
	return err;
}

int mmu_write(struct dev_mmu *mmu, uint64_t addr, uint64_t len,
	      const void *buf, int *faulted)
{
	struct process *p = mmu->m->proc;
	uint64_t start = addr & ~(page_size() - 1);
	uint64_t end = (addr + len + page_size() - 1) & ~(page_size() - 1);
	uint64_t chunk = CHUNK_PAGES * page_size();
	int err;

	/* Checked before anything changes: mapped, trackable, writable. */
	err = untracked(mmu, start, end);
	if (err == 1) {
		/* No copy to keep: a store into the client's memory, if allowed. */
		*faulted = 1;
		err = process_check_access(p, start, end, 1);
		return err ? err : client_write(p, addr, buf, len);
	}
	if (!err)
		err = process_register_range(p, start, end, 1);
	if (err)
		return err;

	*faulted = !copy_if_present(mmu, start, end, NULL, 1);
	/*
	 * DMA into system memory, as a CPU store: every device's copy of the
	 * pages goes first, then they are un-protected and written, inside
	 * one invalidation window so that no range fault snapshots them
	 * half-written (client_mem.c). A page in the middle of a migration
	 * is not written at all (-EBUSY): its copy in device memory is
	 * already taken, and the write would be lost.
	 */
	err = client_write(p, addr, buf, len);

	/* Protect again, and hold the written pages as our copy. */
	for (uint64_t a = start; a < end && !err; a += chunk) {
		uint64_t ce = end - a < chunk ? end : a + chunk;

		err = fault_chunk(mmu, a, ce, 1, 0);
	}
	return err;
}

/*
 * Where a load fault's prefetch window from @page ends: mmu->prefetch pages
 * on, but never past the top of user space nor past the faulting page's
 * own mapping (a window that ran into the next one registered it, and
 * logged a warning per job when that was a file mapping).
 */
static uint64_t prefetch_end(struct dev_mmu *mmu, uint64_t page)
{
	uint64_t room = (PT_VA_LIMIT - page) / page_size();
	uint64_t end = page + (mmu->prefetch < room ? mmu->prefetch : room) *
				      page_size();
	struct vma_cursor c;
	struct vma v;

	if (mmu->prefetch <= 1)
		return end;
	vma_cursor_init(&c, mmu->m->proc, page);
	if (vma_next(&c, &v) == 1 && v.start <= page && v.end < end)
		end = v.end;
	vma_cursor_done(&c);
	return end;
}

/* Attempts of a batched run before its units fault their own windows. */
#define RUN_TRIES 8

int mmu_fault_run(struct dev_mmu *mmu, uint64_t start, uint64_t end)
{
	return fault_chunk(mmu, start, end, 0, RUN_TRIES);
}

static int set_held(uint64_t addr, struct pt_entry *e, void *arg)
{
	uint64_t **ctx = arg; /* [0]: the map, [1]: the block's address */
	uint64_t i = (addr - (uint64_t)(uintptr_t)ctx[1]) / page_size();

	(void)e;
	ctx[0][i / 64] |= 1ull << (i % 64);
	return 0;
}

unsigned mmu_held_map(struct dev_mmu *mmu, uint64_t block, uint64_t bytes,
		      uint64_t *map)
{
	uint64_t *ctx[2] = { map, (uint64_t *)(uintptr_t)block };
	uint64_t words = (bytes / page_size() + 63) / 64;
	unsigned n = 0;

	pthread_mutex_lock(&mmu->lock);
	pt_walk(mmu->pt, block, block + bytes, set_held, ctx);
	pthread_mutex_unlock(&mmu->lock);
	for (uint64_t w = 0; w < words; w++)
		n += (unsigned)__builtin_popcountll(map[w]);
	return n;
}

uint64_t mmu_window_end(struct dev_mmu *mmu, uint64_t page)
{
	return prefetch_end(mmu, page);
}

void mmu_mapping(struct dev_mmu *mmu, uint64_t page, uint64_t *lo,
		 uint64_t *hi)
{
	struct vma_cursor c;
	struct vma v;

	*lo = page;
	*hi = page + page_size();
	vma_cursor_init(&c, mmu->m->proc, page);
	if (vma_next(&c, &v) == 1 && v.start <= page && v.end > page) {
		*lo = v.start;
		*hi = v.end;
	}
	vma_cursor_done(&c);
}

int mmu_load(struct dev_mmu *mmu, uint64_t addr, void *dst, uint64_t len,
	     uint64_t *faults)
{
	char *out = dst, *local = NULL;
	uint64_t posted = 1; /* the last page posted to the fault buffer */
	int err = 0;

	if (addr >= PT_VA_LIMIT || len > PT_VA_LIMIT - addr)
		return -EFAULT;
	while (len && !err) {
		uint64_t page = addr & ~(page_size() - 1);
		uint64_t off = addr - page;
		uint64_t n = page_size() - off < len ? page_size() - off : len;
		struct pt_entry *e;
		int hit, faulted = 0;

		pthread_mutex_lock(&mmu->lock);
		e = pt_lookup(mmu->pt, page);
		hit = e != NULL;
		if (hit)
			memcpy(out, (char *)e->data + off, n);
		pthread_mutex_unlock(&mmu->lock);
		if (!hit) {
			/* Migrated to our own memory: read it there, no fault. */
			if (!local)
				local = malloc(page_size());
			if (!local) {
				err = -ENOMEM;
				break;
			}
			hit = migrate_copy_local(mmu->m, page, local) == 0;
			if (hit)
				memcpy(out, local + off, n);
		}
		if (!hit && untracked(mmu, page, page + page_size()) == 1) {
			/* Read where it is, every time: a device fault each. */
			err = client_read(mmu->m->proc, addr, out, n);
			hit = !err;
			*faults += 1;
			if (err)
				break;
		}
		if (!hit && mmu->fb.cap && page != posted) {
			/*
			 * A replayable fault: posted to the fault buffer, serviced
			 * in a batch, then the access is replayed. A page still
			 * missing at its replay faults alone, below.
			 */
			if ((err = command_check()))
				break;
			posted = page;
			err = faultbuf_fault(mmu, page);
			*faults += 1;
			continue;
		}
		if (!hit) {
			/*
			 * A device fault: bring the page in with its prefetch
			 * window, then retry. A window that runs past the
			 * mapping fails as a whole: then the page alone.
			 */
			uint64_t wend = prefetch_end(mmu, page);

			if ((err = command_check()))
				break;
			err = mmu->prefetch > 1 && wend > page + page_size() ?
				      mmu_fault_in(mmu, page, wend, 0, &faulted) :
				      -EFAULT;
			if (err == -EFAULT || err == -EPERM)
				err = mmu_fault_in(mmu, page, page + page_size(),
						   0, &faulted);
			*faults += (uint64_t)faulted;
			continue;
		}
		out += n;
		addr += n;
		len -= n;
	}
	free(local);
	return err;
}
