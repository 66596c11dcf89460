/* SPDX-License-Identifier: MIT */
/*
 * The page-copy pool (core/copy_pool.c): what it hands out is warm, its
 * cap holds, it gives its memory back when idle, and many threads can
 * take and return copies at once without two holding the same page.
 * Each test runs in a process of its own (ctest runs them one by one), so
 * each starts with an empty pool.
 */
#include <criterion/criterion.h>

#include "core/copy_pool.h"
#include "common/kfeatures.h"

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t ps(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* How many of the @n pages of @iov are resident (mincore). */
static unsigned resident(const struct iovec *iov, unsigned n)
{
	unsigned count = 0;

	for (unsigned i = 0; i < n; i++) {
		unsigned char v = 0;

		cr_assert_eq(mincore(iov[i].iov_base, ps(), &v), 0);
		count += v & 1;
	}
	return count;
}

static struct copy_pool_stats stats(void)
{
	struct copy_pool_stats st;

	copy_pool_stats(&st);
	return st;
}

Test(copy_pool, handed_out_copies_are_present_and_page_sized)
{
	struct iovec one, iov[256];
	struct copy_pool_stats before;

	copy_pool_configure(64ull << 20, 60000);
	/* The first allocation finds the pool empty, and starts its refill. */
	cr_assert_eq(copy_pool_alloc(&one, 1), 0);
	cr_assert_eq(stats().misses, 1);
	copy_pool_free(one.iov_base);
	copy_pool_sync();
	cr_assert_geq(stats().idle_pages, 256, "the refill warmed %" PRIu64 " pages",
		      stats().idle_pages);
	before = stats();
	cr_assert_eq(copy_pool_alloc(iov, 256), 0);
	cr_assert_eq(stats().hits, before.hits + 1);
	cr_assert_eq(stats().misses, before.misses);
	cr_assert_eq(stats().used_pages, 256);
	for (unsigned i = 0; i < 256; i++) {
		cr_assert_eq(iov[i].iov_len, ps());
		cr_assert_eq((uintptr_t)iov[i].iov_base % ps(), 0);
	}
	cr_assert_eq(resident(iov, 256), 256,
		     "every copy handed out from a warm pool is present");
	for (unsigned i = 0; i < 256; i++)
		copy_pool_free(iov[i].iov_base);
	cr_assert_eq(stats().used_pages, 0);
}

Test(copy_pool, cap_holds_after_a_large_free)
{
	enum { N = 2048, CAP_PAGES = 256 };
	struct iovec *iov = calloc(N, sizeof(*iov));
	struct copy_pool_stats st;

	cr_assert(iov);
	copy_pool_configure((uint64_t)CAP_PAGES * ps(), 60000);
	cr_assert_eq(copy_pool_alloc(iov, N), 0);
	for (unsigned i = 0; i < N; i++)
		memset(iov[i].iov_base, 0x5a, ps());
	for (unsigned i = 0; i < N; i++)
		copy_pool_free(iov[i].iov_base);
	copy_pool_sync();
	st = stats();
	cr_assert_leq(st.idle_pages, CAP_PAGES, "%" PRIu64 " idle pages, cap %d",
		      st.idle_pages, CAP_PAGES);
	cr_assert_geq(st.trimmed, N - CAP_PAGES);
	/* The memory itself went back, not just the count. */
	cr_assert_leq(resident(iov, N), CAP_PAGES);
	free(iov);
}

Test(copy_pool, idle_pool_gives_its_memory_back)
{
	enum { N = 512 };
	struct iovec iov[N];
	struct copy_pool_stats st;
	int rounds = 0;

	copy_pool_configure(64ull << 20, 200);
	cr_assert_eq(copy_pool_alloc(iov, N), 0);
	for (unsigned i = 0; i < N; i++)
		memset(iov[i].iov_base, 0x33, ps());
	for (unsigned i = 0; i < N; i++)
		copy_pool_free(iov[i].iov_base);
	copy_pool_sync();
	cr_assert_geq(stats().idle_pages, N);
	/* The thread looks once a second; idle for 200 ms, it trims all. */
	do {
		usleep(100000);
		copy_pool_sync();
		st = stats();
	} while (st.idle_pages && ++rounds < 50);
	cr_assert_eq(st.idle_pages, 0, "still %" PRIu64 " idle pages after %d s",
		     st.idle_pages, rounds / 10);
	cr_assert_eq(resident(iov, N), 0);
	/* And it serves again, from the cold pages it kept. */
	cr_assert_eq(copy_pool_alloc(iov, 8), 0);
	for (unsigned i = 0; i < 8; i++)
		copy_pool_free(iov[i].iov_base);
}

Test(copy_pool, zero_cap_keeps_nothing)
{
	struct iovec iov[64];

	copy_pool_configure(0, 60000);
	cr_assert_eq(copy_pool_alloc(iov, 64), 0);
	for (unsigned i = 0; i < 64; i++)
		memset(iov[i].iov_base, 1, ps());
	for (unsigned i = 0; i < 64; i++)
		copy_pool_free(iov[i].iov_base);
	copy_pool_sync();
	cr_assert_eq(stats().idle_pages, 0);
	cr_assert_eq(stats().refills, 0);
	cr_assert_eq(resident(iov, 64), 0);
}

#define THREADS 8
#define ROUNDS 2000
#define MAX_N 40

/*
 * Each thread takes a few pages, stamps every word of each with its own
 * mark, yields, checks that the marks are still all there (no other thread
 * was handed the same page meanwhile), and gives them back.
 */
static void *hammer(void *arg)
{
	uintptr_t id = (uintptr_t)arg;
	unsigned seed = (unsigned)id * 7919u + 1;
	struct iovec iov[MAX_N];
	uintptr_t bad = 0;

	for (unsigned r = 0; r < ROUNDS && !bad; r++) {
		unsigned n = 1 + (unsigned)rand_r(&seed) % MAX_N;
		uint64_t mark = ((uint64_t)id << 32) | r;

		if (copy_pool_alloc(iov, n))
			return (void *)1;
		for (unsigned i = 0; i < n; i++)
			for (size_t w = 0; w < ps() / 8; w++)
				((uint64_t *)iov[i].iov_base)[w] = mark + i;
		sched_yield();
		for (unsigned i = 0; i < n && !bad; i++)
			for (size_t w = 0; w < ps() / 8; w++)
				if (((uint64_t *)iov[i].iov_base)[w] != mark + i) {
					bad = 2;
					break;
				}
		for (unsigned i = 0; i < n; i++)
			copy_pool_free(iov[i].iov_base);
	}
	return (void *)bad;
}

Test(copy_pool, concurrent_alloc_and_free_never_share_a_page)
{
	pthread_t t[THREADS];
	struct copy_pool_stats st;

	/* A small cap: the trimmer runs against the threads too. */
	copy_pool_configure(64 * ps(), 60000);
	for (uintptr_t i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, hammer, (void *)i), 0);
	for (int i = 0; i < THREADS; i++) {
		void *ret;

		cr_assert_eq(pthread_join(t[i], &ret), 0);
		cr_assert_null(ret, "thread %d: %s", i,
			       ret == (void *)1 ? "allocation failed" :
						  "a page it held changed");
	}
	st = stats();
	cr_assert_eq(st.used_pages, 0);
	cr_assert_eq(st.hits + st.misses, (uint64_t)THREADS * ROUNDS);
	/* Exited threads' caches went back: the trimmer can reach them all. */
	copy_pool_sync();
	cr_assert_leq(stats().idle_pages, 64);
}
