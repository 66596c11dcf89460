/* SPDX-License-Identifier: MIT */
/*
 * Coherence (rule 7) and the test_hmm semantics of device reads and writes,
 * end to end against a private hmmud: what the device reads is always what
 * the CPU would read, byte by byte, across CPU reads and writes, device
 * writes, munmap, madvise(MADV_DONTNEED), mremap, fork, two devices, shared
 * and file mappings, transparent huge pages, a sparse 64 GiB span and a CPU
 * writer racing with device reads. cpages, faults and the daemon's counters
 * are checked along the way; failed commands must leave every buffer as it
 * was.
 */
#include "harness.h"
#include "helpers.h"
#include "common/kernel_uapi.h"
#include "common/kfeatures.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(coherence, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

#define CANARY 0xa5
#define TMPFS_MAGIC_ 0x01021994

/* A buffer of @npages pages filled with CANARY. */
static uint8_t *canary_buf(size_t npages)
{
	uint8_t *b = xmalloc(npages * page_size());

	memset(b, CANARY, npages * page_size());
	return b;
}

/* Byte @j of page @i of pattern @seed: different for every page and seed. */
static uint8_t pattern_byte(unsigned seed, size_t i, size_t j)
{
	return (uint8_t)(seed * 131u + i * 17u + j * 7u + (j >> 8) + 1u);
}

static void fill_pattern(void *p, size_t npages, unsigned seed)
{
	uint8_t *b = p;

	for (size_t i = 0; i < npages; i++)
		for (size_t j = 0; j < page_size(); j++)
			b[i * page_size() + j] = pattern_byte(seed, i, j);
}

/* Byte by byte; names the first byte that differs. */
static void expect_pattern(const void *p, size_t npages, unsigned seed,
			   const char *what)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < npages; i++)
		for (size_t j = 0; j < page_size(); j++) {
			uint8_t want = pattern_byte(seed, i, j);
			uint8_t got = b[i * page_size() + j];

			if (got != want)
				cr_assert_fail("%s: page %zu byte %zu is %#x, "
					       "want %#x (pattern %u)",
					       what, i, j, got, want, seed);
		}
}

static void expect_filled(const void *p, size_t len, uint8_t want,
			  const char *what)
{
	const uint8_t *b = p;

	for (size_t k = 0; k < len; k++)
		if (b[k] != want)
			cr_assert_fail("%s: byte %zu (page %zu) is %#x, want %#x",
				       what, k, k / page_size(), b[k], want);
}

static void expect_same(const void *got, const void *want, size_t len,
			const char *what)
{
	const uint8_t *g = got, *w = want;

	for (size_t k = 0; k < len; k++)
		if (g[k] != w[k])
			cr_assert_fail("%s: byte %zu (page %zu) is %#x, want %#x",
				       what, k, k / page_size(), g[k], w[k]);
}

static int dev_read_err(struct hmmu_mirror *m, const void *addr,
			size_t npages, void *buf)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)addr, .npages = npages };

	return hmmu_device_read(m, &c, buf);
}

static int dev_write_err(struct hmmu_mirror *m, void *addr, size_t npages,
			 const void *buf)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)addr, .npages = npages };

	return hmmu_device_write(m, &c, buf);
}

static void require_wp_shmem(void)
{
	const struct kfeatures *kf = kfeatures();

	if (kf->uffd_err)
		cr_skip_test("cannot probe userfaultfd features: %s",
			     strerror(-kf->uffd_err));
	if (!(kf->uffd_features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM))
		cr_skip_test("this kernel's userfaultfd cannot write-protect "
			     "shmem (no UFFD_FEATURE_WP_HUGETLBFS_SHMEM, see "
			     "hmmud --check)");
}

/*
 * A HUGE_SIZE-aligned anonymous region of @len bytes with MADV_HUGEPAGE,
 * filled by the CPU with pattern @seed; skips the test unless it became huge.
 */
static uint8_t *map_thp_pattern(size_t len, unsigned seed)
{
	uint8_t *p = map_thp(len);

	fill_pattern(p, len / page_size(), seed);
	require_huge_pages(p);
	return p;
}

/* 1. Device reads of fresh, zero-filled and CPU-written pages. */

Test(coherence, device_read_of_fresh_pages_gives_zeros_in_one_fault)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 16;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	struct hmmu_stats before = stats_of(f.h), after;
	struct hmmu_cmd c;

	c = dev_read(f.m, p, n, buf);
	expect_filled(buf, n * page_size(), 0, "device read of fresh pages");
	cr_expect_eq(c.faults, 1, "a cold range is one fault, got %llu",
		     (unsigned long long)c.faults);
	after = stats_of(f.h);
	cr_expect_eq(after.device_faults, before.device_faults + 1);
	cr_expect_eq(after.device_pages, before.device_pages + n);

	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_filled(buf, n * page_size(), 0, "second device read");
	cr_expect_eq(c.faults, 0, "the device holds the pages, got %llu faults",
		     (unsigned long long)c.faults);
	cr_expect_eq(stats_of(f.h).device_faults, after.device_faults);
	cr_expect_eq(stats_of(f.h).device_pages, after.device_pages);
	/* The CPU still reads zeros, and can still write. */
	expect_filled(p, n * page_size(), 0, "CPU view");
	free(buf);
	fixture_close(&f);
}

Test(coherence, device_read_of_cpu_read_zero_pages_gives_zeros)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	volatile uint8_t *p = map_rw(n);
	uint8_t *buf = canary_buf(n);
	unsigned sum = 0;
	struct hmmu_cmd c;

	for (size_t i = 0; i < n; i++)
		sum += p[i * page_size() + 5]; /* maps the zero page */
	cr_assert_eq(sum, 0);
	c = dev_read(f.m, (void *)p, n, buf);
	expect_filled(buf, n * page_size(), 0, "device read of zero pages");
	cr_expect_eq(c.faults, 1);
	c = dev_read(f.m, (void *)p, n, buf);
	cr_expect_eq(c.faults, 0);
	expect_filled(buf, n * page_size(), 0, "second device read");
	free(buf);
	fixture_close(&f);
}

