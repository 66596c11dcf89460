/* SPDX-License-Identifier: MIT */
/*
 * What one client may make hmmud spend, end to end: jobs and commands that
 * end (at a deadline, with their client, at a stop) whatever they were
 * asked; per-user limits on connections, mirrors, page copies and device
 * memory, each answered with -EDQUOT and nothing changed; fair turns
 * between connections; a user who is not root seeing only its own figures.
 * Findings 3, 5, 7 and 8 of the security review (docs/security.md).
 */
#include "harness.h"
#include "helpers.h"
#include "common/proto.h"
#include "common/uffd_open.h"
#include "common/kernel_uapi.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Each test starts its own daemon, with the limits it is about. */
TestSuite(limits, .fini = daemon_stop, .timeout = 120);

static void start_with(const char *a, const char *b)
{
	const char *args[] = { "--socket-mode", "0666", "--limit", a,
			       b ? "--limit" : NULL, b, NULL };

	daemon_start_args(args);
	daemon_dir_open_to_all();
}

static char *map_touched(size_t npages)
{
	char *p = map_anon(npages, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_POPULATE);

	for (size_t i = 0; i < npages; i++)
		p[i * page_size()] = (char)(i + 1);
	return p;
}

/* A list whose last node points back at the first: a walk never ends. */
struct node {
	struct node *next;
	uint64_t value;
};

static struct hmmu_job cycle_job(uint64_t len)
{
	/* Anonymous memory: a program's data segment is a file mapping. */
	struct node *n = map_rw(1);

	n[0] = (struct node){ .next = &n[1], .value = 1 };
	n[1] = (struct node){ .next = &n[0], .value = 2 };
	return (struct hmmu_job){
		.kind = HMMU_JOB_LIST_SUM,
		.src = (uintptr_t)n,
		.len = len,
		.next_offset = offsetof(struct node, next),
		.value_offset = offsetof(struct node, value),
	};
}

/* ---- finding 3: every job ends --------------------------------------------- */

Test(limits, jobs_reaching_past_user_space_are_einval)
{
	struct fixture f;
	struct hmmu_job sum = { .kind = HMMU_JOB_SUM64,
				.src = 0xfffffffffffff000ull, .len = 1 };
	struct hmmu_job fill = { .kind = HMMU_JOB_FILL,
				 .dst = (1ull << 48) - 8, .len = 16 };
	struct hmmu_job list = cycle_job(1);

	start_with("job-seconds=60", NULL);
	expect_daemon_log("job on acc0: %s", strerror(EINVAL));
	f = fixture_open("acc0");
	/* Its prefetch window used to wrap to 0 and loop for ever. */
	cr_expect_eq(hmmu_job_run(f.m, &sum), -EINVAL);
	cr_expect_eq(hmmu_job_run(f.m, &fill), -EINVAL);
	list.src = 0xfffffffffffffff0ull;
	cr_expect_eq(hmmu_job_run(f.m, &list), -EINVAL);
	/* More nodes than any walk may visit. */
	list = cycle_job(1ull << 40);
	cr_expect_eq(hmmu_job_run(f.m, &list), -EINVAL);
	fixture_close(&f);
}

Test(limits, job_on_the_last_user_page_faults_and_returns)
{
	struct fixture f;
	struct hmmu_job sum = { .kind = HMMU_JOB_SUM64,
				.src = (1ull << 47) - 4096, .len = 1 };

	start_with("job-seconds=60", NULL);
	f = fixture_open("acc0");
	cr_expect_eq(hmmu_job_run(f.m, &sum), -EFAULT);
	fixture_close(&f);
}

Test(limits, endless_list_walk_stops_at_the_deadline)
{
	struct fixture f;
	struct hmmu_job job = cycle_job(1ull << 26);
	struct hmmu_job fine = cycle_job(10);

	start_with("job-seconds=1", NULL);
	expect_daemon_log("job on acc0: %s", strerror(ETIMEDOUT));
	expect_daemon_log("job on acc0: %s", strerror(ELOOP));
	f = fixture_open("acc0");
	cr_expect_eq(hmmu_job_run(f.m, &job), -ETIMEDOUT);
	/* The mirror and the device go on working. */
	cr_expect_eq(hmmu_job_run(f.m, &fine), -ELOOP);
	cr_expect_eq(fine.result, 15, "5 rounds of 1 + 2");
	fixture_close(&f);
}

