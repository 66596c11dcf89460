/* SPDX-License-Identifier: MIT */
/*
 * The classes: hmmu's fault paths, timed through libhmmu against hmmud.
 * Each class creates its own mirrors and memory and destroys them, so each
 * starts with no per-process state in the daemon (its first registration
 * creates it) and leaves none. Warm-up operations (warmup_of()) run first
 * and are not counted: the first device fault of a VMA also registers it
 * with the userfaultfd, which is a cost of the first fault only. Each
 * sample loop calls meter_tick() once a sample is recorded, outside its
 * clock reads (meter.h).
 */
#include "bench.h"
#include "floors.h"
#include "meter.h"

#include <errno.h>
#include <hmmu/hmmu.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static int mirror_on(struct bench *b, const char *device,
		     struct hmmu_mirror **out)
{
	int err = hmmu_mirror_create(b->h, device, out);

	if (err) {
		warnx_("mirror on %s: %s", device, strerror(-err));
		return err;
	}
	err = hmmu_mirror_register(*out);
	if (err) {
		warnx_("register a mirror on %s: %s %s", device, strerror(-err),
		       hmmu_error_detail());
		hmmu_mirror_destroy(*out);
		*out = NULL;
	}
	return err;
}

static struct hmmu_stats stats(struct bench *b)
{
	struct hmmu_stats st;

	if (hmmu_stats(b->h, &st, sizeof(st)) < 0)
		memset(&st, 0, sizeof(st));
	return st;
}

/* The daemon's counters say the path we timed is the path we meant. */
static void expect(const char *cls, const char *what, uint64_t got,
		   uint64_t want)
{
	if (got != want)
		warnx_("%s: %" PRIu64 " %s counted by hmmud, %" PRIu64
		       " expected: the figures may not measure what they say",
		       cls, got, what, want);
}

static int read_pages(struct hmmu_mirror *m, const void *addr, uint64_t n,
		      void *out, struct hmmu_cmd *c)
{
	*c = (struct hmmu_cmd){ .addr = (uint64_t)(uintptr_t)addr, .npages = n };
	return hmmu_device_read(m, c, out);
}

/*
 * device-fault: the device reads one cold page (written by the CPU, so it
 * exists), npages = 1: request to the daemon, device fault (write-protect,
 * process_vm_readv, install), copy to the caller's buffer, reply.
 */
static int device_fault(struct bench *b, struct result *r, uint64_t n)
{
	uint64_t w = warmup_of(n);
	char *p = map_pages(n + w), *out = map_pages(1);
	struct hmmu_mirror *m = NULL;
	struct hmmu_stats st0;
	int err = -ENOMEM;

	if (!p || !out)
		goto out;
	touch_pages(p, n + w);
	touch_pages(out, 1);
	err = mirror_on(b, b->dmirror, &m);
	st0 = stats(b);
	for (uint64_t i = 0; i < n + w && !err; i++) {
		struct hmmu_cmd c;
		uint64_t t0 = now_ns(), t1;

		err = read_pages(m, p + i * b->page, 1, out, &c);
		t1 = now_ns();
		if (!err && (c.faults != 1 || c.cpages != 1)) {
			warnx_("device-fault: a read took %" PRIu64
			       " faults, %" PRIu64 " pages", c.faults, c.cpages);
			err = -EPROTO;
		}
		if (!err && i >= w)
			err = samples_add(&r->s, t1 - t0);
		meter_tick();
	}
	if (!err)
		expect("device-fault", "device faults",
		       stats(b).device_faults - st0.device_faults, n + w);
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, n + w);
	unmap_pages(out, 1);
	return err;
}