Test(coherence, device_read_of_cpu_written_pages_gives_their_data)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 32;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	struct hmmu_cmd c;

	fill_pattern(p, n, 3);
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 3, "device read");
	cr_expect_eq(c.faults, 1);
	cr_expect_eq(stats_of(f.h).device_pages, n);
	/* A sub-range the device already holds: no fault. */
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p + 4 * page_size(), 8, buf);
	cr_expect_eq(c.faults, 0);
	expect_same(buf, p + 4 * page_size(), 8 * page_size(),
		    "device read of pages 4-11");
	expect_filled(buf + 8 * page_size(), (n - 8) * page_size(), CANARY,
		      "beyond the 8 pages read");
	expect_pattern(p, n, 3, "CPU view");
	free(buf);
	fixture_close(&f);
}

/* 2. Read-only memory: readable by the device, never written by it. */
Test(coherence, read_only_mapping_is_readable_and_device_write_is_eperm)
{
	struct fixture f = fixture_open(NULL);
	const size_t n = 8;
	uint8_t *p = map_rw(n), *buf = canary_buf(n), *src = xmalloc(n * page_size());
	struct hmmu_stats before;
	struct hmmu_cmd c;
	int err;

	fill_pattern(p, n, 5);
	/* Before the device ever sees it: mprotect later is a known limit. */
	cr_assert_eq(mprotect(p, n * page_size(), PROT_READ), 0);
	f.m = mirror_registered(f.h, "dmirror0");

	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 5, "device read of read-only memory");
	cr_expect_eq(c.faults, 1);

	fill_pattern(src, n, 6);
	before = stats_of(f.h);
	err = dev_write_err(f.m, p, n, src);
	cr_expect_eq(err, -EPERM, "device write to read-only memory: %d (%s)",
		     err, strerror(-err));
	expect_pattern(p, n, 5, "read-only memory after the refused write");
	expect_pattern(src, n, 6, "source buffer of the refused write");
	cr_expect_eq(stats_of(f.h).device_pages, before.device_pages);
	cr_expect_eq(stats_of(f.h).invalidations, before.invalidations,
		     "a refused write invalidates nothing");

	/* A write straddling writable and read-only pages: nothing written. */
	{
		uint8_t *q = map_rw(2 * n);
		uint8_t *src2 = xmalloc(2 * n * page_size());

		fill_pattern(q, 2 * n, 7);
		cr_assert_eq(mprotect(q + n * page_size(), n * page_size(),
				      PROT_READ), 0);
		fill_pattern(src2, 2 * n, 8);
		err = dev_write_err(f.m, q, 2 * n, src2);
		cr_expect_eq(err, -EPERM, "straddling write: %d", err);
		expect_pattern(q, 2 * n, 7, "memory after the straddling write");
		expect_pattern(src2, 2 * n, 8, "its source buffer");
		free(src2);
	}

	/* The device's copy is still the data. */
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 5, "device read after the refused write");
	cr_expect_eq(c.faults, 0);
	free(buf);
	free(src);
	fixture_close(&f);
}

/* 3. PROT_NONE memory: the device can neither read nor write it. */
Test(coherence, prot_none_is_efault_and_leaves_buffers_untouched)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *p = map_rw(2 * n), *buf = canary_buf(2 * n);
	uint8_t *src = xmalloc(n * page_size());
	struct hmmu_stats before;
	int err;

	fill_pattern(p, 2 * n, 9);
	/* Pages n..2n-1 PROT_NONE; the first n stay readable. */
	cr_assert_eq(mprotect(p + n * page_size(), n * page_size(), PROT_NONE), 0);
	before = stats_of(f.h);

	err = dev_read_err(f.m, p + n * page_size(), n, buf);
	cr_expect_eq(err, -EFAULT, "device read of PROT_NONE: %d (%s)", err,
		     strerror(-err));
	expect_filled(buf, 2 * n * page_size(), CANARY,
		      "destination of the failed read");
	err = dev_read_err(f.m, p, 2 * n, buf);
	cr_expect_eq(err, -EFAULT, "read straddling PROT_NONE: %d", err);
	expect_filled(buf, 2 * n * page_size(), CANARY,
		      "destination of the failed straddling read");

	fill_pattern(src, n, 10);
	err = dev_write_err(f.m, p + n * page_size(), n, src);
	cr_expect_eq(err, -EFAULT, "device write to PROT_NONE: %d", err);
	expect_pattern(src, n, 10, "source of the failed write");

	cr_expect_eq(stats_of(f.h).device_pages, before.device_pages);
	cr_expect_eq(stats_of(f.h).device_faults, before.device_faults);
	cr_assert_eq(mprotect(p + n * page_size(), n * page_size(), PROT_READ), 0);
	expect_pattern(p, 2 * n, 9, "memory after the failed commands");
	free(buf);
	free(src);
	fixture_close(&f);
}

/* 4. Unmapped addresses: nothing to read, nothing written. */
Test(coherence, unmapped_address_is_efault_for_read_and_write)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *p = map_rw(2 * n), *buf = canary_buf(2 * n);
	uint8_t *src = xmalloc(2 * n * page_size());
	struct hmmu_stats before;
	int err;

	fill_pattern(p, n, 11);
	/* The first n pages stay, the next n go. */
	cr_assert_eq(munmap(p + n * page_size(), n * page_size()), 0);
	fill_pattern(src, 2 * n, 12);
	before = stats_of(f.h);

	err = dev_read_err(f.m, p + n * page_size(), n, buf);
	cr_expect_eq(err, -EFAULT, "read of unmapped: %d (%s)", err,
		     strerror(-err));
	err = dev_read_err(f.m, p, 2 * n, buf);
	cr_expect_eq(err, -EFAULT, "read straddling unmapped: %d", err);
	expect_filled(buf, 2 * n * page_size(), CANARY,
		      "destination of the failed reads");

	err = dev_write_err(f.m, p + n * page_size(), n, src);
	cr_expect_eq(err, -EFAULT, "write to unmapped: %d", err);
	err = dev_write_err(f.m, p, 2 * n, src);
	cr_expect_eq(err, -EFAULT, "write straddling unmapped: %d", err);
	expect_pattern(p, n, 11, "mapped part after the failed writes");
	expect_pattern(src, 2 * n, 12, "source of the failed writes");

	cr_expect_eq(stats_of(f.h).device_pages, before.device_pages);
	cr_expect_eq(stats_of(f.h).device_faults, before.device_faults);
	free(buf);
	free(src);
	fixture_close(&f);
}