/* In a child: register on acc0 and walk an endless list; never returns. */
static pid_t start_endless_job(void)
{
	int ready[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct fixture fc;
		struct hmmu_job job = cycle_job(1ull << 26);

		close(ready[0]);
		if (fixture_try_open(&fc, "acc0"))
			_exit(1);
		(void)!write(ready[1], "r", 1);
		_exit(hmmu_job_run(fc.m, &job) == 0 ? 0 : 2);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the child registered");
	close(ready[0]);
	usleep(200000); /* the job is running on the device by now */
	return pid;
}

Test(limits, job_of_a_killed_client_is_cancelled_and_its_state_released)
{
	struct fixture f;
	pid_t child;

	start_with("job-seconds=600", NULL);
	f = fixture_open(NULL);
	child = start_endless_job();
	cr_assert_eq(stats_of(f.h).processes, 1);
	kill(child, SIGKILL);
	waitpid(child, NULL, 0);
	/* Its job must not hold its mirror (and the device) for 10 minutes. */
	cr_expect_eq(wait_for_stat(f.h, processes, 0), 0,
		     "the dead client's state is gone");
	cr_expect_eq(stats_of(f.h).mirrors, 0);
	fixture_close(&f);
}

Test(limits, sigterm_stops_the_daemon_while_a_job_runs)
{
	pid_t child, pid;
	int status = -1;

	start_with("job-seconds=600", NULL);
	child = start_endless_job();
	pid = daemon_under_test.pid;
	kill(pid, SIGTERM);
	for (int i = 0; i < 1000 && waitpid(pid, &status, WNOHANG) == 0; i++)
		usleep(10000);
	cr_assert(status != -1, "hmmud still runs 10 s after SIGTERM");
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "a clean stop (status %#x)", status);
	daemon_under_test.pid = 0;
	daemon_remove_dir();
	/* The client's job was cancelled: it returns, with an error. */
	cr_assert_eq(waitpid(child, &status, 0), child);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 2);
}

/* ---- finding 5: per-user limits -------------------------------------------- */

Test(limits, connections_past_the_user_limit_are_edquot)
{
	struct fixture a, b;
	struct hmmu *c = NULL;
	int err = 0;

	start_with("connections-per-user=2", NULL);
	expect_daemon_log("--limit connections-per-user");
	a = fixture_open(NULL);
	b = fixture_open(NULL);
	cr_expect_eq(hmmu_connect(daemon_under_test.socket, &c), -EDQUOT);
	cr_expect(strstr(hmmu_error_detail(), "limit"),
		  "the detail names the limit: '%s'", hmmu_error_detail());
	cr_expect_eq(daemon_log_count("connections-per-user"), 1);
	fixture_close(&b);
	/* Its place is free once the daemon saw it go. */
	for (int i = 0; i < 100; i++) {
		err = hmmu_connect(daemon_under_test.socket, &c);
		if (err != -EDQUOT)
			break;
		usleep(10000);
	}
	cr_expect_eq(err, 0, "connect after one left: %s", strerror(-err));
	if (!err)
		hmmu_disconnect(c);
	fixture_close(&a);
}

Test(limits, mirrors_past_the_user_limit_are_edquot)
{
	struct fixture f;
	struct hmmu_mirror *m[3] = { NULL };

	start_with("mirrors-per-user=2", NULL);
	expect_daemon_log("--limit mirrors-per-user");
	f = fixture_open(NULL);
	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror0", &m[0]), 0);
	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror1", &m[1]), 0);
	cr_expect_eq(hmmu_mirror_create(f.h, "dmirror0", &m[2]), -EDQUOT);
	hmmu_mirror_destroy(m[1]);
	cr_expect_eq(hmmu_mirror_create(f.h, "dmirror1", &m[1]), 0);
	hmmu_mirror_destroy(m[0]);
	hmmu_mirror_destroy(m[1]);
	fixture_close(&f);
}

