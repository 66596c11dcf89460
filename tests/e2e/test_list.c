/* SPDX-License-Identifier: MIT */
/*
 * Listing what the daemon holds (hmmuctl processes|mirrors): the right
 * entries, across reply pages, and only those the caller may see.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <stdio.h>
#include <unistd.h>

/* Some clients run as another user: the socket is open to all. */
TestSuite(list, .init = daemon_start_open_to_all, .fini = daemon_stop,
	  .timeout = 60);

static const struct hmmu_mirror_info *find_mirror(const struct hmmu_mirror_info *m,
						  int n, pid_t pid,
						  const char *device)
{
	for (int i = 0; i < n; i++)
		if (m[i].pid == pid && strcmp(m[i].device, device) == 0)
			return &m[i];
	return NULL;
}

Test(list, processes_and_mirrors_are_listed_with_their_pages)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *b = mirror_registered(f.h, "acc0");
	struct hmmu_process_info procs[8];
	struct hmmu_mirror_info mirrors[8];
	const struct hmmu_mirror_info *mi;
	char *p = map_rw(3), *buf = xmalloc(3 * page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 3 };
	int n;

	cr_assert_eq(hmmu_device_read(f.m, &c, buf), 0);
	n = hmmu_list_processes(f.h, procs, 8);
	cr_assert_eq(n, 1);
	cr_expect_eq(procs[0].pid, getpid());
	cr_expect_eq(procs[0].uid, getuid());
	cr_expect_eq(procs[0].mirrors, 2);
	n = hmmu_list_mirrors(f.h, mirrors, 8);
	cr_assert_eq(n, 2);
	mi = find_mirror(mirrors, n, getpid(), "dmirror0");
	cr_assert_not_null(mi);
	cr_expect_eq(mi->device_pages, 3);
	mi = find_mirror(mirrors, n, getpid(), "acc0");
	cr_assert_not_null(mi);
	cr_expect_eq(mi->device_pages, 0);
	hmmu_mirror_destroy(f.m);
	f.m = NULL;
	hmmu_mirror_destroy(b);
	cr_expect_eq(hmmu_list_processes(f.h, procs, 8), 0);
	free(buf);
	fixture_close(&f);
}

Test(list, long_lists_span_several_replies)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_mirror *m[20];
	struct hmmu_mirror_info mirrors[32];
	int n;

	for (int i = 0; i < 20; i++)
		m[i] = mirror_registered(f.h, i % 2 ? "dmirror1" : "dmirror0");
	n = hmmu_list_mirrors(f.h, mirrors, 32);
	cr_assert_eq(n, 20);
	for (int i = 0; i < n; i++) {
		cr_expect_eq(mirrors[i].pid, getpid());
		cr_expect(strcmp(mirrors[i].device, "dmirror0") == 0 ||
			  strcmp(mirrors[i].device, "dmirror1") == 0);
	}
	/* Fewer slots than entries: the total, and only that many filled. */
	memset(mirrors, 0x77, sizeof(mirrors));
	cr_expect_eq(hmmu_list_mirrors(f.h, mirrors, 5), 20);
	cr_expect_eq(mirrors[4].pid, getpid());
	cr_expect_eq(mirrors[5].pid, 0x77777777);
	cr_expect_eq(hmmu_list_mirrors(f.h, NULL, 0), 20);
	for (int i = 0; i < 20; i++)
		hmmu_mirror_destroy(m[i]);
	fixture_close(&f);
}

Test(list, other_users_processes_are_not_shown)
{
	struct fixture f;
	int status;
	pid_t pid;

	require_root();
	f = fixture_open("dmirror0");
	/* The socket's directory must let the other user in. */
	daemon_dir_open_to_all();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu_process_info procs[4];
		struct hmmu *hc;

		if (become_nobody() ||
		    hmmu_connect(daemon_under_test.socket, &hc))
			_exit(2);
		/* Root's process is there, but not for this user. */
		_exit(hmmu_list_processes(hc, procs, 4) == 0 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "status %#x", status);
	/* Root sees its own. */
	cr_expect_eq(hmmu_list_processes(f.h, NULL, 0), 1);
	fixture_close(&f);
}

/* Run hmmuctl against the daemon under test; its stdout into @out. */
static int run_hmmuctl(const char *command, char *out, size_t len)
{
	int fds[2], status;
	size_t got = 0;
	ssize_t n;
	pid_t pid;

	cr_assert_eq(pipe(fds), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		execl(HMMUCTL_PATH, "hmmuctl", "--socket",
		      daemon_under_test.socket, command, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	while (got < len - 1 && (n = read(fds[0], out + got, len - 1 - got)) > 0)
		got += (size_t)n;
	out[got] = '\0';
	close(fds[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Test(list, hmmuctl_shows_devices_processes_mirrors_and_stats)
{
	struct fixture f = fixture_open("dmirror1");
	char out[4096], pid[16];

	snprintf(pid, sizeof(pid), "%d ", getpid());
	cr_assert_eq(run_hmmuctl("devices", out, sizeof(out)), 0);
	cr_expect(strstr(out, "dmirror0") && strstr(out, "acc0"), "%s", out);
	cr_assert_eq(run_hmmuctl("processes", out, sizeof(out)), 0);
	cr_expect(strstr(out, pid), "%s", out);
	cr_assert_eq(run_hmmuctl("mirrors", out, sizeof(out)), 0);
	cr_expect(strstr(out, pid) && strstr(out, "dmirror1"), "%s", out);
	cr_assert_eq(run_hmmuctl("stats", out, sizeof(out)), 0);
	cr_expect(strstr(out, "mirrors              1"), "%s", out);
	cr_expect_eq(run_hmmuctl("bogus", out, sizeof(out)), 2);
	fixture_close(&f);
}
