/* SPDX-License-Identifier: MIT */
/*
 * accel: a fake accelerator. Its compute units run jobs over the client's
 * virtual addresses and touch memory only through the device MMU
 * (devices/mmu.c): loads go through the device page table and take a device
 * fault on every page it does not hold; stores are DMA into system memory.
 * Pointers in client memory (a linked list built with malloc) are followed
 * as the client wrote them: the point of shared virtual memory.
 *
 * A job is cut into one slice per compute unit (a list walk is one slice);
 * the compute units are a thread pool of the device. The worker thread that
 * received the job waits for its slices, with the mirror's state_lock
 * read-held, so an unregistration waits for running jobs.
 *
 * Options: cus=N, the number of compute units (default 2, at most 64);
 * prefetch=N, pages a device fault brings in at once (default 16, 64 KiB).
 */
#include "../../core/device.h"
#include "../../common/page.h"
#include "../../core/mmu.h"
#include "../../core/accounts.h"
#include "../../core/command.h"
#include "../../lib/pagetable.h"
#include "../../core/mirror.h"
#include "../../lib/placement.h"
#include "../../lib/workers.h"

#include <errno.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CUS 2u
#define MAX_CUS 64u
#define DEFAULT_PREFETCH 16u
#define MAX_PREFETCH 512u
#define BLOCK_BYTES (64u * 1024u) /* what a compute unit moves at once */
#define MAX_JOB_BYTES (1ull << 36)
#define MAX_LIST_NODES (1ull << 26) /* and the job deadline bounds the walk */

struct accel {
	struct workers *cus;
	unsigned ncus;
	unsigned prefetch;
};

/* One job in flight: its slices report here. */
struct job_run {
	struct dev_mmu *mmu;
	const struct hmmu_wire_job *job;
	struct command_ctx ctx; /* the worker's: deadline and cancellation */
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t done;
	unsigned pending;
	int err;
	uint64_t result;
	uint64_t faults;
};

struct slice {
	struct work work; /* first: workers hand us back this pointer */
	struct job_run *run;
	uint64_t begin, end; /* bytes (FILL, COPY) or elements (SUM64) */
};

static struct dev_mmu *mmu_of(struct hmmu_mirror *m)
{
	return m->dev_priv;
}

/* "key=N" with 1 <= N <= max into *out; 1 if @opt was that key. */
static int parse_option(const char *opt, const char *key, unsigned max,
			unsigned *out, int *err)
{
	size_t len = strlen(key);
	unsigned long v;
	char *end;

	if (strncmp(opt, key, len) != 0 || opt[len] != '=')
		return 0;
	v = strtoul(opt + len + 1, &end, 10);
	if (*end || end == opt + len + 1 || v == 0 || v > max)
		*err = -EINVAL;
	*out = (unsigned)v;
	return 1;
}

static int accel_create(struct hmmu_device *dev, const char *args)
{
	struct accel *a = calloc(1, sizeof(*a));
	char *copy = strdup(args ? args : ""), *opt, *save = NULL;
	int err = 0;

	if (!a || !copy) {
		free(a);
		free(copy);
		return -ENOMEM;
	}
	a->ncus = DEFAULT_CUS;
	a->prefetch = DEFAULT_PREFETCH;
	for (opt = strtok_r(copy, ",", &save); opt && !err;
	     opt = strtok_r(NULL, ",", &save))
		if (!parse_option(opt, "cus", MAX_CUS, &a->ncus, &err) &&
		    !parse_option(opt, "prefetch", MAX_PREFETCH, &a->prefetch,
				  &err))
			err = -EINVAL;
	free(copy);
	/* Compute units run on the CPUs next to the device's memory. */
	if (!err)
		err = workers_start(a->ncus, placement_bind_self, dev->near,
				    &a->cus);
	if (err) {
		free(a);
		return err;
	}
	dev->priv = a;
	return 0;
}

static void accel_destroy(struct hmmu_device *dev)
{
	struct accel *a = dev->priv;

	workers_stop(a->cus);
	free(a);
}

static int accel_attach(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	struct accel *a = dev->priv;
	struct dev_mmu *mmu = malloc(sizeof(*mmu));
	int err;

	if (!mmu)
		return -ENOMEM;
	err = mmu_init(mmu, m, a->prefetch);
	if (err) {
		free(mmu);
		return err;
	}
	m->dev_priv = mmu;
	return 0;
}

static void accel_invalidate(struct hmmu_device *dev, struct hmmu_mirror *m,
			     uint64_t start, uint64_t end)
{
	(void)dev;
	mmu_invalidate(mmu_of(m), start, end);
}

