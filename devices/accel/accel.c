/* SPDX-License-Identifier: MIT */
/*
 * accel: a fake accelerator. Its compute units run jobs over the client's
 * virtual addresses and touch memory only through the device MMU the core
 * keeps for each mirror (hmmu/driver.h's hmmu_mmu_*()): loads go through
 * the device page table and take a device fault on every page it does not
 * hold; stores are DMA into system memory.
 * Pointers in client memory (a linked list built with malloc) are followed
 * as the client wrote them: the point of shared virtual memory.
 *
 * A job is cut into one slice per compute unit (a list walk is one slice);
 * the compute units are the device's compute threads, and the request
 * worker that received the job runs the last slice itself, then waits for
 * the others: an unregistration waits for the job, so for them too.
 *
 * Options: cus=N, the number of compute units (default 2, at most 64);
 * prefetch=N, pages a device fault brings in at once (default 16, 64 KiB);
 * faultbuf=N, entries of the replayable fault buffer its compute units
 * post their faults into (default 1024; 0: each unit faults alone);
 * density=P, the buffer's density rule: once P percent of a 2 MiB block
 * is held or faulting, the whole block comes in (default 50; 0: never).
 *
 * Why the core's fault buffer (hmmu_device_set_fault_buffer()) and not one
 * of our own: a batch must be serviced with the core's range fault and its
 * sequence check, under the device MMU's lock, and planned against the
 * device page table the core keeps; a model-side buffer could only call
 * hmmu_mmu_fault() once per run, after a second lookup of each page.
 */
#include <hmmu/driver.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CUS 2u
#define MAX_CUS 64u
#define DEFAULT_PREFETCH 16u
#define MAX_PREFETCH 512u
#define DEFAULT_FAULTBUF 1024u
#define MAX_FAULTBUF 65536u
#define DEFAULT_DENSITY 50u
#define BLOCK_BYTES (64u * 1024u) /* what a compute unit moves at once */
#define MAX_JOB_BYTES (1ull << 36)
#define MAX_LIST_NODES (1ull << 26) /* and the job deadline bounds the walk */

struct accel {
	unsigned ncus;
};

/* One job in flight: its slices report here. */
struct job_run {
	struct hmmu_mirror *m;
	const struct hmmu_job_desc *job;
	pthread_mutex_t lock; /* protects everything below */
	pthread_cond_t done;
	unsigned pending;
	int err;
	uint64_t result;
	uint64_t faults;
};

struct slice {
	struct hmmu_work work; /* first: the core hands us back this pointer */
	struct job_run *run;
	uint64_t begin, end; /* bytes (FILL, COPY) or elements (SUM64) */
};

/*
 * "key=N" with min <= N <= max into *out; 1 if @opt was that key. A bad
 * value is logged here, where the key and its range are known.
 */
static int parse_option_from(struct hmmu_device *dev, const char *opt,
			     const char *key, unsigned min, unsigned max,
			     unsigned *out, int *err)
{
	size_t len = strlen(key);
	unsigned long v;
	char *end;

	if (strncmp(opt, key, len) != 0 || opt[len] != '=')
		return 0;
	errno = 0;
	v = strtoul(opt + len + 1, &end, 10);
	if (errno || *end || end == opt + len + 1 || opt[len + 1] == '-' ||
	    v < min || v > max) {
		hmmu_log(dev, HMMU_LOG_ERROR, "%s: want a whole number from %u "
			 "to %u", opt, min, max);
		*err = -EINVAL;
	}
	*out = (unsigned)v;
	return 1;
}

/* The same, from 1. */
static int parse_option(struct hmmu_device *dev, const char *opt,
			const char *key, unsigned max, unsigned *out, int *err)
{
	return parse_option_from(dev, opt, key, 1, max, out, err);
}

static int accel_create(struct hmmu_device *dev, const char *args)
{
	struct accel *a = calloc(1, sizeof(*a));
	char *copy = strdup(args ? args : ""), *opt, *save = NULL;
	unsigned prefetch = DEFAULT_PREFETCH, faultbuf = DEFAULT_FAULTBUF;
	unsigned density = DEFAULT_DENSITY;
	int err = 0;

	if (!a || !copy) {
		free(a);
		free(copy);
		return -ENOMEM;
	}
	a->ncus = DEFAULT_CUS;
	for (opt = strtok_r(copy, ",", &save); opt && !err;
	     opt = strtok_r(NULL, ",", &save)) {
		if (parse_option(dev, opt, "cus", MAX_CUS, &a->ncus, &err) ||
		    parse_option(dev, opt, "prefetch", MAX_PREFETCH, &prefetch,
				 &err) ||
		    parse_option_from(dev, opt, "faultbuf", 0, MAX_FAULTBUF,
				      &faultbuf, &err) ||
		    parse_option_from(dev, opt, "density", 0, 100, &density,
				      &err))
			continue;
		hmmu_log(dev, HMMU_LOG_ERROR, "unknown option '%s' (model "
			 "accel takes cus=N, prefetch=N, faultbuf=N and "
			 "density=P, besides name=, mem= and node=)", opt);
		err = -EINVAL;
	}
	free(copy);
	if (!err)
		err = hmmu_device_set_prefetch(dev, prefetch);
	if (!err && faultbuf && faultbuf < 256) {
		hmmu_log(dev, HMMU_LOG_ERROR, "faultbuf=%u: want 0 (none) or "
			 "256 to %u entries", faultbuf, MAX_FAULTBUF);
		err = -EINVAL;
	}
	if (!err)
		err = hmmu_device_set_fault_buffer(dev, faultbuf, density);
	/* The core places them on the CPUs next to the device's memory. */
	if (!err)
		err = hmmu_device_threads_start(dev, a->ncus);
	if (err) {
		free(a);
		return err;
	}
	hmmu_device_set_drvdata(dev, a);
	return 0;
}

