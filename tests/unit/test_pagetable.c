/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "lib/pagetable.h"

#define GIB (1ULL << 30)
#define MIB (1ULL << 20)

static uint64_t ps;

static struct pt *new_pt(void)
{
	struct pt *pt = NULL;

	ps = (uint64_t)sysconf(_SC_PAGESIZE);
	cr_assert_eq(pt_create(&pt), 0);
	cr_assert_not_null(pt);
	cr_assert_eq(pt_count(pt), 0);
	return pt;
}

static struct pt_entry ent(uint64_t addr, uint32_t flags)
{
	return (struct pt_entry){ .data = (void *)(uintptr_t)addr,
				  .flags = flags };
}

static void set_ok(struct pt *pt, uint64_t addr, uint32_t flags)
{
	struct pt_entry e = ent(addr, flags);

	cr_assert_eq(pt_set(pt, addr, &e, NULL, NULL), 0, "set %#llx",
		     (unsigned long long)addr);
}

static void count_free(struct pt_entry *e, void *arg)
{
	uint64_t *n = arg;

	(*n)++;
	/* A second call for the same entry would see the poisoned value. */
	cr_assert_neq(e->flags, 0xdeadu);
	e->flags = 0xdeadu;
}

struct collect {
	uint64_t *addr;
	size_t n, cap;
	int stop_after;	/* return 42 once n reaches it; 0 = never */
};

static int collect_fn(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct collect *c = arg;

	cr_assert_eq((uintptr_t)e->data, addr);
	cr_assert_lt(c->n, c->cap);
	c->addr[c->n++] = addr;
	if (c->stop_after && c->n == (size_t)c->stop_after)
		return 42;
	return 0;
}

