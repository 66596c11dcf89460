/* SPDX-License-Identifier: MIT */
/*
 * A crash of hmmud under a manager with an fd store (issue 12, item 1;
 * docs/protocol.md §11): the successor adopts each client process's state
 * from the store, and the client sees a stall, never an error nor a wrong
 * byte. hmmud runs under hmmu-supervise (tests/supervisor), which speaks
 * systemd's protocol; the test process is the client.
 */
#include "supervised.h"

#include <hmmu/hmmu.h>

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPAGES 64
#define MIGRATED 32

TestSuite(restart, .fini = supervised_cleanup, .timeout = 120);

static char sock[128];

/* hmmud under the supervisor, with a store of @store_max fds. */
static void start_store(const char *restart_ms, const char *grace_ms,
			const char *store_max)
{
	supervised_prepare();
	snprintf(sock, sizeof(sock), "%s/hmmud.sock", supervised.dir);
	supervised_start((const char *[]){ "--fdstore-max", store_max,
					   "--restart-ms", restart_ms, NULL },
			 (const char *[]){ supervised_hmmud_path(),
					   "--foreground", "--socket", sock,
					   "--adopt-grace", grace_ms, NULL });
	supervised_wait_state("restarts=0\nready=1");
}

/* hmmud under the supervisor, with a store and @grace_ms of grace. */
static void start(const char *restart_ms, const char *grace_ms)
{
	start_store(restart_ms, grace_ms, "4096");
}

/*
 * SIGUSR1: the supervisor SIGKILLs hmmud, asynchronously; back once the
 * kill has landed. The successor comes --restart-ms later.
 */
static void kill_hmmud(void)
{
	cr_assert_eq(kill(supervised.pid, SIGUSR1), 0);
	for (int i = 0; i < 500 && !supervised_logged("status=killed/KILL");
	     i++)
		usleep(10000);
	cr_assert(supervised_logged("status=killed/KILL"), "%s",
		  supervised_slurp(supervised.log));
}

static size_t page(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/* NPAGES of a pattern of @seed at @p, which it returns. */
static uint8_t *fill(uint8_t *p, unsigned seed)
{
	cr_assert_neq(p, MAP_FAILED);
	for (size_t i = 0; i < NPAGES * page(); i++)
		p[i] = (uint8_t)(i * 7 + i / page() + seed);
	return p;
}

static uint8_t *patterned(unsigned seed)
{
	return fill(mmap(NULL, NPAGES * page(), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), seed);
}

/*
 * The same, alone in its VMA: a page either side is PROT_NONE, so no
 * other mapping merges with it. hmmud registers whole VMAs for
 * migration, and while no hmmud runs, the first touch of a page of one
 * waits for the successor: so would a malloc() of the test's, if the
 * heap shared the VMA (ASan's allocator maps next to it). Unmapped with
 * unmap_alone().
 */
static uint8_t *patterned_alone(unsigned seed)
{
	uint8_t *p = mmap(NULL, (NPAGES + 2) * page(), PROT_NONE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(mprotect(p + page(), NPAGES * page(),
			      PROT_READ | PROT_WRITE), 0);
	return fill(p + page(), seed);
}

static void unmap_alone(uint8_t *p)
{
	munmap(p - page(), (NPAGES + 2) * page());
}

static void expect_pattern(const uint8_t *p, unsigned seed, const char *what)
{
	for (size_t i = 0; i < NPAGES * page(); i++)
		if (p[i] != (uint8_t)(i * 7 + i / page() + seed))
			cr_assert_fail("%s: byte %zu of page %zu is %u, not %u",
				       what, i % page(), i / page(), p[i],
				       (uint8_t)(i * 7 + i / page() + seed));
}

/* A registered mirror on dmirror0. */
static struct hmmu_mirror *registered(struct hmmu *h)
{
	struct hmmu_mirror *m;

	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_register(m), 0, "%s", hmmu_error_detail());
	return m;
}

/* A registered mirror on dmirror0 with MIGRATED pages of @p moved to it. */
static struct hmmu_mirror *migrated(struct hmmu *h, uint8_t *p)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = MIGRATED };
	struct hmmu_mirror *m = registered(h);

	cr_assert_eq(hmmu_migrate_to_device(m, &c), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(c.cpages, MIGRATED);
	return m;
}

