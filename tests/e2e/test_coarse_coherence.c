/* SPDX-License-Identifier: MIT */
/*
 * Coarse-grained coherence (hmmu_mirror_set_coherence(), docs/semantics.md
 * "Coherence modes"), end to end against a private hmmud: a device command
 * sees every CPU write made before it started, CPU writes never fault into
 * the daemon, pages nobody wrote are not fetched again, a process has one
 * mode at a time, its pages never migrate, and a coarse client that dies
 * is released as any other.
 */
#include "harness.h"
#include "helpers.h"
#include "common/kernel_uapi.h"
#include "common/kfeatures.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void start(void)
{
	const struct kfeatures *kf = kfeatures();
	uint64_t need = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;

	if ((kf->uffd_features & need) != need)
		cr_skip_test("this kernel's userfaultfd has no asynchronous "
			     "write-protect (UFFD_FEATURE_WP_ASYNC, Linux 6.7): "
			     "no coarse-grained coherence here");
	if (!kf->pagemap_scan)
		cr_skip_test("no PAGEMAP_SCAN on /proc/PID/pagemap (Linux "
			     "6.7): no coarse-grained coherence here");
	daemon_start();
}

TestSuite(coarse_coherence, .init = start, .fini = daemon_stop,
	  .timeout = 120);

static struct hmmu_mirror *coarse_mirror(struct hmmu *h, const char *device)
{
	struct hmmu_mirror *m;

	cr_assert_eq(hmmu_mirror_create(h, device, &m), 0);
	cr_assert_eq(hmmu_mirror_set_coherence(m, HMMU_COHERENCE_COARSE), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0, "register coarse: %s",
		     hmmu_error_detail());
	return m;
}

/* A connection and one coarse mirror on @device. */
static struct fixture coarse_open(const char *device)
{
	struct fixture f = fixture_open(NULL);

	f.m = coarse_mirror(f.h, device);
	return f;
}

static void fill(void *p, size_t npages, int seed)
{
	unsigned char *b = p;

	for (size_t i = 0; i < npages; i++)
		for (size_t j = 0; j < page_size(); j++)
			b[i * page_size() + j] = filled_byte(i, seed) ^
						 (unsigned char)j;
}

static void expect_fill(const void *p, size_t first, size_t npages, int seed,
			const char *what)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < npages; i++)
		for (size_t j = 0; j < page_size(); j++) {
			unsigned char want = filled_byte(first + i, seed) ^
					     (unsigned char)j;

			if (b[i * page_size() + j] != want)
				cr_assert_fail("%s: page %zu byte %zu is %#x, "
					       "want %#x", what, first + i, j,
					       b[i * page_size() + j], want);
		}
}

Test(coarse_coherence, cpu_write_between_device_reads_is_seen_by_the_second)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 8;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c;

	fill(p, n, 1);
	c = dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 1, "first device read");
	cr_expect_eq(c.faults, 1);

	fill(p, n, 2); /* every page, between two commands */
	memset(buf, 0, n * page_size());
	c = dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 2, "device read after the CPU write");
	cr_expect_eq(c.faults, 1, "the written pages are fetched again");

	/* One byte of one page. */
	p[5 * page_size() + 7] ^= 0x5a;
	memset(buf, 0, n * page_size());
	dev_read(f.m, p, n, buf);
	cr_expect_eq(memcmp(buf, p, n * page_size()), 0,
		     "device read after a one-byte write");
	free(buf);
	fixture_close(&f);
}

Test(coarse_coherence, cpu_writes_take_no_daemon_fault)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 16;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	struct hmmu_stats before, after;

	fill(p, n, 3);
	dev_read(f.m, p, n, buf);
	before = stats_of(f.h);
	for (int round = 0; round < 3; round++)
		fill(p, n, 4 + round);
	after = stats_of(f.h);
	cr_expect_eq(after.cpu_faults, before.cpu_faults,
		     "cpu_faults %llu -> %llu: a coarse process's CPU writes "
		     "never reach the daemon",
		     (unsigned long long)before.cpu_faults,
		     (unsigned long long)after.cpu_faults);
	cr_expect_eq(after.device_pages, before.device_pages,
		     "the device keeps its copies until the next command");
	dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 6, "device read after three rounds of writes");
	cr_expect_eq(stats_of(f.h).cpu_faults, before.cpu_faults);
	free(buf);
	fixture_close(&f);
}