Test(limits, page_copies_past_the_user_limit_are_edquot)
{
	const size_t big = (2u << 20) / page_size(), small = 64;
	struct fixture f;
	char *p, *out = xmalloc(big * page_size());
	struct hmmu_cmd c;

	start_with("copy-mib-per-user=1", NULL);
	expect_daemon_log("--limit copy-mib-per-user");
	expect_daemon_log("device-cmd on dmirror0: %s", strerror(EDQUOT));
	f = fixture_open("dmirror0");
	p = map_touched(big);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = big };
	cr_expect_eq(hmmu_device_read(f.m, &c, out), -EDQUOT);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = small };
	cr_expect_eq(hmmu_device_read(f.m, &c, out), 0);
	cr_expect_eq(c.cpages, small);
	cr_expect_eq(memcmp(out, p, small * page_size()), 0);
	/* Copies dropped give their room back. */
	hmmu_mirror_destroy(f.m);
	f.m = mirror_registered(f.h, "dmirror1");
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = big / 4 };
	cr_expect_eq(hmmu_device_read(f.m, &c, out), 0);
	fixture_close(&f);
	munmap(p, big * page_size());
	free(out);
}

Test(limits, reading_untouched_memory_takes_no_page_copies)
{
	const size_t n = (256u << 20) / page_size();
	struct fixture f;
	char *p, *out;
	struct hmmu_cmd c = { .npages = n };

	/* 16 MiB of copies allowed, 256 MiB read: only zeros fit. */
	start_with("copy-mib-per-user=16", NULL);
	f = fixture_open("dmirror0");
	p = map_anon(n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE);
	out = map_anon(n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE);
	out[0] = 1;
	c.addr = (uintptr_t)p;
	cr_expect_eq(hmmu_device_read(f.m, &c, out), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(out[0], 0);
	cr_expect_eq(out[n * page_size() - 1], 0);
	fixture_close(&f);
	munmap(p, n * page_size());
	munmap(out, n * page_size());
}

Test(limits, device_memory_past_the_user_share_is_edquot_and_changes_nothing)
{
	const char *args[] = { "--device", "dmirror:name=small,mem=64K", NULL };
	const size_t n = 16; /* the whole device; half is one user's share */
	struct fixture f;
	struct hmmu_cmd c = { .npages = n };
	uint8_t states[16];
	char *p;

	daemon_start_args(args);
	expect_daemon_log("--limit devmem-percent-per-user");
	expect_daemon_log("device-cmd on small: %s", strerror(EDQUOT));
	f = fixture_open("small");
	p = map_touched(n);
	c.addr = (uintptr_t)p;
	cr_expect_eq(hmmu_migrate_to_device(f.m, &c), -EDQUOT);
	cr_expect_eq(stats_of(f.h).device_mem_pages, 0, "nothing migrated");
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = n };
	cr_assert_eq(hmmu_snapshot(f.m, &c, states), 0);
	for (size_t i = 0; i < n; i++)
		cr_expect_neq(states[i], HMMU_PAGE_DEV_LOCAL, "page %zu", i);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = n / 2 };
	cr_expect_eq(hmmu_migrate_to_device(f.m, &c), 0);
	cr_expect_eq(c.cpages, n / 2);
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(p[i * page_size()], (char)(i + 1), "page %zu", i);
	fixture_close(&f);
}

/* ---- findings 7 and 8: who sees and reaches what ------------------------- */

static int as_nobody(int (*fn)(void))
{
	int status;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		if (become_nobody())
			_exit(100);
		_exit(fn());
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "status %#x", status);
	return WEXITSTATUS(status);
}

