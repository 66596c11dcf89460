/* SPDX-License-Identifier: MIT */
/* The replayable fault buffer: faultbuf.h says what and why. */
#include "faultbuf.h"
#include "accounts.h"
#include "command.h"
#include "counters.h"
#include "mmu.h"
#include "../common/page.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Runs one batch may give: every entry a run, and room for the dense blocks. */
#define MAX_RUNS (2 * FAULTBUF_BATCH)
/* How often a waiter looks at its command and at the servicer. */
#define WAIT_SLICE_NS 1000000l

int faultbuf_init(struct fault_buf *fb, unsigned entries, unsigned density_pct)
{
	pthread_condattr_t ca;

	memset(fb, 0, sizeof(*fb));
	if (entries) {
		fb->ring = calloc(entries, sizeof(*fb->ring));
		if (!fb->ring)
			return -ENOMEM;
	}
	fb->cap = entries;
	fb->density_pct = density_pct;
	pthread_mutex_init(&fb->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fb->cond, &ca);
	pthread_condattr_destroy(&ca);
	return 0;
}

void faultbuf_fini(struct fault_buf *fb)
{
	free(fb->ring);
	fb->ring = NULL;
	pthread_cond_destroy(&fb->cond);
	pthread_mutex_destroy(&fb->lock);
}

/* ---- planning -------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Append [s, e) to the runs, merged into the last one when they overlap or
 * touch and the merge stays within @max bytes. false when there is no room.
 */
static bool add_run(struct fault_run *runs, unsigned *nr, unsigned cap,
		    uint64_t s, uint64_t e, uint64_t max)
{
	struct fault_run *last = *nr ? &runs[*nr - 1] : NULL;

	if (last && s >= last->start && s <= last->end) {
		uint64_t ne = e > last->end ? e : last->end;

		if (ne - last->start <= max) {
			last->end = ne;
			return true;
		}
		s = last->end; /* the part past it, as a run of its own */
		if (s >= e)
			return true;
	}
	if (*nr == cap)
		return false;
	runs[(*nr)++] = (struct fault_run){ s, e };
	return true;
}