/*
 * device-fault-acc: the accelerator loads 8 bytes of one page (a SUM64 job
 * of one element: one compute unit). The device fetches a window of pages
 * per fault (its prefetch), so jobs walk consecutive pages and only those
 * that took a fault (job.faults == 1) are samples; the others hit pages the
 * window brought in. A sample is the job's own elapsed time on the device:
 * no client round trip. The JSON adds the client's view of the same jobs
 * (client_p50_ns), pages_per_fault (the window, as seen), and, from one job
 * over N cold pages with every compute unit, bulk_ns_per_fault.
 *
 * A device with a density rule (accel's density=, 50% by default) fetches
 * a whole 2 MiB block once half of it is held: a different event, not the
 * window fault this class times. So the jobs walk only the first pages of
 * each 2 MiB block, fewer than half of it and a whole number of 16-page
 * windows (240 of 512), and skip the rest. The density rule and the batch
 * are timed end to end by sum_8mib_us: one SUM64 job over 8 MiB of cold
 * pages, every compute unit faulting (best of 3 fresh buffers).
 */
/*
 * One SUM64 over 8 MiB of cold (CPU-written, never device-held) pages, all
 * compute units, timed on the device: the best of 3 fresh buffers, with its
 * faults. Printed, and in the JSON as sum_8mib_us and sum_8mib_faults.
 */
static int sum_8mib(struct bench *b, struct result *r, struct hmmu_mirror *m)
{
	const uint64_t np = (8ull << 20) / b->page;
	uint64_t best = UINT64_MAX, faults = 0;
	int err = 0;

	for (int rep = 0; rep < 3 && !err; rep++) {
		char *v = map_pages(np);
		struct hmmu_job job;

		if (!v)
			return -ENOMEM;
		touch_pages(v, np);
		job = (struct hmmu_job){ .kind = HMMU_JOB_SUM64,
					 .src = (uint64_t)(uintptr_t)v,
					 .len = np * b->page / 8 };
		err = hmmu_job_run(m, &job);
		if (!err && job.elapsed_ns < best) {
			best = job.elapsed_ns;
			faults = job.faults;
		}
		unmap_pages(v, np);
	}
	if (err)
		return err;
	result_extra(r, "sum_8mib_us", (double)best / 1000.0);
	result_extra(r, "sum_8mib_faults", (double)faults);
	warnx_("device-fault-acc: SUM64 over 8 MiB of cold pages: %.0f us, "
	       "%" PRIu64 " device faults (best of 3)", (double)best / 1000.0,
	       faults);
	return 0;
}

static int device_fault_acc(struct bench *b, struct result *r, uint64_t n)
{
	const uint64_t block = 1024, huge = (2ull << 20) / b->page;
	const uint64_t half = (huge / 2 - 1) / 16 * 16;
	const uint64_t walk = half ? half : huge;
	uint64_t w = warmup_of(n), want = n + w;
	uint64_t cap = want * 16 * huge / walk + 2 * huge + 2 * block;
	uint64_t touched = 0, jobs = 0, faults = 0;
	int first = r->s.n == 0;
	char *p = map_pages(cap), *q = first ? map_pages(n) : NULL;
	struct hmmu_mirror *m = NULL;
	struct hmmu_job job;
	int err = -ENOMEM;

	if (!p || (first && !q))
		goto out;
	if (!b->accel[0]) {
		result_skip(r, "the daemon offers no accelerator");
		err = 0;
		goto out;
	}
	err = mirror_on(b, b->accel, &m);
	for (uint64_t i = 0; i < cap && faults < want && !err; i++) {
		uint64_t t0, t1, in_huge = ((uintptr_t)p / b->page + i) % huge;

		/* From the first 2 MiB boundary on, the first pages of each block. */
		if (i < (huge - (uintptr_t)p / b->page % huge) % huge ||
		    in_huge >= walk)
			continue;

		/*
		 * The CPU writes the pages two blocks ahead of the jobs, so that
		 * no prefetch window (at most 512 pages) reaches a page before
		 * it exists, and no CPU write hits a page the device holds.
		 */
		while (touched < cap && touched < i + 2 * block) {
			uint64_t k = cap - touched < block ? cap - touched : block;

			touch_pages(p + touched * b->page, k);
			touched += k;
		}
		job = (struct hmmu_job){ .kind = HMMU_JOB_SUM64,
					 .src = (uint64_t)(uintptr_t)(p + i * b->page),
					 .len = 1 };
		t0 = now_ns();
		err = hmmu_job_run(m, &job);
		t1 = now_ns();
		jobs++;
		if (err || job.faults == 0)
			continue;
		if (job.faults != 1) {
			warnx_("device-fault-acc: a job on one page took %" PRIu64
			       " faults", job.faults);
			err = -EPROTO;
		} else if (++faults > w) {
			err = samples_add(&r->s, job.elapsed_ns);
			if (!err)
				err = samples_add(&r->aux, t1 - t0);
		}
		meter_tick();
	}
	if (!err && faults < want)
		warnx_("device-fault-acc: only %" PRIu64 " device faults in %"
		       PRIu64 " pages (a prefetch window over 16 pages?)",
		       faults, jobs);
	if (!err && r->aux.n) {
		samples_sort(&r->aux);
		result_extra(r, "client_p50_ns",
			     (double)samples_quantile(&r->aux, 0.5));
	}
	if (!err && faults)
		result_extra(r, "pages_per_fault", (double)jobs / (double)faults);
	if (err || !first)
		goto out;
	/* Once: a job over all of q, every compute unit faulting. */
	touch_pages(q, n);
	job = (struct hmmu_job){ .kind = HMMU_JOB_SUM64,
				 .src = (uint64_t)(uintptr_t)q,
				 .len = n * b->page / 8 };
	err = hmmu_job_run(m, &job);
	if (!err && job.faults)
		result_extra(r, "bulk_ns_per_fault",
			     (double)job.elapsed_ns / (double)job.faults);
	if (!err)
		err = sum_8mib(b, r, m);
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, cap);
	unmap_pages(q, n);
	return err;
}