/* Exit codes: 0 as expected, else which figure leaked. */
static int nobody_sees_only_its_own(void)
{
	struct hmmu *h;
	struct hmmu_stats st;

	if (hmmu_connect(daemon_under_test.socket, &h) ||
	    hmmu_stats(h, &st, sizeof(st)) < 0)
		return 1;
	if (st.processes || st.mirrors)
		return 2;
	if (st.device_faults || st.invalidations || st.device_pages)
		return 3;
	return st.sessions == 1 ? 0 : 4;
}

Test(limits, a_user_who_is_not_root_sees_only_its_own_figures)
{
	struct fixture f;
	char *p = map_touched(8), out[8 * 4096];
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 8 };

	require_root();
	cr_assert_leq(8 * page_size(), sizeof(out));
	start_with("job-seconds=60", NULL);
	f = fixture_open("dmirror0");
	cr_assert_eq(hmmu_device_read(f.m, &c, out), 0);
	p[0] = 9; /* an invalidation */
	cr_assert_gt(stats_of(f.h).device_faults, 0, "root sees the daemon's");
	cr_assert_gt(stats_of(f.h).processes, 0);
	cr_expect_eq(as_nobody(nobody_sees_only_its_own), 0);
	fixture_close(&f);
}

static int nobody_connects(void)
{
	struct hmmu *h;
	int err = hmmu_connect(daemon_under_test.socket, &h);

	if (!err)
		hmmu_disconnect(h);
	return err == -EACCES ? 0 : 1;
}

Test(limits, the_default_socket_refuses_users_outside_its_group)
{
	struct fixture f;

	require_root();
	daemon_start();
	daemon_dir_open_to_all();
	cr_expect_eq(as_nobody(nobody_connects), 0, "nobody was let in");
	f = fixture_open(NULL); /* root still is */
	fixture_close(&f);
}

/* ---- a client that reads its own userfaultfd ------------------------------ */

/* A raw connection that said hello and made a mirror of @device. */
static int raw_session_with_mirror(const char *device, uint64_t *mirror)
{
	int sock = raw_session();

	*mirror = raw_mirror_create(sock, device);
	cr_assert_neq(*mirror, 0, "mirror create on %s", device);
	return sock;
}

/*
 * The next reply on a raw connection, waiting up to @ms (the daemon answers
 * within its own bounds: 10 s is a hang): 1 and the reply in *@m, 0 if none.
 */
static int next_reply(int sock, union raw_msg *m, int ms)
{
	ssize_t n = raw_recv(sock, m, ms);

	if (n == -ETIMEDOUT)
		return 0;
	cr_assert_geq(n, (ssize_t)RAW_HDR);
	return 1;
}

/* ---- finding 5: fair turns ------------------------------------------------- */

/*
 * One connection queues 200 device reads without waiting for any; another
 * connection's request is answered before most of them: connections take
 * turns, one request each. A FIFO would answer it after all 200. (An
 * order, counted in replies: no time is measured. 200 replies fit in the
 * raw socket's receive buffer, so the daemon never finds it full and hangs
 * up on a client that does not read.)
 */
Test(limits, requests_of_one_connection_do_not_wait_behind_anothers_backlog)
{
	enum { N = 200, PAGES = 1024 };
	struct fixture b;
	struct hmmu_wire_register reg = { 0 };
	union raw_msg m;
	char *buf, *out = malloc(PAGES * page_size());
	unsigned ahead = 0, total = 0;
	int sock;

	cr_assert_not_null(out);
	start_with("requests-per-connection=4096", NULL);
	b = fixture_open("dmirror1"); /* the process's state */
	sock = raw_session_with_mirror("dmirror0", &reg.mirror);
	cr_assert_eq(raw_call(sock, HMMU_OP_MIRROR_REGISTER, &reg, sizeof(reg),
			      -1, NULL, 0), 0);
	buf = map_touched(PAGES);
	for (unsigned i = 0; i < N; i++) {
		struct hmmu_wire_device_cmd cmd = {
			.mirror = reg.mirror,
			.cmd = HMMU_CMD_READ,
			.addr = (uintptr_t)buf,
			.npages = PAGES,
			.buf = (uintptr_t)out,
			.buf_len = PAGES * page_size(),
		};

		cr_assert_neq(raw_post(sock, HMMU_OP_DEVICE_CMD, &cmd,
				       sizeof(cmd), -1), 0);
	}
	/* The other connection's turn. */
	cr_assert_gt(hmmu_device_count(b.h), 0);
	while (next_reply(sock, &m, 0))
		ahead++;
	for (total = ahead; total < N && next_reply(sock, &m, 10000); total++)
		cr_expect_eq(m.hdr.status, 0);
	cr_expect_eq(total, N, "every read answered");
	cr_expect_lt(ahead, N / 2, "the other connection's request waited for "
		     "%u of %u reads queued before it", ahead, N);
	close(sock);
	fixture_close(&b);
	munmap(buf, PAGES * page_size());
	free(out);
}