Test(coarse_coherence, untouched_pages_are_not_fetched_again)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 8;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	struct hmmu_stats held, after;
	struct hmmu_cmd c;

	fill(p, n, 7);
	dev_read(f.m, p, n, buf);
	held = stats_of(f.h);

	fill(p + 3 * page_size(), 1, 8); /* page 3 only */
	/* The command boundary drops page 3, and only it. */
	c = dev_read(f.m, p + 5 * page_size(), 1, buf);
	cr_expect_eq(c.faults, 0, "page 5 was not written: no fault");
	expect_fill(buf, 5, 1, 7, "page 5");
	after = stats_of(f.h);
	cr_expect_eq(after.device_pages, held.device_pages - 1,
		     "device_pages %llu, want %llu: only the written page is "
		     "dropped", (unsigned long long)after.device_pages,
		     (unsigned long long)(held.device_pages - 1));

	c = dev_read(f.m, p + 3 * page_size(), 1, buf);
	cr_expect_eq(c.faults, 1, "page 3 was written: fetched again");
	expect_fill(buf, 0, 1, 8, "page 3");
	c = dev_read(f.m, p, n, buf);
	cr_expect_eq(c.faults, 0, "the device holds every page again");
	cr_expect_eq(memcmp(buf, p, n * page_size()), 0, "whole range");
	free(buf);
	fixture_close(&f);
}

Test(coarse_coherence, device_write_is_seen_by_cpu_and_other_device)
{
	struct fixture f = coarse_open("dmirror0");
	struct hmmu_mirror *m1 = coarse_mirror(f.h, "dmirror1");
	const size_t n = 4;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());

	fill(p, n, 9);
	dev_read(m1, p, n, buf); /* dmirror1 holds the old pages */
	fill(buf, n, 10);
	dev_write(f.m, p, n, buf);
	expect_fill(p, 0, n, 10, "the CPU after the device write");
	memset(buf, 0, n * page_size());
	dev_read(m1, p, n, buf);
	expect_fill(buf, 0, n, 10, "the other device after the device write");

	/* And a CPU write reaches both devices. */
	fill(p, n, 11);
	dev_read(m1, p, n, buf);
	expect_fill(buf, 0, n, 11, "dmirror1 after the CPU write");
	memset(buf, 0, n * page_size());
	dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 11, "dmirror0 after the CPU write");
	hmmu_mirror_destroy(m1);
	free(buf);
	fixture_close(&f);
}

/* A zero page the device copied is not a write; a write to it is. */
Test(coarse_coherence, untouched_memory_reads_zero_then_sees_the_write)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 4;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c;

	memset(buf, 0xa5, n * page_size());
	dev_read(f.m, p, n, buf);
	for (size_t k = 0; k < n * page_size(); k++)
		if (buf[k])
			cr_assert_fail("byte %zu of untouched memory is %#x", k,
				       buf[k]);
	c = dev_read(f.m, p, n, buf);
	cr_expect_eq(c.faults, 0, "read again, nothing written: no fault");
	fill(p + 2 * page_size(), 1, 12);
	c = dev_read(f.m, p, n, buf);
	cr_expect_eq(c.faults, 1);
	expect_fill(buf + 2 * page_size(), 0, 1, 12, "the written page");
	free(buf);
	fixture_close(&f);
}

Test(coarse_coherence, process_has_one_mode_at_a_time)
{
	struct fixture f = coarse_open("dmirror0");
	struct hmmu_mirror *fine, *other;

	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror1", &fine), 0);
	expect_daemon_log("register mirror");
	cr_expect_eq(hmmu_mirror_register(fine), -EBUSY);
	cr_expect(strstr(hmmu_error_detail(), "coarse-grained") != NULL,
		  "detail: %s", hmmu_error_detail());
	/* Another coarse mirror joins. */
	other = coarse_mirror(f.h, "dmirror1");
	cr_expect_eq(stats_of(f.h).my_mirrors, 2);

	/* With every coarse mirror gone, the next registration picks again. */
	cr_assert_eq(hmmu_mirror_unregister(other), 0);
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	cr_expect_eq(stats_of(f.h).my_state, 0);
	cr_assert_eq(hmmu_mirror_register(fine), 0, "%s", hmmu_error_detail());
	cr_expect_eq(hmmu_mirror_set_coherence(other, HMMU_COHERENCE_COARSE), 0);
	cr_expect_eq(hmmu_mirror_register(other), -EBUSY,
		     "coarse into a fine-grained process");
	cr_expect(strstr(hmmu_error_detail(), "fine-grained") != NULL,
		  "detail: %s", hmmu_error_detail());
	cr_expect_eq(hmmu_mirror_set_coherence(other, (enum hmmu_coherence)7),
		     -EINVAL);
	hmmu_mirror_destroy(other);
	hmmu_mirror_destroy(fine);
	fixture_close(&f);
}

