/* SPDX-License-Identifier: MIT */
/*
 * hmmu_snapshot end to end: the state of each page in the CPU's page table,
 * as the kernel's test_hmm reports it (none, zero page, read, write, huge,
 * error), through untouched, CPU-read, CPU-written, device-mirrored,
 * unmirrored, PROT_NONE, unmapped, copy-on-write and transparent huge
 * pages. A snapshot only looks: it never faults a page in, neither for the
 * CPU nor for the device.
 */
#include "harness.h"
#include "helpers.h"
#include "common/kfeatures.h"
#include "common/kernel_uapi.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(snapshot, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

static const char *state_name(uint8_t s)
{
	switch (s) {
	case HMMU_PAGE_NONE: return "NONE";
	case HMMU_PAGE_READ: return "READ";
	case HMMU_PAGE_WRITE: return "WRITE";
	case HMMU_PAGE_READ | HMMU_PAGE_HUGE: return "READ|HUGE";
	case HMMU_PAGE_WRITE | HMMU_PAGE_HUGE: return "WRITE|HUGE";
	case HMMU_PAGE_ZERO: return "ZERO";
	case HMMU_PAGE_DEV_LOCAL: return "DEV_LOCAL";
	case HMMU_PAGE_DEV_REMOTE: return "DEV_REMOTE";
	case HMMU_PAGE_ERROR: return "ERROR";
	default: return "?";
	}
}

/*
 * Snapshot [addr, addr + npages pages) into @states, asserting success,
 * cpages == npages, and that nothing was faulted in for the device.
 */
static void snap(struct hmmu *h, struct hmmu_mirror *m, const void *addr,
		 size_t npages, uint8_t *states)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)addr, .npages = npages };
	struct hmmu_stats before = stats_of(h), after;
	int err;

	memset(states, 0xee, npages); /* no valid state */
	err = hmmu_snapshot(m, &c, states);
	cr_assert_eq(err, 0, "snapshot of %p, %zu pages: %s", addr, npages,
		     strerror(-err));
	cr_assert_eq(c.cpages, npages, "cpages %llu, want %zu",
		     (unsigned long long)c.cpages, npages);
	after = stats_of(h);
	cr_assert_eq(after.device_pages, before.device_pages,
		     "a snapshot faults nothing into the device");
	cr_assert_eq(after.device_faults, before.device_faults,
		     "a snapshot takes no device fault");
	cr_assert_eq(after.cpu_faults, before.cpu_faults);
}

static void expect_state(const uint8_t *states, size_t first, size_t count,
			 uint8_t want, const char *what)
{
	for (size_t i = first; i < first + count; i++)
		if (states[i] != want)
			cr_assert_fail("%s: page %zu is %#x (%s), want %#x (%s)",
				       what, i, states[i], state_name(states[i]),
				       want, state_name(want));
}

/* Snapshot @npages at @addr and expect every page to be @want. */
static void expect_all(struct hmmu *h, struct hmmu_mirror *m, const void *addr,
		       size_t npages, uint8_t want, const char *what)
{
	uint8_t *states = xmalloc(npages);

	snap(h, m, addr, npages, states);
	expect_state(states, 0, npages, want, what);
	free(states);
}

static void require_pagemap_scan(void)
{
	if (!kfeatures()->pagemap_scan)
		cr_skip_test("no PAGEMAP_SCAN on /proc/PID/pagemap: the zero "
			     "page cannot be told (Linux 6.7 or later)");
}

/* Resident pages of [p, p + npages pages), by mincore. */
static size_t resident(const void *p, size_t npages)
{
	unsigned char *vec = xmalloc(npages);
	size_t n = 0;

	cr_assert_eq(mincore((void *)p, npages * page_size(), vec), 0);
	for (size_t i = 0; i < npages; i++)
		n += vec[i] & 1;
	free(vec);
	return n;
}

static void touch_read(const uint8_t *p, size_t npages)
{
	unsigned sum = 0;

	for (size_t i = 0; i < npages; i++)
		sum += ((volatile const uint8_t *)p)[i * page_size()];
	cr_assert_eq(sum, 0);
}

static void touch_write(uint8_t *p, size_t npages, uint8_t v)
{
	for (size_t i = 0; i < npages; i++)
		memset(p + i * page_size(), v + (uint8_t)i, page_size());
}

Test(snapshot, fresh_mapped_pages_are_none_and_stay_unfaulted)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 16;
	uint8_t *p = map_rw(n);

	expect_all(f.h, f.m, p, n, HMMU_PAGE_NONE, "fresh pages");
	expect_all(f.h, f.m, p, n, HMMU_PAGE_NONE, "fresh pages, again");
	cr_expect_eq(resident(p, n), 0, "the snapshot made no page resident");
	cr_expect_eq(stats_of(f.h).device_pages, 0);
	cr_expect_eq(stats_of(f.h).device_faults, 0);
	fixture_close(&f);
}

/*
 * What a CPU read of an untouched page leaves in the page table here: the
 * shared zero page on most kernels, a fresh page (writable, so WRITE) where
 * the kernel never maps the zero page (pvm_no_zero_page=1).
 */
