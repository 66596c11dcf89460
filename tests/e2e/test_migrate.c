/* SPDX-License-Identifier: MIT */
/*
 * Device memory and migration, rule 8: a page migrated to device memory
 * comes back with its contents on any CPU access, on migrate_to_system and
 * on device release, and a CPU write racing with a migration is never lost.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(migrate, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

static void migrate(struct hmmu_mirror *m, void *p, size_t n, uint64_t want)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };
	int err = hmmu_migrate_to_device(m, &c);

	cr_assert_eq(err, 0, "migrate_to_device: %s", strerror(-err));
	cr_assert_eq(c.cpages, want);
}

static uint8_t state_of(struct hmmu_mirror *m, void *p)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };
	uint8_t st = 0xee;

	cr_assert_eq(hmmu_snapshot(m, &c, &st), 0);
	return st;
}

Test(migrate, cpu_read_after_migration_brings_pages_back)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 32;
	unsigned char *p = map_filled(n, 3);
	struct hmmu_stats before = stats_of(f.h), after;

	migrate(f.m, p, n, n);
	after = stats_of(f.h);
	cr_expect_eq(after.migrated_to_device, before.migrated_to_device + n);
	cr_expect_eq(after.device_mem_pages, before.device_mem_pages + n);
	cr_expect_eq(state_of(f.m, p), HMMU_PAGE_DEV_LOCAL);
	expect_filled_pages(p, n, 3);
	after = stats_of(f.h);
	cr_expect_eq(after.migrated_to_system, before.migrated_to_system + n);
	cr_expect_eq(after.cpu_faults, before.cpu_faults + n,
		     "one CPU fault per page brought back");
	cr_expect_eq(after.device_mem_pages, before.device_mem_pages);
	cr_expect_neq(state_of(f.m, p), HMMU_PAGE_DEV_LOCAL);
	fixture_close(&f);
}

Test(migrate, cpu_write_after_migration_lands_on_restored_page)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char *p = map_filled(4, 9);

	migrate(f.m, p, 4, 4);
	/* Page 1 comes back, then takes the write. */
	p[page_size() + 100] = 0x42;
	cr_expect_eq(p[page_size() + 100], 0x42);
	cr_expect_eq(p[page_size() + 99], filled_byte(1, 9));
	cr_expect_eq(p[page_size() + 101], filled_byte(1, 9));
	p[page_size() + 100] = filled_byte(1, 9);
	expect_filled_pages(p, 4, 9);
	fixture_close(&f);
}

Test(migrate, device_reads_its_own_memory_without_cpu_faults)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 16;
	unsigned char *p = map_filled(n, 5), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };
	uint64_t cpu_faults;

	migrate(f.m, p, n, n);
	cpu_faults = stats_of(f.h).cpu_faults;
	cr_assert_eq(hmmu_device_read(f.m, &c, buf), 0);
	cr_expect_eq(c.cpages, n);
	expect_filled_pages(buf, n, 5);
	cr_expect_eq(stats_of(f.h).cpu_faults, cpu_faults,
		     "the device read device memory");
	cr_expect_eq(state_of(f.m, p), HMMU_PAGE_DEV_LOCAL,
		     "still on the device");
	free(buf);
	fixture_close(&f);
}

Test(migrate, other_device_reads_migrated_pages)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *m1 = mirror_registered(f.h, "dmirror1");
	size_t n = 8;
	unsigned char *p = map_filled(n, 11), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };

	migrate(f.m, p, n, n);
	cr_expect_eq(state_of(m1, p), HMMU_PAGE_DEV_REMOTE);
	cr_assert_eq(hmmu_device_read(m1, &c, buf), 0);
	expect_filled_pages(buf, n, 11);
	expect_filled_pages(p, n, 11);
	free(buf);
	hmmu_mirror_destroy(m1);
	fixture_close(&f);
}

/*
 * A whole chunk of a range fault (1024 pages) in another device's memory:
 * each page comes back as the read reaches it, two tries a page. The retry
 * bound counts tries in a row without progress, not the pages of a read
 * (it once failed such a read with -EBUSY near its 1000th page).
 */
