/* SPDX-License-Identifier: MIT */
/*
 * The mirror lifecycle, rules 1-6 of the spec, end to end against a private
 * hmmud.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(lifecycle, .init = daemon_start, .fini = daemon_stop, .timeout = 60);

/*
 * @n pages of 0x5a; device_touch() of them registers their VMA with the
 * userfaultfd.
 */
static void *map_pages(size_t n)
{
	void *p = map_rw(n);

	memset(p, 0x5a, n * page_size());
	return p;
}

Test(lifecycle, default_devices_are_two_dmirrors)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_device_info info;

	expect_daemon_log("no device number 1000");
	cr_assert_geq(hmmu_device_count(f.h), 2);
	cr_assert_eq(hmmu_device_info(f.h, 0, &info), 0);
	cr_expect_str_eq(info.name, "dmirror0");
	cr_expect_str_eq(info.model, "dmirror");
	cr_expect_eq(info.page_size, (uint32_t)page_size());
	cr_assert_eq(hmmu_device_info(f.h, 1, &info), 0);
	cr_expect_str_eq(info.name, "dmirror1");
	cr_expect_eq(hmmu_device_info(f.h, 1000, &info), -ENODEV);
	fixture_close(&f);
}

Test(lifecycle, mirror_create_unknown_device_is_enodev)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_mirror *m = NULL;

	expect_daemon_log("no device named");
	cr_expect_eq(hmmu_mirror_create(f.h, "nosuchdevice", &m), -ENODEV);
	cr_expect_null(m);
	cr_expect_eq(hmmu_mirror_create(f.h, "", &m), -ENODEV);
	cr_expect_eq(stats_of(f.h).processes, 0);
	fixture_close(&f);
}

Test(lifecycle, first_registration_creates_process_state)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_stats st = stats_of(f.h);

	cr_expect_eq(st.processes, 0);
	cr_expect_eq(st.my_state, 0);
	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror0", &f.m), 0);
	/* Creating is not registering: still no state. */
	cr_expect_eq(stats_of(f.h).my_state, 0);
	cr_assert_eq(hmmu_mirror_register(f.m), 0);
	st = stats_of(f.h);
	cr_expect_eq(st.processes, 1);
	cr_expect_eq(st.mirrors, 1);
	cr_expect_eq(st.my_state, 1);
	cr_expect_eq(st.my_mirrors, 1);
	fixture_close(&f);
}

Test(lifecycle, mirror_double_register_is_ebusy)
{
	struct fixture f = fixture_open("dmirror0");

	expect_daemon_log("on dmirror0: %s", strerror(EBUSY));
	cr_expect_eq(hmmu_mirror_register(f.m), -EBUSY);
	/* ... and changes nothing. */
	cr_expect_eq(stats_of(f.h).mirrors, 1);
	cr_expect_eq(stats_of(f.h).my_mirrors, 1);
	cr_expect_eq(hmmu_mirror_unregister(f.m), 0);
	cr_expect_eq(stats_of(f.h).mirrors, 0);
	fixture_close(&f);
}

Test(lifecycle, mirror_unregister_unregistered_is_einval)
{
	struct fixture f = fixture_open(NULL);

	expect_daemon_log("not registered");
	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror0", &f.m), 0);
	cr_expect_eq(hmmu_mirror_unregister(f.m), -EINVAL);
	cr_assert_eq(hmmu_mirror_register(f.m), 0);
	cr_expect_eq(hmmu_mirror_unregister(f.m), 0);
	cr_expect_eq(hmmu_mirror_unregister(f.m), -EINVAL);
	cr_expect_eq(stats_of(f.h).processes, 0);
	cr_expect_eq(stats_of(f.h).mirrors, 0);
	fixture_close(&f);
}

Test(lifecycle, mirror_reregister_after_unregister_works)
{
	struct fixture f = fixture_open(NULL);
	void *p = map_pages(4);

	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror0", &f.m), 0);
	for (int round = 0; round < 3; round++) {
		cr_assert_eq(hmmu_mirror_register(f.m), 0, "round %d", round);
		cr_expect_eq(stats_of(f.h).my_mirrors, 1);
		device_touch(f.m, p, 4);
		cr_assert_eq(hmmu_mirror_unregister(f.m), 0, "round %d", round);
		cr_expect_eq(stats_of(f.h).my_state, 0);
	}
	fixture_close(&f);
}

Test(lifecycle, two_mirrors_on_one_device)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b = mirror_registered(f.h, "dmirror0");
	struct hmmu_stats st = stats_of(f.h);

	cr_expect_eq(st.processes, 1);
	cr_expect_eq(st.mirrors, 2);
	cr_expect_eq(st.my_mirrors, 2);
	cr_expect_eq(hmmu_mirror_unregister(f.m), 0);
	st = stats_of(f.h);
	cr_expect_eq(st.processes, 1, "b still holds the state");
	cr_expect_eq(st.my_mirrors, 1);
	cr_expect_eq(hmmu_mirror_unregister(b), 0);
	cr_expect_eq(stats_of(f.h).processes, 0);
	hmmu_mirror_destroy(b);
	fixture_close(&f);
}

