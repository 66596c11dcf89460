/* SPDX-License-Identifier: MIT */
/*
 * The accelerator: jobs that run over the client's virtual addresses through
 * the device MMU, with the data, the results and the device faults checked.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

TestSuite(accel, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

Test(accel, acc0_is_offered_as_model_accel)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_device_info info;
	int n = hmmu_device_count(f.h), found = 0;

	for (int i = 0; i < n; i++) {
		cr_assert_eq(hmmu_device_info(f.h, (unsigned)i, &info), 0);
		if (strcmp(info.name, "acc0") == 0) {
			cr_expect_str_eq(info.model, "accel");
			found = 1;
		}
	}
	cr_expect(found, "no acc0 among %d devices", n);
	fixture_close(&f);
}

/*
 * Sum a cold array twice, then once more after the CPU wrote one page.
 * @window: the device's prefetch, in pages; the array is cut in two slices
 * of pages / 2 (two compute units), each faulting window by window.
 */
static void sum_cold_array(const char *device, size_t window)
{
	struct fixture f = fixture_open(device);
	size_t pages = 64, n = pages * page_size() / 8;
	uint64_t *v = map_rw(pages), expect = 0;
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64,
				.src = (uintptr_t)v, .len = n };

	for (size_t i = 0; i < n; i++) {
		v[i] = i * 3 + 1;
		expect += v[i];
	}
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect);
	cr_expect_eq(job.faults, pages / window,
		     "one device fault per %zu-page window", window);
	/* Warm: the device holds every page now. */
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect);
	cr_expect_eq(job.faults, 0);
	/* The CPU writes one page: one new fault, the new data. */
	v[5 * page_size() / 8] += 100;
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect + 100);
	cr_expect_eq(job.faults, 1);
	fixture_close(&f);
}

Test(accel, sum64_of_cold_array_faults_once_per_prefetch_window)
{
	sum_cold_array("acc0", 16); /* the default window */
}

Test(accel, without_prefetch_every_cold_page_is_a_fault)
{
	const char *args[] = { "--device", "accel:name=acc1,prefetch=1", NULL };

	daemon_restart(args);
	sum_cold_array("acc1", 1);
}

Test(accel, bad_options_are_refused_at_start)
{
	static const char *const bad[] = { "accel:name=x,cus=0",
					   "accel:name=x,prefetch=100000",
					   "accel:name=x,bogus=1",
					   "accel:name=x,mem=12Q" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pid_t pid = fork();
		int status;

		cr_assert_geq(pid, 0);
		if (pid == 0) {
			int null = open("/dev/null", O_WRONLY);

			dup2(null, 2);
			execl(HMMUD_PATH, "hmmud", "--foreground", "--socket",
			      "/tmp/hmmu-bad-option.sock", "--device", bad[i],
			      (char *)NULL);
			_exit(127);
		}
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		/* 2: a usage error, as for any bad --device spec. */
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2,
			  "%s: status %#x", bad[i], status);
	}
}

Test(accel, fill_writes_the_pattern_and_nothing_else)
{
	struct fixture f = fixture_open("acc0");
	size_t pages = 40;
	uint64_t *v = map_rw(pages);
	size_t first = 3, count = 30 * page_size() / 8 + 5; /* unaligned ends */
	struct hmmu_job job = { .kind = HMMU_JOB_FILL,
				.dst = (uintptr_t)(v + first),
				.len = count * 8,
				.value = 0x1122334455667788ull };

	memset(v, 0xee, pages * page_size());
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_gt(job.faults, 0);
	for (size_t i = 0; i < pages * page_size() / 8; i++) {
		uint64_t want = i >= first && i < first + count ?
					0x1122334455667788ull :
					0xeeeeeeeeeeeeeeeeull;

		cr_assert_eq(v[i], want, "word %zu: %#lx", i, (unsigned long)v[i]);
	}
	fixture_close(&f);
}