/*
 * device-stream: one read of a large cold range, which the daemon faults
 * in and copies out 1024 pages at a time. A sample is one repetition's
 * time per 4 KiB page; each repetition reads a fresh range.
 * device-stream-zc (@zc): the same into a buffer of hmmu_buffer_create(),
 * which the daemon maps too: one copy instead of two.
 */
static int device_stream(struct bench *b, struct result *r, uint64_t n,
			 int zc)
{
	/* Its size is --stream-mib, its samples --stream-reps. */
	uint64_t len = b->cfg->stream_mib << 20, np = len / b->page;
	uint64_t warm = np < 1024 ? np : 1024;
	char *out = zc ? NULL : map_pages(np), *p;
	struct hmmu_buffer *buf = NULL;
	struct hmmu_mirror *m = NULL;
	struct hmmu_cmd c;
	int err = -ENOMEM;

	(void)n;
	if (zc) {
		void *addr;

		err = hmmu_buffer_create(b->h, len, &addr, &buf);
		if (err == -EOPNOTSUPP || err == -EDQUOT) {
			result_skip(r, "no shared buffer of %" PRIu64 " MiB: %s",
				    b->cfg->stream_mib, strerror(-err));
			err = 0;
			goto out;
		}
		if (err) {
			warnx_("hmmu_buffer_create: %s %s", strerror(-err),
			       hmmu_error_detail());
			goto out;
		}
		out = addr;
		err = -ENOMEM;
	}
	if (!out)
		goto out;
	/* The destination exists: the daemon's writes into it do not fault. */
	memset(out, 1, len);
	err = mirror_on(b, b->dmirror, &m);
	/* Warm-up: the daemon's first chunk allocations. */
	p = err ? NULL : map_pages(warm);
	if (!err && p) {
		touch_pages(p, warm);
		err = read_pages(m, p, warm, out, &c);
		unmap_pages(p, warm);
	}
	for (unsigned rep = 0; rep < b->cfg->stream_reps && !err; rep++) {
		uint64_t t0, t1;

		p = map_pages(np);
		if (!p) {
			err = -ENOMEM;
			break;
		}
		memset(p, (int)rep + 2, len);
		t0 = now_ns();
		err = read_pages(m, p, np, out, &c);
		t1 = now_ns();
		if (!err && c.cpages != np)
			err = -EPROTO;
		if (!err)
			err = samples_add(&r->s, (t1 - t0) / np);
		/* Unmapping drops the device's copy too. */
		unmap_pages(p, np);
		meter_update(); /* a repetition is long: a look each */
	}
	r->bytes = len;
out:
	hmmu_mirror_destroy(m);
	if (buf)
		hmmu_buffer_destroy(buf);
	else
		unmap_pages(out, np);
	return err;
}