/*
 * 32 pages in device memory, SIGKILL: the same handle goes on, with the
 * pages where they were and every byte right.
 */
Test(restart, a_crash_costs_a_stall_not_an_error_nor_a_byte)
{
	uint8_t *p, *buf, states[NPAGES];
	struct hmmu_cmd c = { .addr = 0, .npages = NPAGES };
	struct hmmu_mirror *m;
	struct hmmu *h;
	char want[128];

	p = patterned(1);
	start("100", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = migrated(h, p);
	supervised_crash_and_wait(1);
	snprintf(want, sizeof(want), "adopted 1 process(es) from the fd "
		 "store, %d page(s) in device memory", MIGRATED);
	cr_assert_not_null(strstr(supervised_slurp(supervised.out), want),
			   "%s", supervised_slurp(supervised.out));

	/* The same handle, no error: the pages are still on the device. */
	c.addr = (uintptr_t)p;
	cr_assert_eq(hmmu_snapshot(m, &c, states), 0, "%s",
		     hmmu_error_detail());
	for (int i = 0; i < MIGRATED; i++)
		cr_expect_eq(states[i], HMMU_PAGE_DEV_LOCAL,
			     "page %d: state %#x after the restart", i,
			     states[i]);
	buf = malloc(NPAGES * page());
	cr_assert_not_null(buf);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = NPAGES };
	cr_assert_eq(hmmu_device_read(m, &c, buf), 0, "%s",
		     hmmu_error_detail());
	expect_pattern(buf, 1, "device read after the restart");

	/* The CPU brings them home through the successor. */
	expect_pattern(p, 1, "CPU read after the restart");
	p[5] = 0xa5;
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 1 };
	cr_assert_eq(hmmu_device_read(m, &c, buf), 0, "%s",
		     hmmu_error_detail());
	cr_expect_eq(buf[5], 0xa5, "the device missed a CPU write after the "
		     "restart");

	free(buf);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, NPAGES * page());
	supervised_stop();
}

/* Bytes @from to @from + @len of patterned(@seed), at @got. */
static void expect_bytes(const uint8_t *got, size_t from, size_t len,
			 unsigned seed, const char *what)
{
	for (size_t i = from; i < from + len; i++)
		if (got[i - from] != (uint8_t)(i * 7 + i / page() + seed))
			cr_assert_fail("%s: byte %zu of page %zu is %u, not %u",
				       what, i % page(), i / page(),
				       got[i - from],
				       (uint8_t)(i * 7 + i / page() + seed));
}

/*
 * A shared buffer outlives a crash: the same handle at the same address,
 * with its bytes, and device reads go on into it (docs/protocol.md §11).
 */
Test(restart, a_shared_buffer_outlives_a_crash_with_its_bytes)
{
	const size_t half = NPAGES / 2 * page();
	uint8_t *p = patterned(5), *buf;
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 8 };
	struct hmmu_buffer *b;
	struct hmmu_mirror *m;
	struct hmmu *h;
	int err;

	start("100", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = registered(h);
	cr_assert_eq(hmmu_buffer_create(h, NPAGES * page(), (void **)&buf,
					&b), 0, "%s", hmmu_error_detail());
	/* Its first 8 pages from the device, its second half the CPU's. */
	cr_assert_eq(hmmu_device_read_buffer(m, &c, b, 0), 0, "%s",
		     hmmu_error_detail());
	expect_bytes(buf, 0, 8 * page(), 5, "device read before the crash");
	memcpy(buf + half, p + half, half);

	supervised_crash_and_wait(1);
	expect_bytes(buf, 0, 8 * page(), 5, "the device's bytes after it");
	expect_bytes(buf + half, half, half, 5, "the CPU's bytes after it");

	/* Into the same handle, and found by its address: no error. */
	c = (struct hmmu_cmd){ .addr = (uintptr_t)(p + 8 * page()),
			       .npages = 8 };
	err = hmmu_device_read_buffer(m, &c, b, 8 * page());
	cr_assert_eq(err, 0, "after the restart: %d (%s)", err,
		     hmmu_error_detail());
	cr_expect_eq(c.cpages, 8);
	expect_bytes(buf + 8 * page(), 8 * page(), 8 * page(), 5,
		     "device read into the buffer after the crash");
	c = (struct hmmu_cmd){ .addr = (uintptr_t)(p + 16 * page()),
			       .npages = 8 };
	err = hmmu_device_read(m, &c, buf + 16 * page());
	cr_assert_eq(err, 0, "%d (%s)", err, hmmu_error_detail());
	expect_bytes(buf + 16 * page(), 16 * page(), 8 * page(), 5,
		     "device read at the buffer's address after the crash");
	expect_bytes(buf, 0, 8 * page(), 5, "the first pages, untouched");
	cr_expect_null(strstr(supervised_slurp(supervised.out),
			      "restore buffer"), "%s",
		       supervised_slurp(supervised.out));

	hmmu_buffer_destroy(b);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, NPAGES * page());
	supervised_stop();
}