Test(accel, copy_moves_bytes_between_unaligned_ranges)
{
	struct fixture f = fixture_open("acc0");
	size_t pages = 32, len = 20 * page_size() + 123;
	unsigned char *src = map_rw(pages);
	unsigned char *dst = map_rw(pages);
	struct hmmu_job job = { .kind = HMMU_JOB_COPY,
				.src = (uintptr_t)(src + 7),
				.dst = (uintptr_t)(dst + 1001),
				.len = len };

	for (size_t i = 0; i < pages * page_size(); i++)
		src[i] = (unsigned char)(i * 13 + 5);
	memset(dst, 0, pages * page_size());
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(memcmp(dst + 1001, src + 7, len), 0);
	for (size_t i = 0; i < 1001; i++)
		cr_assert_eq(dst[i], 0);
	for (size_t i = 1001 + len; i < pages * page_size(); i++)
		cr_assert_eq(dst[i], 0);
	/* Overlapping copies are refused. */
	expect_daemon_log("job on acc0: %s", strerror(EINVAL));
	job.dst = job.src + 8;
	cr_expect_eq(hmmu_job_run(f.m, &job), -EINVAL);
	fixture_close(&f);
}

struct node {
	uint64_t pad;
	struct node *next;
	uint64_t value;
};

Test(accel, list_walk_follows_malloc_pointers_and_sees_rewrites)
{
	struct fixture f = fixture_open("acc0");
	struct node *head = NULL, *nodes[500];
	uint64_t expect = 0;
	struct hmmu_job job = {
		.kind = HMMU_JOB_LIST_SUM,
		.len = 1000,
		.next_offset = offsetof(struct node, next),
		.value_offset = offsetof(struct node, value),
	};

	/* Spread over the heap, with garbage in between. */
	for (int i = 0; i < 500; i++) {
		void *gap = malloc((size_t)(i % 7) * 200 + 16);

		nodes[i] = malloc(sizeof(struct node));
		nodes[i]->value = (uint64_t)i * i;
		nodes[i]->next = head;
		head = nodes[i];
		expect += nodes[i]->value;
		(void)gap; /* kept: the list must not be contiguous */
	}
	job.src = (uintptr_t)head;
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect);
	cr_expect_gt(job.faults, 0);

	/* Rewrite: drop every other node, change some values. */
	expect = 0;
	for (int i = 499; i >= 0; i -= 2) {
		nodes[i]->value += 7;
		nodes[i]->next = i >= 2 ? nodes[i - 2] : NULL;
		expect += nodes[i]->value;
	}
	job.src = (uintptr_t)nodes[499];
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect, "the device sees the rewritten list");

	/* A cycle ends at the node limit. */
	expect_daemon_log("job on acc0: %s", strerror(ELOOP));
	nodes[1]->next = nodes[499];
	cr_expect_eq(hmmu_job_run(f.m, &job), -ELOOP);
	fixture_close(&f);
}

Test(accel, job_on_unmapped_memory_is_efault_and_changes_nothing)
{
	struct fixture f = fixture_open("acc0");
	uint64_t *v = map_rw(4);
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				.len = 4 * page_size() / 8 };
	uint64_t pages_before = stats_of(f.h).device_pages;

	munmap(v, 4 * page_size());
	cr_expect_eq(hmmu_job_run(f.m, &job), -EFAULT);
	job.kind = HMMU_JOB_FILL;
	job.dst = job.src;
	job.len = page_size();
	cr_expect_eq(hmmu_job_run(f.m, &job), -EFAULT);
	cr_expect_eq(stats_of(f.h).device_pages, pages_before);
	fixture_close(&f);
}

Test(accel, fill_of_read_only_memory_is_eperm)
{
	struct fixture f = fixture_open("acc0");
	uint64_t *v = map_anon(2, PROT_READ, MAP_PRIVATE);
	struct hmmu_job job = { .kind = HMMU_JOB_FILL, .dst = (uintptr_t)v,
				.len = 2 * page_size(), .value = 1 };

	cr_expect_eq(hmmu_job_run(f.m, &job), -EPERM);
	cr_expect_eq(v[0], 0);
	fixture_close(&f);
}

Test(accel, dmirror_runs_no_jobs)
{
	struct fixture f = fixture_open("dmirror0");
	uint64_t v[4] = { 1, 2, 3, 4 };
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				.len = 4 };

	expect_daemon_log("job on dmirror0: %s", strerror(EOPNOTSUPP));
	cr_expect_eq(hmmu_job_run(f.m, &job), -EOPNOTSUPP);
	fixture_close(&f);
}

