/* SPDX-License-Identifier: MIT */
/*
 * cpu_write: coherence. The device reads a buffer and keeps copies of its
 * pages in its page table; then the CPU writes one page. Before that write
 * completes, hmmud learns of it (a userfaultfd write-protect fault) and
 * drops the device's copy of that page, as the kernel's mmu_notifier
 * invalidation would. The next device read faults that page in again and
 * sees the new bytes; the other pages are still held and take no fault.
 *
 * Build:  make cpu_write          (pkg-config --cflags --libs hmmu)
 * Run:    ./cpu_write             (hmmud at $HMMU_SOCKET, else
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

#define NPAGES 8
#define WRITTEN_PAGE 3

static int failed;

static void check(int err, const char *what)
{
	const char *detail;

	if (err >= 0)
		return;
	detail = hmmu_error_detail();
	fprintf(stderr, "cpu_write: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	exit(1);
}

static void expect(int ok, const char *what)
{
	printf("  %-58s %s\n", what, ok ? "ok" : "FAIL");
	if (!ok)
		failed = 1;
}

/* The device reads the whole buffer into out; returns the faults it took. */
static uint64_t device_read(struct hmmu_mirror *m, void *buf, void *out)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)buf, .npages = NPAGES };

	check(hmmu_device_read(m, &c, out), "device read");
	if (c.cpages != NPAGES) {
		fprintf(stderr, "cpu_write: FAIL: %" PRIu64 " pages read\n",
			c.cpages);
		exit(1);
	}
	return c.faults;
}

static struct hmmu_stats stats(struct hmmu *h)
{
	struct hmmu_stats st;

	check(hmmu_stats(h, &st, sizeof(st)), "stats");
	return st;
}

int main(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = NPAGES * page;
	struct hmmu_stats before, after;
	struct hmmu_mirror *m;
	unsigned char *buf, *out;
	struct hmmu *h;
	uint64_t faults;

	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	out = malloc(len);
	if (buf == MAP_FAILED || !out) {
		perror("cpu_write: memory");
		return 1;
	}
	memset(buf, 'A', len);

	check(hmmu_connect(NULL, &h), "connect");
	check(hmmu_mirror_create(h, "dmirror0", &m), "mirror create");
	check(hmmu_mirror_register(m), "mirror register");

	printf("the device reads %d pages of 'A':\n", NPAGES);
	faults = device_read(m, buf, out);
	expect(out[0] == 'A' && !memcmp(out, buf, len), "the device sees 'A' everywhere");
	printf("  (%" PRIu64 " device fault(s): the cold range)\n", faults);
	faults = device_read(m, buf, out);
	expect(faults == 0, "read again: no fault, the device holds the pages");

	printf("the CPU writes 'B' over page %d:\n", WRITTEN_PAGE);
	before = stats(h);
	memset(buf + WRITTEN_PAGE * page, 'B', page);
	after = stats(h);
	printf("  (invalidations %" PRIu64 " -> %" PRIu64
	       ", pages the device holds %" PRIu64 " -> %" PRIu64 ")\n",
	       before.invalidations, after.invalidations,
	       before.device_pages, after.device_pages);
	expect(after.invalidations > before.invalidations,
	       "hmmud invalidated the device's copy before the write");

	printf("the device reads again:\n");
	memset(out, 0, len);
	faults = device_read(m, buf, out);
	expect(faults == 1, "one fault: only the written page came back in");
	expect(!memcmp(out, buf, len) && out[WRITTEN_PAGE * page] == 'B' &&
		       out[(WRITTEN_PAGE + 1) * page] == 'A',
	       "the device sees the new 'B's, and the 'A's around them");

	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	free(out);
	munmap(buf, len);
	printf(failed ? "cpu_write: FAILED\n" : "cpu_write: all checks passed\n");
	return failed;
}
