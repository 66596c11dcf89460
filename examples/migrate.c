/* SPDX-License-Identifier: MIT */
/*
 * migrate: device memory. hmmu_migrate_to_device() moves a buffer's pages
 * into the device's own memory, as the kernel's migrate_vma_*() does for
 * device-private memory: the CPU's copies go away, and a snapshot of the
 * CPU page table shows each page as held by the device. Any CPU access to
 * such a page then faults (a userfaultfd MISSING fault, the emulation of a
 * device-private page's fault), and hmmud brings the page back, with its
 * bytes, before the access completes.
 *
 * Build:  make migrate            (pkg-config --cflags --libs hmmu)
 * Run:    ./migrate               (hmmud at $HMMU_SOCKET, else
 *                                  /run/hmmu/hmmud.sock)
 *
 * Prints what it checks; exits 1 on any failure or mismatch.
 */
#include <hmmu/hmmu.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NPAGES 16

static int failed;

static void check(int err, const char *what)
{
	const char *detail;

	if (err >= 0)
		return;
	detail = hmmu_error_detail();
	fprintf(stderr, "migrate: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	exit(1);
}

static void expect(int ok, const char *what)
{
	printf("  %-60s %s\n", what, ok ? "ok" : "FAIL");
	if (!ok)
		failed = 1;
}

/* How many of the NPAGES pages at buf the snapshot shows in @state. */
static int pages_in_state(struct hmmu_mirror *m, void *buf, uint8_t state)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)buf, .npages = NPAGES };
	uint8_t states[NPAGES];
	int n = 0;

	check(hmmu_snapshot(m, &c, states), "snapshot");
	for (int i = 0; i < NPAGES; i++)
		n += states[i] == state;
	return n;
}

static struct hmmu_stats stats(struct hmmu *h)
{
	struct hmmu_stats st;

	check(hmmu_stats(h, &st, sizeof(st)), "stats");
	return st;
}

/* The byte the CPU wrote at offset @i of the buffer. */
static unsigned char pattern(size_t i, size_t page)
{
	return (unsigned char)(7 * (i / page) + i % 253 + 1);
}

int main(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = NPAGES * page;
	struct hmmu_stats before, after;
	struct hmmu_mirror *m;
	struct hmmu_cmd c;
	unsigned char *buf;
	size_t bad = 0;
	struct hmmu *h;

	/* Only private anonymous memory migrates (docs/semantics.md). */
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		perror("migrate: mmap");
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern(i, page);

	check(hmmu_connect(NULL, &h), "connect");
	check(hmmu_mirror_create(h, "dmirror0", &m), "mirror create");
	check(hmmu_mirror_register(m), "mirror register");

	printf("migrating %d pages to dmirror0's memory:\n", NPAGES);
	before = stats(h);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)buf, .npages = NPAGES };
	check(hmmu_migrate_to_device(m, &c), "migrate to device");
	expect(c.cpages == NPAGES, "every page migrated (cpages)");
	expect(pages_in_state(m, buf, HMMU_PAGE_DEV_LOCAL) == NPAGES,
	       "the snapshot shows every page in device memory");
	after = stats(h);
	printf("  (pages in device memory: %" PRIu64 " -> %" PRIu64 ")\n",
	       before.device_mem_pages, after.device_mem_pages);

	printf("the CPU reads the buffer, which faults each page back:\n");
	before = stats(h);
	for (size_t i = 0; i < len; i++)
		bad += buf[i] != pattern(i, page);
	after = stats(h);
	expect(bad == 0, "every byte came back as the CPU wrote it");
	expect(after.migrated_to_system - before.migrated_to_system >= NPAGES,
	       "hmmud migrated every page back to system memory");
	printf("  (CPU faults served: %" PRIu64 ")\n",
	       after.cpu_faults - before.cpu_faults);
	expect(pages_in_state(m, buf, HMMU_PAGE_DEV_LOCAL) == 0,
	       "the snapshot shows no page in device memory any more");

	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(buf, len);
	printf(failed ? "migrate: FAILED\n" : "migrate: all checks passed\n");
	return failed;
}