/* ---- the replayable fault buffer -------------------------------------- */

/* A private hmmud whose acc1 has @opts; the fixture on acc1. */
static struct fixture open_acc1(const char *opts, const char *limit)
{
	static char spec[128];
	const char *args[] = { "--device", spec, limit ? "--limit" : NULL,
			       limit, NULL };

	snprintf(spec, sizeof(spec), "accel:name=acc1,%s", opts);
	daemon_restart(args);
	return fixture_open("acc1");
}

/* 2 MiB of pages at a 2 MiB boundary, never huge (its density block). */
static uint64_t *map_block(size_t *npages)
{
	size_t block = (2u << 20) / page_size();
	char *p = map_rw(2 * block);
	char *b = (char *)(((uintptr_t)p + (2u << 20) - 1) & ~(uintptr_t)((2u << 20) - 1));

	cr_assert_eq(madvise(p, 2 * block * page_size(), MADV_NOHUGEPAGE), 0);
	*npages = block;
	return (uint64_t *)b;
}

Test(accel, units_faulting_one_page_get_it_with_one_read)
{
	/* Four compute units, each summing one word of the same page. */
	struct fixture f = open_acc1("cus=4,prefetch=1", NULL);
	uint64_t *v = map_rw(1);
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				.len = 4 };
	struct hmmu_stats s0, s1;

	v[0] = 1, v[1] = 20, v[2] = 300, v[3] = 4000;
	s0 = stats_of(f.h);
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	s1 = stats_of(f.h);
	cr_expect_eq(job.result, 4321);
	/*
	 * However the units' faults fell into batches, the page was read
	 * once: a second fault found it held, or shared the first's batch.
	 */
	cr_expect_eq(s1.fault_runs - s0.fault_runs, 1);
	cr_expect_eq((s1.fault_entries - s0.fault_entries) -
			     (s1.fault_duplicates - s0.fault_duplicates), 1);
	cr_expect_eq(s1.fault_entries - s0.fault_entries, job.faults);
	fixture_close(&f);
}

Test(accel, density_rule_fetches_the_rest_of_a_block_at_once)
{
	/* One unit: faults come one at a time, each a batch. */
	struct fixture f = open_acc1("cus=1,prefetch=16,density=50", NULL);
	size_t pages;
	uint64_t *v = map_block(&pages), expect = 0;
	size_t n = pages * page_size() / 8;
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				.len = n };
	struct hmmu_stats s0, s1;

	for (size_t i = 0; i < n; i++)
		expect += v[i] = i + 7;
	s0 = stats_of(f.h);
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	s1 = stats_of(f.h);
	cr_expect_eq(job.result, expect);
	/*
	 * 16-page windows until half the block (256 of 512 pages) is held,
	 * then the fault at page 256 brings the other 256: 16 + 1 faults.
	 */
	cr_expect_eq(job.faults, pages / 2 / 16 + 1);
	cr_expect_eq(s1.density_fetches - s0.density_fetches, 1);
	cr_expect_eq(s1.fault_runs - s0.fault_runs, job.faults);
	cr_expect_eq(s1.fault_blocks - s0.fault_blocks, job.faults);
	/* The rule is in the stats, as hmmuctl stats shows it. */
	cr_expect_eq(s1.fault_window_pages, 16);
	cr_expect_eq(s1.fault_density_pct, 50);
	cr_expect_eq(s1.fault_batch_max, 256);
	cr_expect_eq(s1.fault_block_pages, pages);
	fixture_close(&f);
}

Test(accel, without_density_rule_a_block_takes_a_fault_per_window)
{
	struct fixture f = open_acc1("cus=1,prefetch=16,density=0", NULL);
	size_t pages;
	uint64_t *v = map_block(&pages);
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				.len = pages * page_size() / 8 };
	struct hmmu_stats s0, s1;

	memset(v, 1, pages * page_size());
	s0 = stats_of(f.h);
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	s1 = stats_of(f.h);
	cr_expect_eq(job.faults, pages / 16);
	cr_expect_eq(s1.density_fetches - s0.density_fetches, 0);
	fixture_close(&f);
}

