/* SPDX-License-Identifier: MIT */
/*
 * A batch's plan (core/faultbuf.c): duplicates dropped, pages the device
 * holds dropped, faults grouped by 2 MiB block, contiguous windows merged
 * into one run (one write-protect and one read), and the density rule.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "core/faultbuf.h"

#define PG 4096ull
#define BLK (2ull << 20)
#define BASE (64 * BLK)

/* A fake device MMU: which pages it holds, a window of 16 pages. */
struct fake {
	uint64_t held[2][8]; /* the blocks at BASE and BASE + BLK */
};

static unsigned held_map(void *arg, uint64_t block, uint64_t *map)
{
	struct fake *f = arg;
	unsigned n = 0;

	cr_assert(block == BASE || block == BASE + BLK);
	memcpy(map, f->held[(block - BASE) / BLK], 8 * sizeof(uint64_t));
	for (int w = 0; w < 8; w++)
		n += (unsigned)__builtin_popcountll(map[w]);
	return n;
}

static uint64_t window_end(void *arg, uint64_t page)
{
	(void)arg;
	return page + 16 * PG;
}

static void mapping(void *arg, uint64_t page, uint64_t *lo, uint64_t *hi)
{
	(void)arg;
	(void)page;
	*lo = BASE;
	*hi = BASE + 2 * BLK;
}

static unsigned plan(struct fake *f, uint64_t *pages, unsigned n,
		     unsigned pct, struct fault_run *runs,
		     struct fault_plan_stats *st)
{
	struct fault_plan_ops ops = { held_map, window_end, mapping, f };

	memset(st, 0, sizeof(*st));
	return faultbuf_plan(pages, n, pct, PG, 1024, &ops, runs, 64, st);
}

Test(faultbuf, duplicates_are_dropped_and_adjacent_windows_make_one_run)
{
	struct fake f = { 0 };
	/* Units faulting pages 0, 16 (twice) and 32 of a block, unsorted. */
	uint64_t pages[] = { BASE + 16 * PG, BASE, BASE + 32 * PG,
			     BASE + 16 * PG };
	struct fault_run runs[64];
	struct fault_plan_stats st;
	unsigned nr = plan(&f, pages, 4, 0, runs, &st);

	cr_expect_eq(st.duplicates, 1);
	cr_expect_eq(st.blocks, 1);
	cr_assert_eq(nr, 1, "three touching windows, one run");
	cr_expect_eq(runs[0].start, BASE);
	cr_expect_eq(runs[0].end, BASE + 48 * PG);
}

Test(faultbuf, faults_are_grouped_per_block_and_held_pages_dropped)
{
	struct fake f = { 0 };
	uint64_t pages[] = { BASE + BLK + 100 * PG, BASE + 3 * PG,
			     BASE + 200 * PG, BASE + 5 * PG };
	struct fault_run runs[64];
	struct fault_plan_stats st;
	unsigned nr;

	f.held[0][0] = 1ull << 5; /* page 5 of the first block is held */
	nr = plan(&f, pages, 4, 0, runs, &st);
	cr_expect_eq(st.duplicates, 1, "the held page");
	cr_expect_eq(st.blocks, 2);
	cr_assert_eq(nr, 3);
	cr_expect_eq(runs[0].start, BASE + 3 * PG);
	cr_expect_eq(runs[1].start, BASE + 200 * PG);
	cr_expect_eq(runs[2].start, BASE + BLK + 100 * PG);
	cr_expect_eq(runs[2].end, BASE + BLK + 116 * PG);
}

Test(faultbuf, a_block_half_held_comes_in_whole_without_its_held_pages)
{
	struct fake f = { 0 };
	uint64_t pages[] = { BASE + 300 * PG };
	struct fault_run runs[64];
	struct fault_plan_stats st;
	unsigned nr;

	/* Pages 0 to 255 held: at 50%, page 300's fault fetches 256 to 511. */
	for (int w = 0; w < 4; w++)
		f.held[0][w] = ~0ull;
	nr = plan(&f, pages, 1, 50, runs, &st);
	cr_expect_eq(st.dense, 1);
	cr_assert_eq(nr, 1);
	cr_expect_eq(runs[0].start, BASE + 256 * PG);
	cr_expect_eq(runs[0].end, BASE + BLK);
	/* Below the threshold: the window. */
	f.held[0][3] = 0;
	pages[0] = BASE + 300 * PG;
	nr = plan(&f, pages, 1, 50, runs, &st);
	cr_expect_eq(st.dense, 0);
	cr_assert_eq(nr, 1);
	cr_expect_eq(runs[0].end - runs[0].start, 16 * PG);
}
