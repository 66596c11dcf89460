/* SPDX-License-Identifier: MIT */
/*
 * hmmu-demo: a client's tour of hmmu. Mirrors this process on two devices,
 * lets them read its memory, writes from the CPU and shows that the devices
 * see the new data, then shows the daemon's counters along the way.
 *
 * usage: hmmu-demo [SOCKET]   (default: $HMMU_SOCKET, else the system one)
 *        hmmu-demo --help | --version
 */
#include <hmmu/hmmu.h>

#include "hmmu_build_info.h"

#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 256

/*
 * noreturn lets the compiler see that a mirror handle is never used after
 * a failed create/register chain: clang's -Wsometimes-uninitialized flags
 * main()'s "if (a || b || ...) die()" otherwise.
 */
static void __attribute__((noreturn)) die(const char *what, int err)
{
	const char *detail = hmmu_error_detail();

	fprintf(stderr, "hmmu-demo: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	exit(1);
}

static void show_stats(struct hmmu *h, const char *when)
{
	struct hmmu_stats st;
	int err = hmmu_stats(h, &st, sizeof(st));

	if (err < 0)
		die("stats", err);
	printf("  [%s] processes %" PRIu64 ", mirrors %" PRIu64
	       " (mine %u), device pages %" PRIu64 ", device faults %" PRIu64
	       ", cpu write faults %" PRIu64 ", invalidations %" PRIu64 "\n",
	       when, st.processes, st.mirrors, st.my_mirrors, st.device_pages,
	       st.device_faults, st.cpu_faults, st.invalidations);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static uint64_t sum64(const void *buf, size_t len)
{
	const uint64_t *v = buf;
	uint64_t s = 0;

	for (size_t i = 0; i < len / sizeof(*v); i++)
		s += v[i];
	return s;
}

/* The device reads the whole buffer; returns microseconds taken. */
static double device_read(struct hmmu_mirror *m, const char *name, void *mem,
			  void *out, size_t len, uint64_t expect)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)mem,
			      .npages = len / (size_t)sysconf(_SC_PAGESIZE) };
	double t = now_us();
	int err = hmmu_device_read(m, &c, out);

	t = now_us() - t;
	if (err)
		die("device read", err);
	printf("  %s read %" PRIu64 " pages (%" PRIu64
	       " fault%s) in %.0f us: sum %" PRIu64 " %s\n",
	       name, c.cpages, c.faults, c.faults == 1 ? "" : "s", t,
	       sum64(out, len), sum64(out, len) == expect ? "(correct)" : "(WRONG)");
	if (sum64(out, len) != expect)
		exit(1);
	return t;
}

struct node {
	struct node *next;
	uint64_t value;
};

static void job(struct hmmu_mirror *m, struct hmmu_job *j, const char *what)
{
	int err = hmmu_job_run(m, j);

	if (err)
		die(what, err);
	printf("  %-34s result %-12" PRIu64 " %4" PRIu64
	       " device faults, %7.0f us on the device\n",
	       what, j->result, j->faults, j->elapsed_ns / 1e3);
}

/*
 * The accelerator computes over this process's memory, following its
 * pointers: a linked list built with malloc, walked by the device.
 */
static void run_accelerator(struct hmmu *h, uint64_t *mem, size_t len,
			    uint64_t expect)
{
	struct hmmu_mirror *acc;
	struct node *head = NULL;
	uint64_t list_sum = 0;
	struct hmmu_job j;
	int err;

	if ((err = hmmu_mirror_create(h, "acc0", &acc)) ||
	    (err = hmmu_mirror_register(acc)))
		die("accelerator mirror", err);
	for (int i = 1; i <= 1000; i++) {
		struct node *n = malloc(sizeof(*n));

		n->value = (uint64_t)i * i;
		n->next = head;
		head = n;
		list_sum += n->value;
	}
	printf("\nThe accelerator acc0 runs jobs over this process's memory:\n");
	j = (struct hmmu_job){ .kind = HMMU_JOB_SUM64, .src = (uintptr_t)mem,
			       .len = len / 8 };
	job(acc, &j, "sum64 of the buffer (cold)");
	if (j.result != expect)
		die("sum64 gave a wrong result", -EIO);
	job(acc, &j, "sum64 of the buffer (warm)");
	j = (struct hmmu_job){ .kind = HMMU_JOB_LIST_SUM, .src = (uintptr_t)head,
			       .len = 1000000,
			       .next_offset = offsetof(struct node, next),
			       .value_offset = offsetof(struct node, value) };
	job(acc, &j, "walk of a 1000-node malloc list");
	if (j.result != list_sum)
		die("list walk gave a wrong result", -EIO);
	head->next->value += 1;
	job(acc, &j, "walk again after the CPU wrote it");
	if (j.result != list_sum + 1)
		die("list walk missed the CPU's write", -EIO);
	j = (struct hmmu_job){ .kind = HMMU_JOB_FILL, .dst = (uintptr_t)mem,
			       .len = len, .value = 7 };
	job(acc, &j, "fill of the buffer with 7s");
	printf("  the CPU reads mem[0] = %" PRIu64 ", mem[last] = %" PRIu64 "\n",
	       mem[0], mem[len / 8 - 1]);
	if (mem[0] != 7 || mem[len / 8 - 1] != 7)
		die("the CPU does not see the device's writes", -EIO);
	show_stats(h, "after jobs");
	hmmu_mirror_destroy(acc);
	while (head) {
		struct node *next = head->next;

		free(head);
		head = next;
	}
}