static void accel_release(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	/* Jobs hold the state_lock: none runs for a mirror being released. */
	(void)dev;
	(void)m;
}

static void accel_detach(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	(void)dev;
	mmu_fini(mmu_of(m));
	free(m->dev_priv);
	m->dev_priv = NULL;
}

static int run_fill(struct slice *s, char *block, uint64_t *faults)
{
	const struct hmmu_wire_job *job = s->run->job;
	int err = 0, faulted;

	/* dst is 8-byte aligned and slices begin on page boundaries. */
	for (uint64_t i = 0; i < BLOCK_BYTES / 8; i++)
		memcpy(block + i * 8, &job->value, 8);
	for (uint64_t off = s->begin; off < s->end && !err; off += BLOCK_BYTES) {
		uint64_t n = s->end - off < BLOCK_BYTES ? s->end - off : BLOCK_BYTES;

		if ((err = command_check()))
			break;
		faulted = 0;
		err = mmu_write(s->run->mmu, job->dst + off, n, block, &faulted);
		*faults += (uint64_t)faulted;
	}
	return err;
}

static int run_copy(struct slice *s, char *block, uint64_t *faults)
{
	const struct hmmu_wire_job *job = s->run->job;
	int err = 0, faulted;

	for (uint64_t off = s->begin; off < s->end && !err; off += BLOCK_BYTES) {
		uint64_t n = s->end - off < BLOCK_BYTES ? s->end - off : BLOCK_BYTES;

		if ((err = command_check()))
			break;
		err = mmu_load(s->run->mmu, job->src + off, block, n, faults);
		if (err)
			break;
		faulted = 0;
		err = mmu_write(s->run->mmu, job->dst + off, n, block, &faulted);
		*faults += (uint64_t)faulted;
	}
	return err;
}

static int run_sum64(struct slice *s, char *block, uint64_t *faults,
		     uint64_t *sum)
{
	const struct hmmu_wire_job *job = s->run->job;
	const uint64_t per_block = BLOCK_BYTES / 8;
	int err = 0;

	for (uint64_t i = s->begin; i < s->end && !err; i += per_block) {
		uint64_t n = s->end - i < per_block ? s->end - i : per_block;
		const uint64_t *v = (const uint64_t *)block;

		if ((err = command_check()))
			break;
		err = mmu_load(s->run->mmu, job->src + i * 8, block, n * 8,
			       faults);
		for (uint64_t k = 0; !err && k < n; k++)
			*sum += v[k];
	}
	return err;
}

static int run_list_sum(struct slice *s, uint64_t *faults, uint64_t *sum)
{
	const struct hmmu_wire_job *job = s->run->job;
	uint64_t node = job->src, visited = 0;
	int err = 0;

	/* Follow the pointers as the client wrote them. */
	while (node && !err) {
		uint64_t value, next;

		if (visited++ == job->len)
			return -ELOOP;
		if ((err = command_check()))
			break;
		err = mmu_load(s->run->mmu, node + job->value_offset, &value,
			       sizeof(value), faults);
		if (!err)
			err = mmu_load(s->run->mmu, node + job->next_offset,
				       &next, sizeof(next), faults);
		if (!err) {
			*sum += value;
			node = next;
		}
	}
	return err;
}

static void slice_run(struct work *w)
{
	struct slice *s = (struct slice *)w;
	struct job_run *run = s->run;
	uint64_t faults = 0, sum = 0;
	char *block = malloc(BLOCK_BYTES);
	int err = -ENOMEM;

	command_adopt(&run->ctx);
	if (block) {
		switch (run->job->kind) {
		case HMMU_WIRE_JOB_FILL:
			err = run_fill(s, block, &faults);
			break;
		case HMMU_WIRE_JOB_COPY:
			err = run_copy(s, block, &faults);
			break;
		case HMMU_WIRE_JOB_SUM64:
			err = run_sum64(s, block, &faults, &sum);
			break;
		default:
			err = run_list_sum(s, &faults, &sum);
			break;
		}
		free(block);
	}
	command_leave();

	pthread_mutex_lock(&run->lock);
	if (err && !run->err)
		run->err = err;
	run->result += sum;
	run->faults += faults;
	if (--run->pending == 0)
		pthread_cond_signal(&run->done);
	pthread_mutex_unlock(&run->lock);
}

/*
 * [addr, addr + len) lies in user space, page rounding included: no range
 * whose end (or the end of a prefetch window in it) wraps around.
 */