/*
 * cpu-write-invalidate: the device holds every page (read, so
 * write-protected); the CPU's first store to each is a write-protect fault
 * that hmmud's event loop serves: invalidate the device copies, un-protect,
 * wake the writer. Timed around the one store.
 */
/*
 * A mirror on b->dmirror in @mode: 0, or -errno (said) with *@out NULL or
 * the mirror to destroy.
 */
static int mirror_in_mode(struct bench *b, enum hmmu_coherence mode,
			  struct hmmu_mirror **out)
{
	int err;

	if (mode == HMMU_COHERENCE_FINE)
		return mirror_on(b, b->dmirror, out);
	err = hmmu_mirror_create(b->h, b->dmirror, out);
	if (!err)
		err = hmmu_mirror_set_coherence(*out, mode);
	if (!err)
		err = hmmu_mirror_register(*out);
	if (err)
		warnx_("register a coarse-grained mirror on %s: %s %s",
		       b->dmirror, strerror(-err), hmmu_error_detail());
	return err;
}

/*
 * Both CPU-write classes: the device reads every page, then the CPU's
 * first store to each is timed. Fine-grained, each is a write-protect
 * fault hmmud serves (one CPU fault a page); coarse, the kernel's alone
 * (none).
 */
static int cpu_first_stores(struct bench *b, struct result *r, uint64_t n,
			    enum hmmu_coherence mode, const char *name)
{
	uint64_t w = warmup_of(n);
	char *p = map_pages(n + w), *out = map_pages(n + w);
	struct hmmu_mirror *m = NULL;
	struct hmmu_stats st0;
	struct hmmu_cmd c;
	int err = -ENOMEM;

	if (!p || !out)
		goto out;
	touch_pages(p, n + w);
	touch_pages(out, n + w);
	err = mirror_in_mode(b, mode, &m);
	if (!err)
		err = read_pages(m, p, n + w, out, &c);
	st0 = stats(b);
	for (uint64_t i = 0; i < n + w && !err; i++) {
		volatile char *a = p + i * b->page;
		uint64_t t0 = now_ns(), t1;

		*a = 7;
		t1 = now_ns();
		if (i >= w)
			err = samples_add(&r->s, t1 - t0);
		meter_tick();
	}
	if (!err)
		expect(name, "CPU faults", stats(b).cpu_faults - st0.cpu_faults,
		       mode == HMMU_COHERENCE_FINE ? n + w : 0);
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, n + w);
	unmap_pages(out, n + w);
	return err;
}

static int cpu_write_invalidate(struct bench *b, struct result *r, uint64_t n)
{
	return cpu_first_stores(b, r, n, HMMU_COHERENCE_FINE,
				"cpu-write-invalidate");
}

/*
 * cpu-write-coarse: as cpu-write-invalidate, with a coarse-grained mirror:
 * the device holds every page (so every page is write-protected, by the
 * read's PAGEMAP_SCAN), and the CPU's first store to each is resolved by
 * the kernel alone. The device's copies go at the next command. Timed
 * around the one store; hmmud must see no CPU fault.
 */
static int cpu_write_coarse(struct bench *b, struct result *r, uint64_t n)
{
	return cpu_first_stores(b, r, n, HMMU_COHERENCE_COARSE,
				"cpu-write-coarse");
}

/*
 * cpu-fault-devmem: pages migrated to device memory (dmirror0's); the
 * CPU's first read of each is a MISSING fault that hmmud's event loop
 * serves by bringing the page back (UFFDIO_COPY). Timed around the load.
 */