static int zero_page_on_read(void)
{
	require_pagemap_scan();
	return kfeatures()->zero_page_on_read;
}

Test(snapshot, cpu_read_of_untouched_page_is_zero_page)
{
	struct fixture f;
	const size_t n = 8;
	uint8_t *p;

	if (!zero_page_on_read())
		cr_skip_test("this kernel never maps the shared zero page on a "
			     "read fault (booted with pvm_no_zero_page=1?)");
	f = fixture_open("dmirror0");
	p = map_rw(n);
	touch_read(p, n);
	expect_all(f.h, f.m, p, n, HMMU_PAGE_ZERO, "CPU-read untouched pages");
	fixture_close(&f);
}

Test(snapshot, cpu_written_pages_are_write)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	uint8_t *p = map_rw(n);

	touch_write(p, n, 1);
	expect_all(f.h, f.m, p, n, HMMU_PAGE_WRITE, "CPU-written pages");
	fixture_close(&f);
}

Test(snapshot, device_mirrored_pages_are_read_until_the_cpu_writes)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	uint8_t *p = map_rw(n), *states = xmalloc(n);

	touch_write(p, n, 2);
	device_touch(f.m, p, n);
	/* Write-protected so that the CPU's next write reaches the daemon. */
	expect_all(f.h, f.m, p, n, HMMU_PAGE_READ, "device-mirrored pages");

	p[3 * page_size()] = 0x77;
	snap(f.h, f.m, p, n, states);
	expect_state(states, 3, 1, HMMU_PAGE_WRITE,
		     "the page the CPU wrote after mirroring");
	expect_state(states, 0, 3, HMMU_PAGE_READ, "still mirrored");
	expect_state(states, 4, n - 4, HMMU_PAGE_READ, "still mirrored");

	/* Mirrored again: protected again. */
	device_touch(f.m, p, n);
	expect_all(f.h, f.m, p, n, HMMU_PAGE_READ, "mirrored again");
	free(states);
	fixture_close(&f);
}

Test(snapshot, pages_are_write_again_after_last_unregister)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b;
	const size_t n = 8;
	uint8_t *p = map_rw(n);

	touch_write(p, n, 3);
	device_touch(f.m, p, n);
	expect_all(f.h, f.m, p, n, HMMU_PAGE_READ, "mirrored pages");
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	cr_assert_eq(stats_of(f.h).my_state, 0, "the last mirror is gone");

	/* A fresh mirror, to look: the old protection must be gone. */
	b = mirror_registered(f.h, "dmirror1");
	expect_all(f.h, b, p, n, HMMU_PAGE_WRITE,
		   "pages after the last unregistration");
	/* And they really are writable: no fault reaches the daemon. */
	touch_write(p, n, 4);
	cr_expect_eq(stats_of(f.h).cpu_faults, 0);
	hmmu_mirror_destroy(b);
	fixture_close(&f);
}

Test(snapshot, prot_none_pages_are_error)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *p = map_rw(n), *states = xmalloc(n);

	touch_write(p, n, 5);
	cr_assert_eq(mprotect(p + page_size(), 2 * page_size(), PROT_NONE), 0);
	snap(f.h, f.m, p, n, states);
	expect_state(states, 0, 1, HMMU_PAGE_WRITE, "before the PROT_NONE pages");
	expect_state(states, 1, 2, HMMU_PAGE_ERROR, "PROT_NONE pages");
	expect_state(states, 3, 1, HMMU_PAGE_WRITE, "after the PROT_NONE pages");
	/* Untouched PROT_NONE pages too. */
	{
		uint8_t *q = mmap(NULL, n * page_size(), PROT_NONE,
				  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		cr_assert_neq(q, MAP_FAILED);
		expect_all(f.h, f.m, q, n, HMMU_PAGE_ERROR,
			   "fresh PROT_NONE pages");
	}
	free(states);
	fixture_close(&f);
}

Test(snapshot, unmapped_pages_are_error)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 8;
	uint8_t *p = map_rw(n), *states = xmalloc(n);

	touch_write(p, n, 6);
	cr_assert_eq(munmap(p + 2 * page_size(), 3 * page_size()), 0);
	snap(f.h, f.m, p, n, states);
	expect_state(states, 0, 2, HMMU_PAGE_WRITE, "mapped pages");
	expect_state(states, 2, 3, HMMU_PAGE_ERROR, "the hole");
	expect_state(states, 5, 3, HMMU_PAGE_WRITE, "mapped pages");
	expect_all(f.h, f.m, p + 2 * page_size(), 3, HMMU_PAGE_ERROR,
		   "a wholly unmapped range");
	free(states);
	fixture_close(&f);
}