static bool range_ok(uint64_t addr, uint64_t len)
{
	return addr < PT_VA_LIMIT && len <= PT_VA_LIMIT - addr &&
	       page_up(addr + len) <= PT_VA_LIMIT;
}

static int job_check(const struct hmmu_wire_job *j)
{
	uint64_t bytes = j->kind == HMMU_WIRE_JOB_SUM64 ? j->len * 8 : j->len;

	if (j->len == 0)
		return -EINVAL;
	switch (j->kind) {
	case HMMU_WIRE_JOB_FILL:
		if (j->dst % 8 || j->len % 8 || j->len > MAX_JOB_BYTES ||
		    !range_ok(j->dst, j->len))
			return -EINVAL;
		return 0;
	case HMMU_WIRE_JOB_COPY:
		if (j->len > MAX_JOB_BYTES || !range_ok(j->dst, j->len) ||
		    !range_ok(j->src, j->len))
			return -EINVAL;
		/* Overlapping copies would depend on the slicing. */
		if (j->src < j->dst + j->len && j->dst < j->src + j->len)
			return -EINVAL;
		return 0;
	case HMMU_WIRE_JOB_SUM64:
		if (j->src % 8 || j->len > MAX_JOB_BYTES / 8 ||
		    !range_ok(j->src, bytes))
			return -EINVAL;
		return 0;
	case HMMU_WIRE_JOB_LIST_SUM:
		if (j->next_offset > page_size() || j->value_offset > page_size() ||
		    j->len > MAX_LIST_NODES || !range_ok(j->src, 1))
			return -EINVAL;
		return 0;
	default:
		return -EINVAL;
	}
}

/*
 * Cut [0, len) into at most @n slices. For stores, cuts fall on page
 * boundaries of @base, so that no two compute units write one page.
 */
static unsigned cut(uint64_t len, uint64_t base, unsigned n, uint64_t unit,
		    struct slice *slices)
{
	uint64_t per = (len + n - 1) / n, begin = 0;
	unsigned count = 0;

	if (unit > 1)
		per = (per + unit - 1) / unit * unit;
	while (begin < len && count < n) {
		uint64_t end = begin + per;

		if (unit > 1) /* end at a page boundary of base + end */
			end = ((base + end) / unit * unit) - base;
		if (end <= begin || end > len || count == n - 1)
			end = len;
		slices[count].begin = begin;
		slices[count].end = end;
		count++;
		begin = end;
	}
	return count;
}

static int accel_job(struct hmmu_device *dev, struct hmmu_mirror *m,
		     const struct hmmu_wire_job *job,
		     struct hmmu_wire_job_result *res)
{
	struct accel *a = dev->priv;
	struct slice slices[MAX_CUS];
	struct job_run run = {
		.mmu = mmu_of(m),
		.job = job,
		.ctx = *command_current(),
	};
	struct timespec t0, t1;
	unsigned n;
	int err;

	err = job_check(job);
	if (err)
		return err;
	if (job->kind == HMMU_WIRE_JOB_LIST_SUM) {
		slices[0].begin = 0;
		slices[0].end = 0;
		n = 1;
	} else if (job->kind == HMMU_WIRE_JOB_SUM64) {
		n = cut(job->len, 0, a->ncus, 1, slices);
	} else {
		n = cut(job->len, job->dst, a->ncus, page_size(), slices);
	}

	pthread_mutex_init(&run.lock, NULL);
	pthread_cond_init(&run.done, NULL);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	run.pending = n;
	for (unsigned i = 0; i < n; i++) {
		slices[i].run = &run;
		slices[i].work.fn = slice_run;
		workers_queue(a->cus, &slices[i].work);
	}
	pthread_mutex_lock(&run.lock);
	while (run.pending)
		pthread_cond_wait(&run.done, &run.lock);
	pthread_mutex_unlock(&run.lock);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_cond_destroy(&run.done);
	pthread_mutex_destroy(&run.lock);

	res->result = run.result;
	res->faults = run.faults;
	res->elapsed_ns = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000ll +
				     (t1.tv_nsec - t0.tv_nsec));
	account_count(m->acct, device_faults, run.faults);
	return run.err;
}

static uint64_t accel_pages(struct hmmu_device *dev, struct hmmu_mirror *m)
{
	(void)dev;
	return mmu_pages(m->dev_priv);
}

const struct device_ops accel_ops = {
	.model = "accel",
	.create = accel_create,
	.destroy = accel_destroy,
	.attach = accel_attach,
	.invalidate = accel_invalidate,
	.release = accel_release,
	.detach = accel_detach,
	.pages = accel_pages,
	.job = accel_job,
};