Test(pagetable, set_then_lookup_returns_the_entry)
{
	struct pt *pt = new_pt();
	struct pt_entry e = { .data = &ps, .flags = 7 }, *got;
	bool had_old = true;

	cr_assert_eq(pt_set(pt, 0x7f0000001000ULL, &e, NULL, &had_old), 0);
	cr_assert_eq(had_old, false);
	got = pt_lookup(pt, 0x7f0000001000ULL);
	cr_assert_not_null(got);
	cr_assert_eq(got->data, &ps);
	cr_assert_eq(got->flags, 7);
	/* Any byte of the page finds it. */
	cr_assert_eq(pt_lookup(pt, 0x7f0000001000ULL + ps - 1), got);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, unaligned_set_addresses_the_containing_page)
{
	struct pt *pt = new_pt();
	struct pt_entry e = ent(5 * ps, 1);

	cr_assert_eq(pt_set(pt, 5 * ps + 123, &e, NULL, NULL), 0);
	cr_assert_not_null(pt_lookup(pt, 5 * ps));
	cr_assert_eq(pt_lookup(pt, 5 * ps)->flags, 1);
	cr_assert_null(pt_lookup(pt, 6 * ps));
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, lookup_of_absent_pages_is_null)
{
	struct pt *pt = new_pt();

	cr_assert_null(pt_lookup(pt, 0));
	cr_assert_null(pt_lookup(pt, 0x7f0000000000ULL));
	set_ok(pt, 0x40000000ULL, 1);
	/* Same leaf, neighbouring pages, and far away. */
	cr_assert_null(pt_lookup(pt, 0x40000000ULL - ps));
	cr_assert_null(pt_lookup(pt, 0x40000000ULL + ps));
	cr_assert_null(pt_lookup(pt, 0x40000000ULL + 512 * ps));
	cr_assert_null(pt_lookup(pt, 0));
	cr_assert_null(pt_lookup(pt, PT_VA_LIMIT));
	cr_assert_null(pt_lookup(pt, UINT64_MAX));
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, null_data_zero_flags_entry_is_still_present)
{
	struct pt *pt = new_pt();
	struct pt_entry zero = { 0 };

	cr_assert_eq(pt_set(pt, 3 * ps, &zero, NULL, NULL), 0);
	cr_assert_not_null(pt_lookup(pt, 3 * ps));
	cr_assert_eq(pt_count(pt), 1);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, replace_returns_old_entry_and_keeps_count)
{
	struct pt *pt = new_pt();
	struct pt_entry a = ent(1, 10), b = ent(2, 20), old = { 0 };
	bool had_old = false;

	cr_assert_eq(pt_set(pt, 8 * ps, &a, &old, &had_old), 0);
	cr_assert_eq(had_old, false);
	cr_assert_eq(old.data, NULL, "old untouched when nothing was there");

	cr_assert_eq(pt_set(pt, 8 * ps, &b, &old, &had_old), 0);
	cr_assert_eq(had_old, true);
	cr_assert_eq((uintptr_t)old.data, 1);
	cr_assert_eq(old.flags, 10);
	cr_assert_eq(pt_lookup(pt, 8 * ps)->flags, 20);
	cr_assert_eq(pt_count(pt), 1);

	/* old and had_old may both be NULL: plain overwrite. */
	cr_assert_eq(pt_set(pt, 8 * ps, &a, NULL, NULL), 0);
	cr_assert_eq(pt_lookup(pt, 8 * ps)->flags, 10);
	cr_assert_eq(pt_count(pt), 1);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, count_tracks_sets_replaces_and_clears)
{
	struct pt *pt = new_pt();
	uint64_t i;

	for (i = 0; i < 1000; i++)
		set_ok(pt, i * ps, 1);
	cr_assert_eq(pt_count(pt), 1000);
	for (i = 0; i < 1000; i += 2)
		set_ok(pt, i * ps, 2);
	cr_assert_eq(pt_count(pt), 1000);
	cr_assert_eq(pt_clear_range(pt, 0, 100 * ps, NULL, NULL), 100);
	cr_assert_eq(pt_count(pt), 900);
	cr_assert_eq(pt_clear_range(pt, 0, 100 * ps, NULL, NULL), 0);
	cr_assert_eq(pt_count(pt), 900);
	cr_assert_eq(pt_clear_range(pt, 0, PT_VA_LIMIT, NULL, NULL), 900);
	cr_assert_eq(pt_count(pt), 0);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, clear_range_keeps_page_below_start_and_page_at_end)
{
	struct pt *pt = new_pt();
	/* Straddle a leaf boundary (512 pages) to cross nodes. */
	uint64_t start = 510 * ps, end = 515 * ps, a;

	for (a = 505 * ps; a < 520 * ps; a += ps)
		set_ok(pt, a, 0);
	cr_assert_eq(pt_clear_range(pt, start, end, NULL, NULL), 5);
	cr_assert_eq(pt_count(pt), 10);
	cr_assert_not_null(pt_lookup(pt, start - ps));
	cr_assert_not_null(pt_lookup(pt, end));
	for (a = start; a < end; a += ps)
		cr_assert_null(pt_lookup(pt, a));
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, clear_range_removes_pages_whose_first_byte_is_in_range)
{
	struct pt *pt = new_pt();
	uint64_t a;

	for (a = 0; a < 8 * ps; a += ps)
		set_ok(pt, a, 0);
	/* Page 1 starts before 1*ps+1; page 4 starts at end-1 < end. */
	cr_assert_eq(pt_clear_range(pt, ps + 1, 4 * ps + 1, NULL, NULL), 3);
	cr_assert_not_null(pt_lookup(pt, ps));
	cr_assert_null(pt_lookup(pt, 2 * ps));
	cr_assert_null(pt_lookup(pt, 3 * ps));
	cr_assert_null(pt_lookup(pt, 4 * ps));
	cr_assert_not_null(pt_lookup(pt, 5 * ps));
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, clear_range_empty_or_inverted_removes_nothing)
{
	struct pt *pt = new_pt();

	set_ok(pt, 4 * ps, 0);
	cr_assert_eq(pt_clear_range(pt, 4 * ps, 4 * ps, NULL, NULL), 0);
	cr_assert_eq(pt_clear_range(pt, 5 * ps, 4 * ps, NULL, NULL), 0);
	cr_assert_eq(pt_clear_range(pt, PT_VA_LIMIT, UINT64_MAX, NULL, NULL),
		     0);
	cr_assert_eq(pt_count(pt), 1);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, clear_range_calls_free_data_once_per_removed_entry)
{
	struct pt *pt = new_pt();
	uint64_t freed = 0, a;

	for (a = 0; a < 2000 * ps; a += 3 * ps)
		set_ok(pt, a, 1);
	set_ok(pt, 40 * GIB, 1);
	/* Pages 0, 3, ..., 999 in [0, 1000 pages): 334 of them. */
	cr_assert_eq(pt_clear_range(pt, 0, 1000 * ps, count_free, &freed),
		     334);
	cr_assert_eq(freed, 334);
	freed = 0;
	cr_assert_eq(pt_clear_range(pt, 0, 1000 * ps, count_free, &freed), 0);
	cr_assert_eq(freed, 0);
	cr_assert_eq(pt_count(pt), 667 - 334 + 1);
	pt_destroy(pt, count_free, &freed);
	cr_assert_eq(freed, 667 - 334 + 1);
}

