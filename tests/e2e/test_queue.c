/* SPDX-License-Identifier: MIT */
/*
 * Queues (hmmu_queue_*): commands through the shared rings give what the
 * synchronous calls give; many in flight; a client scribbling on its rings
 * gets errors and harms nobody; the bounds hold; a queue goes with its
 * mirror, its connection and its process; a child cannot use it.
 */
#include "harness.h"
#include "helpers.h"
#include "common/qring.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(queue, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

#define WAIT_MS 20000 /* only against hangs: never a threshold */

static struct hmmu_queue *queue_or_die(struct hmmu_mirror *m, unsigned n)
{
	struct hmmu_queue *q = NULL;

	cr_assert_eq(hmmu_queue_create(m, n, &q), 0, "%s", hmmu_error_detail());
	return q;
}

/* Submit what is prepared and wait for exactly @n completions. */
static void complete(struct hmmu_queue *q, struct hmmu_cqe *out, unsigned n)
{
	cr_assert_geq(hmmu_queue_submit(q), 0);
	cr_assert_eq(hmmu_queue_wait(q, out, n, n, WAIT_MS), (int)n);
}

/* The ring mapping libhmmu made, found as a hostile client would. */
static char *ring_of_this_process(size_t *size)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	char *found = NULL;

	cr_assert(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (strstr(line, "memfd:hmmu-queue") &&
		    sscanf(line, "%lx-%lx", &lo, &hi) == 2) {
			found = (char *)lo;
			*size = hi - lo;
		}
	}
	fclose(f);
	cr_assert(found, "no ring mapping in /proc/self/maps");
	return found;
}

Test(queue, nop_completes_with_its_user_data)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_queue *q = queue_or_die(f.m, 8);
	struct hmmu_cqe c[3];

	for (uint64_t i = 0; i < 3; i++)
		cr_assert_eq(hmmu_queue_nop(q, 100 + i), 0);
	complete(q, c, 3);
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(c[i].status, 0);
		cr_expect_eq(c[i].op, HMMU_QUEUE_NOP);
		cr_expect_geq(c[i].user_data, 100);
		cr_expect_leq(c[i].user_data, 102);
	}
	/* Nothing more comes. */
	cr_expect_eq(hmmu_queue_wait(q, c, 3, 0, 0), 0);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

Test(queue, commands_give_the_results_of_synchronous_ones)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_queue *q = queue_or_die(f.m, 16);
	size_t n = 8, page = page_size();
	unsigned char *mem = map_filled(n, 7), *buf = map_rw(n),
		      *sbuf = map_rw(n), *data = map_filled(n, 9);
	uint8_t st[8], sst[8];
	struct hmmu_cmd c = { .addr = (uintptr_t)mem, .npages = n };
	struct hmmu_cmd sc = c;
	struct hmmu_cmd bad = { .addr = 0x1000, .npages = 1 };
	struct hmmu_cqe cqe;

	/* Read. */
	cr_assert_eq(hmmu_queue_read(q, &c, buf, 1), 0);
	complete(q, &cqe, 1);
	cr_assert_eq(hmmu_device_read(f.m, &sc, sbuf), 0);
	cr_expect_eq(cqe.status, 0);
	cr_expect_eq(cqe.user_data, 1);
	cr_expect_eq(cqe.cpages, sc.cpages);
	cr_expect_eq(memcmp(buf, sbuf, n * page), 0);
	expect_filled_pages(buf, n, 7);

	/* Snapshot. */
	cr_assert_eq(hmmu_queue_snapshot(q, &c, st, 2), 0);
	complete(q, &cqe, 1);
	sc = c;
	cr_assert_eq(hmmu_snapshot(f.m, &sc, sst), 0);
	cr_expect_eq(cqe.status, 0);
	cr_expect_eq(cqe.cpages, sc.cpages);
	cr_expect_eq(memcmp(st, sst, n), 0);

	/* Write: the CPU sees it. */
	cr_assert_eq(hmmu_queue_write(q, &c, data, 3), 0);
	complete(q, &cqe, 1);
	cr_expect_eq(cqe.status, 0);
	cr_expect_eq(cqe.cpages, n);
	expect_filled_pages(mem, n, 9);

	/* An error is the same error. */
	cr_assert_eq(hmmu_queue_read(q, &bad, buf, 4), 0);
	complete(q, &cqe, 1);
	sc = bad;
	cr_expect_eq(cqe.status, hmmu_device_read(f.m, &sc, sbuf));
	cr_expect_eq(cqe.status, -EFAULT);
	cr_expect_eq(cqe.user_data, 4);

	hmmu_queue_destroy(q);
	fixture_close(&f);
}

