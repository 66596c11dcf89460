/* SPDX-License-Identifier: MIT */
/*
 * Proof by violence (issue 12): hmmud runs under hmmu-supervise, the
 * tests' stand-in for systemd (Type=notify, Restart=always, the listening
 * socket kept across restarts), and is SIGKILLed at random moments, round
 * after round, while 4 client processes migrate pages to device memory,
 * write them from the CPU, read and write them through a device, run
 * accelerator jobs over them and unregister and register again. Every
 * client keeps its own copy of every byte it ever wrote and checks its
 * memory against it: after every death, every 64 operations, and at the
 * end.
 *
 * Without the fd store, each death ends the clients' connections,
 * libhmmu's fail-safe brings their pages in device memory home, the call
 * in flight fails with -ESHUTDOWN or -ECONNRESET, and the client connects
 * again to the successor. Lost bytes must be 0, errors other than those
 * must be 0, and no client may hang.
 *
 * With the fd store (FileDescriptorStoreMax=), the successor adopts each
 * client's state and libhmmu reconnects by itself: a death is a stall,
 * and every error counts; lost bytes and client errors must be 0. A kill
 * "landed inside" an operation that took over 5 ms.
 *
 * HMMU_CRASHLOOP_ROUNDS overrides the 200 rounds; the figures go to
 * stderr (ctest --output-on-failure, or run the binary).
 */
#include "supervised.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <hmmu/hmmu.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS 4
#define NPAGES 32
#define ROUNDS 200

/* What a call was doing when the daemon died under it. */
enum op_kind {
	OP_MIGRATE,
	OP_CPU_WRITE,
	OP_DEVICE_READ,
	OP_QUEUE_READ,
	OP_DEVICE_WRITE,
	OP_JOB,
	OP_UNREGISTER,
	OP_CONNECT,
	OP_KINDS,
};

static const char *const op_names[OP_KINDS] = {
	"migration", "cpu write (>5 ms)", "device read (fault)",
	"queued device reads", "device write (fault)", "accelerator job", "unregister/register",
	"connect/setup",
};

/* Each client's figures, in memory shared with the test. */
struct client_stats {
	uint64_t ops, deaths, reconnects;
	uint64_t died_in[OP_KINDS];
	uint64_t bytes_checked, bytes_lost, errors;
	uint64_t longest_stall_ns;
	atomic_int stop;
	int exited;
	char first_error[200];
	char first_loss[200];
};

static struct client_stats *stats; /* CLIENTS of them, MAP_SHARED */
/* The run with the fd store: a daemon's death must cost no error. */
static bool strict;

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static bool daemon_gone(int err)
{
	return err == -ESHUTDOWN || err == -ECONNRESET || err == -EPIPE ||
	       err == -ENOTCONN;
}

/* ---- one client process ------------------------------------------------- */

struct client {
	struct client_stats *st;
	unsigned char *mem;  /* NPAGES pages the devices see */
	unsigned char *want; /* what every byte of it must be */
	/*
	 * A write by a device or a job that failed may have written part of
	 * its range: there, a byte may be its old or its new value.
	 */
	size_t maybe_lo, maybe_hi;
	unsigned char *maybe; /* the new values, NPAGES pages */
	struct hmmu *h;
	struct hmmu_mirror *dev, *acc;
	struct hmmu_queue *q; /* on dev */
	size_t page;
	unsigned seed;
};

static void error(struct client *c, const char *what, int err)
{
	c->st->errors++;
	if (!c->st->first_error[0])
		snprintf(c->st->first_error, sizeof(c->st->first_error),
			 "%s: %s (%s)", what, strerror(-err),
			 hmmu_error_detail());
}