struct thief {
	int uffd;
	atomic_bool stop;
	atomic_ulong stolen;
};

static void *steal_faults(void *arg)
{
	struct thief *t = arg;
	struct uffd_msg msg;

	while (!atomic_load(&t->stop))
		if (read(t->uffd, &msg, sizeof(msg)) == sizeof(msg))
			atomic_fetch_add(&t->stolen, 1);
	return NULL;
}

/*
 * A client keeps a copy of the userfaultfd it hands over and reads it
 * itself, stealing the fault the daemon takes to check the fd: the
 * registration still gets its answer (the fd is a full one: the fault was
 * queued, whoever read it), and the daemon still serves.
 */
Test(limits, a_client_stealing_its_own_faults_cannot_hold_a_worker)
{
	struct hmmu_wire_register reg = { 0 };
	struct uffdio_api api = { .api = UFFD_API,
				  .features = HMMU_UFFD_REQUIRED_FEATURES };
	struct thief t = { 0 };
	pthread_t th;
	struct fixture f;
	int sock, uffd, status;
	void *probe;

	start_with("job-seconds=60", NULL);
	sock = raw_session_with_mirror("dmirror0", &reg.mirror);
	cr_assert_eq(raw_call(sock, HMMU_OP_MIRROR_REGISTER, &reg, sizeof(reg),
			      -1, NULL, 0), HMMU_STATUS_NEED_UFFD);

	uffd = hmmu_uffd_open();
	cr_assert_geq(uffd, 0);
	cr_assert_eq(ioctl(uffd, UFFDIO_API, &api), 0);
	t.uffd = dup(uffd);
	cr_assert_eq(pthread_create(&th, NULL, steal_faults, &t), 0);
	probe = map_rw(2);
	reg.probe = (uintptr_t)probe;
	status = raw_call(sock, HMMU_OP_MIRROR_REGISTER, &reg, sizeof(reg),
			  uffd, NULL, 0);
	cr_expect_eq(status, 0, "register: %d (%lu faults stolen)", status,
		     atomic_load(&t.stolen));
	atomic_store(&t.stop, true);
	pthread_join(th, NULL);
	close(t.uffd);
	close(uffd);
	close(sock);
	f = fixture_open(NULL);
	cr_expect_gt(hmmu_device_count(f.h), 0, "the daemon still serves");
	fixture_close(&f);
}

/*
 * Out of file descriptors, hmmud refuses a connection at once (the client
 * sees it end) instead of leaving it unanswered in the backlog, and takes
 * connections again once fds are free.
 */