Test(snapshot, cow_pages_after_fork_are_read_in_parent)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 4;
	uint8_t *p = map_rw(n);
	int go[2], ready[2], status;
	char c;
	pid_t pid;

	/* Never mirrored: only the fork makes them read-only. */
	touch_write(p, n, 7);
	expect_all(f.h, f.m, p, n, HMMU_PAGE_WRITE, "before fork");
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* If the parent fails and goes, we get EOF and go too. */
		close(go[1]);
		close(ready[0]);
		(void)!write(ready[1], "r", 1);
		(void)!read(go[0], &c, 1);
		_exit(p[0] == 7 ? 0 : 1);
	}
	close(go[0]);
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1);
	expect_all(f.h, f.m, p, n, HMMU_PAGE_READ,
		   "shared copy-on-write pages");

	/* The parent's write breaks COW on that page only. */
	p[page_size()] = 0x42;
	{
		uint8_t states[4];

		snap(f.h, f.m, p, n, states);
		expect_state(states, 1, 1, HMMU_PAGE_WRITE, "page the parent wrote");
		expect_state(states, 0, 1, HMMU_PAGE_READ, "still shared");
		expect_state(states, 2, 2, HMMU_PAGE_READ, "still shared");
	}
	(void)!write(go[1], "g", 1);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fixture_close(&f);
}

/* A HUGE_SIZE-aligned THP region of @len bytes filled by the CPU, or skip. */
static uint8_t *map_thp_written(size_t len)
{
	uint8_t *p = map_thp(len);

	memset(p, 0x3c, len);
	require_huge_pages(p);
	return p;
}

static void expect_huge(const uint8_t *states, size_t n, uint8_t base,
			const char *what)
{
	for (size_t i = 0; i < n; i++) {
		if (!(states[i] & HMMU_PAGE_HUGE) ||
		    (states[i] & ~HMMU_PAGE_HUGE) != base)
			cr_assert_fail("%s: page %zu is %#x (%s), want %s|HUGE",
				       what, i, states[i], state_name(states[i]),
				       state_name(base));
	}
}

Test(snapshot, thp_pages_are_huge_with_read_or_write)
{
	const size_t len = 2 * HUGE_SIZE, n = len / page_size();
	uint8_t *p = map_thp_written(len);
	struct fixture f = fixture_open("dmirror0");
	uint8_t *states = xmalloc(n);

	snap(f.h, f.m, p, n, states);
	expect_huge(states, n, HMMU_PAGE_WRITE, "CPU-written THP");
	device_touch(f.m, p, n);
	snap(f.h, f.m, p, n, states);
	expect_huge(states, n, HMMU_PAGE_READ, "device-mirrored THP");
	free(states);
	fixture_close(&f);
}

/* Every state in one call, across VMAs and holes. */
Test(snapshot, mixed_range_reports_each_page)
{
	struct fixture f = fixture_open("dmirror0");
	uint8_t *p = map_rw(5), states[5];

	/* 0: untouched, 1: written, 2: mirrored, 3: PROT_NONE, 4: unmapped */
	touch_write(p + page_size(), 2, 8);
	cr_assert_eq(mprotect(p + 3 * page_size(), page_size(), PROT_NONE), 0);
	cr_assert_eq(munmap(p + 4 * page_size(), page_size()), 0);
	device_touch(f.m, p + 2 * page_size(), 1);
	snap(f.h, f.m, p, 5, states);
	expect_state(states, 0, 1, HMMU_PAGE_NONE, "untouched");
	expect_state(states, 1, 1, HMMU_PAGE_WRITE, "CPU-written");
	expect_state(states, 2, 1, HMMU_PAGE_READ, "device-mirrored");
	expect_state(states, 3, 1, HMMU_PAGE_ERROR, "PROT_NONE");
	expect_state(states, 4, 1, HMMU_PAGE_ERROR, "unmapped");
	fixture_close(&f);
}

/* Many alternating runs, more than one batch of the daemon's page walks. */
Test(snapshot, large_range_of_alternating_zero_and_written_pages)
{
	const size_t n = 1100;
	struct fixture f;
	uint8_t *p, *states = xmalloc(n);
	uint8_t read_state = zero_page_on_read() ? HMMU_PAGE_ZERO : HMMU_PAGE_WRITE;

	f = fixture_open("dmirror0");
	p = map_rw(n);
	for (size_t i = 0; i < n; i++) {
		if (i % 2)
			p[i * page_size()] = 1;
		else
			touch_read(p + i * page_size(), 1);
	}
	snap(f.h, f.m, p, n, states);
	for (size_t i = 0; i < n; i++)
		expect_state(states, i, 1,
			     i % 2 ? HMMU_PAGE_WRITE : read_state,
			     "alternating pages");
	free(states);
	fixture_close(&f);
}

/*
 * Past the top of user space there is no page table at all: those pages
 * are ERROR, like any unmapped page, not a failed snapshot (it once said
 * -ESRCH, as if the process had died).
 */
Test(snapshot, pages_at_and_past_the_top_of_user_space_are_error)
{
	const size_t n = 16;
	uint64_t top = 1ull << 47; /* x86-64 and arm64 with 48-bit VAs */
	struct fixture f = fixture_open("dmirror0");
	uint8_t states[16];

	snap(f.h, f.m, (void *)(uintptr_t)(top - 8 * page_size()), n, states);
	expect_state(states, 0, n, HMMU_PAGE_ERROR, "at the top of user space");
	fixture_close(&f);
}