/* A byte that is not what was last written: say where, and what it is. */
static void lost(struct client *c, const char *how, size_t at, unsigned char v)
{
	size_t page = at / c->page, n = 0;

	c->st->bytes_lost++;
	if (c->st->first_loss[0])
		return;
	for (size_t i = page * c->page; i < (page + 1) * c->page; i++)
		n += c->mem[i] != c->want[i];
	snprintf(c->st->first_loss, sizeof(c->st->first_loss),
		 "%s: page %zu byte %zu is %#x, not %#x (%zu bytes of the "
		 "page differ, op %llu)",
		 how, page, at % c->page, v, c->want[at],
		 n, (unsigned long long)c->st->ops);
}

/* Check the whole region from the CPU; settle the bytes in doubt. */
static void check_all(struct client *c)
{
	size_t n = NPAGES * c->page;

	for (size_t i = 0; i < n; i++) {
		unsigned char v = c->mem[i];

		if (i >= c->maybe_lo && i < c->maybe_hi &&
		    v == c->maybe[i])
			c->want[i] = v;
		if (v != c->want[i])
			lost(c, "cpu check", i, v);
	}
	c->maybe_lo = c->maybe_hi = 0;
	c->st->bytes_checked += n;
}

static void disconnect(struct client *c)
{
	hmmu_queue_destroy(c->q);
	c->q = NULL;
	if (c->dev)
		hmmu_mirror_destroy(c->dev);
	if (c->acc)
		hmmu_mirror_destroy(c->acc);
	if (c->h)
		hmmu_disconnect(c->h);
	c->dev = c->acc = NULL;
	c->h = NULL;
}

static int setup(struct client *c, const char *sock)
{
	int err = hmmu_connect(sock, &c->h);

	if (err)
		return err;
	err = hmmu_mirror_create(c->h, "dmirror0", &c->dev);
	if (!err)
		err = hmmu_mirror_register(c->dev);
	if (!err)
		err = hmmu_queue_create(c->dev, NPAGES, &c->q);
	if (!err)
		err = hmmu_mirror_create(c->h, "acc0", &c->acc);
	if (!err)
		err = hmmu_mirror_register(c->acc);
	return err;
}