Test(lifecycle, two_mirrors_on_two_devices)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b = mirror_registered(f.h, "dmirror1");
	void *p = map_pages(8);

	device_touch(f.m, p, 8);
	device_touch(b, p, 8);
	cr_expect_eq(stats_of(f.h).device_pages, 16);
	cr_expect_eq(stats_of(f.h).my_mirrors, 2);
	cr_expect_eq(stats_of(f.h).processes, 1);
	hmmu_mirror_destroy(f.m); /* unregisters */
	f.m = NULL;
	cr_expect_eq(stats_of(f.h).device_pages, 8);
	hmmu_mirror_destroy(b);
	cr_expect_eq(stats_of(f.h).device_pages, 0);
	cr_expect_eq(stats_of(f.h).processes, 0);
	fixture_close(&f);
}

Test(lifecycle, unregister_drops_every_device_page)
{
	struct fixture f = fixture_open("dmirror1");
	struct hmmu_mirror *m = mirror_registered(f.h, "dmirror0");
	void *p = map_pages(32);

	device_touch(m, p, 32);
	device_touch(f.m, p, 4);
	cr_assert_eq(stats_of(f.h).device_pages, 36);
	cr_assert_eq(hmmu_mirror_unregister(m), 0);
	/* Rule 6: no page of m once unregister returns; f.m's stay. */
	cr_expect_eq(stats_of(f.h).device_pages, 4);
	hmmu_mirror_destroy(m);
	fixture_close(&f);
}

Test(lifecycle, last_unregister_removes_uffd_registrations)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b = mirror_registered(f.h, "dmirror1");
	char *p = map_pages(16);

	cr_expect_not(smaps_has_uffd_flags());
	device_touch(f.m, p, 16);
	cr_expect(smaps_vma_has_flag(p, "uw"),
		  "the mirrored range is registered for write-protect");
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	cr_expect(smaps_vma_has_flag(p, "uw"), "b still mirrors the process");
	cr_assert_eq(hmmu_mirror_unregister(b), 0);
	cr_expect_not(smaps_has_uffd_flags(),
		      "no VMA keeps uffd flags after the last unregister");
	/* The pages are plain memory again: writes need no daemon. */
	memset(p, 1, 16 * page_size());
	cr_expect_eq(stats_of(f.h).cpu_faults, 0);
	hmmu_mirror_destroy(b);
	fixture_close(&f);
}

Test(lifecycle, two_processes_at_once)
{
	struct fixture f = fixture_open("dmirror0");
	int to_child[2], to_parent[2];
	char c = 0;
	pid_t pid;

	cr_assert_eq(pipe(to_child), 0);
	cr_assert_eq(pipe(to_parent), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct fixture fc;
		struct hmmu_mirror *b;
		struct hmmu_stats st;
		int ok;

		if (fixture_try_open(&fc, "dmirror0") ||
		    hmmu_mirror_create(fc.h, "dmirror1", &b) ||
		    hmmu_mirror_register(b))
			_exit(1);
		ok = hmmu_stats(fc.h, &st, sizeof(st)) == (int)sizeof(st) &&
		     st.my_state == 1 &&
		     st.my_mirrors == 2 && st.processes == 2 && st.mirrors == 3;
		(void)!write(to_parent[1], ok ? "y" : "n", 1);
		(void)!read(to_child[0], &c, 1);
		hmmu_mirror_destroy(fc.m);
		hmmu_mirror_destroy(b);
		hmmu_disconnect(fc.h);
		_exit(0);
	}
	cr_assert_eq(read(to_parent[0], &c, 1), 1);
	cr_expect_eq(c, 'y', "the child saw its own state and both processes");
	struct hmmu_stats st = stats_of(f.h);

	cr_expect_eq(st.processes, 2);
	cr_expect_eq(st.mirrors, 3);
	cr_expect_eq(st.my_mirrors, 1, "the child's mirrors are not ours");
	(void)!write(to_child[1], "x", 1);
	int status;

	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_expect_eq(wait_for_stat(f.h, processes, 1), 1);
	cr_expect_eq(stats_of(f.h).mirrors, 1);
	fixture_close(&f);
}