/* 5. A device write is DMA: the CPU sees it, and the device keeps it. */
Test(coherence, device_write_is_seen_by_cpu_and_kept_by_device)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 16;
	uint8_t *p = map_rw(n), *buf = canary_buf(n), *src = xmalloc(n * page_size());
	struct hmmu_cmd c;

	fill_pattern(p, n, 13);
	fill_pattern(src, n, 14);
	c = dev_write(f.m, p, n, src);
	expect_pattern(p, n, 14, "CPU read after the device write");
	expect_pattern(src, n, 14, "source of the device write");
	cr_expect_eq(stats_of(f.h).device_pages, n);

	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 14, "device read after its own write");
	cr_expect_eq(c.faults, 0, "the device holds what it wrote, got %llu",
		     (unsigned long long)c.faults);

	/* Written again, over pages the device holds. */
	fill_pattern(src, n, 15);
	dev_write(f.m, p, n, src);
	expect_pattern(p, n, 15, "CPU read after the second device write");
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 15, "device read after the second write");
	cr_expect_eq(c.faults, 0);
	free(buf);
	free(src);
	fixture_close(&f);
}

/* 6. A CPU write invalidates the device's copy before it completes. */
Test(coherence, cpu_write_after_device_read_invalidates_and_refaults)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	struct hmmu_stats before, after;
	struct hmmu_cmd c;

	fill_pattern(p, n, 16);
	dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 16, "first device read");
	before = stats_of(f.h);

	fill_pattern(p, n, 17); /* the CPU writes every page */
	after = stats_of(f.h);
	cr_expect_geq(after.cpu_faults, before.cpu_faults + 1,
		      "cpu_faults %llu -> %llu",
		      (unsigned long long)before.cpu_faults,
		      (unsigned long long)after.cpu_faults);
	cr_expect_gt(after.invalidations, before.invalidations);
	cr_expect_eq(after.device_pages, before.device_pages - n,
		     "every written page is dropped from the device: "
		     "device_pages %llu, want %llu",
		     (unsigned long long)after.device_pages,
		     (unsigned long long)(before.device_pages - n));

	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 17, "device read after the CPU write");
	cr_expect_eq(c.faults, 1);

	/* One byte in one page: only that page refaults, data exact. */
	p[3 * page_size() + 100] ^= 0xff;
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	cr_expect_eq(c.faults, 1);
	expect_same(buf, p, n * page_size(), "device read after a 1-byte write");
	free(buf);
	fixture_close(&f);
}

/* 7. munmap drops the device's copy; a new mapping there is new data. */
Test(coherence, munmap_of_mirrored_range_invalidates_and_remap_is_new_data)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8, hole = 4;
	uint8_t *p = map_rw(n), *buf = canary_buf(n), *q;
	uint8_t *mid = p + 2 * page_size();
	struct hmmu_stats before, after;
	struct hmmu_cmd c;
	int err;

	fill_pattern(p, n, 18);
	dev_read(f.m, p, n, buf);
	before = stats_of(f.h);
	cr_assert_eq(before.device_pages, n);

	/* Pages 2..5 go; 0, 1, 6 and 7 stay. */
	cr_assert_eq(munmap(mid, hole * page_size()), 0);
	after = stats_of(f.h);
	cr_expect_gt(after.invalidations, before.invalidations);
	cr_expect_eq(after.device_pages, before.device_pages - hole,
		     "device_pages %llu, want %llu",
		     (unsigned long long)after.device_pages,
		     (unsigned long long)(before.device_pages - hole));

	memset(buf, CANARY, n * page_size());
	err = dev_read_err(f.m, mid, hole, buf);
	cr_expect_eq(err, -EFAULT, "device read of the unmapped range: %d", err);
	expect_filled(buf, n * page_size(), CANARY, "after the failed read");
	c = dev_read(f.m, p, 2, buf);
	cr_expect_eq(c.faults, 0, "pages outside the hole are still held");
	expect_pattern(buf, 2, 18, "pages 0-1");

	/* Something else at the same address. */
	q = mmap(mid, hole * page_size(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	cr_assert_eq(q, mid);
	fill_pattern(q, hole, 19);
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, q, hole, buf);
	expect_pattern(buf, hole, 19, "device read of the new mapping");
	cr_expect_eq(c.faults, 1);

	/* And the whole span, across the three mappings, byte by byte. */
	c = dev_read(f.m, p, n, buf);
	expect_same(buf, p, n * page_size(), "device read of the whole span");
	cr_expect_eq(c.faults, 0);
	/* The new mapping is mirrored too: a CPU write is seen. */
	fill_pattern(q, hole, 20);
	c = dev_read(f.m, q, hole, buf);
	expect_pattern(buf, hole, 20, "device read after a CPU write");
	cr_expect_eq(c.faults, 1);
	free(buf);
	fixture_close(&f);
}