/* One random operation; its kind in *kind. 0 or -errno. */
static int one_op(struct client *c, enum op_kind *kind)
{
	size_t first = (size_t)rand_r(&c->seed) % NPAGES;
	size_t npages = 1 + (size_t)rand_r(&c->seed) % (NPAGES - first);
	size_t off = first * c->page, len = npages * c->page;
	struct hmmu_cmd cmd = { .addr = (uintptr_t)(c->mem + off),
				.npages = npages };
	unsigned r = (unsigned)rand_r(&c->seed) % 100;
	int err;

	if (r < 25) {
		*kind = OP_MIGRATE;
		return hmmu_migrate_to_device(c->dev, &cmd);
	}
	if (r < 50) {
		/* A few bytes on a few pages: a fault for each page on a device. */
		*kind = OP_CPU_WRITE;
		for (int i = 0; i < 4; i++) {
			size_t at = off + (size_t)rand_r(&c->seed) % len;
			unsigned char v = (unsigned char)rand_r(&c->seed);

			c->mem[at] = v;
			c->want[at] = v;
		}
		return 0;
	}
	if (r < 65) {
		unsigned char *buf = c->maybe + off; /* scratch until used */

		*kind = OP_DEVICE_READ;
		err = hmmu_device_read(c->dev, &cmd, buf);
		if (!err)
			for (size_t i = 0; i < len; i++)
				if (buf[i] != c->want[off + i])
					lost(c, "device read", off + i, buf[i]);
		if (!err)
			c->st->bytes_checked += len;
		return err;
	}
	if (r < 70) {
		/* A page per submission, into scratch; every one completes. */
		struct hmmu_cqe cqe[NPAGES];
		size_t done = 0;

		*kind = OP_QUEUE_READ;
		for (size_t i = 0; i < npages; i++) {
			struct hmmu_cmd one = {
				.addr = cmd.addr + i * c->page, .npages = 1 };

			err = hmmu_queue_read(c->q, &one,
					      c->maybe + off + i * c->page, i);
			if (err)
				return err;
		}
		err = hmmu_queue_submit(c->q);
		if (err < 0)
			return err;
		/* Fewer than asked only with an error to come: ask again. */
		while (done < npages) {
			int got = hmmu_queue_wait(c->q, cqe, NPAGES,
						  (unsigned)(npages - done), -1);

			if (got < 0)
				return got;
			for (int i = 0; i < got; i++)
				if (cqe[i].status)
					return cqe[i].status;
			done += (size_t)got;
		}
		for (size_t i = 0; i < len; i++)
			if (c->maybe[off + i] != c->want[off + i])
				lost(c, "queued read", off + i, c->maybe[off + i]);
		c->st->bytes_checked += len;
		return 0;
	}
	if (r < 85) {
		*kind = OP_DEVICE_WRITE;
		for (size_t i = 0; i < len; i++)
			c->maybe[off + i] = (unsigned char)rand_r(&c->seed);
		err = hmmu_device_write(c->dev, &cmd, c->maybe + off);
		if (!err)
			memcpy(c->want + off, c->maybe + off, len);
		else
			c->maybe_lo = off, c->maybe_hi = off + len;
		return err;
	}
	if (r < 98) {
		uint64_t v = ((uint64_t)rand_r(&c->seed) << 32) |
			     (uint64_t)rand_r(&c->seed);
		struct hmmu_job job = { .kind = HMMU_JOB_FILL,
					.dst = (uintptr_t)(c->mem + off),
					.len = len,
					.value = v };

		*kind = OP_JOB;
		for (size_t i = 0; i < len; i++)
			c->maybe[off + i] = ((unsigned char *)&v)[i % 8];
		err = hmmu_job_run(c->acc, &job);
		if (!err)
			memcpy(c->want + off, c->maybe + off, len);
		else
			c->maybe_lo = off, c->maybe_hi = off + len;
		return err;
	}
	*kind = OP_UNREGISTER;
	err = hmmu_mirror_unregister(c->dev);
	return err ? err : hmmu_mirror_register(c->dev);
}

static void client_main(unsigned index, const char *sock, pid_t test)
{
	struct client c = { .st = &stats[index] };
	size_t n;

	/*
	 * A test that fails an assertion exits without stopping us: go with
	 * it, or the loop runs on and ctest waits for ever on our stderr.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != test)
		_exit(3);

	c.page = (size_t)sysconf(_SC_PAGESIZE);
	n = NPAGES * c.page;
	c.seed = (unsigned)now_ns() ^ (index * 7919u);
	c.mem = mmap(NULL, n, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	c.want = malloc(n);
	c.maybe = malloc(n);
	if (c.mem == MAP_FAILED || !c.want || !c.maybe)
		_exit(2);
	for (size_t i = 0; i < n; i++)
		c.mem[i] = c.want[i] = (unsigned char)(1 + (i * 131 + index) % 251);

	while (!atomic_load(&c.st->stop)) {
		enum op_kind kind = OP_CONNECT;
		uint64_t t0 = now_ns(), took;
		int err = 0;

		if (!c.h) {
			err = setup(&c, sock);
			if (err && !c.h) {
				/* hmmud restarting: the socket waits for it. */
				if (err != -ECONNREFUSED && err != -ENOENT &&
				    !daemon_gone(err))
					error(&c, "connect", err);
				usleep(1000);
				continue;
			}
			c.st->reconnects++;
		}
		if (!err)
			err = one_op(&c, &kind);
		took = now_ns() - t0;
		if (took > c.st->longest_stall_ns)
			c.st->longest_stall_ns = took;
		/*
		 * A CPU write never fails: one held in a fault when hmmud
		 * died waits for the rescue (or the successor). Over 5 ms,
		 * count it as that; with the store, any operation.
		 */
		if (!err && took > 5000000 &&
		    (strict || kind == OP_CPU_WRITE)) {
			c.st->died_in[kind]++;
			c.st->deaths += strict;
		}
		c.st->ops++;
		if (err && daemon_gone(err) && !strict) {
			c.st->deaths++;
			c.st->died_in[kind]++;
			check_all(&c);
			disconnect(&c);
		} else if (err) {
			error(&c, op_names[kind], err);
			check_all(&c);
			disconnect(&c);
		} else if (c.st->ops % 64 == 0) {
			check_all(&c);
		}
	}
	check_all(&c);
	disconnect(&c);
	_exit(0);
}