static int usage(FILE *f, int status)
{
	fprintf(f,
		"usage: hmmu-demo [SOCKET]\n"
		"       hmmu-demo --help | --version\n"
		"\n"
		"A client's tour of hmmu: mirrors this process on dmirror0 and\n"
		"dmirror1, lets them read its memory, writes from the CPU and\n"
		"shows that the devices see it, runs jobs on the accelerator\n"
		"acc0, and prints the daemon's counters along the way.\n"
		"\n"
		"  SOCKET     hmmud's socket (default: $HMMU_SOCKET, else\n"
		"             /run/hmmu/hmmud.sock)\n"
		"  --help     print this and exit\n"
		"  --version  print the version and the git commit built\n"
		"\n"
		"Exit status: 0 if every device saw what the CPU wrote, 1 if not\n"
		"or if a call failed (the message says which), 2 for a usage\n"
		"error.\n");
	return status;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	size_t len = NPAGES * (size_t)sysconf(_SC_PAGESIZE);
	struct hmmu_mirror *m0, *m1;
	struct hmmu_device_info info;
	uint64_t *mem, expect = 0;
	struct hmmu *h;
	void *out;
	int c, n, err;

	while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (c) {
		case 'h':
			return usage(stdout, 0);
		case 'V':
			printf("hmmu-demo %s (%s)\n", HMMU_BUILD_VERSION,
			       HMMU_BUILD_COMMIT);
			return 0;
		default:
			return usage(stderr, 2);
		}
	}
	if (argc - optind > 1)
		return usage(stderr, 2);

	err = hmmu_connect(optind < argc ? argv[optind] : NULL, &h);
	if (err)
		die("connect", err);
	n = hmmu_device_count(h);
	if (n < 2)
		die("device count", n < 0 ? n : -ENODEV);
	printf("hmmud offers %d devices:\n", n);
	for (int i = 0; i < n; i++) {
		if ((err = hmmu_device_info(h, (unsigned)i, &info)))
			die("device info", err);
		printf("  %-10s model %-8s page size %u\n", info.name,
		       info.model, info.page_size);
	}

	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	out = malloc(len);
	if (mem == MAP_FAILED || !out)
		die("memory", -ENOMEM);
	for (size_t i = 0; i < len / 8; i++) {
		mem[i] = i;
		expect += i;
	}

	printf("\nMirroring this process (pid %d) on dmirror0 and dmirror1:\n",
	       getpid());
	show_stats(h, "before");
	if ((err = hmmu_mirror_create(h, "dmirror0", &m0)) ||
	    (err = hmmu_mirror_register(m0)) ||
	    (err = hmmu_mirror_create(h, "dmirror1", &m1)) ||
	    (err = hmmu_mirror_register(m1)))
		die("mirror", err);
	show_stats(h, "registered");

	printf("\nDevices read %d pages of client memory:\n", NPAGES);
	device_read(m0, "dmirror0", mem, out, len, expect);
	device_read(m0, "dmirror0", mem, out, len, expect);
	device_read(m1, "dmirror1", mem, out, len, expect);
	show_stats(h, "mirrored");

	printf("\nThe CPU writes one word in each of 16 pages:\n");
	for (int i = 0; i < 16; i++) {
		mem[i * 512] += 1000;
		expect += 1000;
	}
	show_stats(h, "written");
	device_read(m0, "dmirror0", mem, out, len, expect);
	device_read(m1, "dmirror1", mem, out, len, expect);

	run_accelerator(h, mem, len, expect);

	printf("\nUnregistering:\n");
	hmmu_mirror_destroy(m0);
	show_stats(h, "one left");
	hmmu_mirror_destroy(m1);
	show_stats(h, "none left");
	hmmu_disconnect(h);
	free(out);
	munmap(mem, len);
	return 0;
}
