/* SPDX-License-Identifier: MIT */
/*
 * hmmud dies (SIGKILL) while pages are in device memory: libhmmu brings
 * them home itself from the process's device memory file, every byte,
 * never a zero page, releases writers held by write-protect faults with
 * their writes landing, and fails further calls with -ESHUTDOWN and a
 * detail that says so. A client that never migrated pays nothing.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(failsafe, .init = daemon_start, .fini = daemon_stop, .timeout = 300);

/* A pattern distinct per page and per round, never zero. */
static unsigned char pattern(size_t page, size_t byte, unsigned round)
{
	return (unsigned char)(1 + (page * 131 + byte * 7 + round * 17) % 255);
}

static unsigned char *map_pattern(size_t n, unsigned round)
{
	unsigned char *p = mmap(NULL, n * page_size(), PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < page_size(); b++)
			p[i * page_size() + b] = pattern(i, b, round);
	return p;
}

static int migrate_pages(struct hmmu_mirror *m, void *p, size_t n,
			 uint64_t *cpages)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };
	int err = hmmu_migrate_to_device(m, &c);

	if (cpages)
		*cpages = c.cpages;
	return err;
}

static uint8_t state_of(struct hmmu_mirror *m, void *p)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };
	uint8_t st = 0xee;

	cr_assert_eq(hmmu_snapshot(m, &c, &st), 0);
	return st;
}

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own fd, or nothing for tasks */
}

static int fds_open(void)
{
	return count_dir("/proc/self/fd");
}

static int threads_running(void)
{
	return count_dir("/proc/self/task") + 1;
}

/* Every byte of page i of @p is pattern(i, byte, round). */
static void expect_pattern(const unsigned char *p, size_t n, unsigned round)
{
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < page_size(); b++)
			if (p[i * page_size() + b] != pattern(i, b, round))
				cr_assert_fail("page %zu byte %zu: %#x, want %#x",
					       i, b, p[i * page_size() + b],
					       pattern(i, b, round));
}

Test(failsafe, pages_in_device_memory_come_home_after_sigkill)
{
	struct hmmu *h = connect_or_die();
	struct hmmu_mirror *m = mirror_registered(h, "dmirror0");
	size_t n = 64;
	unsigned char *p = map_pattern(n, 1);
	uint64_t cpages = 0;

	cr_assert_eq(migrate_pages(m, p, n, &cpages), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(cpages, n);
	cr_assert_eq(state_of(m, p), HMMU_PAGE_DEV_LOCAL);
	daemon_kill();
	/* No zero page: every byte as it was, read from the CPU. */
	expect_pattern(p, n, 1);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, n * page_size());
}

/* Bytes the process's device memory file holds now (its allocated blocks). */
static long long devfile_bytes(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long long bytes = -1;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		char path[300], target[128];
		struct stat st;
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, target, sizeof(target) - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		if (strstr(target, "memfd:hmmu-devmem") && stat(path, &st) == 0)
			bytes = (long long)st.st_blocks * 512;
	}
	closedir(d);
	cr_assert_geq(bytes, 0, "no device memory file among our fds");
	return bytes;
}

Test(failsafe, pages_back_from_device_memory_give_their_memory_back)
{
	struct hmmu *h = connect_or_die();
	struct hmmu_mirror *m = mirror_registered(h, "dmirror0");
	size_t n = 64;
	unsigned char *p = map_pattern(n, 2);
	long long held, after;
	uint64_t cpages = 0;

	cr_assert_eq(migrate_pages(m, p, n, &cpages), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(cpages, n);
	held = devfile_bytes();
	cr_assert_geq(held, (long long)(n * page_size()),
		      "the file holds %lld bytes for %zu pages", held, n);
	/* Reading from the CPU brings every page home. */
	expect_pattern(p, n, 2);
	cr_assert_neq(state_of(m, p), HMMU_PAGE_DEV_LOCAL);
	after = devfile_bytes();
	cr_expect_leq(after, held - (long long)(n * page_size()),
		      "the file kept %lld of %lld bytes after its pages came "
		      "home", after, held);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, n * page_size());
}

/* hmmud punches freed pages out in batches of at most this many (failsafe.c). */
#define PUNCH_BATCH 256