/* ---- the test ----------------------------------------------------------- */

TestSuite(crashloop, .fini = supervised_cleanup, .timeout = 1200);

static unsigned rounds(void)
{
	const char *s = getenv("HMMU_CRASHLOOP_ROUNDS");

	return s && atoi(s) > 0 ? (unsigned)atoi(s) : ROUNDS;
}

/*
 * Stop the clients; each must exit within 30 s: none may hang. How many
 * did not exit cleanly (the figures are printed before that counts).
 */
static unsigned stop_clients(pid_t *pids)
{
	unsigned bad = 0;

	for (unsigned i = 0; i < CLIENTS; i++)
		atomic_store(&stats[i].stop, 1);
	for (unsigned i = 0; i < CLIENTS; i++) {
		int status = 0;
		pid_t got = 0;

		for (int waited = 0; waited < 30000 && !got; waited += 10) {
			got = waitpid(pids[i], &status, WNOHANG);
			if (!got)
				usleep(10000);
		}
		if (!got) {
			kill(pids[i], SIGKILL);
			waitpid(pids[i], NULL, 0);
			fprintf(stderr, "  client %u hung (ops %llu)\n", i,
				(unsigned long long)stats[i].ops);
			bad++;
		} else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "  client %u: status %#x\n", i, status);
			bad++;
		}
	}
	return bad;
}

