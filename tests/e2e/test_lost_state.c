/* SPDX-License-Identifier: MIT */
/*
 * What a client sees when hmmud restarts without its state, or dies with
 * nobody to restart it (docs/protocol.md §11). The restart that keeps the
 * state is test_restart's; tests/unit/test_reconnect.c pins down the
 * client's side of it against a stand-in.
 *
 *  - Under hmmu-supervise without the fd store, a crash brings a successor
 *    with nothing to adopt: libhmmu connects to it, finds another
 *    incarnation, and gives up on the handle. Every call fails with
 *    -ESHUTDOWN, a mirror without pages in device memory too, with a
 *    detail that names the restart; the pages in device memory come home,
 *    every byte.
 *  - Killed with no supervisor, nobody listens any more: the calls fail at
 *    once, not after a connect timeout, and the pages come home as well.
 *
 * An hmmud that announces no incarnation (before §11) keeps the old
 * answers: "hmmud went away", -ECONNRESET for a handle without pages.
 */
#include "harness.h"
#include "helpers.h"
#include "supervised.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A pattern distinct per page, never zero. */
static unsigned char pattern(size_t page, size_t byte)
{
	return (unsigned char)(1 + (page * 131 + byte * 7) % 255);
}

static unsigned char *map_pattern(size_t n)
{
	unsigned char *p = mmap(NULL, n * page_size(), PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < page_size(); b++)
			p[i * page_size() + b] = pattern(i, b);
	return p;
}

static void expect_pattern(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (size_t b = 0; b < page_size(); b++)
			if (p[i * page_size() + b] != pattern(i, b))
				cr_assert_fail("page %zu byte %zu: %#x, want %#x",
					       i, b, p[i * page_size() + b],
					       pattern(i, b));
}

static void migrate_all(struct hmmu_mirror *m, void *p, size_t n)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };

	cr_assert_eq(hmmu_migrate_to_device(m, &c), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(c.cpages, n);
}

static struct hmmu_mirror *registered(struct hmmu *h, const char *device)
{
	struct hmmu_mirror *m;

	cr_assert_eq(hmmu_mirror_create(h, device, &m), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_register(m), 0, "%s", hmmu_error_detail());
	return m;
}

/* The incarnation the daemon at @path announces (0: none, an older one). */
static uint64_t incarnation_at(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct hmmu_wire_hello req = { .version = HMMU_PROTO_VERSION };
	struct hmmu_wire_hello_reply rep;
	union raw_msg m;
	size_t len = raw_build(&m, HMMU_OP_HELLO, 1, &req, sizeof(req));
	ssize_t n;
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	strcpy(addr.sun_path, path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0,
		     "%s: %s", path, strerror(errno));
	cr_assert_eq(raw_sendmsg(fd, m.buf, len, NULL, 0, NULL), 0);
	n = raw_recv(fd, &m, 10000);
	close(fd);
	cr_assert_gt(n, (ssize_t)RAW_HDR, "no HELLO reply: %zd", n);
	cr_assert_eq(m.hdr.status, 0);
	if ((size_t)n < RAW_HDR + sizeof(rep))
		return 0;
	memcpy(&rep, raw_payload(&m), sizeof(rep));
	return rep.incarnation;
}

#define expect_in_detail(what)                                                 \
	cr_expect(strstr(hmmu_error_detail(), (what)) != NULL,                 \
		  "no '%s' in the detail '%s'", (what), hmmu_error_detail())

/* ---- a restart without the fd store ------------------------------------ */

TestSuite(lost_state, .fini = supervised_cleanup, .timeout = 120);

Test(lost_state, a_restart_without_the_fd_store_fails_calls_pages_come_home)
{
	const char *hmmud = supervised_hmmud_path();
	struct hmmu *h, *idle_h;
	struct hmmu_mirror *moved, *idle, *other;
	struct hmmu_cmd c = { .npages = 1 };
	uint64_t before, after;
	size_t n = 16;
	unsigned char *p, buf[4096];
	char want[96];
	int err;

	cr_assert_leq(page_size(), sizeof(buf));
	supervised_prepare();
	supervised_start((const char *[]){ "--listen", supervised.sock, NULL },
			 (const char *[]){ hmmud, "--foreground",
					   "--log-level", "info", NULL });
	supervised_wait_state("restarts=0\nready=1");
	before = incarnation_at(supervised.sock);

	/* One handle with pages in device memory and a mirror without. */
	cr_assert_eq(hmmu_connect(supervised.sock, &h), 0, "%s",
		     hmmu_error_detail());
	moved = registered(h, "dmirror0");
	idle = registered(h, "acc0");
	p = map_pattern(n);
	migrate_all(moved, p, n);
	/* And one handle that never migrated: no failsafe watcher. */
	cr_assert_eq(hmmu_connect(supervised.sock, &idle_h), 0, "%s",
		     hmmu_error_detail());
	other = registered(idle_h, "dmirror0");

	supervised_crash_and_wait(1);
	after = incarnation_at(supervised.sock);
	if (before)
		cr_expect_neq(after, before, "a start with nothing to adopt "
			      "announced the old incarnation");

	c.addr = (uintptr_t)p;
	err = hmmu_device_read(idle, &c, buf);
	cr_expect_eq(err, -ESHUTDOWN, "a mirror without pages: %s",
		     strerror(-err));
	if (before) {
		snprintf(want, sizeof(want), "incarnation %016" PRIx64
			 ", now %016" PRIx64, before, after);
		expect_in_detail("hmmud restarted without this process's state");
		expect_in_detail(want);
	} else {
		expect_in_detail("hmmud went away");
	}
	snprintf(want, sizeof(want), "the %zu pages that were in device "
		 "memory were brought home", n);
	expect_in_detail(want);
	expect_pattern(p, n);
	cr_expect_eq(hmmu_migrate_to_device(moved, &c), -ESHUTDOWN);
	cr_expect_eq(hmmu_device_count(h), -ESHUTDOWN);

	/* Without pages: -ESHUTDOWN naming the restart, or as before §11. */
	err = hmmu_device_count(idle_h);
	if (before) {
		cr_expect_eq(err, -ESHUTDOWN, "%s", strerror(-err));
		expect_in_detail("hmmud restarted without this process's state");
		expect_in_detail("connect again");
	} else {
		cr_expect_eq(err, -ECONNRESET, "%s", strerror(-err));
		expect_in_detail("hmmud went away");
	}
	hmmu_mirror_destroy(other);
	hmmu_disconnect(idle_h);
	hmmu_mirror_destroy(idle);
	hmmu_mirror_destroy(moved);
	hmmu_disconnect(h);

	/* The successor serves a new connection. */
	cr_assert_eq(hmmu_connect(supervised.sock, &h), 0, "%s",
		     hmmu_error_detail());
	cr_expect_gt(hmmu_device_count(h), 0);
	hmmu_disconnect(h);
	munmap(p, n * page_size());
	supervised_stop();
}

