/* SPDX-License-Identifier: MIT */
/*
 * The page-copy pool end to end (core/copy_pool.c): page copies outlive
 * the mirror that used them and serve the next one, and a copy that comes
 * back from another mirror never shows that mirror's bytes, after a
 * successful read or a failed one.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void start(void)
{
	/* Long enough that the pool is not trimmed for idleness meanwhile. */
	static const char *const args[] = { "--limit", "copy-pool-mib=64",
					    "--limit", "copy-pool-idle-seconds=600",
					    NULL };

	daemon_start_args(args);
}

TestSuite(copy_reuse, .init = start, .fini = daemon_stop, .timeout = 120);

/* The daemon's anonymous resident memory, in KiB. */
static long daemon_rss_anon_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_under_test.pid);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
			break;
	fclose(f);
	cr_assert_geq(kib, 0);
	return kib;
}

static int read_err(struct hmmu_mirror *m, const void *addr, size_t npages,
		    void *buf)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)addr, .npages = npages };

	return hmmu_device_read(m, &c, buf);
}

static void assert_bytes(const uint8_t *got, const uint8_t *want, size_t len,
			 const char *what)
{
	for (size_t k = 0; k < len; k++)
		if (got[k] != want[k])
			cr_assert_fail("%s: byte %zu (page %zu) is %#x, want %#x",
				       what, k, k / page_size(), got[k], want[k]);
}

Test(copy_reuse, recreated_mirror_reuses_copies_and_sees_only_its_own_bytes)
{
	enum { N = 4096 }; /* 16 MiB of copies */
	size_t ps = page_size(), len = N * ps;
	struct fixture f = fixture_open("dmirror0");
	uint8_t *a = map_rw(N), *b = map_rw(N + 2), *out = xmalloc(len);
	long rss0, rss1, rss2;

	/* Mirror 1 reads pages full of 0xaa: 16 MiB of copies hold them. */
	memset(a, 0xaa, len);
	rss0 = daemon_rss_anon_kib();
	cr_assert_eq(read_err(f.m, a, N, out), 0);
	assert_bytes(out, a, len, "mirror 1");
	hmmu_mirror_destroy(f.m);
	f.m = NULL;
	rss1 = daemon_rss_anon_kib();
	cr_assert_geq(rss1 - rss0, 12 * 1024,
		      "the pool kept the copies of a mirror gone: %ld KiB, "
		      "then %ld KiB", rss0, rss1);

	/*
	 * Mirror 2 reads pages that are zero but for their last byte: any
	 * byte of mirror 1 left in a copy would show. First a read that
	 * fails (its last 2 pages are unmapped): it leaves the buffer alone.
	 */
	cr_assert_eq(munmap(b + len, 2 * ps), 0);
	memset(b, 0, len);
	for (size_t i = 0; i < N; i++)
		b[i * ps + ps - 1] = (uint8_t)(i | 1);
	f.m = mirror_registered(f.h, "dmirror0");
	memset(out, 0xee, 4 * ps);
	cr_assert_eq(read_err(f.m, b + len - 2 * ps, 4, out), -EFAULT);
	for (size_t k = 0; k < 4 * ps; k++)
		cr_assert_eq(out[k], 0xee, "a failed read wrote byte %zu", k);

	memset(out, 0xee, len);
	cr_assert_eq(read_err(f.m, b, N, out), 0);
	assert_bytes(out, b, len, "mirror 2");
	rss2 = daemon_rss_anon_kib();
	cr_assert_leq(rss2 - rss1, 6 * 1024,
		      "mirror 2's 16 MiB of copies came from the pool: %ld KiB, "
		      "then %ld KiB", rss1, rss2);

	/* And again, after the CPU changed every page mirror 2 holds. */
	for (size_t i = 0; i < N; i++)
		b[i * ps] = (uint8_t)(i | 3);
	cr_assert_eq(read_err(f.m, b, N, out), 0);
	assert_bytes(out, b, len, "mirror 2, after CPU writes");

	free(out);
	munmap(a, len);
	munmap(b, len);
	fixture_close(&f);
}