Test(pagetable, destroy_calls_free_data_for_each_present_entry)
{
	struct pt *pt = new_pt();
	uint64_t freed = 0;

	set_ok(pt, 0, 1);
	set_ok(pt, 1 * GIB, 1);
	set_ok(pt, PT_VA_LIMIT - ps, 1);
	set_ok(pt, PT_VA_LIMIT - ps, 2); /* replace: still one entry */
	pt_destroy(pt, count_free, &freed);
	cr_assert_eq(freed, 3);
	pt_destroy(NULL, count_free, &freed);
}

Test(pagetable, walk_visits_entries_in_ascending_order)
{
	struct pt *pt = new_pt();
	uint64_t want[] = { 0, ps, 511 * ps, 512 * ps, 1 * GIB, 513 * GIB,
			    PT_VA_LIMIT - ps };
	uint64_t got[16];
	struct collect c = { .addr = got, .cap = 16 };
	size_t i, n = sizeof(want) / sizeof(want[0]);

	for (i = n; i-- > 0;)
		set_ok(pt, want[i], 0);
	cr_assert_eq(pt_walk(pt, 0, PT_VA_LIMIT, collect_fn, &c), 0);
	cr_assert_eq(c.n, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(got[i], want[i], "index %zu", i);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, walk_only_visits_pages_starting_in_range)
{
	struct pt *pt = new_pt();
	uint64_t got[16], a;
	struct collect c = { .addr = got, .cap = 16 };

	for (a = 0; a < 10 * ps; a += ps)
		set_ok(pt, a, 0);
	cr_assert_eq(pt_walk(pt, 2 * ps + 1, 5 * ps, collect_fn, &c), 0);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(got[0], 3 * ps);
	cr_assert_eq(got[1], 4 * ps);
	c.n = 0;
	cr_assert_eq(pt_walk(pt, 5 * ps, 5 * ps, collect_fn, &c), 0);
	cr_assert_eq(c.n, 0);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, walk_stops_early_and_returns_fn_value)
{
	struct pt *pt = new_pt();
	uint64_t got[16], a;
	struct collect c = { .addr = got, .cap = 16, .stop_after = 3 };

	for (a = 0; a < 10 * GIB; a += GIB)
		set_ok(pt, a, 0);
	cr_assert_eq(pt_walk(pt, 0, PT_VA_LIMIT, collect_fn, &c), 42);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(got[2], 2 * GIB);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, walk_of_empty_table_calls_nothing)
{
	struct pt *pt = new_pt();
	uint64_t got[1];
	struct collect c = { .addr = got, .cap = 0 };

	cr_assert_eq(pt_walk(pt, 0, PT_VA_LIMIT, collect_fn, &c), 0);
	cr_assert_eq(c.n, 0);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, addresses_beyond_48_bits_are_rejected)
{
	struct pt *pt = new_pt();
	struct pt_entry e = ent(0, 1);
	bool had_old = true;

	cr_assert_eq(pt_set(pt, PT_VA_LIMIT, &e, NULL, &had_old), -EINVAL);
	cr_assert_eq(pt_set(pt, 1ULL << 63, &e, NULL, NULL), -EINVAL);
	cr_assert_eq(pt_set(pt, UINT64_MAX, &e, NULL, NULL), -EINVAL);
	cr_assert_eq(pt_count(pt), 0);
	/* The last page below the limit is fine. */
	cr_assert_eq(pt_set(pt, PT_VA_LIMIT - 1, &e, NULL, NULL), 0);
	cr_assert_not_null(pt_lookup(pt, PT_VA_LIMIT - ps));
	cr_assert_eq(pt_count(pt), 1);
	pt_destroy(pt, NULL, NULL);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return (x > y) - (x < y);
}

Test(pagetable, sparse_64gib_span_lookup_count_walk_clear)
{
	struct pt *pt = new_pt();
	/* Cross a 512 GiB top-level slot boundary in the middle. */
	uint64_t base = 0x7f0000000000ULL - 32 * GIB, span = 64 * GIB;
	uint64_t cluster = 600, n = 0, i, lo, hi, in_range = 0, freed = 0;
	uint64_t *want, *got;
	struct collect c;

	want = calloc(4096 + 2 * cluster, sizeof(*want));
	got = calloc(4096 + 2 * cluster, sizeof(*got));
	cr_assert(want && got);
	for (i = 0; i < span / (16 * MIB); i++)
		want[n++] = base + i * 16 * MIB;
	for (i = 1; i <= cluster; i++)
		want[n++] = base + i * ps;
	for (i = 1; i <= cluster; i++)
		want[n++] = base + span - i * ps;
	cr_assert_eq(n, 4096 + 2 * cluster);

	/* Insert in a scrambled order; 1021 is prime and does not divide n. */
	for (i = 0; i < n; i++)
		set_ok(pt, want[(i * 1021) % n], 0);
	cr_assert_eq(pt_count(pt), n);
	qsort(want, n, sizeof(*want), cmp_u64);

	for (i = 0; i < n; i++) {
		struct pt_entry *e = pt_lookup(pt, want[i]);

		cr_assert_not_null(e);
		cr_assert_eq((uintptr_t)e->data, want[i]);
	}
	cr_assert_null(pt_lookup(pt, base - ps));
	cr_assert_null(pt_lookup(pt, base + 16 * MIB + ps));
	cr_assert_null(pt_lookup(pt, base + span));

	c = (struct collect){ .addr = got, .cap = n };
	cr_assert_eq(pt_walk(pt, 0, PT_VA_LIMIT, collect_fn, &c), 0);
	cr_assert_eq(c.n, n);
	for (i = 0; i < n; i++)
		cr_assert_eq(got[i], want[i], "index %llu",
			     (unsigned long long)i);

	/* Clear a middle chunk that crosses the 512 GiB boundary. */
	lo = base + 20 * GIB + ps;
	hi = base + 40 * GIB;
	for (i = 0; i < n; i++)
		in_range += want[i] >= lo && want[i] < hi;
	cr_assert_eq(pt_clear_range(pt, lo, hi, count_free, &freed), in_range);
	cr_assert_eq(freed, in_range);
	cr_assert_eq(pt_count(pt), n - in_range);
	for (i = 0; i < n; i++) {
		bool gone = want[i] >= lo && want[i] < hi;

		cr_assert_eq(pt_lookup(pt, want[i]) == NULL, gone);
	}
	c.n = 0;
	cr_assert_eq(pt_walk(pt, lo - GIB, hi + GIB, collect_fn, &c), 0);
	cr_assert_eq(c.n, 2 * GIB / (16 * MIB));

	cr_assert_eq(pt_clear_range(pt, base, base + span, NULL, NULL),
		     n - in_range);
	cr_assert_eq(pt_count(pt), 0);
	free(want);
	free(got);
	pt_destroy(pt, NULL, NULL);
}

Test(pagetable, clearing_whole_space_of_sparse_table_skips_absent_subtrees)
{
	struct pt *pt = new_pt();
	uint64_t addrs[] = { 0, 0x7fffdeadb000ULL, PT_VA_LIMIT - ps };
	uint64_t freed = 0, got[4];
	struct collect c = { .addr = got, .cap = 4 };
	unsigned int round;
	size_t i;

	/*
	 * 2^36 pages: walking each one would not finish in any reasonable
	 * time, so finishing at all shows absent subtrees are skipped.
	 */
	for (round = 0; round < 2; round++) {
		for (i = 0; i < 3; i++)
			set_ok(pt, addrs[i] & ~(ps - 1), 0);
		cr_assert_eq(pt_count(pt), 3);
		cr_assert_eq(pt_walk(pt, 0, PT_VA_LIMIT, collect_fn, &c), 0);
		cr_assert_eq(c.n, 3);
		c.n = 0;
		cr_assert_eq(pt_clear_range(pt, 0, PT_VA_LIMIT, count_free,
					    &freed), 3);
		cr_assert_eq(freed, 3 * (round + 1));
		cr_assert_eq(pt_count(pt), 0);
		for (i = 0; i < 3; i++)
			cr_assert_null(pt_lookup(pt, addrs[i]));
		cr_assert_eq(pt_walk(pt, 0, PT_VA_LIMIT, collect_fn, &c), 0);
		cr_assert_eq(c.n, 0);
	}
	/* An end beyond the limit is clamped, not rejected. */
	set_ok(pt, PT_VA_LIMIT - ps, 0);
	cr_assert_eq(pt_clear_range(pt, 0, UINT64_MAX, NULL, NULL), 1);
	cr_assert_eq(pt_count(pt), 0);
	pt_destroy(pt, NULL, NULL);
}