Test(migrate, other_device_reads_a_thousand_migrated_pages_in_one_command)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *m1 = mirror_registered(f.h, "dmirror1");
	size_t n = 1024;
	unsigned char *p = map_filled(n, 5), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };
	int err;

	migrate(f.m, p, n, n);
	err = hmmu_device_read(m1, &c, buf);
	cr_assert_eq(err, 0, "device read: %s", strerror(-err));
	cr_expect_eq(c.cpages, n);
	expect_filled_pages(buf, n, 5);
	expect_filled_pages(p, n, 5);
	free(buf);
	munmap(p, n * page_size());
	hmmu_mirror_destroy(m1);
	fixture_close(&f);
}

Test(migrate, migrate_to_system_brings_everything_back)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 20;
	unsigned char *p = map_filled(n, 1);
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };
	uint64_t cpu_faults;

	migrate(f.m, p, n, n);
	cr_assert_eq(hmmu_migrate_to_system(f.m, &c), 0);
	cr_expect_eq(c.cpages, n);
	cpu_faults = stats_of(f.h).cpu_faults;
	expect_filled_pages(p, n, 1);
	cr_expect_eq(stats_of(f.h).cpu_faults, cpu_faults,
		     "no CPU fault: the pages were back already");
	cr_expect_eq(stats_of(f.h).device_mem_pages, 0);
	fixture_close(&f);
}

Test(migrate, partial_range_with_hole_and_read_only_part)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char *p = map_filled(12, 2);

	/* [0,4) rw, [4,6) hole, [6,8) read-only, [8,12) rw */
	cr_assert_eq(munmap(p + 4 * page_size(), 2 * page_size()), 0);
	cr_assert_eq(mprotect(p + 6 * page_size(), 2 * page_size(), PROT_READ),
		     0);
	/* As the kernel's migrate_vma: read-only anonymous pages move too. */
	migrate(f.m, p, 12, 10);
	cr_expect_eq(state_of(f.m, p), HMMU_PAGE_DEV_LOCAL);
	cr_expect_eq(state_of(f.m, p + 6 * page_size()), HMMU_PAGE_DEV_LOCAL);
	cr_expect_eq(state_of(f.m, p + 4 * page_size()), HMMU_PAGE_ERROR);
	for (int i = 0; i < 12; i++) {
		if (i == 4 || i == 5)
			continue;
		cr_expect_eq(p[i * page_size() + 17], filled_byte(i, 2),
			     "page %d", i);
	}
	fixture_close(&f);
}

struct writer {
	unsigned char *p;
	size_t npages;
	atomic_int started; /* a round is done: the migrations may begin */
	atomic_int stop;
	unsigned long rounds;
};

/* Each round writes round number into byte 0 of every page, in order. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;

	while (!atomic_load(&w->stop)) {
		w->rounds++;
		for (size_t i = 0; i < w->npages; i++)
			((volatile unsigned char *)w->p)[i * page_size()] =
				(unsigned char)w->rounds;
		atomic_store(&w->started, 1);
	}
	return NULL;
}

Test(migrate, concurrent_cpu_writes_are_never_lost)
{
	struct fixture f = fixture_open("dmirror0");
	struct writer w = { .npages = 64 };
	pthread_t t;

	w.p = map_filled(w.npages, 0);
	cr_assert_eq(pthread_create(&t, NULL, writer_main, &w), 0);
	/*
	 * Else, on a busy machine, the 50 migrations may all be done before
	 * the writer ever ran: no race, and no round to find in the pages.
	 */
	while (!atomic_load(&w.started))
		sched_yield();
	for (int i = 0; i < 50; i++) {
		struct hmmu_cmd c = { .addr = (uintptr_t)w.p, .npages = w.npages };

		cr_assert_eq(hmmu_migrate_to_device(f.m, &c), 0, "round %d", i);
	}
	atomic_store(&w.stop, 1);
	pthread_join(t, NULL);
	/* The writer always finishes a round: every page holds the last. */
	for (size_t i = 0; i < w.npages; i++)
		cr_assert_eq(w.p[i * page_size()], (unsigned char)w.rounds,
			     "page %zu lost a write (%u, want %u)", i,
			     w.p[i * page_size()], (unsigned char)w.rounds);
	for (size_t i = 0; i < w.npages; i++)
		cr_assert_eq(w.p[i * page_size() + 1], filled_byte(i, 0),
			     "page %zu lost its data", i);
	fixture_close(&f);
}