Test(limits, connections_past_the_fd_limit_are_refused_not_left_waiting)
{
	struct rlimit low = { 48, 48 };
	struct hmmu *h[64];
	int n = 0, err = 0;

	start_with("job-seconds=60", NULL);
	/* What the daemon says as it runs out of fds, on purpose here. */
	expect_daemon_log("out of file descriptors");
	expect_daemon_log("%s", strerror(EMFILE));
	cr_assert_eq(prlimit(daemon_under_test.pid, RLIMIT_NOFILE, &low, NULL), 0);
	/* Each connection costs the daemon two fds: some must be refused. */
	while (n < 64 && !(err = hmmu_connect(daemon_under_test.socket, &h[n])))
		n++;
	cr_expect_lt(n, 64, "every connection was taken");
	cr_expect(err == -ECONNRESET || err == -EPIPE || err == -ECONNREFUSED,
		  "refused with %s", strerror(-err));
	cr_expect_geq(daemon_log_count("out of file descriptors"), 1);
	while (n > 0)
		hmmu_disconnect(h[--n]);
	for (int i = 0; i < 100; i++) {
		err = hmmu_connect(daemon_under_test.socket, &h[0]);
		if (!err)
			break;
		usleep(10000);
	}
	cr_assert_eq(err, 0, "connect once fds are free: %s", strerror(-err));
	hmmu_disconnect(h[0]);
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) +
	       (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

struct long_job {
	struct fixture f;
	atomic_int state; /* 1 running, 2 done */
	int err;
};

static void *run_long_job(void *arg)
{
	struct long_job *lj = arg;
	struct hmmu_job job = cycle_job(1ull << 26);

	atomic_store(&lj->state, 1);
	lj->err = hmmu_job_run(lj->f.m, &job);
	atomic_store(&lj->state, 2);
	return NULL;
}

/*
 * One worker, busy with another connection's endless job: short requests
 * (a no-op, a one-page device read) are run by the thread that receives
 * them and answer at once, not when the job hits its deadline.
 */
Test(limits, short_requests_do_not_wait_behind_anothers_long_job)
{
	const char *args[] = { "--workers", "1", "--limit", "job-seconds=4",
			       NULL };
	struct long_job lj = { .state = 0 };
	struct fixture f;
	struct timespec t0;
	struct hmmu_cmd c;
	char *buf, *out;
	pthread_t t;

	daemon_start_args(args);
	expect_daemon_log("job on acc0: %s", strerror(ETIMEDOUT));
	lj.f = fixture_open("acc0");
	f = fixture_open("dmirror0");
	buf = map_touched(1);
	out = malloc(page_size());
	cr_assert_not_null(out);
	cr_assert_eq(pthread_create(&t, NULL, run_long_job, &lj), 0);
	while (atomic_load(&lj.state) == 0)
		usleep(1000);
	usleep(300000); /* on the one worker by now */

	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_geq(hmmu_device_count(f.h), 1);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)buf, .npages = 1 };
	cr_expect_eq(hmmu_device_read(f.m, &c, out), 0);
	cr_expect_eq(out[0], 1);
	cr_expect_lt(seconds_since(&t0), 1.0, "short requests took %.2f s",
		     seconds_since(&t0));
	cr_expect_eq(atomic_load(&lj.state), 1, "the job was still running");

	pthread_join(t, NULL);
	cr_expect_eq(lj.err, -ETIMEDOUT);
	free(out);
	munmap(buf, page_size());
	fixture_close(&f);
	fixture_close(&lj.f);
}

/*
 * One receiver: a client that sends requests and never reads the replies
 * is hung up on when its socket fills; meanwhile, and after, another
 * connection is served.
 */
Test(limits, a_client_that_does_not_read_cannot_stall_the_receiver)
{
	const char *args[] = { "--workers", "1", NULL };
	struct fixture f;
	struct timespec t0;
	int sock, sent = 0;

	daemon_start_args(args);
	expect_daemon_log("does not read its replies");
	f = fixture_open("dmirror0");
	sock = raw_open(0);
	cr_assert_geq(sock, 0);
	cr_assert_eq(raw_hello(sock), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* Until the daemon hangs up (or a bound), never reading. */
	while (sent < 200000 && seconds_since(&t0) < 20) {
		if (!raw_post(sock, HMMU_OP_DEVICE_COUNT, NULL, 0, -1))
			break;
		if (++sent % 64 == 0)
			cr_expect_geq(hmmu_device_count(f.h), 1);
	}
	cr_expect_lt(sent, 200000, "the daemon never hung up");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_expect_geq(hmmu_device_count(f.h), 1);
	cr_expect_lt(seconds_since(&t0), 1.0);
	close(sock);
	fixture_close(&f);
}