/* 8. madvise(MADV_DONTNEED) drops the pages: the device reads zeros. */
Test(coherence, madv_dontneed_drops_device_pages_and_reads_zeros)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	struct hmmu_stats before, after;
	struct hmmu_cmd c;

	fill_pattern(p, n, 21);
	dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 21, "device read");
	before = stats_of(f.h);

	cr_assert_eq(madvise(p, n * page_size(), MADV_DONTNEED), 0);
	after = stats_of(f.h);
	cr_expect_eq(after.device_pages, before.device_pages - n,
		     "device_pages %llu, want %llu",
		     (unsigned long long)after.device_pages,
		     (unsigned long long)(before.device_pages - n));
	cr_expect_gt(after.invalidations, before.invalidations);

	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_filled(buf, n * page_size(), 0, "device read after MADV_DONTNEED");
	cr_expect_eq(c.faults, 1);
	expect_filled(p, n * page_size(), 0, "CPU view after MADV_DONTNEED");

	/* The range stays mirrored: a CPU write after it is seen. */
	fill_pattern(p, n, 22);
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 22, "device read after a new CPU write");
	cr_expect_eq(c.faults, 1);
	free(buf);
	fixture_close(&f);
}

/* 9. mremap moves the data: the device finds it at the new address only. */
Test(coherence, mremap_moves_mirrored_data_to_new_address)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	uint8_t *p = map_rw(n), *buf = canary_buf(n), *dst, *q;
	struct hmmu_stats before, after;
	struct hmmu_cmd c;
	int err;

	/* A free spot for the move: reserved, then released. */
	dst = map_rw(n);
	cr_assert_eq(munmap(dst, n * page_size()), 0);

	fill_pattern(p, n, 23);
	dev_read(f.m, p, n, buf);
	before = stats_of(f.h);

	q = mremap(p, n * page_size(), n * page_size(),
		   MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	cr_assert_eq(q, dst, "mremap: %s", strerror(errno));
	after = stats_of(f.h);
	cr_expect_gt(after.invalidations, before.invalidations);
	cr_expect_eq(after.device_pages, before.device_pages - n,
		     "the old range's pages are dropped");

	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, q, n, buf);
	expect_pattern(buf, n, 23, "device read at the new address");
	cr_expect_eq(c.faults, 1);

	memset(buf, CANARY, n * page_size());
	err = dev_read_err(f.m, p, n, buf);
	cr_expect_eq(err, -EFAULT, "device read at the old address: %d", err);
	expect_filled(buf, n * page_size(), CANARY, "after the failed read");

	/* Still coherent at the new address. */
	fill_pattern(q, n, 24);
	c = dev_read(f.m, q, n, buf);
	expect_pattern(buf, n, 24, "device read after a CPU write at the new address");
	cr_expect_eq(c.faults, 1);
	free(buf);
	fixture_close(&f);
}

/* 10. fork: the child's copy is its own, the device follows the parent. */

static int read_byte(int fd)
{
	char c;

	return read(fd, &c, 1) == 1 ? (unsigned char)c : -1;
}

static int pattern_matches(const uint8_t *p, size_t npages, unsigned seed)
{
	for (size_t i = 0; i < npages; i++)
		for (size_t j = 0; j < page_size(); j++)
			if (p[i * page_size() + j] != pattern_byte(seed, i, j))
				return 0;
	return 1;
}

Test(coherence, fork_child_writes_its_copy_and_device_follows_parent)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	int to_child[2], to_parent[2], status;
	struct hmmu_stats before;
	struct hmmu_cmd c;
	pid_t pid;

	fill_pattern(p, n, 25);
	dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 25, "device read before fork");
	cr_assert_eq(pipe(to_child), 0);
	cr_assert_eq(pipe(to_parent), 0);

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int ok;

		/* If the parent fails and goes, we get EOF and go too. */
		close(to_child[1]);
		close(to_parent[0]);
		/* Must not hang: the daemon closed our userfaultfd. */
		fill_pattern(p, n, 26);
		ok = pattern_matches(p, n, 26);
		(void)!write(to_parent[1], ok ? "w" : "x", 1);
		if (read_byte(to_child[0]) != 'c')
			_exit(2);
		/* The parent wrote its own copy meanwhile. */
		ok = ok && pattern_matches(p, n, 26);
		(void)!write(to_parent[1], ok ? "y" : "n", 1);
		_exit(ok ? 0 : 1);
	}
	close(to_child[0]);
	close(to_parent[1]);
	cr_assert_eq(read_byte(to_parent[0]), 'w',
		     "the child wrote and sees its own copy");

	memset(buf, CANARY, n * page_size());
	dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 25, "device read after the child wrote");
	expect_pattern(p, n, 25, "parent's CPU view after the child wrote");

	before = stats_of(f.h);
	fill_pattern(p, n, 27);
	cr_expect_gt(stats_of(f.h).cpu_faults, before.cpu_faults);
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 27, "device read after the parent wrote");
	cr_expect_eq(c.faults, 1);

	(void)!write(to_child[1], "c", 1);
	cr_expect_eq(read_byte(to_parent[0]), 'y',
		     "the child still sees its own values");
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child status %#x", status);
	free(buf);
	fixture_close(&f);
}

/* 11. Two devices mirroring one process stay coherent with each other. */
Test(coherence, two_devices_stay_coherent)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b = mirror_registered(f.h, "dmirror1");
	const size_t n = 8;
	uint8_t *p = map_rw(n), *buf = canary_buf(n), *src = xmalloc(n * page_size());
	struct hmmu_cmd c;

	fill_pattern(p, n, 28);
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 28, "dmirror0 read");
	cr_expect_eq(c.faults, 1);
	memset(buf, CANARY, n * page_size());
	c = dev_read(b, p, n, buf);
	expect_pattern(buf, n, 28, "dmirror1 read");
	cr_expect_eq(c.faults, 1, "dmirror1 has its own page table");
	cr_expect_eq(stats_of(f.h).device_pages, 2 * n);

	fill_pattern(p, n, 29);
	cr_expect_eq(stats_of(f.h).device_pages, 0, "both copies dropped");
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 29, "dmirror0 read after the CPU write");
	cr_expect_eq(c.faults, 1);
	memset(buf, CANARY, n * page_size());
	c = dev_read(b, p, n, buf);
	expect_pattern(buf, n, 29, "dmirror1 read after the CPU write");
	cr_expect_eq(c.faults, 1);

	fill_pattern(src, n, 30);
	dev_write(f.m, p, n, src);
	memset(buf, CANARY, n * page_size());
	c = dev_read(b, p, n, buf);
	expect_pattern(buf, n, 30, "dmirror1 read after the dmirror0 write");
	cr_expect_eq(c.faults, 1, "dmirror1's stale copy was dropped");
	expect_pattern(p, n, 30, "CPU read after the dmirror0 write");
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 30, "dmirror0 read after its own write");
	cr_expect_eq(c.faults, 0);
	free(buf);
	free(src);
	hmmu_mirror_destroy(b);
	fixture_close(&f);
}