static void accel_destroy(struct hmmu_device *dev)
{
	free(hmmu_device_get_drvdata(dev));
}

static int run_fill(struct slice *s, char *block, uint64_t *faults)
{
	const struct hmmu_job_desc *job = s->run->job;
	int err = 0, faulted;

	/* dst is 8-byte aligned and slices begin on page boundaries. */
	for (uint64_t i = 0; i < BLOCK_BYTES / 8; i++)
		memcpy(block + i * 8, &job->value, 8);
	for (uint64_t off = s->begin; off < s->end && !err; off += BLOCK_BYTES) {
		uint64_t n = s->end - off < BLOCK_BYTES ? s->end - off : BLOCK_BYTES;

		if ((err = hmmu_should_stop()))
			break;
		faulted = 0;
		err = hmmu_mmu_write(s->run->m, job->dst + off, n, block, &faulted);
		*faults += (uint64_t)faulted;
	}
	return err;
}

static int run_copy(struct slice *s, char *block, uint64_t *faults)
{
	const struct hmmu_job_desc *job = s->run->job;
	int err = 0, faulted;

	for (uint64_t off = s->begin; off < s->end && !err; off += BLOCK_BYTES) {
		uint64_t n = s->end - off < BLOCK_BYTES ? s->end - off : BLOCK_BYTES;

		if ((err = hmmu_should_stop()))
			break;
		err = hmmu_mmu_load(s->run->m, job->src + off, block, n, faults);
		if (err)
			break;
		faulted = 0;
		err = hmmu_mmu_write(s->run->m, job->dst + off, n, block, &faulted);
		*faults += (uint64_t)faulted;
	}
	return err;
}

static int run_sum64(struct slice *s, char *block, uint64_t *faults,
		     uint64_t *sum)
{
	const struct hmmu_job_desc *job = s->run->job;
	const uint64_t per_block = BLOCK_BYTES / 8;
	int err = 0;

	for (uint64_t i = s->begin; i < s->end && !err; i += per_block) {
		uint64_t n = s->end - i < per_block ? s->end - i : per_block;
		const uint64_t *v = (const uint64_t *)block;

		if ((err = hmmu_should_stop()))
			break;
		err = hmmu_mmu_load(s->run->m, job->src + i * 8, block, n * 8,
			       faults);
		for (uint64_t k = 0; !err && k < n; k++)
			*sum += v[k];
	}
	return err;
}

static int run_list_sum(struct slice *s, uint64_t *faults, uint64_t *sum)
{
	const struct hmmu_job_desc *job = s->run->job;
	uint64_t node = job->src, visited = 0;
	int err = 0;

	/* Follow the pointers as the client wrote them. */
	while (node && !err) {
		uint64_t value, next;

		if (visited++ == job->len)
			return hmmu_fail(-ELOOP, "the list at %#llx has more "
					 "than %llu nodes, the job's len: a "
					 "cycle?", (unsigned long long)job->src,
					 (unsigned long long)job->len);
		if ((err = hmmu_should_stop()))
			break;
		err = hmmu_mmu_load(s->run->m, node + job->value_offset, &value,
			       sizeof(value), faults);
		if (!err)
			err = hmmu_mmu_load(s->run->m, node + job->next_offset,
				       &next, sizeof(next), faults);
		if (!err) {
			*sum += value;
			node = next;
		}
	}
	return err;
}

/* On a compute thread, under the job's deadline and cancellation. */
static void slice_run(struct hmmu_work *w)
{
	struct slice *s = (struct slice *)w;
	struct job_run *run = s->run;
	uint64_t faults = 0, sum = 0;
	char *block = hmmu_thread_buffer(0, BLOCK_BYTES);
	int err = -ENOMEM;

	if (block) {
		switch (run->job->kind) {
		case HMMU_JOB_FILL:
			err = run_fill(s, block, &faults);
			break;
		case HMMU_JOB_COPY:
			err = run_copy(s, block, &faults);
			break;
		case HMMU_JOB_SUM64:
			err = run_sum64(s, block, &faults, &sum);
			break;
		default:
			err = run_list_sum(s, &faults, &sum);
			break;
		}
	}

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
	uint64_t ps = hmmu_page_size();

	return addr < HMMU_VA_LIMIT && len <= HMMU_VA_LIMIT - addr &&
	       (addr + len + ps - 1) / ps * ps <= HMMU_VA_LIMIT;
}