static void crashloop(bool fdstore)
{
	const char *hmmud = supervised_hmmud_path();
	unsigned n = rounds(), seed = (unsigned)now_ns();
	struct client_stats sum = { 0 };
	pid_t pids[CLIENTS];
	pid_t test = getpid();
	unsigned bad;
	uint64_t t0;

	strict = fdstore;
	supervised_prepare();
	supervised_start((const char *[]){ "--listen", supervised.sock,
					   "--fdstore-max",
					   fdstore ? "4096" : "0", NULL },
			 (const char *[]){ hmmud, "--foreground",
					   "--log-level", "info",
					   "--adopt-grace",
					   fdstore ? "10000" : "0", NULL });
	supervised_wait_state("restarts=0\nready=1");
	stats = mmap(NULL, CLIENTS * sizeof(*stats), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(stats, MAP_FAILED);
	for (unsigned i = 0; i < CLIENTS; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0)
			client_main(i, supervised.sock, test);
	}

	srand(seed);
	t0 = now_ns();
	for (unsigned round = 1; round <= n; round++) {
		char want[64];

		/* 2 to 40 ms of work, then the kill. */
		usleep(2000 + (unsigned)rand() % 38000);
		cr_assert_eq(kill(supervised.pid, SIGUSR1), 0);
		snprintf(want, sizeof(want), "restarts=%u\nready=1", round);
		supervised_wait_state(want);
	}
	usleep(50000); /* the last successor serves a little */
	bad = stop_clients(pids);

	for (unsigned i = 0; i < CLIENTS; i++) {
		sum.ops += stats[i].ops;
		sum.deaths += stats[i].deaths;
		sum.reconnects += stats[i].reconnects;
		sum.bytes_checked += stats[i].bytes_checked;
		sum.bytes_lost += stats[i].bytes_lost;
		sum.errors += stats[i].errors;
		for (unsigned k = 0; k < OP_KINDS; k++)
			sum.died_in[k] += stats[i].died_in[k];
		if (stats[i].longest_stall_ns > sum.longest_stall_ns)
			sum.longest_stall_ns = stats[i].longest_stall_ns;
	}
	fprintf(stderr,
		"crashloop (%s, seed %u): %u rounds in %.1f s, %d clients, "
		"%llu operations, %llu deaths %s\n",
		fdstore ? "fd store" : "no fd store", seed, n,
		(double)(now_ns() - t0) / 1e9, CLIENTS,
		(unsigned long long)sum.ops, (unsigned long long)sum.deaths,
		fdstore ? "felt as stalls over 5 ms" : "seen by clients");
	for (unsigned k = 0; k < OP_KINDS; k++)
		fprintf(stderr, "  %s a %-24s %llu\n",
			fdstore ? "stalled in" : "died inside", op_names[k],
			(unsigned long long)sum.died_in[k]);
	fprintf(stderr,
		"  bytes checked %llu, bytes lost %llu, client errors %llu, "
		"longest stall %.1f ms\n",
		(unsigned long long)sum.bytes_checked,
		(unsigned long long)sum.bytes_lost,
		(unsigned long long)sum.errors,
		(double)sum.longest_stall_ns / 1e6);
	for (unsigned i = 0; i < CLIENTS; i++) {
		if (stats[i].first_error[0])
			fprintf(stderr, "  client %u: %s\n", i,
				stats[i].first_error);
		if (stats[i].first_loss[0])
			fprintf(stderr, "  client %u: %s\n", i,
				stats[i].first_loss);
	}
	supervised_stop();
	cr_expect_eq(bad, 0, "clients hung or failed (seed %u)", seed);
	cr_expect_eq(sum.bytes_lost, 0, "bytes lost (seed %u)", seed);
	cr_expect_eq(sum.errors, 0, "client errors (seed %u)", seed);
	cr_expect_gt(sum.deaths, 0, "no client ever saw hmmud die");
	cr_expect_gt(sum.bytes_checked, 0);
	munmap(stats, CLIENTS * sizeof(*stats));
}

Test(crashloop, sigkill_at_random_moments_loses_no_byte_without_the_fd_store)
{
	crashloop(false);
}

Test(crashloop, sigkill_at_random_moments_costs_no_error_under_the_fd_store)
{
	crashloop(true);
}

/* ---- the listening socket in the fd store ------------------------------- */

TestSuite(fdstore, .fini = supervised_cleanup, .timeout = 120);

Test(fdstore, hmmud_keeps_its_socket_across_a_crash_and_removes_it_at_stop)
{
	char sock[128];
	struct stat before, after;
	struct hmmu *h;

	supervised_prepare();
	snprintf(sock, sizeof(sock), "%s/own.sock", supervised.dir);
	supervised_start((const char *[]){ "--fdstore-max", "4", NULL },
			 (const char *[]){ supervised_hmmud_path(),
					   "--foreground", "--socket", sock,
					   NULL });
	/* The socket, and the incarnation its clients' state goes with. */
	supervised_wait_state("restarts=0\nready=1\nstored=2");
	cr_assert_eq(stat(sock, &before), 0);

	supervised_crash_and_wait(1);
	supervised_wait_state("stored=2");
	cr_assert_eq(stat(sock, &after), 0);
	cr_assert_eq(after.st_ino, before.st_ino, "a new socket after a crash");
	cr_assert_eq(hmmu_connect(sock, &h), 0, "%s", hmmu_error_detail());
	cr_assert_gt(hmmu_device_count(h), 0);
	hmmu_disconnect(h);

	supervised_stop();
	cr_assert(supervised_logged("removed hmmud-listen"), "%s",
		  supervised_slurp(supervised.log));
	cr_assert_neq(stat(sock, &after), 0, "%s left behind", sock);
}