Test(migrate, kernel_reads_a_migrated_buffer_for_the_client)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char *p = map_filled(2, 4), out[64];
	int fds[2];

	migrate(f.m, p, 2, 2);
	cr_assert_eq(pipe(fds), 0);
	/* write(2) copies from the migrated page in kernel mode. */
	cr_assert_eq(write(fds[1], p + page_size() + 10, sizeof(out)),
		     (ssize_t)sizeof(out));
	cr_assert_eq(read(fds[0], out, sizeof(out)), (ssize_t)sizeof(out));
	for (size_t i = 0; i < sizeof(out); i++)
		cr_assert_eq(out[i], filled_byte(1, 4));
	close(fds[0]);
	close(fds[1]);
	fixture_close(&f);
}

Test(migrate, device_memory_exhaustion_is_enomem_and_changes_nothing)
{
	/* All of it for this one user: the per-user share is tested elsewhere. */
	const char *args[] = { "--device", "dmirror:name=small,mem=64K",
			       "--limit", "devmem-percent-per-user=100", NULL };
	struct fixture f;
	unsigned char *p;
	struct hmmu_cmd c;

	daemon_restart(args);
	expect_daemon_log("device-cmd on small: %s", strerror(ENOMEM));
	f = fixture_open("small");
	p = map_filled(32, 6);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 32 };
	cr_expect_eq(hmmu_migrate_to_device(f.m, &c), -ENOMEM);
	cr_expect_eq(stats_of(f.h).device_mem_pages, 0);
	cr_expect_neq(state_of(f.m, p), HMMU_PAGE_DEV_LOCAL);
	expect_filled_pages(p, 32, 6);
	/* What fits, migrates. */
	migrate(f.m, p, (size_t)(65536 / page_size()), 65536 / page_size());
	expect_filled_pages(p, 32, 6);
	fixture_close(&f);
}

Test(migrate, device_release_returns_every_page)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 24;
	unsigned char *p = map_filled(n, 8);
	uint64_t cpu_faults;

	migrate(f.m, p, n, n);
	cr_assert_eq(hmmu_device_release(f.m), 0);
	cr_expect_eq(stats_of(f.h).device_mem_pages, 0);
	cpu_faults = stats_of(f.h).cpu_faults;
	expect_filled_pages(p, n, 8);
	cr_expect_eq(stats_of(f.h).cpu_faults, cpu_faults);
	fixture_close(&f);
}

Test(migrate, unregister_returns_every_page)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 24;
	unsigned char *p = map_filled(n, 12);

	migrate(f.m, p, n, n);
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	cr_expect_eq(stats_of(f.h).device_mem_pages, 0);
	cr_expect_not(smaps_has_uffd_flags());
	expect_filled_pages(p, n, 12);
	fixture_close(&f);
}

Test(migrate, exclusive_access_is_revoked_by_cpu_access)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char *p = map_filled(4, 13);
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 4 };

	cr_assert_eq(hmmu_make_exclusive(f.m, &c), 0);
	cr_expect_eq(c.cpages, 4);
	cr_expect_eq(hmmu_check_exclusive(f.m, &c), 0);
	cr_expect_eq(p[2 * page_size() + 5], filled_byte(2, 13));
	cr_expect_eq(hmmu_check_exclusive(f.m, &c), -EPERM,
		     "a CPU read revoked page 2");
	expect_filled_pages(p, 4, 13);
	fixture_close(&f);
}

Test(migrate, fork_after_migration_child_sees_the_data)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 8;
	unsigned char *p = map_filled(n, 21);
	int status;
	pid_t pid;

	migrate(f.m, p, n, n);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		for (size_t i = 0; i < n; i++)
			if (p[i * page_size() + 3] != filled_byte(i, 21))
				_exit(1);
		p[0] = 0; /* the child's own copy */
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the child saw the migrated data");
	expect_filled_pages(p, n, 21);
	fixture_close(&f);
}

Test(migrate, client_killed_with_pages_on_device_frees_them)
{
	struct fixture f = fixture_open(NULL);
	int ready[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct fixture fc;
		unsigned char *p = map_filled(64, 1);
		struct hmmu_cmd cmd = { .addr = (uintptr_t)p, .npages = 64 };

		if (fixture_try_open(&fc, "dmirror0") ||
		    hmmu_migrate_to_device(fc.m, &cmd) || cmd.cpages != 64)
			_exit(1);
		(void)!write(ready[1], "r", 1);
		pause();
		_exit(0);
	}
	cr_assert_eq(read(ready[0], &c, 1), 1);
	cr_expect_eq(stats_of(f.h).device_mem_pages, 64);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_expect_eq(wait_for_stat(f.h, device_mem_pages, 0), 0);
	cr_expect_eq(wait_for_stat(f.h, processes, 0), 0);
	fixture_close(&f);
}