/* Fine-grained again after coarse: a write faults, as HMM's does. */
Test(coarse_coherence, fine_after_coarse_faults_cpu_writes_again)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 2;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	struct hmmu_stats before;

	fill(p, n, 13);
	dev_read(f.m, p, n, buf);
	hmmu_mirror_destroy(f.m);
	f.m = mirror_registered(f.h, "dmirror0");
	dev_read(f.m, p, n, buf);
	before = stats_of(f.h);
	fill(p, n, 14);
	cr_expect_gt(stats_of(f.h).cpu_faults, before.cpu_faults);
	dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 14, "fine-grained device read");
	free(buf);
	fixture_close(&f);
}

Test(coarse_coherence, migration_is_refused_and_data_stays)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 4;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };
	struct hmmu_stats before;

	fill(p, n, 15);
	before = stats_of(f.h);
	expect_daemon_log("coarse-grained");
	cr_expect_eq(hmmu_migrate_to_device(f.m, &c), -EOPNOTSUPP);
	cr_expect(strstr(hmmu_error_detail(), "coarse-grained") != NULL,
		  "detail: %s", hmmu_error_detail());
	cr_expect_eq(c.cpages, 0);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = n };
	cr_expect_eq(hmmu_make_exclusive(f.m, &c), -EOPNOTSUPP);
	cr_expect_eq(stats_of(f.h).migrated_to_device,
		     before.migrated_to_device);
	expect_fill(p, 0, n, 15, "the CPU's pages after the refusals");
	fill(p, n, 16);
	dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 16, "the device after the refusals");
	free(buf);
	fixture_close(&f);
}

/* A coarse client that exits or is killed is released like any other. */
static void coarse_client_dies(int killed)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_stats before = stats_of(f.h);
	int ready[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu_mirror *m[2];
		struct hmmu *hc;
		char *p = map_rw_or_null(8), buf[8 * 4096];
		struct hmmu_cmd cmd = { .addr = (uintptr_t)p, .npages = 1 };

		if (!p || hmmu_connect(daemon_under_test.socket, &hc))
			_exit(1);
		for (int i = 0; i < 2; i++)
			if (hmmu_mirror_create(hc, i ? "dmirror1" : "dmirror0",
					       &m[i]) ||
			    hmmu_mirror_set_coherence(m[i],
						      HMMU_COHERENCE_COARSE) ||
			    hmmu_mirror_register(m[i]) ||
			    hmmu_device_read(m[i], &cmd, buf))
				_exit(2);
		p[0] = 1; /* a write nobody collected yet */
		(void)!write(ready[1], "r", 1);
		if (killed)
			pause();
		_exit(0);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the child could not register");
	if (killed)
		kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_expect_eq(wait_for_stat(f.h, releases, before.releases + 2),
		     before.releases + 2);
	cr_expect_eq(wait_for_stat(f.h, processes, before.processes),
		     before.processes);
	cr_expect_eq(stats_of(f.h).mirrors, before.mirrors);
	cr_expect_eq(stats_of(f.h).device_pages, before.device_pages);
	close(ready[0]);
	fixture_close(&f);
}

Test(coarse_coherence, sigkill_of_coarse_client_releases_its_mirrors)
{
	coarse_client_dies(1);
}

Test(coarse_coherence, exit_of_coarse_client_releases_its_mirrors)
{
	coarse_client_dies(0);
}

/* fork: the child is not mirrored, and its writes do not reach the device. */
Test(coarse_coherence, fork_child_writes_its_copy_and_device_follows_parent)
{
	struct fixture f = coarse_open("dmirror0");
	const size_t n = 2;
	unsigned char *p = map_rw(n), *buf = xmalloc(n * page_size());
	int status;
	pid_t pid;

	fill(p, n, 17);
	dev_read(f.m, p, n, buf);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		fill(p, n, 18);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 17, "the device after the child wrote");
	fill(p, n, 19);
	dev_read(f.m, p, n, buf);
	expect_fill(buf, 0, n, 19, "the device after the parent wrote");
	free(buf);
	fixture_close(&f);
}