Test(failsafe, file_holds_at_most_a_batch_more_than_its_device_pages)
{
	struct hmmu *h = connect_or_die();
	struct hmmu_mirror *m = mirror_registered(h, "dmirror0");
	size_t n = 2 * PUNCH_BATCH, home = PUNCH_BATCH + 64;
	unsigned char *p = map_pattern(n, 3);
	long long after, bound;
	uint64_t cpages = 0;

	cr_assert_eq(migrate_pages(m, p, n, &cpages), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(cpages, n);
	/* More pages come home than a batch: one punch at least. */
	expect_pattern(p, home, 3);
	after = devfile_bytes();
	/* The descriptors' pages are a few; a batch is the slack. */
	bound = (long long)((n - home + PUNCH_BATCH + 4) * page_size());
	cr_expect_leq(after, bound,
		      "%zu of %zu pages in device memory, and the file holds "
		      "%lld bytes", n - home, n, after);
	expect_pattern(p, n, 3);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, n * page_size());
}

struct writer {
	volatile unsigned char *at;
	unsigned char value;
	atomic_int started, done;
};

static void *write_one(void *arg)
{
	struct writer *w = arg;

	atomic_store(&w->started, 1);
	*w->at = w->value;
	atomic_store(&w->done, 1);
	return NULL;
}

Test(failsafe, writers_held_when_the_daemon_dies_complete)
{
	struct hmmu *h = connect_or_die();
	struct hmmu_mirror *m = mirror_registered(h, "dmirror0");
	size_t n = 4;
	unsigned char *p = map_pattern(n, 2);
	unsigned char buf[4096 * 4];
	struct hmmu_cmd read = { .addr = (uintptr_t)(p + 2 * page_size()),
				 .npages = 1 };
	struct writer w[2] = {
		{ .at = p + 0 * page_size() + 10, .value = 0 },
		{ .at = p + 2 * page_size() + 20, .value = 0 },
	};
	pthread_t t[2];
	uint64_t cpages = 0;

	cr_assert_leq(page_size(), 4096u);
	w[0].value = (unsigned char)~pattern(0, 10, 2);
	w[1].value = (unsigned char)~pattern(2, 20, 2);
	/* Page 0 in device memory, page 2 mirrored (write-protected). */
	cr_assert_eq(migrate_pages(m, p, 1, &cpages), 0);
	cr_assert_eq(cpages, 1);
	cr_assert_eq(hmmu_device_read(m, &read, buf), 0);
	/* The daemon stops answering: each writer sleeps in its fault. */
	cr_assert_eq(kill(daemon_under_test.pid, SIGSTOP), 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, write_one, &w[i]), 0);
	for (int i = 0; i < 2; i++)
		while (!atomic_load(&w[i].started))
			sched_yield();
	usleep(50000);
	cr_expect_eq(atomic_load(&w[0].done), 0, "a write into device memory "
		     "completed while the daemon was stopped");
	daemon_kill();
	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_join(t[i], NULL), 0);
	/* Each write landed, on the page's own contents. */
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < page_size(); b++) {
			unsigned char want = pattern(i, b, 2);

			if (i == 0 && b == 10)
				want = w[0].value;
			if (i == 2 && b == 20)
				want = w[1].value;
			if (p[i * page_size() + b] != want)
				cr_assert_fail("page %zu byte %zu: %#x, want "
					       "%#x", i, b,
					       p[i * page_size() + b], want);
		}
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, n * page_size());
}

Test(failsafe, calls_after_the_death_are_eshutdown_and_leak_nothing)
{
	int fds_before = fds_open(), threads_before = threads_running();
	struct hmmu *h = connect_or_die();
	struct hmmu_mirror *m = mirror_registered(h, "dmirror0");
	size_t n = 8;
	unsigned char *p = map_pattern(n, 3), buf[4096];
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };
	uint64_t cpages = 0;
	int err;

	cr_assert_eq(migrate_pages(m, p, n, &cpages), 0);
	cr_assert_eq(cpages, n);
	/* Armed: one watcher thread. */
	cr_expect_eq(threads_running(), threads_before + 1);
	daemon_kill();
	err = hmmu_device_read(m, &c, buf);
	cr_expect_eq(err, -ESHUTDOWN, "device read: %s", strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "hmmud went away") != NULL,
		  "detail: %s", hmmu_error_detail());
	cr_expect(strstr(hmmu_error_detail(), "8 pages") != NULL &&
			  strstr(hmmu_error_detail(), "brought home") != NULL,
		  "detail: %s", hmmu_error_detail());
	cr_expect_eq(hmmu_device_count(h), -ESHUTDOWN);
	cr_expect_eq(migrate_pages(m, p, n, NULL), -ESHUTDOWN);
	expect_pattern(p, n, 3);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	cr_expect_eq(fds_open(), fds_before, "an fd leaked");
	cr_expect_eq(threads_running(), threads_before, "a thread is left");
	munmap(p, n * page_size());
}