/* Pages made exclusive to a device for its atomics stay so across a crash. */
/*
 * A store too full to keep a process's device memory file: the successor
 * adopts nothing of that process, and libhmmu's fail-safe brings every
 * page home. It used to adopt the rest, as a process that never migrated,
 * and the pages in device memory came home as zeros.
 */
Test(restart, a_device_memory_file_the_store_did_not_keep_costs_no_byte)
{
	uint8_t *p = patterned_alone(7);
	struct hmmu_mirror *m;
	struct hmmu *h;
	int err;

	/* The listener, the incarnation, the connection, 6 of the process. */
	start_store("100", "60000", "9");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = migrated(h, p);
	supervised_wait_state("stored=9\nrefused=1");
	supervised_crash_and_wait(1);
	expect_pattern(p, 7, "CPU read after the restart");
	cr_expect_not_null(strstr(supervised_slurp(supervised.out),
				  "its device memory file is not in the store"),
			   "%s", supervised_slurp(supervised.out));
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, hmmu_error_detail());
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	unmap_alone(p);
	supervised_stop();
}

/* Stop the manager until hmmud gave its store up: *@extra connections. */
static unsigned make_hmmud_give_the_store_up(struct hmmu **extra,
					     unsigned max)
{
	unsigned n = 0, want = 10;
	FILE *f = fopen("/proc/sys/net/unix/max_dgram_qlen", "r");

	/* More stores than a stopped manager's queue holds. */
	if (f && fscanf(f, "%u", &want) != 1)
		want = 10;
	if (f)
		fclose(f);
	want = want + 4 < max ? want + 4 : max;
	cr_assert_eq(kill(supervised.pid, SIGSTOP), 0);
	while (n < want && hmmu_connect(sock, &extra[n]) == 0)
		n++;
	cr_assert_eq(kill(supervised.pid, SIGCONT), 0);
	cr_assert_eq(n, want, "%s", hmmu_error_detail());
	for (int i = 0; i < 500 && !strstr(supervised_slurp(supervised.out),
					   "no fd store"); i++)
		usleep(10000);
	cr_assert_not_null(strstr(supervised_slurp(supervised.out),
				  "no fd store"),
			   "%s", supervised_slurp(supervised.out));
	return n;
}

/*
 * A store given up (its manager did not read for a second) hears of no
 * removal: a state that ends then stays in it. Its journal says it ended,
 * and a successor adopts nothing of it; the state that came after, never
 * stored, is the client's fail-safe's to bring home. The successor used to
 * adopt the ended state, with the userfaultfd that state had let go.
 */
Test(restart, a_state_that_ended_after_the_store_was_given_up_is_not_adopted)
{
	struct hmmu *h, *extra[32];
	uint8_t *p = patterned_alone(8);
	struct hmmu_mirror *m;
	unsigned n;
	int err;

	start("100", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = migrated(h, p);
	n = make_hmmud_give_the_store_up(extra, 32);
	while (n)
		hmmu_disconnect(extra[--n]);
	/* The stored state ends; a new one, not stored, holds the pages. */
	hmmu_mirror_destroy(m);
	expect_pattern(p, 8, "CPU read after the mirror went");
	m = migrated(h, p);

	supervised_crash_and_wait(1);
	cr_expect_not_null(strstr(supervised_slurp(supervised.out),
				  "its state had ended"),
			   "%s", supervised_slurp(supervised.out));
	expect_pattern(p, 8, "CPU read after the restart");
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, hmmu_error_detail());
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	unmap_alone(p);
	supervised_stop();
}