static int cpu_fault_devmem(struct bench *b, struct result *r, uint64_t n)
{
	uint64_t w = warmup_of(n);
	char *p = map_pages(n + w);
	struct hmmu_mirror *m = NULL;
	struct hmmu_stats st0;
	struct hmmu_cmd c;
	int err = -ENOMEM;

	if (!p)
		goto out;
	touch_pages(p, n + w);
	err = mirror_on(b, b->dmirror, &m);
	c = (struct hmmu_cmd){ .addr = (uint64_t)(uintptr_t)p, .npages = n + w };
	if (!err)
		err = hmmu_migrate_to_device(m, &c);
	if (err == -ENOMEM || err == -EOPNOTSUPP) {
		result_skip(r, "%s cannot take %" PRIu64 " pages: %s", b->dmirror,
			    n + w, strerror(-err));
		err = 0;
		goto out;
	}
	if (!err && c.cpages != n + w) {
		warnx_("cpu-fault-devmem: %" PRIu64 " of %" PRIu64
		       " pages migrated", c.cpages, n + w);
		err = -EPROTO;
	}
	st0 = stats(b);
	for (uint64_t i = 0; i < n + w && !err; i++) {
		volatile char *a = p + i * b->page;
		uint64_t t0 = now_ns(), t1;

		(void)*a;
		t1 = now_ns();
		if (i >= w)
			err = samples_add(&r->s, t1 - t0);
		meter_tick();
	}
	if (!err)
		expect("cpu-fault-devmem", "pages migrated to system",
		       stats(b).migrated_to_system - st0.migrated_to_system,
		       n + w);
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, n + w);
	return err;
}

/*
 * unmap-invalidate: N separate 1-page mappings, each read by the device;
 * then munmap of each, timed. munmap returns once hmmud's event loop has
 * read the UNMAP event; the daemon drops the device copies after reading.
 */
static int unmap_invalidate(struct bench *b, struct result *r, uint64_t n)
{
	uint64_t w = warmup_of(n), t0;
	char *p = map_separate_pages(n + w), *out = map_pages(1);
	struct hmmu_mirror *m = NULL;
	struct hmmu_stats st0;
	struct hmmu_cmd c;
	int err = -ENOMEM;

	if (!p || !out)
		goto out;
	touch_pages(out, 1);
	for (uint64_t i = 0; i < n + w; i++)
		p[2 * i * b->page] = 1;
	err = mirror_on(b, b->dmirror, &m);
	t0 = now_ns();
	for (uint64_t i = 0; i < n + w && !err; i++)
		err = read_pages(m, p + 2 * i * b->page, 1, out, &c);
	/* Each new VMA costs the daemon a registration: worth knowing. */
	result_extra(r, "setup_ns_per_mapping",
		     (double)(now_ns() - t0) / (double)(n + w));
	st0 = stats(b);
	for (uint64_t i = 0; i < n + w && !err; i++) {
		uint64_t t1 = now_ns();

		if (munmap(p + 2 * i * b->page, b->page) < 0)
			err = -errno;
		if (!err && i >= w)
			err = samples_add(&r->s, now_ns() - t1);
		meter_tick();
	}
	if (!err) {
		/* Invalidations may trail the last munmap by a moment. */
		uint64_t got = 0;

		for (int i = 0; i < 200; i++) {
			got = stats(b).invalidations - st0.invalidations;
			if (got >= n + w)
				break;
			nanosleep(&(struct timespec){ 0, 5000000 }, NULL);
		}
		expect("unmap-invalidate", "invalidations", got, n + w);
	}
out:
	hmmu_mirror_destroy(m);
	unmap_pages(p, 2 * (n + w));
	unmap_pages(out, 1);
	return err;
}

/*
 * request: hmmu_device_count, which the daemon answers without touching
 * any memory: the client -> event loop -> worker -> client path that every
 * device command (device-fault) and registration also takes.
 */
static int request(struct bench *b, struct result *r, uint64_t n)
{
	uint64_t w = warmup_of(n);
	int err = 0;

	for (uint64_t i = 0; i < n + w && !err; i++) {
		uint64_t t0 = now_ns(), t1;
		int count = hmmu_device_count(b->h);

		t1 = now_ns();
		err = count < 0 ? count : 0;
		if (!err && i >= w)
			err = samples_add(&r->s, t1 - t0);
		meter_tick();
	}
	return err;
}