/* ---- killed, and nobody restarts it ------------------------------------ */

TestSuite(gone, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

Test(gone, a_killed_daemon_nobody_restarts_fails_calls_at_once)
{
	struct hmmu *h = connect_or_die(), *idle_h = connect_or_die();
	struct hmmu_mirror *moved = mirror_registered(h, "dmirror0");
	struct hmmu_mirror *idle = mirror_registered(h, "acc0");
	struct hmmu_mirror *other = mirror_registered(idle_h, "dmirror0");
	struct hmmu_cmd c = { .npages = 1 };
	size_t n = 16;
	unsigned char *p = map_pattern(n), buf[4096];
	char want[96];
	int err;

	cr_assert_leq(page_size(), sizeof(buf));
	migrate_all(moved, p, n);
	daemon_kill(); /* and its directory, socket and all, is gone */

	c.addr = (uintptr_t)p;
	err = hmmu_device_read(idle, &c, buf);
	cr_expect_eq(err, -ESHUTDOWN, "%s", strerror(-err));
	expect_in_detail("hmmud went away");
	snprintf(want, sizeof(want), "the %zu pages that were in device "
		 "memory were brought home", n);
	expect_in_detail(want);
	expect_pattern(p, n);

	/* A handle that never migrated: reset, as ever. */
	err = hmmu_device_count(idle_h);
	cr_expect_eq(err, -ECONNRESET, "%s", strerror(-err));
	expect_in_detail("hmmud went away");
	hmmu_mirror_destroy(other);
	hmmu_disconnect(idle_h);
	hmmu_mirror_destroy(idle);
	hmmu_mirror_destroy(moved);
	hmmu_disconnect(h);
	munmap(p, n * page_size());
}

/* Child C of the next test: 0 if every byte came home, else a step's code. */
static int client_whose_child_disconnects(int ready, int go)
{
	size_t n = 8, len = n * page_size();
	struct hmmu_cmd c = { .npages = n };
	struct hmmu_mirror *m;
	unsigned char *p;
	struct hmmu *h;
	pid_t child;
	char x;

	p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(i / page_size(), i % page_size());
	c.addr = (uintptr_t)p;
	if (hmmu_connect(daemon_under_test.socket, &h) ||
	    hmmu_mirror_create(h, "dmirror0", &m) ||
	    hmmu_mirror_register(m) || hmmu_migrate_to_device(m, &c) ||
	    c.cpages != n)
		return 3;
	/* Its child cleans up as hmmu_connect(3) says it may. */
	child = fork();
	if (child < 0)
		return 4;
	if (child == 0) {
		hmmu_disconnect(h);
		_exit(0);
	}
	if (waitpid(child, NULL, 0) != child || write(ready, "r", 1) != 1 ||
	    read(go, &x, 1) != 1)
		return 5;
	/* hmmud is dead: the pages come home by our fail-safe, or never. */
	for (size_t i = 0; i < len; i++)
		if (p[i] != pattern(i / page_size(), i % page_size()))
			return 6;
	return 0;
}

/*
 * A forked child's hmmu_disconnect() of the handle it inherited lets go of
 * its own copies only. It used to stop the parent's fail-safe watcher
 * (their eventfd is shared), so the parent's next touch of a page in
 * device memory, once hmmud died, waited for ever.
 */
Test(gone, a_forked_childs_disconnect_leaves_the_parents_failsafe_armed)
{
	int ready[2], go[2], status = 0;
	pid_t client;
	char x;

	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(go), 0);
	client = fork();
	cr_assert_geq(client, 0);
	if (client == 0) {
		close(ready[0]);
		close(go[1]);
		_exit(client_whose_child_disconnects(ready[1], go[0]));
	}
	close(ready[1]);
	close(go[0]);
	cr_assert_eq(read(ready[0], &x, 1), 1, "the client failed early");
	daemon_kill();
	cr_assert_eq(write(go[1], "g", 1), 1);
	/* Bounded: a client stuck in a page fault is the failure. */
	for (int i = 0; i < 2000 && waitpid(client, &status, WNOHANG) == 0; i++)
		usleep(10000);
	if (waitpid(client, &status, WNOHANG) == 0) {
		kill(client, SIGKILL);
		waitpid(client, NULL, 0);
		cr_assert_fail("the client waited 20 s on a page in device "
			       "memory: its fail-safe was stopped");
	}
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the client: %#x (6: a byte did not come home)", status);
	close(ready[0]);
	close(go[1]);
}