Test(failsafe, a_client_that_never_migrates_starts_no_thread)
{
	int fds_before = fds_open(), threads_before = threads_running();
	struct hmmu *h = connect_or_die();
	struct hmmu_mirror *m = mirror_registered(h, "dmirror0");
	unsigned char *p = map_pattern(2, 4), buf[4096 * 2];
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 2 };

	cr_assert_leq(page_size(), 4096u);
	cr_assert_eq(hmmu_device_read(m, &c, buf), 0);
	cr_expect_eq(threads_running(), threads_before);
	/* The socket only: no device memory file, no userfaultfd. */
	cr_expect_eq(fds_open(), fds_before + 1);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, 2 * page_size());
}

struct killer {
	pid_t pid;
	unsigned delay_us;
};

static void *kill_later(void *arg)
{
	struct killer *k = arg;

	usleep(k->delay_us);
	kill(k->pid, SIGKILL);
	return NULL;
}

/* Reap the daemon the killer thread killed, and judge its log. */
static void reap_killed(void)
{
	int status = 0;

	cr_assert_eq(waitpid(daemon_under_test.pid, &status, 0),
		     daemon_under_test.pid);
	daemon_under_test.pid = 0;
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "status %#x", status);
	daemon_remove_dir();
}

Test(failsafe, sigkill_at_random_moments_loses_no_byte)
{
	size_t n = 32;
	unsigned seed = (unsigned)time(NULL);

	srand(seed);
	for (unsigned round = 0; round < 24; round++) {
		struct hmmu *h;
		struct hmmu_mirror *m;
		unsigned char *p = map_pattern(n, round);
		unsigned char *want = malloc(n * page_size());
		struct killer k;
		pthread_t t;
		uint64_t cpages = 0;
		int err = 0;

		cr_assert_not_null(want);
		memcpy(want, p, n * page_size());
		if (round)
			daemon_start();
		h = connect_or_die();
		m = mirror_registered(h, "dmirror0");
		cr_assert_eq(migrate_pages(m, p, n, &cpages), 0);
		cr_assert_eq(cpages, n);
		k.pid = daemon_under_test.pid;
		k.delay_us = (unsigned)rand() % 5001;
		cr_assert_eq(pthread_create(&t, NULL, kill_later, &k), 0);
		/* CPU writes (bringing pages back) and migrations, until it dies. */
		for (unsigned i = 0; !err || i < 64; i++) {
			size_t pg = (size_t)rand() % n;
			size_t b = (size_t)rand() % page_size();
			unsigned char v = (unsigned char)(rand() | 1);

			p[pg * page_size() + b] = v;
			want[pg * page_size() + b] = v;
			if (!err && i % 4 == 3)
				err = migrate_pages(m, p, n, NULL);
			if (i > 100000)
				break;
		}
		cr_assert_eq(pthread_join(t, NULL), 0);
		reap_killed();
		/* The call that failed, or the next, waited for the rescue. */
		cr_expect_eq(hmmu_device_count(h), -ESHUTDOWN,
			     "round %u (seed %u)", round, seed);
		for (size_t i = 0; i < n * page_size(); i++)
			if (p[i] != want[i])
				cr_assert_fail("round %u (seed %u, delay %u us): "
					       "page %zu byte %zu: %#x, want %#x",
					       round, seed, k.delay_us,
					       i / page_size(), i % page_size(),
					       p[i], want[i]);
		hmmu_mirror_destroy(m);
		hmmu_disconnect(h);
		munmap(p, n * page_size());
		free(want);
	}
}