/* The daemon's resident memory, in KiB, from /proc/PID/status. */
static long daemon_rss_kib(void)
{
	char path[64], line[256];
	long kib = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", daemon_under_test.pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* One lifecycle with pages on the device: unregistered, or the process dies. */
static void lifecycle_with_device_pages(int die)
{
	struct fixture f;
	unsigned char *p;
	struct hmmu_cmd c;
	pid_t pid = die ? fork() : 0;
	int status;

	cr_assert_geq(pid, 0);
	if (pid > 0) {
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		return;
	}
	p = map_filled(8, 2);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 8 };
	if (fixture_try_open(&f, "dmirror0") ||
	    hmmu_migrate_to_device(f.m, &c) || c.cpages != 8) {
		if (die)
			_exit(1);
		cr_assert_fail("lifecycle");
	}
	if (die)
		_exit(0); /* with the mirror registered and pages on the device */
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	expect_filled_pages(p, 8, 2);
	fixture_close(&f);
	munmap(p, 8 * page_size());
}

Test(migrate, a_thousand_lifecycles_with_device_pages_leak_nothing, .timeout = 600)
{
	/*
	 * No warm page copies kept (they are the pool's, up to its cap, not
	 * a leak): what the daemon's size then says is about the mirrors.
	 */
	const char *args[] = { "--limit", "copy-pool-mib=0", NULL };
	struct fixture f;
	int fds;
	long rss;

	daemon_restart(args);
	f = fixture_open(NULL);

	/* Warm up: first-use allocations are not leaks. */
	for (int i = 0; i < 20; i++)
		lifecycle_with_device_pages(i % 2);
	/* Every teardown done: only our own connection is left. */
	cr_assert_eq(wait_for_stat(f.h, processes, 0), 0);
	cr_assert_eq(wait_for_stat(f.h, sessions, 1), 1);
	fds = count_fds(daemon_under_test.pid);
	rss = daemon_rss_kib();
	for (int i = 0; i < 1000; i++)
		lifecycle_with_device_pages(i % 2);
	cr_expect_eq(wait_for_stat(f.h, processes, 0), 0);
	cr_expect_eq(wait_for_stat(f.h, sessions, 1), 1);
	cr_expect_eq(stats_of(f.h).device_mem_pages, 0);
	cr_expect_eq(stats_of(f.h).mirrors, 0);
	cr_expect_eq(count_fds(daemon_under_test.pid), fds,
		     "the daemon leaked fds (%d, had %d)",
		     count_fds(daemon_under_test.pid), fds);
#ifndef __SANITIZE_ADDRESS__
	/*
	 * 1000 lifecycles of 8 pages: a leak of them would show as 32 MiB.
	 * Not for another build of the daemon ($HMMU_TEST_HMMUD: the TSan
	 * one), whose runtime keeps shadow and history memory of its own.
	 */
	if (!getenv("HMMU_TEST_HMMUD"))
		cr_expect_lt(daemon_rss_kib() - rss, 8 * 1024,
			     "the daemon grew from %ld to %ld KiB", rss,
			     daemon_rss_kib());
#else
	/*
	 * ASan keeps freed memory in quarantine, so RSS says nothing here;
	 * its leak check at the daemon's exit (which must be clean) does.
	 */
	(void)rss;
#endif
	fixture_close(&f);
}

Test(migrate, daemon_stop_brings_device_pages_back_first)
{
	struct fixture f = fixture_open("dmirror0");
	size_t n = 16;
	unsigned char *p = map_filled(n, 30);
	int status;

	migrate(f.m, p, n, n);
	cr_assert_eq(stats_of(f.h).device_mem_pages, n);
	/* A clean stop releases the mirror while it can still copy back. */
	kill(daemon_under_test.pid, SIGTERM);
	cr_assert_eq(waitpid(daemon_under_test.pid, &status, 0),
		     daemon_under_test.pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "status %#x", status);
	daemon_under_test.pid = 0; /* stopped already: .fini has nothing to do */
	expect_filled_pages(p, n, 30);
	cr_expect_not(smaps_has_uffd_flags());
	cr_expect_eq(hmmu_mirror_unregister(f.m), -ECONNRESET);
	hmmu_disconnect(f.h);
	daemon_remove_dir();
}