/* How many of process @pid's fds are pidfds of process @of. */
static int pidfds_in(pid_t pid, pid_t of)
{
	char dir[64], want[32];
	struct dirent *e;
	int n = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", pid);
	snprintf(want, sizeof(want), "\nPid:\t%d\n", of);
	d = opendir(dir);
	cr_assert_not_null(d, "%s", dir);
	while ((e = readdir(d))) {
		char path[384], buf[1024] = "\n";
		ssize_t len;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf + 1, sizeof(buf) - 2);
		close(fd);
		buf[len > 0 ? len + 1 : 1] = '\0';
		n += strstr(buf, want) != NULL;
	}
	closedir(d);
	return n;
}

/*
 * An adopted process keeps as many pidfds of its client in hmmud as it
 * had: the successor used to keep the store's besides its own dup, one
 * more at every restart.
 */
Test(restart, an_adoption_leaks_no_pidfd)
{
	uint8_t *p = patterned_alone(6);
	struct hmmu_mirror *m;
	struct hmmu *h;
	int before;

	start("100", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = migrated(h, p);
	before = pidfds_in(supervised_state_value("pid"), getpid());
	cr_assert_gt(before, 0, "hmmud holds a pidfd of its client");
	for (int round = 1; round <= 2; round++) {
		supervised_crash_and_wait(round);
		/* A call: the reconnection is done when it returns. */
		cr_assert_gt(hmmu_device_count(h), 0, "%s",
			     hmmu_error_detail());
		cr_expect_eq(pidfds_in(supervised_state_value("pid"),
				       getpid()), before,
			     "pidfds of the client after restart %d", round);
	}
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	unmap_alone(p);
	supervised_stop();
}

Test(restart, exclusive_access_outlives_a_crash)
{
	uint8_t *p = patterned(4);
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 8 };
	struct hmmu_mirror *m;
	struct hmmu *h;

	start("100", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = registered(h);
	cr_assert_eq(hmmu_make_exclusive(m, &c), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_check_exclusive(m, &c), 0, "%s", hmmu_error_detail());

	supervised_crash_and_wait(1);
	cr_expect_eq(hmmu_check_exclusive(m, &c), 0, "after the restart: %s",
		     hmmu_error_detail());
	/* And a CPU access still takes it back, with the data. */
	expect_pattern(p, 4, "CPU read after the restart");
	cr_expect_eq(hmmu_check_exclusive(m, &c), -EPERM);

	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, NPAGES * page());
	supervised_stop();
}

/* Queue @n reads, page i of @p into page i of @buf, and submit them. */
static void queue_reads(struct hmmu_queue *q, uint8_t *p, uint8_t *buf, int n)
{
	for (int i = 0; i < n; i++) {
		struct hmmu_cmd c = { .addr = (uintptr_t)(p + i * page()),
				      .npages = 1 };

		cr_assert_eq(hmmu_queue_read(q, &c, buf + i * page(),
					     (uint64_t)i), 0, "%s",
			     hmmu_error_detail());
	}
	cr_assert_eq(hmmu_queue_submit(q), n, "%s", hmmu_error_detail());
}

/* Each of @n completions, once, without an error. */
static void expect_completions(struct hmmu_queue *q, int n)
{
	struct hmmu_cqe cqe[NPAGES];
	bool seen[NPAGES] = { false };

	cr_assert_eq(hmmu_queue_wait(q, cqe, NPAGES, (unsigned)n, -1), n,
		     "%s", hmmu_error_detail());
	for (int i = 0; i < n; i++) {
		cr_assert_lt(cqe[i].user_data, (uint64_t)n);
		cr_expect(!seen[cqe[i].user_data], "%llu twice",
			  (unsigned long long)cqe[i].user_data);
		seen[cqe[i].user_data] = true;
		cr_expect_eq(cqe[i].status, 0, "read %llu: %d",
			     (unsigned long long)cqe[i].user_data,
			     cqe[i].status);
	}
}