struct writer {
	uint64_t *v;
	size_t n;
	atomic_int stop;
};

/*
 * Keep adding 1 to words all over the array, page after page, a burst of
 * 16 writes every 50 us. Not flat out: each write to a page a device
 * holds is an invalidation, and hmmu's invalidation sequence is the
 * process's, not the range's, so a writer that never pauses can starve
 * every range fault of the process (each retries until it gives up with
 * -EAGAIN). This test is about stale copies, not that limit.
 */
static void *cpu_writer(void *arg)
{
	struct writer *w = arg;
	size_t per_page = page_size() / 8;

	for (uint64_t k = 0; !atomic_load(&w->stop); k++) {
		w->v[(k * 7919 % (w->n / per_page)) * per_page + k % per_page] += 1;
		if (k % 16 == 15)
			usleep(50);
	}
	return NULL;
}

Test(accel, batched_faults_racing_cpu_writes_leave_no_stale_copy)
{
	struct fixture f = open_acc1("cus=4,prefetch=16,density=50", NULL);
	size_t pages = 2048, n = pages * page_size() / 8;
	uint64_t *v = map_rw(pages), expect = 0;
	struct writer w = { .v = v, .n = n };
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				.len = n };
	pthread_t t;

	for (size_t i = 0; i < n; i++)
		v[i] = i;
	cr_assert_eq(pthread_create(&t, NULL, cpu_writer, &w), 0);
	/* Each CPU write invalidates a page: the jobs keep faulting. */
	for (int round = 0; round < 20; round++)
		cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	atomic_store(&w.stop, 1);
	pthread_join(t, NULL);
	/* Every copy a batch took while the CPU wrote was invalidated. */
	for (size_t i = 0; i < n; i++)
		expect += v[i];
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect, "device %#lx, cpu %#lx",
		     (unsigned long)job.result, (unsigned long)expect);
	fixture_close(&f);
}

/* 8 GiB never touched: every page a fault (a zero page), for seconds. */
static struct hmmu_job endless_faults(void **p, size_t *len)
{
	*len = 8ull << 30;
	*p = mmap(NULL, *len, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(*p, MAP_FAILED);
	return (struct hmmu_job){ .kind = HMMU_JOB_SUM64,
				  .src = (uintptr_t)*p, .len = *len / 8 };
}

Test(accel, job_deadline_stops_units_waiting_on_the_servicer)
{
	struct fixture f = open_acc1("cus=4,prefetch=1", "job-seconds=1");
	void *p;
	size_t len;
	struct hmmu_job job = endless_faults(&p, &len);
	uint64_t *v = map_rw(1);
	struct hmmu_job fine = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)v,
				 .len = 2 };

	expect_daemon_log("job on acc1: %s", strerror(ETIMEDOUT));
	cr_expect_eq(hmmu_job_run(f.m, &job), -ETIMEDOUT);
	/* Nobody is left waiting: the device takes the next job. */
	v[0] = 40, v[1] = 2;
	cr_expect_eq(hmmu_job_run(f.m, &fine), 0);
	cr_expect_eq(fine.result, 42);
	munmap(p, len);
	fixture_close(&f);
}

Test(accel, client_killed_while_its_units_fault_is_released)
{
	struct fixture f = open_acc1("cus=4,prefetch=1", "job-seconds=600");
	int ready[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct fixture fc;
		size_t len = 8ull << 30;
		void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		struct hmmu_job job = { .kind = HMMU_JOB_SUM64,
					.src = (uintptr_t)p, .len = len / 8 };

		close(ready[0]);
		if (p == MAP_FAILED || fixture_try_open(&fc, "acc1"))
			_exit(1);
		(void)!write(ready[1], "r", 1);
		_exit(hmmu_job_run(fc.m, &job) == 0 ? 0 : 2);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the child registered");
	close(ready[0]);
	usleep(200000); /* its units are faulting by now */
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	/* Left: this process's own state (the fixture's mirror). */
	for (int i = 0; i < 1000 && stats_of(f.h).processes != 1; i++)
		usleep(10000);
	cr_expect_eq(stats_of(f.h).processes, 1, "the dead client's state is gone");
	cr_expect_eq(stats_of(f.h).mirrors, 1);
	fixture_close(&f);
}