/* A child registers @n mirrors, touches memory through them, then dies. */
static void client_dies_with_mirrors(int n, int how)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_stats before = stats_of(f.h);
	int ready[2], go[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(go), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu *hc;
		struct hmmu_mirror *m;
		char *p = map_pages(8);
		struct hmmu_cmd cmd = { .addr = (uintptr_t)p, .npages = 8 };
		char buf[8 * 4096];

		if (hmmu_connect(NULL, &hc))
			_exit(1);
		for (int i = 0; i < n; i++) {
			if (hmmu_mirror_create(hc, i % 2 ? "dmirror1" : "dmirror0", &m) ||
			    hmmu_mirror_register(m))
				_exit(1);
			if (page_size() == 4096 &&
			    hmmu_device_read(m, &cmd, buf))
				_exit(1);
		}
		(void)!write(ready[1], "r", 1);
		if (how == 0)
			pause(); /* killed by the parent */
		(void)!read(go[0], &c, 1);
		_exit(0); /* exits with mirrors registered */
	}
	cr_assert_eq(read(ready[0], &c, 1), 1);
	cr_expect_eq(stats_of(f.h).mirrors, before.mirrors + n);
	if (how == 0)
		kill(pid, SIGKILL);
	else
		(void)!write(go[1], "g", 1);
	waitpid(pid, NULL, 0);

	/* Rule 5: release once per mirror, then the state goes. */
	cr_expect_eq(wait_for_stat(f.h, releases, before.releases + n),
		     before.releases + n);
	cr_expect_eq(wait_for_stat(f.h, processes, before.processes),
		     before.processes);
	struct hmmu_stats after = stats_of(f.h);

	cr_expect_eq(after.mirrors, before.mirrors);
	cr_expect_eq(after.device_pages, before.device_pages);
	fixture_close(&f);
}

Test(lifecycle, sigkill_of_client_releases_each_mirror_once)
{
	client_dies_with_mirrors(3, 0);
}

Test(lifecycle, exit_of_client_releases_each_mirror_once)
{
	client_dies_with_mirrors(2, 1);
}

Test(lifecycle, disconnect_releases_mirrors_of_that_connection_only)
{
	struct fixture keep = fixture_open("dmirror0");
	struct hmmu *h2 = connect_or_die();

	mirror_registered(h2, "dmirror0");
	mirror_registered(h2, "dmirror1");
	cr_assert_eq(stats_of(keep.h).my_mirrors, 3);
	hmmu_disconnect(h2);
	cr_expect_eq(wait_for_stat(keep.h, releases, 2), 2);
	cr_expect_eq(stats_of(keep.h).my_mirrors, 1);
	cr_expect_eq(stats_of(keep.h).processes, 1,
		     "keep still holds the state");
	fixture_close(&keep);
}

Test(lifecycle, handle_used_in_forked_child_is_echild)
{
	struct fixture f = fixture_open("dmirror0");
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu_stats st;
		int ok = hmmu_stats(f.h, &st, sizeof(st)) == -ECHILD &&
			 hmmu_mirror_unregister(f.m) == -ECHILD &&
			 hmmu_mirror_register(f.m) == -ECHILD;

		_exit(ok ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The parent's mirror is untouched. */
	cr_expect_eq(stats_of(f.h).my_mirrors, 1);
	fixture_close(&f);
}

/*
 * The same for a child that no fork handler hears of (a raw clone, as a
 * runtime or a sandbox makes them): libhmmu tells the child by the
 * handle's wiped-on-fork page, not by anything fork() runs.
 */
Test(lifecycle, handle_used_in_raw_cloned_child_is_echild)
{
	struct fixture f = fixture_open("dmirror0");
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, NULL, NULL, 0);
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu_stats st;
		int ok = hmmu_stats(f.h, &st, sizeof(st)) == -ECHILD &&
			 hmmu_device_count(f.h) == -ECHILD &&
			 hmmu_mirror_unregister(f.m) == -ECHILD;

		syscall(SYS_exit_group, ok ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "status %#x", status);
	cr_expect_eq(stats_of(f.h).my_mirrors, 1);
	cr_expect_geq(hmmu_device_count(f.h), 1);
	fixture_close(&f);
}

/*
 * A call costs no getpid(): in a child that connected itself, getpid()
 * is made to fail (seccomp), and its calls still work; a handle of the
 * parent still says -ECHILD there.
 */
Test(lifecycle, calls_make_no_getpid_and_a_parents_handle_still_is_echild)
{
	struct fixture f = fixture_open("dmirror0");
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct sock_filter code[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
				 offsetof(struct seccomp_data, nr)),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpid, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
			BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		};
		struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]),
					   .filter = code };
		struct hmmu *own = NULL;
		int ok;

		if (hmmu_connect(daemon_under_test.socket, &own))
			_exit(2);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
		    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
			_exit(3);
		if (syscall(SYS_getpid) != -1)
			_exit(4);
		ok = hmmu_device_count(own) >= 1 &&
		     hmmu_device_count(f.h) == -ECHILD;
		hmmu_disconnect(own);
		_exit(ok ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "status %#x (2 connect, 3 seccomp, 4 getpid still works)",
		  status);
	fixture_close(&f);
}