/*
 * A queue goes on across a crash: what was in flight completes (on rings
 * the successor makes, if the old ones did not), and the same handle
 * takes more.
 */
Test(restart, a_queue_goes_on_across_a_crash)
{
	uint8_t *p = patterned(5), *buf;
	struct hmmu_mirror *m;
	struct hmmu_queue *q;
	struct hmmu *h;

	start("100", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = registered(h);
	cr_assert_eq(hmmu_queue_create(m, NPAGES, &q), 0, "%s",
		     hmmu_error_detail());
	buf = mmap(NULL, NPAGES * page(), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(buf, MAP_FAILED);

	queue_reads(q, p, buf, NPAGES);
	supervised_crash_and_wait(1);
	expect_completions(q, NPAGES);
	expect_pattern(buf, 5, "read through the queue, across the crash");

	memset(buf, 0, NPAGES * page());
	queue_reads(q, p, buf, NPAGES);
	expect_completions(q, NPAGES);
	expect_pattern(buf, 5, "read through the queue after the crash");

	hmmu_queue_destroy(q);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(buf, NPAGES * page());
	munmap(p, NPAGES * page());
	supervised_stop();
}

/*
 * The manager keeps the store, and with it the client's connection, but
 * no successor comes (systemd's start limit, FileDescriptorStorePreserve=
 * yes; here a restart 60 s away): no hang-up ever comes. Once hmmud has
 * exited, libhmmu waits one connection budget for it, then brings its
 * pages home itself.
 */
Test(restart, a_successor_that_does_not_come_costs_no_hang)
{
	uint8_t *p = patterned(3);
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };
	struct hmmu_mirror *m;
	struct hmmu *h;
	int err;

	cr_assert_eq(setenv("HMMU_CONNECT_TIMEOUT_MS", "500", 1), 0);
	start("60000", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	m = migrated(h, p);
	kill_hmmud();

	/* Pages in device memory: the CPU waits for the rescue, not for ever. */
	expect_pattern(p, 3, "CPU read with no hmmud");
	err = hmmu_migrate_to_device(m, &c);
	cr_expect(err == -ESHUTDOWN, "a call after the rescue: %d (%s)", err,
		  hmmu_error_detail());
	cr_expect(strstr(hmmu_error_detail(), "brought home") != NULL, "%s",
		  hmmu_error_detail());
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(p, NPAGES * page());
	unsetenv("HMMU_CONNECT_TIMEOUT_MS");
	/* No hmmud runs to be stopped: the supervisor and its store go. */
	cr_assert_eq(kill(supervised.pid, SIGTERM), 0);
	cr_assert_eq(waitpid(supervised.pid, NULL, 0), supervised.pid);
	supervised.pid = 0;
}

/*
 * Thread @tid of this process is in system call @nr, and waits there.
 * Nothing allocated: see patterned_alone().
 */
static bool waits_in(pid_t tid, long nr)
{
	char path[64], buf[64] = "";
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	(void)!read(fd, buf, sizeof(buf) - 1);
	close(fd);
	/* "running" when it is not in one, else the number first. */
	return buf[0] != 'r' && strtol(buf, NULL, 10) == nr;
}

struct destroy_call {
	struct hmmu_mirror *m;
	_Atomic pid_t tid;
};

static void *destroy_thread(void *arg)
{
	struct destroy_call *c = arg;

	c->tid = (pid_t)syscall(SYS_gettid);
	hmmu_mirror_destroy(c->m);
	return NULL;
}

/*
 * A MIRROR_DESTROY in flight across a crash is sent again to the
 * successor, which never made that mirror again (it was unlisted first):
 * it must not destroy a mirror made since under the same id. Made so:
 * mirror B's DESTROY waits for hmmud's answer when hmmud is dead (the
 * store keeps the connection: no hang-up yet); mirror C's CREATE follows
 * it; the successor makes A again (id 1), and the reconnection sends the
 * newest request first: C's CREATE, which runs at once, then B's DESTROY
 * of id 2, on a worker. A successor that gave C B's id would destroy C.
 */
Test(restart, a_destroy_sent_again_spares_a_mirror_made_on_the_successor)
{
	uint8_t *p = patterned_alone(6), *q = patterned(7), *buf;
	struct hmmu_cmd c;
	struct destroy_call d = { .tid = 0 };
	struct hmmu_mirror *a, *m;
	pthread_t t;
	struct hmmu *h;
	bool sent = false;
	int err;

	start("1500", "60000");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	a = migrated(h, p); /* id 1, and the failsafe armed */
	d.m = registered(h); /* id 2 */
	buf = malloc(NPAGES * page());
	cr_assert_not_null(buf);

	kill_hmmud();
	/* B's DESTROY sent: its thread waits in recvmsg() for the answer. */
	cr_assert_eq(pthread_create(&t, NULL, destroy_thread, &d), 0);
	for (int i = 0; i < 500 && !sent; i++) {
		sent = d.tid && waits_in(d.tid, SYS_recvmsg);
		if (!sent)
			usleep(10000);
	}
	cr_assert(sent, "the DESTROY is not in flight");

	/*
	 * C's CREATE, sent now (the successor comes 1.5 s after the kill),
	 * answered by the successor.
	 */
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(pthread_join(t, NULL), 0);
	err = hmmu_mirror_register(m);
	cr_assert_eq(err, 0, "the mirror made on the successor: %d (%s)", err,
		     hmmu_error_detail());
	c = (struct hmmu_cmd){ .addr = (uintptr_t)q, .npages = NPAGES };
	cr_assert_eq(hmmu_device_read(m, &c, buf), 0, "%s",
		     hmmu_error_detail());
	expect_pattern(buf, 7, "device read on the new mirror");
	/* A goes on, its pages where they were. */
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = NPAGES };
	cr_assert_eq(hmmu_device_read(a, &c, buf), 0, "%s",
		     hmmu_error_detail());
	expect_pattern(buf, 6, "device read on the restored mirror");
	expect_pattern(p, 6, "CPU read after the restart");

	free(buf);
	hmmu_mirror_destroy(m);
	hmmu_mirror_destroy(a);
	hmmu_disconnect(h);
	munmap(q, NPAGES * page());
	unmap_alone(p);
	supervised_stop();
}

/*
 * A process that exits while no hmmud runs is not adopted: its state goes,
 * and the successor says why.
 */
Test(restart, a_client_gone_while_hmmud_was_down_is_let_go)
{
	int go[2], ready[2], status;
	pid_t child;
	char c;

	start("1000", "60000");
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(ready), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		uint8_t *p = patterned(2);
		struct hmmu *h;

		close(go[1]);
		close(ready[0]);
		if (hmmu_connect(sock, &h) || !migrated(h, p))
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		/* Told: hmmud is dead; go without a word to anyone. */
		_exit(read(go[0], &c, 1) == 1 ? 0 : 2);
	}
	close(go[0]);
	close(ready[1]);
	/*
	 * Kill only once the child's migration has returned: hmmud stores
	 * the device memory file before it answers, and a child still
	 * waiting for that answer would wait for the successor, which would
	 * then find it alive.
	 */
	cr_assert_eq(read(ready[0], &c, 1), 1, "the child failed early");
	close(ready[0]);
	for (int i = 0; i < 100 && !supervised_logged("stored p1.devmem"); i++)
		usleep(20000);
	cr_assert(supervised_logged("stored p1.devmem"), "%s",
		  supervised_slurp(supervised.log));
	kill_hmmud();
	cr_assert_eq(write(go[1], "x", 1), 1);
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%#x", status);
	supervised_wait_state("restarts=1\nready=1");
	cr_assert_not_null(strstr(supervised_slurp(supervised.out),
				  "it exited while hmmud was down"), "%s",
			   supervised_slurp(supervised.out));
	supervised_wait_state("stored=2"); /* the socket, the incarnation */
	supervised_stop();
}