/* 12. Shared memory: write-protected and mirrored with copies, as anonymous. */

static void shared_mapping_is_coherent(uint8_t *p, size_t n)
{
	struct fixture f = fixture_open("dmirror0");
	uint8_t *buf = canary_buf(n), *src = xmalloc(n * page_size());
	struct hmmu_stats before;
	struct hmmu_cmd c;

	fill_pattern(p, n, 31);
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 31, "device read of shared memory");
	cr_expect_eq(c.faults, 1);
	c = dev_read(f.m, p, n, buf);
	cr_expect_eq(c.faults, 0);

	before = stats_of(f.h);
	fill_pattern(p, n, 32);
	cr_expect_gt(stats_of(f.h).cpu_faults, before.cpu_faults);
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 32, "device read after the CPU write");
	cr_expect_eq(c.faults, 1);

	fill_pattern(src, n, 33);
	dev_write(f.m, p, n, src);
	expect_pattern(p, n, 33, "CPU read after a device write");
	free(buf);
	free(src);
	fixture_close(&f);
}

Test(coherence, shared_anonymous_mapping_is_coherent)
{
	const size_t n = 8;

	require_wp_shmem();
	shared_mapping_is_coherent(map_anon(n, PROT_READ | PROT_WRITE,
					    MAP_SHARED), n);
}

Test(coherence, memfd_mapping_is_coherent)
{
	const size_t n = 8;
	int fd;
	void *p;

	require_wp_shmem();
	fd = (int)syscall(SYS_memfd_create, "hmmu-coherence", 0);
	cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)(n * page_size())), 0);
	p = mmap(NULL, n * page_size(), PROT_READ | PROT_WRITE, MAP_SHARED,
		 fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	close(fd);
	shared_mapping_is_coherent(p, n);
}

/*
 * A regular file (not tmpfs), which userfaultfd cannot write-protect: @fd
 * of @n pages filled with pattern @seed, in the test's directory.
 */
static int regular_file(const char *name, size_t n, unsigned seed)
{
	uint8_t *data = xmalloc(n * page_size());
	struct statfs fs;
	char path[192];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", daemon_under_test.dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(fstatfs(fd, &fs), 0);
	if (fs.f_type == TMPFS_MAGIC_)
		cr_skip_test("%s is on tmpfs (shmem), which userfaultfd can "
			     "write-protect: no regular file to test with", path);
	fill_pattern(data, n, seed);
	cr_assert_eq(pwrite(fd, data, n * page_size(), 0),
		     (ssize_t)(n * page_size()));
	free(data);
	return fd;
}

/*
 * 12b. Memory userfaultfd cannot track: the device keeps no copy and reads
 * and writes the very page the CPU maps, so it is coherent by construction
 * (docs/design.md, "Memory without copies"). A private mapping: the device
 * sees the CPU's copy-on-write pages and the file's others; its writes are
 * the process's own, never the file's.
 */
Test(coherence, private_file_mapping_is_coherent_without_copies)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *buf = canary_buf(n), *src = xmalloc(n * page_size()), *p;
	uint8_t *check = xmalloc(n * page_size());
	struct hmmu_stats before;
	int fd = regular_file("private-file", n, 34);

	p = mmap(NULL, n * page_size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	before = stats_of(f.h);

	cr_assert_eq(dev_read_err(f.m, p, n, buf), 0);
	expect_pattern(buf, n, 34, "device read of the file's pages");

	/* A CPU store copies page 1; the device sees the copy. */
	p[page_size() + 5] = 0x77;
	cr_assert_eq(dev_read_err(f.m, p, n, buf), 0);
	cr_expect_eq(buf[page_size() + 5], 0x77, "device read after a CPU store");

	fill_pattern(src, n, 35);
	cr_assert_eq(dev_write_err(f.m, p, n, src), 0);
	expect_pattern(p, n, 35, "CPU view after the device write");
	cr_assert_eq(pread(fd, check, n * page_size(), 0), (ssize_t)(n * page_size()));
	expect_pattern(check, n, 34, "the file after a device write to a private mapping");
	cr_expect_eq(stats_of(f.h).device_pages, before.device_pages,
		     "the device took no copy");
	munmap(p, n * page_size());
	close(fd);
	free(check);
	free(src);
	free(buf);
	fixture_close(&f);
}