static bool bit(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

unsigned faultbuf_plan(uint64_t *pages, unsigned n, unsigned density_pct,
		       uint64_t page_bytes, uint64_t max_run_pages,
		       const struct fault_plan_ops *ops, struct fault_run *runs,
		       unsigned cap, struct fault_plan_stats *st)
{
	const uint64_t bpp = FAULTBUF_BLOCK_BYTES / page_bytes;
	const uint64_t max = max_run_pages * page_bytes;
	uint64_t map[FAULTBUF_BLOCK_BYTES / 4096 / 64];
	unsigned nu = 0, nr = 0;

	if (!n)
		return 0;
	qsort(pages, n, sizeof(*pages), cmp_u64);
	for (unsigned i = 0; i < n; i++)
		if (nu == 0 || pages[i] != pages[nu - 1])
			pages[nu++] = pages[i];
	st->duplicates += n - nu;

	for (unsigned i = 0, j; i < nu; i = j) {
		uint64_t block = pages[i] & ~(FAULTBUF_BLOCK_BYTES - 1);
		unsigned held, faulting = 0;

		for (j = i; j < nu && (pages[j] & ~(FAULTBUF_BLOCK_BYTES - 1)) == block; j++)
			;
		memset(map, 0, sizeof(map));
		held = ops->held_map(ops->arg, block, map);
		/* Pages a batch before this one brought in are dropped too. */
		for (unsigned k = i; k < j; k++) {
			if (bit(map, (pages[k] - block) / page_bytes)) {
				st->duplicates++;
				pages[k] = 0;
			} else {
				faulting++;
			}
		}
		if (!faulting)
			continue;
		st->blocks++;
		if (density_pct &&
		    (uint64_t)(held + faulting) * 100 >= (uint64_t)density_pct * bpp) {
			/*
			 * Dense: every page of the block the device lacks,
			 * within the mapping of the block's first fault. A
			 * fault outside that mapping gets its window below.
			 */
			uint64_t first = 0, lo, hi, run = 0;

			for (unsigned k = i; k < j && !first; k++)
				first = pages[k];
			ops->mapping(ops->arg, first, &lo, &hi);
			if (lo < block)
				lo = block;
			if (hi > block + FAULTBUF_BLOCK_BYTES)
				hi = block + FAULTBUF_BLOCK_BYTES;
			st->dense++;
			for (uint64_t a = lo; a <= hi; a += page_bytes) {
				bool missing = a < hi &&
					       !bit(map, (a - block) / page_bytes);

				if (missing && !run)
					run = a;
				if (!missing && run) {
					if (!add_run(runs, &nr, cap, run, a, max))
						return nr;
					run = 0;
				}
			}
			for (unsigned k = i; k < j; k++)
				if (pages[k] >= lo && pages[k] < hi)
					pages[k] = 0;
		}
		for (unsigned k = i; k < j; k++) {
			if (!pages[k])
				continue;
			if (!add_run(runs, &nr, cap, pages[k],
				     ops->window_end(ops->arg, pages[k]), max))
				return nr;
		}
	}
	return nr;
}

/* ---- servicing ------------------------------------------------------------- */

static unsigned held_map(void *arg, uint64_t block, uint64_t *map)
{
	return mmu_held_map(arg, block, FAULTBUF_BLOCK_BYTES, map);
}

static uint64_t window_end(void *arg, uint64_t page)
{
	return mmu_window_end(arg, page);
}

static void mapping(void *arg, uint64_t page, uint64_t *lo, uint64_t *hi)
{
	mmu_mapping(arg, page, lo, hi);
}

/*
 * Service @n entries, with fb->lock dropped. A run that fails is left:
 * its faulting threads replay, miss, and fault alone, which tells them why.
 */
static void service(struct dev_mmu *mmu, uint64_t *pages, unsigned n)
{
	static const unsigned max_run_pages = 1024; /* one preadv: IOV_MAX */
	struct fault_plan_ops ops = { held_map, window_end, mapping, mmu };
	struct fault_plan_stats st = { 0 };
	struct fault_run runs[MAX_RUNS];
	unsigned nr = faultbuf_plan(pages, n, mmu->fb.density_pct, page_size(),
				    max_run_pages, &ops, runs, MAX_RUNS, &st);

	for (unsigned i = 0; i < nr; i++) {
		if (command_check())
			break;
		mmu_fault_run(mmu, runs[i].start, runs[i].end);
	}
	account_count(mmu->acct, fault_batches, 1);
	account_count(mmu->acct, fault_entries, n);
	account_count(mmu->acct, fault_duplicates, st.duplicates);
	account_count(mmu->acct, fault_blocks, st.blocks);
	account_count(mmu->acct, fault_runs, nr);
	account_count(mmu->acct, density_fetches, st.dense);
}

/* fb->lock held: take a batch, service it, mark it done. */
static void service_batch(struct dev_mmu *mmu)
{
	struct fault_buf *fb = &mmu->fb;
	uint64_t pages[FAULTBUF_BATCH];
	uint64_t first = fb->head, n = fb->next - fb->head;

	if (n > FAULTBUF_BATCH)
		n = FAULTBUF_BATCH;
	for (uint64_t i = 0; i < n; i++)
		pages[i] = fb->ring[(first + i) % fb->cap];
	fb->head = first + n;
	pthread_mutex_unlock(&fb->lock);
	service(mmu, pages, (unsigned)n);
	pthread_mutex_lock(&fb->lock);
	/* One servicer at a time: batches complete in ticket order. */
	fb->done = first + n;
	pthread_cond_broadcast(&fb->cond);
}

/* fb->lock held: sleep one slice, or until a batch completes. */
static void wait_slice(struct fault_buf *fb)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += WAIT_SLICE_NS;
	if (ts.tv_nsec >= 1000000000l) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000l;
	}
	pthread_cond_timedwait(&fb->cond, &fb->lock, &ts);
}

int faultbuf_fault(struct dev_mmu *mmu, uint64_t page)
{
	struct fault_buf *fb = &mmu->fb;
	uint64_t ticket;
	int err = 0;

	pthread_mutex_lock(&fb->lock);
	/* Post; a full buffer is drained by whoever finds no servicer. */
	while (fb->next - fb->head == fb->cap) {
		if (!fb->servicing) {
			fb->servicing = true;
			service_batch(mmu);
			fb->servicing = false;
			pthread_cond_broadcast(&fb->cond);
			continue;
		}
		if ((err = command_check()))
			goto out;
		wait_slice(fb);
	}
	ticket = fb->next++;
	fb->ring[ticket % fb->cap] = page;

	while (fb->done <= ticket) {
		if (!fb->servicing) {
			/* Ours is among the next batches: serve until it is done. */
			fb->servicing = true;
			while (fb->done <= ticket)
				service_batch(mmu);
			fb->servicing = false;
			pthread_cond_broadcast(&fb->cond);
			break;
		}
		/*
		 * Our entry stays posted if we leave: a later servicer takes
		 * it with the rest (a page of this address space, harmless).
		 */
		if ((err = command_check()))
			break;
		wait_slice(fb);
	}
out:
	pthread_mutex_unlock(&fb->lock);
	return err;
}