Test(queue, jobs_give_the_results_of_synchronous_ones)
{
	struct fixture f = fixture_open("acc0");
	struct hmmu_queue *q = queue_or_die(f.m, 4);
	size_t n = 512;
	uint64_t *a = map_rw(n * 8 / page_size() + 1);
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .len = n };
	struct hmmu_cqe cqe;

	for (size_t i = 0; i < n; i++)
		a[i] = i * 3 + 1;
	job.src = (uintptr_t)a;
	cr_assert_eq(hmmu_queue_job(q, &job, 77), 0);
	complete(q, &cqe, 1);
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(cqe.status, 0);
	cr_expect_eq(cqe.op, HMMU_QUEUE_JOB);
	cr_expect_eq(cqe.user_data, 77);
	cr_expect_eq(cqe.result, job.result);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

Test(queue, many_commands_in_flight_all_complete)
{
	struct fixture f = fixture_open("dmirror0");
	enum { N = 64 };
	struct hmmu_queue *q = queue_or_die(f.m, N);
	unsigned char *mem = map_filled(N, 3), *buf = map_rw(N);
	struct hmmu_cqe c[N];
	bool seen[N] = { false };

	for (unsigned i = 0; i < N; i++) {
		struct hmmu_cmd cmd = {
			.addr = (uintptr_t)mem + i * page_size(), .npages = 1
		};

		cr_assert_eq(hmmu_queue_read(q, &cmd, buf + i * page_size(), i),
			     0);
	}
	/* The ring is full: one more is refused, not queued. */
	cr_expect_eq(hmmu_queue_nop(q, 999), -EBUSY);
	complete(q, c, N);
	for (unsigned i = 0; i < N; i++) {
		cr_expect_eq(c[i].status, 0);
		cr_expect_eq(c[i].cpages, 1);
		cr_assert_lt(c[i].user_data, N);
		seen[c[i].user_data] = true;
	}
	for (unsigned i = 0; i < N; i++)
		cr_expect(seen[i], "no completion for %u", i);
	expect_filled_pages(buf, N, 3);
	/* Room again. */
	cr_expect_eq(hmmu_queue_nop(q, 1), 0);
	complete(q, c, 1);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

/* The daemon still answers, and a queue of another connection works. */
static void expect_daemon_serves(void)
{
	struct fixture g = fixture_open("dmirror0");
	struct hmmu_queue *q = queue_or_die(g.m, 4);
	struct hmmu_cqe c;

	cr_assert_eq(hmmu_queue_nop(q, 5), 0);
	complete(q, &c, 1);
	cr_expect_eq(c.status, 0);
	cr_expect_eq(c.user_data, 5);
	hmmu_queue_destroy(q);
	fixture_close(&g);
}

Test(queue, scribbled_rings_get_errors_and_harm_nobody)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_queue *q = queue_or_die(f.m, 8);
	size_t size;
	char *ring = ring_of_this_process(&size);
	struct hmmu_wire_sqe *sqes = (void *)(ring + HMMU_RING_HDR_SIZE);
	_Atomic uint32_t *sq_tail = qring_word(ring, HMMU_RING_SQ_TAIL);
	_Atomic uint32_t *sq_head = qring_word(ring, HMMU_RING_SQ_HEAD);
	_Atomic uint32_t *cq_head = qring_word(ring, HMMU_RING_CQ_HEAD);
	struct hmmu_cqe c[8];
	uint32_t t;

	/*
	 * Bad ops, bad reserved fields, a mirror named, a bad command. The
	 * user_data on the wire is libhmmu's tag for the submission: kept.
	 */
	for (unsigned i = 0; i < 6; i++) {
		uint64_t tag;

		cr_assert_eq(hmmu_queue_nop(q, 10 + i), 0);
		t = atomic_load(sq_tail) + i;
		tag = sqes[t & 7].user_data;
		memset(&sqes[t & 7], 0, sizeof(sqes[0]));
		sqes[t & 7].user_data = tag;
	}
	t = atomic_load(sq_tail);
	sqes[t & 7].op = 0;
	sqes[(t + 1) & 7].op = 0xffff;
	sqes[(t + 2) & 7].op = HMMU_SQE_NOP;
	sqes[(t + 2) & 7].reserved = 1;
	sqes[(t + 3) & 7].op = HMMU_SQE_CMD;
	sqes[(t + 3) & 7].u.cmd = (struct hmmu_wire_device_cmd){
		.mirror = 12345, .cmd = HMMU_CMD_READ, .npages = 1 };
	sqes[(t + 4) & 7].op = HMMU_SQE_CMD;
	sqes[(t + 4) & 7].u.cmd = (struct hmmu_wire_device_cmd){
		.cmd = HMMU_CMD_MIGRATE_PREPARE, .npages = 1 };
	sqes[(t + 5) & 7].op = HMMU_SQE_JOB;
	sqes[(t + 5) & 7].u.job = (struct hmmu_wire_job){ .kind = 999 };
	cr_assert_eq(hmmu_queue_submit(q), 6);
	cr_assert_eq(hmmu_queue_wait(q, c, 8, 6, WAIT_MS), 6);
	for (int i = 0; i < 6; i++)
		cr_expect_eq(c[i].status, -EINVAL, "user_data %llu: %d",
			     (unsigned long long)c[i].user_data, c[i].status);

	/*
	 * A tail far past the head, then a completion head far off: the
	 * daemon takes at most a ringful and stalls; it never writes past
	 * the ring, and still serves.
	 */
	memset(sqes, 0, 8 * sizeof(sqes[0]));
	for (int i = 0; i < 8; i++)
		sqes[i].op = HMMU_SQE_NOP;
	atomic_store(cq_head, 0xdeadbeef);
	atomic_store(sq_tail, atomic_load(sq_head) + 1000000);
	qring_futex_wake(sq_tail);
	usleep(10000);
	atomic_store(sq_tail, atomic_load(sq_head) - 5);
	qring_futex_wake(sq_tail);
	usleep(10000);
	expect_daemon_serves();
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

struct scribbler {
	struct hmmu_wire_sqe *sqes;
	unsigned entries;
	atomic_bool stop;
};

static void *scribble(void *arg)
{
	struct scribbler *s = arg;
	uint64_t x = 88172645463325252ull;

	while (!atomic_load(&s->stop)) {
		volatile unsigned char *sqe;
		unsigned off;

		/* xorshift: any SQE, any value. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		sqe = (volatile unsigned char *)&s->sqes[x % s->entries];
		/*
		 * Its op, reserved fields, mirror and npages; not the
		 * addresses nor the command, which would make hmmud write
		 * where this process (its own business) lives, nor the
		 * user_data, libhmmu's tag, which hmmud only echoes.
		 */
		off = (unsigned)(x >> 20) % 24;
		off = off < 8 ? off : off < 16 ? off + 8 : off + 24;
		sqe[off] = (unsigned char)(x >> 40);
	}
	return NULL;
}

Test(queue, submissions_changed_after_submit_never_harm_the_daemon)
{
	struct fixture f = fixture_open("dmirror0");
	enum { N = 16 };
	struct hmmu_queue *q = queue_or_die(f.m, N);
	size_t size;
	char *ring = ring_of_this_process(&size);
	unsigned char *mem = map_filled(4, 1), *buf = map_rw(4);
	struct scribbler s = { .sqes = (void *)(ring + HMMU_RING_HDR_SIZE),
			       .entries = N };
	struct hmmu_cmd cmd = { .addr = (uintptr_t)mem, .npages = 4 };
	struct hmmu_cqe c[N];
	pthread_t t;

	/* Whatever the scribbles make of them: errors, or the client's own. */
	expect_daemon_log("client %d", getpid());
	cr_assert_eq(pthread_create(&t, NULL, scribble, &s), 0);
	for (int round = 0; round < 50; round++) {
		int n = 0;

		while (hmmu_queue_read(q, &cmd, buf, (uint64_t)round) == 0)
			n++;
		hmmu_queue_submit(q);
		/* Commands the scribbles made may fail or not; none hangs. */
		cr_assert_eq(hmmu_queue_wait(q, c, N, (unsigned)n, WAIT_MS), n);
	}
	atomic_store(&s.stop, true);
	pthread_join(t, NULL);
	expect_daemon_serves();
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

Test(queue, in_flight_work_is_bounded_by_the_connections_share)
{
	const char *const args[] = { "--limit", "requests-per-connection=2",
				     NULL };
	struct fixture f;
	enum { N = 64 };
	struct hmmu_queue *q;
	unsigned char *mem, *buf;
	struct hmmu_cqe c[N];

	daemon_restart(args);
	f = fixture_open("dmirror0");
	q = queue_or_die(f.m, N);
	mem = map_filled(N, 4);
	buf = map_rw(N);
	for (unsigned i = 0; i < N; i++) {
		struct hmmu_cmd cmd = {
			.addr = (uintptr_t)mem + i * page_size(), .npages = 1
		};

		cr_assert_eq(hmmu_queue_read(q, &cmd, buf + i * page_size(), i),
			     0);
	}
	/* The queue waits for its turns; everything completes. */
	complete(q, c, N);
	for (unsigned i = 0; i < N; i++)
		cr_expect_eq(c[i].status, 0);
	expect_filled_pages(buf, N, 4);
	/* Synchronous requests still get through on the same connection. */
	cr_expect_eq(stats_of(f.h).my_mirrors, 1);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

Test(queue, queues_past_the_connections_limit_are_enospc)
{
	const char *const args[] = { "--limit", "queues-per-connection=2",
				     NULL };
	struct fixture f;
	struct hmmu_queue *a, *b, *c = NULL;

	daemon_restart(args);
	expect_daemon_log("refused a queue");
	f = fixture_open("dmirror0");
	a = queue_or_die(f.m, 1);
	b = queue_or_die(f.m, 1);
	cr_expect_eq(hmmu_queue_create(f.m, 1, &c), -ENOSPC);
	cr_expect_null(c);
	hmmu_queue_destroy(a);
	/* One slot free again. */
	a = queue_or_die(f.m, 1);
	hmmu_queue_destroy(a);
	hmmu_queue_destroy(b);
	fixture_close(&f);
}

Test(queue, bad_arguments_are_einval)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_queue *q = NULL;
	struct hmmu_cmd odd = { .addr = 1, .npages = 1 };
	char buf[8];

	cr_expect_eq(hmmu_queue_create(f.m, 0, &q), -EINVAL);
	cr_expect_eq(hmmu_queue_create(f.m, HMMU_QUEUE_MAX + 1, &q), -EINVAL);
	cr_expect_eq(hmmu_queue_create(NULL, 1, &q), -EINVAL);
	q = queue_or_die(f.m, 1);
	cr_expect_eq(hmmu_queue_read(q, &odd, buf, 0), -EINVAL);
	cr_expect_eq(hmmu_queue_read(q, NULL, buf, 0), -EINVAL);
	cr_expect_eq(hmmu_queue_nop(NULL, 0), -EINVAL);
	cr_expect_eq(hmmu_queue_submit(NULL), -EINVAL);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

/* The daemon's open fds: a queue holds one (its eventfd). */
static int daemon_fds(void)
{
	return count_fds(daemon_under_test.pid);
}

static int wait_for_daemon_fds(int want)
{
	int n = daemon_fds();

	for (int i = 0; i < 1000 && n != want; i++) {
		usleep(10000);
		n = daemon_fds();
	}
	return n;
}

Test(queue, queue_goes_with_its_mirror)
{
	struct fixture f = fixture_open("dmirror0");
	/* f.m keeps the process's state (and its fds) in the daemon. */
	struct hmmu_mirror *m = mirror_registered(f.h, "dmirror0");
	int before = daemon_fds();
	struct hmmu_queue *q = queue_or_die(m, 4);
	struct hmmu_cqe c;

	cr_expect_gt(wait_for_daemon_fds(before + 1), before);
	hmmu_mirror_destroy(m);
	cr_expect_eq(wait_for_daemon_fds(before), before);
	/* Submissions go nowhere now: nothing completes. */
	cr_assert_eq(hmmu_queue_nop(q, 1), 0);
	hmmu_queue_submit(q);
	cr_expect_eq(hmmu_queue_wait(q, &c, 1, 1, 50), 0);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}

/* A child with a queue in flight that ends as @how says. */
static void child_with_queue_ends(int how)
{
	struct fixture f = fixture_open("dmirror0");
	int before = daemon_fds();
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct fixture g;
		struct hmmu_queue *q;

		if (fixture_try_open(&g, "dmirror0") ||
		    hmmu_queue_create(g.m, 4, &q))
			_exit(1);
		hmmu_queue_nop(q, 1);
		hmmu_queue_submit(q);
		if (how == SIGKILL)
			raise(SIGKILL);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (how == SIGKILL)
		cr_expect(WIFSIGNALED(status));
	else
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_expect_eq(wait_for_daemon_fds(before), before);
	expect_daemon_serves();
	fixture_close(&f);
}

Test(queue, queue_goes_with_its_process_on_exit)
{
	child_with_queue_ends(0);
}

Test(queue, queue_goes_with_its_process_on_sigkill)
{
	child_with_queue_ends(SIGKILL);
}

Test(queue, child_cannot_use_parents_queue)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_queue *q = queue_or_die(f.m, 4);
	struct hmmu_cqe c;
	pid_t pid = fork();
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int bad = 0;

		bad |= hmmu_queue_nop(q, 1) != -ECHILD;
		bad |= hmmu_queue_submit(q) != -ECHILD;
		bad |= hmmu_queue_wait(q, &c, 1, 0, 0) != -ECHILD;
		hmmu_queue_destroy(q); /* frees the handle only */
		_exit(bad);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The parent's queue is intact. */
	cr_assert_eq(hmmu_queue_nop(q, 2), 0);
	complete(q, &c, 1);
	cr_expect_eq(c.user_data, 2);
	hmmu_queue_destroy(q);
	fixture_close(&f);
}