/* The same, shared: the device and the file are one, both ways. */
Test(coherence, shared_file_mapping_is_coherent_without_copies)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *buf = canary_buf(n), *src = xmalloc(n * page_size()), *p, *ro;
	int fd = regular_file("shared-file", n, 36);

	p = mmap(NULL, n * page_size(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	ro = mmap(NULL, n * page_size(), PROT_READ, MAP_SHARED, fd, 0);
	cr_assert_neq(ro, MAP_FAILED);

	cr_assert_eq(dev_read_err(f.m, ro, n, buf), 0);
	expect_pattern(buf, n, 36, "device read of the file");

	fill_pattern(src, n, 37);
	cr_assert_eq(pwrite(fd, src, n * page_size(), 0), (ssize_t)(n * page_size()));
	cr_assert_eq(dev_read_err(f.m, ro, n, buf), 0);
	expect_pattern(buf, n, 37, "device read after write(2) to the file");

	fill_pattern(src, n, 38);
	cr_assert_eq(dev_write_err(f.m, p, n, src), 0);
	cr_assert_eq(pread(fd, buf, n * page_size(), 0), (ssize_t)(n * page_size()));
	expect_pattern(buf, n, 38, "the file after the device wrote its mapping");

	/* Read-only: refused, nothing written. */
	fill_pattern(src, n, 39);
	cr_expect_eq(dev_write_err(f.m, ro, n, src), -EPERM);
	expect_pattern(ro, n, 38, "the file after a refused device write");
	munmap(ro, n * page_size());
	munmap(p, n * page_size());
	close(fd);
	free(src);
	free(buf);
	fixture_close(&f);
}

/* 13. Transparent huge pages: mirrored, and a 1-byte CPU write is seen. */
Test(coherence, thp_region_is_coherent)
{
	const size_t len = 2 * HUGE_SIZE, n = len / page_size();
	uint8_t *p = map_thp_pattern(len, 36), *buf;
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_stats before;
	struct hmmu_cmd c;
	size_t mid = len / 2 + 777;

	buf = canary_buf(n);
	c = dev_read(f.m, p, n, buf);
	expect_pattern(buf, n, 36, "device read of the THP region");
	cr_expect_eq(c.faults, 1);

	before = stats_of(f.h);
	p[mid] ^= 0x5a;
	cr_expect_gt(stats_of(f.h).cpu_faults, before.cpu_faults);
	memset(buf, CANARY, n * page_size());
	c = dev_read(f.m, p, n, buf);
	cr_expect_eq(c.faults, 1);
	cr_expect_eq(buf[mid], (uint8_t)(pattern_byte(36, mid / page_size(),
						     mid % page_size()) ^ 0x5a),
		     "the device sees the CPU's byte");
	expect_same(buf, p, len, "device read after the 1-byte write");
	free(buf);
	fixture_close(&f);
}

/* 14. A sparse 64 GiB span: one page per GiB, each read on its own. */
Test(coherence, sparse_64gib_span_reads_each_page)
{
	const size_t gib = 1ul << 30, span = 64 * gib, npages = 64;
	struct fixture f = fixture_open("dmirror0");
	uint8_t *p, *buf = canary_buf(1);
	struct hmmu_cmd c;

	p = mmap(NULL, span, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		cr_skip_test("cannot reserve a 64 GiB span: %s", strerror(errno));
	for (size_t i = 0; i < npages; i++)
		fill_pattern(p + i * gib, 1, 100 + (unsigned)i);
	for (size_t i = 0; i < npages; i++) {
		char what[64];

		memset(buf, CANARY, page_size());
		c = dev_read(f.m, p + i * gib, 1, buf);
		snprintf(what, sizeof(what), "device read of GiB %zu", i);
		expect_pattern(buf, 1, 100 + (unsigned)i, what);
		cr_expect_eq(c.faults, 1, "%s: faults %llu", what,
			     (unsigned long long)c.faults);
	}
	cr_expect_eq(stats_of(f.h).device_pages, npages);
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	cr_expect_eq(stats_of(f.h).device_pages, 0);
	for (size_t i = 0; i < npages; i++)
		expect_pattern(p + i * gib, 1, 100 + (unsigned)i, "CPU view");
	cr_assert_eq(munmap(p, span), 0);
	free(buf);
	fixture_close(&f);
}

/*
 * Tests with a second thread never assert while it runs: they note the
 * first failure, stop the thread, and then assert.
 */
struct failure {
	char what[256];
};

static int failed(const struct failure *f)
{
	return f->what[0] != '\0';
}

/* A device read with no assertion: 0, or a failure noted in @f. */
static int try_read(struct hmmu_mirror *m, const void *addr, size_t npages,
		    void *buf, struct hmmu_cmd *c, struct failure *f,
		    const char *what)
{
	int err;

	*c = (struct hmmu_cmd){ .addr = (uintptr_t)addr, .npages = npages };
	err = hmmu_device_read(m, c, buf);
	if (!err && c->cpages == npages)
		return 0;
	snprintf(f->what, sizeof(f->what), "%s: device read: %s, cpages %llu",
		 what, strerror(-err), (unsigned long long)c->cpages);
	return -1;
}

/* 0 if @got equals @want over @len bytes, or a failure noted in @f. */
static int try_same(const void *got, const void *want, size_t len,
		    struct failure *f, const char *what)
{
	const uint8_t *g = got, *w = want;

	for (size_t k = 0; k < len; k++) {
		if (g[k] == w[k])
			continue;
		snprintf(f->what, sizeof(f->what),
			 "%s: byte %zu (page %zu) is %#x, want %#x", what, k,
			 k / page_size(), g[k], w[k]);
		return -1;
	}
	return 0;
}

/* 15. A CPU writer racing with device reads: never stale, never backwards. */

#define WRITES 20000
/* The writer lets the reader complete one read every this many writes. */
#define WRITES_PER_READ 10

struct writer {
	volatile uint64_t *slot;
	unsigned long reads; /* device reads completed, by the main thread */
	int done, stop;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	unsigned long seen = 0;

	for (uint64_t v = 1; v <= WRITES; v++) {
		__atomic_store_n(w->slot, v, __ATOMIC_RELEASE);
		/*
		 * Without this, 20000 writes are over before the second read:
		 * make sure reads keep overlapping the writes to the end.
		 */
		if (v % WRITES_PER_READ)
			continue;
		while (__atomic_load_n(&w->reads, __ATOMIC_ACQUIRE) == seen) {
			if (__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE))
				return NULL;
			sched_yield();
		}
		seen = __atomic_load_n(&w->reads, __ATOMIC_ACQUIRE);
	}
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

Test(coherence, concurrent_cpu_writer_never_gives_stale_device_reads)
{
	struct fixture fx = fixture_open("dmirror0");
	uint8_t *p = map_rw(1), *buf = canary_buf(1);
	struct writer w = { .slot = (volatile uint64_t *)p };
	uint64_t prev = 0, got, latest;
	struct failure f = { "" };
	unsigned long reads = 0;
	struct hmmu_cmd c;
	pthread_t t;

	fill_pattern(p, 1, 37);
	*w.slot = 0;
	dev_read(fx.m, p, 1, buf); /* mirrored and protected before the race */
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	while (!__atomic_load_n(&w.done, __ATOMIC_ACQUIRE)) {
		if (try_read(fx.m, p, 1, buf, &c, &f, "during the race"))
			break;
		latest = __atomic_load_n(w.slot, __ATOMIC_ACQUIRE);
		memcpy(&got, buf, sizeof(got));
		if (got > latest) {
			snprintf(f.what, sizeof(f.what),
				 "read %lu: the device saw %llu, the CPU had "
				 "only written %llu", reads,
				 (unsigned long long)got,
				 (unsigned long long)latest);
			break;
		}
		if (got < prev) {
			snprintf(f.what, sizeof(f.what),
				 "read %lu: the device went back from %llu to "
				 "%llu", reads, (unsigned long long)prev,
				 (unsigned long long)got);
			break;
		}
		if (try_same(buf + 8, p + 8, page_size() - 8, &f,
			     "rest of the page during the race"))
			break;
		prev = got;
		reads++;
		__atomic_store_n(&w.reads, reads, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
	cr_assert_eq(pthread_join(t, NULL), 0);
	cr_assert(!failed(&f), "%s", f.what);

	c = dev_read(fx.m, p, 1, buf);
	memcpy(&got, buf, sizeof(got));
	cr_expect_eq(got, WRITES, "after the writer stopped the device saw %llu",
		     (unsigned long long)got);
	cr_expect_geq(reads, WRITES / WRITES_PER_READ,
		      "the reads overlapped the writes");
	expect_same(buf + 8, p + 8, page_size() - 8, "rest of the page");
	cr_log_info("%lu device reads raced with %d CPU writes", reads, WRITES);
	free(buf);
	fixture_close(&fx);
}

/*
 * Rule 7 says "before the CPU operation completes": when munmap or madvise
 * returns, no device may still hold the old pages, even while the daemon is
 * busy elsewhere. Another device keeps reading a large range meanwhile (its
 * page-table lock is held for long copies), and is registered after the
 * one under test, so that an invalidation walking the mirrors meets it
 * first.
 */

#define BUSY_PAGES 1024
#define ROUNDS 300

struct reader {
	struct hmmu_mirror *m;
	const uint8_t *mem;
	size_t npages;
	int check; /* the memory does not change: compare what is read */
	int stop;
	unsigned long reads, errors;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	uint8_t *buf = malloc(r->npages * page_size());

	while (buf && !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		struct hmmu_cmd c = { .addr = (uintptr_t)r->mem,
				      .npages = r->npages };

		if (hmmu_device_read(r->m, &c, buf) != 0 ||
		    (r->check &&
		     memcmp(buf, r->mem, r->npages * page_size()) != 0))
			r->errors++;
		__atomic_add_fetch(&r->reads, 1, __ATOMIC_RELEASE);
	}
	free(buf);
	return NULL;
}

static void reader_start(struct reader *r, pthread_t *t)
{
	cr_assert_eq(pthread_create(t, NULL, reader_main, r), 0);
	/* Running before the test starts. */
	while (__atomic_load_n(&r->reads, __ATOMIC_ACQUIRE) == 0)
		sched_yield();
}

static void reader_stop(struct reader *r, pthread_t t)
{
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	cr_assert_eq(pthread_join(t, NULL), 0);
}

/* Another device, on another connection, reading a large range. */
static void busy_start(struct reader *b, pthread_t *t, struct hmmu *h)
{
	uint8_t *mem = map_rw(BUSY_PAGES);

	fill_pattern(mem, BUSY_PAGES, 40);
	*b = (struct reader){ .m = mirror_registered(h, "dmirror1"),
			      .mem = mem, .npages = BUSY_PAGES, .check = 1 };
	reader_start(b, t);
}

static void busy_stop(struct reader *b, pthread_t t)
{
	reader_stop(b, t);
	cr_expect_eq(b->errors, 0, "the busy device read wrong data %lu times",
		     b->errors);
	hmmu_mirror_destroy(b->m);
}

Test(coherence, madv_dontneed_invalidates_before_returning_while_busy)
{
	struct fixture fx = fixture_open("dmirror0");
	struct fixture busy = fixture_open(NULL);
	const size_t n = 2;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	uint8_t *zeros = calloc(n, page_size()), *want = xmalloc(n * page_size());
	struct failure f = { "" };
	struct reader b;
	struct hmmu_cmd c;
	pthread_t t;

	busy_start(&b, &t, busy.h);
	for (unsigned round = 0; round < ROUNDS && !failed(&f); round++) {
		char what[64];

		snprintf(what, sizeof(what), "round %u", round);
		fill_pattern(p, n, round);
		fill_pattern(want, n, round);
		if (try_read(fx.m, p, n, buf, &c, &f, what) ||
		    try_same(buf, want, n * page_size(), &f, what))
			break;
		if (madvise(p, n * page_size(), MADV_DONTNEED)) {
			snprintf(f.what, sizeof(f.what), "madvise: %s",
				 strerror(errno));
			break;
		}
		memset(buf, CANARY, n * page_size());
		snprintf(what, sizeof(what), "round %u: device read after "
			 "MADV_DONTNEED", round);
		if (try_read(fx.m, p, n, buf, &c, &f, what) ||
		    try_same(buf, zeros, n * page_size(), &f, what))
			break;
		if (c.faults != 1)
			snprintf(f.what, sizeof(f.what), "%s: faults %llu",
				 what, (unsigned long long)c.faults);
	}
	busy_stop(&b, t);
	cr_assert(!failed(&f), "%s", f.what);
	free(zeros);
	free(want);
	free(buf);
	fixture_close(&busy);
	fixture_close(&fx);
}

Test(coherence, munmap_invalidates_before_returning_while_busy)
{
	struct fixture fx = fixture_open("dmirror0");
	struct fixture busy = fixture_open(NULL);
	const size_t n = 2;
	uint8_t *p = map_rw(n), *buf = canary_buf(n), *q;
	uint8_t *want = xmalloc(n * page_size());
	struct failure f = { "" };
	struct reader b;
	struct hmmu_cmd c;
	pthread_t t;

	busy_start(&b, &t, busy.h);
	for (unsigned round = 0; round < ROUNDS && !failed(&f); round++) {
		char what[64];

		snprintf(what, sizeof(what), "round %u", round);
		fill_pattern(p, n, round);
		fill_pattern(want, n, round);
		if (try_read(fx.m, p, n, buf, &c, &f, what) ||
		    try_same(buf, want, n * page_size(), &f, what))
			break;
		/* Replaced at once by a new mapping with other data. */
		if (munmap(p, n * page_size())) {
			snprintf(f.what, sizeof(f.what), "munmap: %s",
				 strerror(errno));
			break;
		}
		q = mmap(p, n * page_size(), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		if (q != p) {
			snprintf(f.what, sizeof(f.what), "mmap: %s",
				 strerror(errno));
			break;
		}
		fill_pattern(q, n, round + 1000);
		fill_pattern(want, n, round + 1000);
		memset(buf, CANARY, n * page_size());
		snprintf(what, sizeof(what), "round %u: device read of the "
			 "new mapping", round);
		if (try_read(fx.m, q, n, buf, &c, &f, what) ||
		    try_same(buf, want, n * page_size(), &f, what))
			break;
		if (c.faults != 1) {
			snprintf(f.what, sizeof(f.what), "%s: faults %llu",
				 what, (unsigned long long)c.faults);
			break;
		}
		/* The new mapping is tracked: a CPU write is seen. */
		fill_pattern(q, n, round + 2000);
		fill_pattern(want, n, round + 2000);
		snprintf(what, sizeof(what), "round %u: device read after a "
			 "CPU write to the new mapping", round);
		if (try_read(fx.m, q, n, buf, &c, &f, what))
			break;
		try_same(buf, want, n * page_size(), &f, what);
	}
	busy_stop(&b, t);
	cr_assert(!failed(&f), "%s", f.what);
	free(want);
	free(buf);
	fixture_close(&busy);
	fixture_close(&fx);
}

/*
 * MADV_DONTNEED while another thread keeps device-reading the same pages:
 * whatever those racing reads see, once madvise has returned the device
 * holds no copy of the old data, and a read ordered after it sees zeros.
 */
#define RACE_ROUNDS 3000
#define RACERS 2

Test(coherence, madv_dontneed_racing_device_reads_leave_no_stale_copy)
{
	struct fixture fx = fixture_open("dmirror0");
	const size_t n = 2;
	uint8_t *p = map_rw(n), *buf = canary_buf(n);
	uint8_t *zeros = calloc(n, page_size());
	struct reader r[RACERS];
	struct failure f = { "" };
	unsigned long racing = 0;
	struct hmmu_cmd c;
	pthread_t t[RACERS];

	for (int i = 0; i < RACERS; i++) {
		r[i] = (struct reader){ .m = fx.m, .mem = p, .npages = n };
		reader_start(&r[i], &t[i]);
	}
	for (unsigned round = 0; round < RACE_ROUNDS && !failed(&f); round++) {
		char what[96];

		fill_pattern(p, n, round);
		if (madvise(p, n * page_size(), MADV_DONTNEED)) {
			snprintf(f.what, sizeof(f.what), "madvise: %s",
				 strerror(errno));
			break;
		}
		memset(buf, CANARY, n * page_size());
		snprintf(what, sizeof(what), "round %u: device read after "
			 "MADV_DONTNEED (%lu racing reads so far)", round,
			 __atomic_load_n(&r[0].reads, __ATOMIC_ACQUIRE));
		if (try_read(fx.m, p, n, buf, &c, &f, what))
			break;
		try_same(buf, zeros, n * page_size(), &f, what);
	}
	for (int i = 0; i < RACERS; i++) {
		reader_stop(&r[i], t[i]);
		cr_expect_eq(r[i].errors, 0, "racing reads failed %lu times",
			     r[i].errors);
		racing += r[i].reads;
	}
	cr_assert(!failed(&f), "%s", f.what);
	cr_log_info("%lu device reads raced with %d MADV_DONTNEED", racing,
		    RACE_ROUNDS);
	free(zeros);
	free(buf);
	fixture_close(&fx);
}

/*
 * A device read puts its data into the client's buffer like DMA: when that
 * buffer is itself memory a device mirrors, the device's copy of it must be
 * dropped too, or it would keep the buffer's old contents.
 */
Test(coherence, device_read_into_mirrored_buffer_drops_stale_copies)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b = mirror_registered(f.h, "dmirror1");
	const size_t n = 4;
	uint8_t *src = map_rw(n), *dst = map_rw(n), *buf = canary_buf(n);
	struct hmmu_cmd c;

	fill_pattern(src, n, 41);
	fill_pattern(dst, n, 42);
	c = dev_read(b, dst, n, buf); /* dmirror1 holds dst's old contents */
	expect_pattern(buf, n, 42, "dmirror1 read of the destination");

	/* dmirror0 reads src into dst. */
	dev_read(f.m, src, n, dst);
	expect_pattern(dst, n, 41, "CPU view of the destination");

	memset(buf, CANARY, n * page_size());
	c = dev_read(b, dst, n, buf);
	expect_pattern(buf, n, 41, "dmirror1 read of the destination after "
		       "dmirror0 read into it");
	cr_expect_eq(c.faults, 1, "dmirror1's stale copy was dropped");
	free(buf);
	hmmu_mirror_destroy(b);
	fixture_close(&f);
}