/*
 * queue-request: a no-op through a queue (hmmu_queue_nop, submit, wait for
 * its completion), timed in the client: the submission ring, the doorbell
 * (a futex wake only if the daemon sleeps), a daemon servicer, the
 * completion ring and the wake-up, with no socket on the way.
 */
static int queue_request(struct bench *b, struct result *r, uint64_t n)
{
	uint64_t w = warmup_of(n);
	struct hmmu_mirror *m = NULL;
	struct hmmu_queue *q = NULL;
	struct hmmu_cqe c;
	int err = hmmu_mirror_create(b->h, b->dmirror, &m);

	if (!err)
		err = hmmu_queue_create(m, 4, &q);
	for (uint64_t i = 0; i < n + w && !err; i++) {
		uint64_t t0 = now_ns(), t1;

		err = hmmu_queue_nop(q, i);
		if (!err)
			err = hmmu_queue_submit(q) == 1 ? 0 : -EIO;
		if (!err)
			err = hmmu_queue_wait(q, &c, 1, 1, -1) == 1 ? c.status :
								      -EIO;
		t1 = now_ns();
		if (!err && i >= w)
			err = samples_add(&r->s, t1 - t0);
		meter_tick();
	}
	if (err)
		warnx_("queue-request: %s %s", strerror(-err),
		       hmmu_error_detail());
	hmmu_queue_destroy(q);
	hmmu_mirror_destroy(m);
	return err;
}

/*
 * register: hmmu_mirror_register + hmmu_mirror_unregister of one mirror,
 * while a second mirror of the process stays registered: the daemon keeps
 * the process's state (userfaultfd) throughout. register-first: the same
 * with no other mirror, so that each registration creates the state (a
 * new userfaultfd, handed over) and each unregistration tears it down.
 */
static int register_pairs(struct bench *b, int keep_state, struct result *r,
			  uint64_t n)
{
	uint64_t w = warmup_of(n);
	struct hmmu_mirror *keeper = NULL, *m = NULL;
	int err = 0;

	if (keep_state)
		err = mirror_on(b, b->dmirror2, &keeper);
	if (!err)
		err = hmmu_mirror_create(b->h, b->dmirror, &m);
	for (uint64_t i = 0; i < n + w && !err; i++) {
		uint64_t t0 = now_ns(), t1;

		err = hmmu_mirror_register(m);
		if (!err)
			err = hmmu_mirror_unregister(m);
		t1 = now_ns();
		if (!err && i >= w)
			err = samples_add(&r->s, t1 - t0);
		meter_tick();
	}
	if (err)
		warnx_("register: %s %s", strerror(-err), hmmu_error_detail());
	hmmu_mirror_destroy(m);
	hmmu_mirror_destroy(keeper);
	return err;
}

int class_run(struct bench *b, enum class_id id, struct result *r, uint64_t n)
{
	switch (id) {
	case C_DEVICE_FAULT:
		return device_fault(b, r, n);
	case C_DEVICE_FAULT_ACC:
		return device_fault_acc(b, r, n);
	case C_DEVICE_STREAM:
		return device_stream(b, r, n, 0);
	case C_DEVICE_STREAM_ZC:
		return device_stream(b, r, n, 1);
	case C_CPU_WRITE_INVALIDATE:
		return cpu_write_invalidate(b, r, n);
	case C_CPU_FAULT_DEVMEM:
		return cpu_fault_devmem(b, r, n);
	case C_UNMAP_INVALIDATE:
		return unmap_invalidate(b, r, n);
	case C_REQUEST:
		return request(b, r, n);
	case C_QUEUE_REQUEST:
		return queue_request(b, r, n);
	case C_REGISTER:
		return register_pairs(b, 1, r, n);
	case C_REGISTER_FIRST:
		return register_pairs(b, 0, r, n);
	case C_CPU_WRITE_COARSE:
		return cpu_write_coarse(b, r, n);
	default:
		return -EINVAL;
	}
}
