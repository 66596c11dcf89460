/* SPDX-License-Identifier: MIT */
/*
 * hmmu-scan-cost: what one command boundary of a coarse-grained process
 * costs hmmud (core/coherence.c): one PAGEMAP_SCAN that finds and
 * re-protects the written pages of a registered range, here over 1 GiB of
 * this process's own memory (populated, registered with a WP_ASYNC
 * userfaultfd, protected), with 0, 1 and 1000 pages written before each
 * scan. The invalidation of the written pages in hmmud is not included.
 * Prints the median and range of the runs, in microseconds per boundary.
 * Exits 77 where the kernel lacks WP_ASYNC or PAGEMAP_SCAN.
 */
#include "../common/kernel_uapi.h"
#include "../common/uffd_open.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define RUNS 21
#define REGIONS 256

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* The daemon's scan (coherence.c): written, not the zero page; re-protect. */
static long scan(int pm, uint64_t start, uint64_t end, uint64_t *pages)
{
	struct page_region v[REGIONS];

	*pages = 0;
	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
			.start = start, .end = end,
			.vec = (uint64_t)(uintptr_t)v, .vec_len = REGIONS,
			.category_inverted = PAGE_IS_PFNZERO,
			.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
			.return_mask = PAGE_IS_WRITTEN,
		};
		int n = ioctl(pm, PAGEMAP_SCAN, &a);

		if (n < 0)
			return -errno;
		for (int i = 0; i < n; i++)
			*pages += (v[i].end - v[i].start) / 4096;
		if (a.walk_end <= start)
			break;
		start = a.walk_end;
	}
	return 0;
}

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(void)
{
	const size_t len = 1ull << 30, ps = (size_t)sysconf(_SC_PAGESIZE);
	const size_t npages = len / ps;
	static const unsigned written[] = { 0, 1, 1000 };
	struct uffdio_api api = {
		.api = UFFD_API,
		.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
	};
	struct uffdio_register rg = { .mode = UFFDIO_REGISTER_MODE_WP };
	uint64_t t[RUNS], found, t0;
	int uffd = hmmu_uffd_open(), pm;
	char *p;

	if (uffd < 0 || ioctl(uffd, UFFDIO_API, &api) < 0) {
		printf("hmmu-scan-cost: no WP_ASYNC userfaultfd here\n");
		return 77;
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (p == MAP_FAILED || pm < 0)
		return 1;
	madvise(p, len, MADV_NOHUGEPAGE); /* as a page-by-page client */
	memset(p, 1, len);
	rg.range.start = (uint64_t)(uintptr_t)p;
	rg.range.len = len;
	if (ioctl(uffd, UFFDIO_REGISTER, &rg) < 0) {
		perror("UFFDIO_REGISTER");
		return 1;
	}
	t0 = now_ns();
	if (scan(pm, rg.range.start, rg.range.start + len, &found) < 0) {
		printf("hmmu-scan-cost: no PAGEMAP_SCAN here\n");
		return 77;
	}
	printf("first boundary (every page written, all protected): %.0f us, "
	       "%llu pages\n", (double)(now_ns() - t0) / 1e3,
	       (unsigned long long)found);
	for (unsigned w = 0; w < sizeof(written) / sizeof(written[0]); w++) {
		for (int r = 0; r < RUNS; r++) {
			for (unsigned k = 0; k < written[w]; k++)
				p[(k * 257 % npages) * ps] ^= 1;
			t0 = now_ns();
			if (scan(pm, rg.range.start, rg.range.start + len,
				 &found) < 0)
				return 1;
			t[r] = now_ns() - t0;
			if (found != written[w])
				fprintf(stderr, "found %llu written pages, "
					"want %u\n", (unsigned long long)found,
					written[w]);
		}
		qsort(t, RUNS, sizeof(t[0]), cmp);
		printf("1 GiB mirrored, %4u pages written: %7.1f us per "
		       "boundary (median of %d; %.1f-%.1f)\n", written[w],
		       (double)t[RUNS / 2] / 1e3, RUNS, (double)t[0] / 1e3,
		       (double)t[RUNS - 1] / 1e3);
	}
	return 0;
}
