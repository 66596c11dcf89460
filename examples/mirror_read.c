/* SPDX-License-Identifier: MIT */
/*
 * mirror_read: the smallest hmmu client. It connects to hmmud, mirrors its
 * own address space on the device dmirror0, and lets the device read a
 * buffer the CPU wrote: the device sees the CPU's bytes through its own page
 * table, which hmmud filled by faulting the range in.
 *
 * Build:  make mirror_read        (pkg-config --cflags --libs hmmu)
 * Run:    ./mirror_read           (hmmud at $HMMU_SOCKET, else
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

/* Every libhmmu call returns 0 or -errno; hmmu_error_detail() may say more. */
static void check(int err, const char *what)
{
	const char *detail;

	if (err >= 0)
		return;
	detail = hmmu_error_detail();
	fprintf(stderr, "mirror_read: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	exit(1);
}

int main(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = NPAGES * page;
	struct hmmu *h;
	struct hmmu_mirror *m;
	unsigned char *buf, *out;

	/* Memory the CPU writes. Device commands take page-aligned ranges. */
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	out = malloc(len);
	if (buf == MAP_FAILED || !out) {
		perror("mirror_read: memory");
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)(i / page + i % 251);

	/* NULL: $HMMU_SOCKET, else /run/hmmu/hmmud.sock. */
	check(hmmu_connect(NULL, &h), "connect");
	/* A mirror binds a device to this process; registered, it mirrors. */
	check(hmmu_mirror_create(h, "dmirror0", &m), "mirror create");
	check(hmmu_mirror_register(m), "mirror register");

	/* The device reads NPAGES pages at buf into out, through its MMU. */
	struct hmmu_cmd c = { .addr = (uintptr_t)buf, .npages = NPAGES };
	check(hmmu_device_read(m, &c, out), "device read");
	/* c.cpages: pages read; c.faults: device faults taken, as test_hmm counts. */

	printf("dmirror0 read %" PRIu64 " of %d pages in %" PRIu64
	       " device fault(s)\n", c.cpages, NPAGES, c.faults);
	if (c.cpages != NPAGES) {
		fprintf(stderr, "mirror_read: FAIL: %" PRIu64
			" pages read, want %d\n", c.cpages, NPAGES);
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		if (out[i] != buf[i]) {
			fprintf(stderr, "mirror_read: FAIL: byte %zu (page %zu)"
				" is %#x, the CPU wrote %#x\n",
				i, i / page, out[i], buf[i]);
			return 1;
		}
	printf("the device read every byte the CPU wrote: ok\n");

	hmmu_mirror_destroy(m); /* unregisters first */
	hmmu_disconnect(h);
	free(out);
	munmap(buf, len);
	return 0;
}
