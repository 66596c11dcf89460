/* SPDX-License-Identifier: MIT */
/*
 * accel_list: an accelerator job over a linked list. The point of shared
 * virtual memory: the device follows the CPU's own pointers. The program
 * builds a list with malloc() and hands the accelerator the address of its
 * first node; a HMMU_JOB_LIST_SUM job walks it through the device's MMU,
 * faulting in each page it does not hold yet, and returns the sum of the
 * values. The CPU then changes a value and unlinks a node, and the next
 * walk sees the list as it is now.
 *
 * It uses the first device of model "accel" (hmmud's default devices
 * include one, acc0).
 *
 * Build:  make accel_list         (pkg-config --cflags --libs hmmu)
 * Run:    ./accel_list            (hmmud at $HMMU_SOCKET, else
 *                                  /run/hmmu/hmmud.sock)
 *
 * Prints what it checks; exits 1 on any failure or mismatch.
 */
#include <hmmu/hmmu.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NODES 1000

/* The job is told where a node keeps its pointer and its value. */
struct node {
	char name[24];
	struct node *next;
	uint64_t value;
};

static int failed;

static void check(int err, const char *what)
{
	const char *detail;

	if (err >= 0)
		return;
	detail = hmmu_error_detail();
	fprintf(stderr, "accel_list: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	exit(1);
}

/* The name of the first device of @model, into @name. */
static void find_device(struct hmmu *h, const char *model, char *name)
{
	struct hmmu_device_info info;
	int n = hmmu_device_count(h);

	check(n, "device count");
	for (int i = 0; i < n; i++) {
		check(hmmu_device_info(h, (unsigned)i, &info), "device info");
		if (!strcmp(info.model, model)) {
			strcpy(name, info.name);
			return;
		}
	}
	fprintf(stderr, "accel_list: hmmud offers no device of model %s\n",
		model);
	check(-ENODEV, "find device");
}

/* Sums the list at @head on the device; checks the result is @want. */
static void walk(struct hmmu_mirror *m, struct node *head, uint64_t want,
		 const char *what)
{
	struct hmmu_job job = {
		.kind = HMMU_JOB_LIST_SUM,
		.src = (uintptr_t)head,
		.len = NODES + 1, /* a longer list is a cycle: -ELOOP */
		.next_offset = offsetof(struct node, next),
		.value_offset = offsetof(struct node, value),
	};

	check(hmmu_job_run(m, &job), "list walk");
	printf("  %-36s sum %-12" PRIu64 " want %-12" PRIu64
	       " (%" PRIu64 " device faults) %s\n",
	       what, job.result, want, job.faults,
	       job.result == want ? "ok" : "FAIL");
	if (job.result != want)
		failed = 1;
}

int main(void)
{
	struct node *head = NULL, *n, *second;
	struct hmmu_mirror *m;
	char device[32];
	uint64_t sum = 0;
	struct hmmu *h;

	check(hmmu_connect(NULL, &h), "connect");
	find_device(h, "accel", device);
	check(hmmu_mirror_create(h, device, &m), "mirror create");
	check(hmmu_mirror_register(m), "mirror register");

	/* An ordinary list on the heap: the device reads it where it is. */
	for (int i = 1; i <= NODES; i++) {
		n = malloc(sizeof(*n));
		if (!n) {
			perror("accel_list: malloc");
			return 1;
		}
		snprintf(n->name, sizeof(n->name), "node %d", i);
		n->value = (uint64_t)i * 3;
		n->next = head;
		head = n;
		sum += n->value;
	}

	printf("%s walks a %d-node list built with malloc:\n", device, NODES);
	walk(m, head, sum, "first walk (cold)");
	/*
	 * Warm: the device holds the pages, save those the CPU wrote since
	 * (printf's buffer may share a heap page with the nodes).
	 */
	walk(m, head, sum, "second walk (warm)");

	/* The CPU changes the list; the device must not see stale pages. */
	head->value += 1000;
	second = head->next;
	head->next = second->next;
	sum += 1000 - second->value;
	printf("the CPU adds 1000 to the first value and unlinks the second node:\n");
	walk(m, head, sum, "walk after the CPU's writes");

	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	free(second);
	while (head) {
		n = head->next;
		free(head);
		head = n;
	}
	printf(failed ? "accel_list: FAILED\n" : "accel_list: all checks passed\n");
	return failed;
}