static int job_check(const struct hmmu_job_desc *j)
{
	uint64_t bytes = j->kind == HMMU_JOB_SUM64 ? j->len * 8 : j->len;

	if (j->len == 0)
		return hmmu_fail(-EINVAL, "a job's len may not be 0");
	switch (j->kind) {
	case HMMU_JOB_FILL:
		if (j->dst % 8 || j->len % 8)
			return hmmu_fail(-EINVAL, "FILL: dst %#llx and len %llu "
					 "must be multiples of 8",
					 (unsigned long long)j->dst,
					 (unsigned long long)j->len);
		if (j->len > MAX_JOB_BYTES || !range_ok(j->dst, j->len))
			return hmmu_fail(-EINVAL, "FILL: %llu bytes at %#llx "
					 "are more than 2^36 or reach past user "
					 "space", (unsigned long long)j->len,
					 (unsigned long long)j->dst);
		return 0;
	case HMMU_JOB_COPY:
		if (j->len > MAX_JOB_BYTES || !range_ok(j->dst, j->len) ||
		    !range_ok(j->src, j->len))
			return hmmu_fail(-EINVAL, "COPY: %llu bytes are more "
					 "than 2^36, or src or dst reaches past "
					 "user space", (unsigned long long)j->len);
		/* Overlapping copies would depend on the slicing. */
		if (j->src < j->dst + j->len && j->dst < j->src + j->len)
			return hmmu_fail(-EINVAL, "COPY: src %#llx and dst %#llx "
					 "overlap", (unsigned long long)j->src,
					 (unsigned long long)j->dst);
		return 0;
	case HMMU_JOB_SUM64:
		if (j->src % 8)
			return hmmu_fail(-EINVAL, "SUM64: src %#llx is not a "
					 "multiple of 8",
					 (unsigned long long)j->src);
		if (j->len > MAX_JOB_BYTES / 8 || !range_ok(j->src, bytes))
			return hmmu_fail(-EINVAL, "SUM64: %llu elements at "
					 "%#llx are more than 2^33 or reach past "
					 "user space", (unsigned long long)j->len,
					 (unsigned long long)j->src);
		return 0;
	case HMMU_JOB_LIST_SUM:
		if (j->next_offset > hmmu_page_size() ||
		    j->value_offset > hmmu_page_size())
			return hmmu_fail(-EINVAL, "LIST_SUM: next_offset and "
					 "value_offset must be at most the page "
					 "size");
		if (j->len > MAX_LIST_NODES || !range_ok(j->src, 1))
			return hmmu_fail(-EINVAL, "LIST_SUM: len %llu is more "
					 "than 2^26 nodes, or src %#llx is past "
					 "user space", (unsigned long long)j->len,
					 (unsigned long long)j->src);
		return 0;
	default:
		return hmmu_fail(-EINVAL, "device accel runs no job of kind %u",
				 j->kind);
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

static int accel_job(struct hmmu_mirror *m, const struct hmmu_job_desc *job,
		     struct hmmu_job_result *res)
{
	struct hmmu_device *dev = hmmu_mirror_device(m);
	struct accel *a = hmmu_device_get_drvdata(dev);
	struct slice slices[MAX_CUS];
	struct job_run run = { .m = m, .job = job };
	unsigned n;
	int err;

	err = job_check(job);
	if (err)
		return err;
	if (job->kind == HMMU_JOB_LIST_SUM) {
		slices[0].begin = 0;
		slices[0].end = 0;
		n = 1;
	} else if (job->kind == HMMU_JOB_SUM64) {
		n = cut(job->len, 0, a->ncus, 1, slices);
	} else {
		n = cut(job->len, job->dst, a->ncus, hmmu_page_size(), slices);
	}

	pthread_mutex_init(&run.lock, NULL);
	pthread_cond_init(&run.done, NULL);
	run.pending = n;
	for (unsigned i = 0; i < n; i++) {
		slices[i].run = &run;
		slices[i].work.fn = slice_run;
	}
	/*
	 * The compute units take all slices but the last, which this thread
	 * runs itself while it would wait anyway: a job of one slice (a short
	 * load) then costs no hand-off to a compute thread and back.
	 */
	for (unsigned i = 0; i + 1 < n; i++)
		hmmu_device_queue_work(dev, &slices[i].work);
	slice_run(&slices[n - 1].work);
	pthread_mutex_lock(&run.lock);
	while (run.pending)
		pthread_cond_wait(&run.done, &run.lock);
	pthread_mutex_unlock(&run.lock);
	pthread_cond_destroy(&run.done);
	pthread_mutex_destroy(&run.lock);

	res->result = run.result;
	res->faults = run.faults;
	hmmu_count_device_faults(m, run.faults);
	return run.err;
}

static const struct hmmu_device_ops accel_ops = {
	.create = accel_create,
	.destroy = accel_destroy,
	.job = accel_job,
};

const struct hmmu_driver_module hmmu_model_accel = {
	.api_version = HMMU_DRIVER_API_VERSION,
	.struct_size = sizeof(struct hmmu_driver_module),
	.model = "accel",
	.ops = &accel_ops,
};
