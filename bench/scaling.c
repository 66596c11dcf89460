/* SPDX-License-Identifier: MIT */
/*
 * The --clients sweep. A block, for one worker count: start a private
 * hmmud (unless --socket names one), fork the clients (client.c), wait
 * until each says it is ready, write the common deadline into a shared
 * page and close the start pipe (every client wakes on its end of file at
 * once), collect each client's counts from the results pipe, reap the
 * clients, stop the daemon. Each round runs a block of each worker count,
 * 1 then 2 in even rounds, 2 then 1 in odd ones, so that a machine whose
 * load drifts weighs on both alike.
 *
 * The window of a block runs from the start signal to the last client's
 * last read. A worker count's faults_per_sec is every client's faults over
 * the sum of its blocks' windows; a client's own rate its faults over the
 * sum of its own windows (start to its last read).
 *
 * Cleanup: while clients live, SIGINT, SIGTERM and SIGHUP kill and reap
 * them, then go on to what was installed before (daemon.c's handler, which
 * stops the private daemon and dies of the signal). Each client also dies
 * with the bench (PR_SET_PDEATHSIG), however the bench ends.
 */
#include "scaling.h"
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <hmmu/hmmu.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 60000
#define DONE_GRACE_MS 60000 /* past the deadline */

static const int stop_signals[] = { SIGINT, SIGTERM, SIGHUP };
#define NSIGNALS (sizeof(stop_signals) / sizeof(stop_signals[0]))

/* The live clients, for the signal handler. */
static volatile pid_t kids[SCALING_MAX_CLIENTS];
static volatile sig_atomic_t nkids;
static struct sigaction old_actions[NSIGNALS];

/* SIGKILL and reap every live client (signal-safe). */
static void kill_kids(void)
{
	for (int i = 0; i < nkids; i++)
		if (kids[i] > 0)
			kill(kids[i], SIGKILL);
	for (int i = 0; i < nkids; i++) {
		if (kids[i] > 0)
			waitpid(kids[i], NULL, 0);
		kids[i] = 0;
	}
	nkids = 0;
}

static void on_signal(int sig)
{
	struct sigaction *old = NULL;

	kill_kids();
	for (unsigned i = 0; i < NSIGNALS; i++)
		if (stop_signals[i] == sig)
			old = &old_actions[i];
	if (!old)
		return;
	sigaction(sig, old, NULL);
	if (old->sa_handler == SIG_IGN)
		return;
	if (old->sa_handler != SIG_DFL) {
		old->sa_handler(sig);
		return;
	}
	/* Blocked while we run: it kills us once we return. */
	raise(sig);
}

static void handlers_install(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	for (unsigned i = 0; i < NSIGNALS; i++)
		sigaction(stop_signals[i], &sa, &old_actions[i]);
}

static void handlers_restore(void)
{
	for (unsigned i = 0; i < NSIGNALS; i++)
		sigaction(stop_signals[i], &old_actions[i], NULL);
}

static void block_signals(int block, sigset_t *old)
{
	sigset_t set;

	sigemptyset(&set);
	for (unsigned i = 0; i < NSIGNALS; i++)
		sigaddset(&set, stop_signals[i]);
	sigprocmask(block ? SIG_BLOCK : SIG_SETMASK, block ? &set : old,
		    block ? old : NULL);
}

static void point_skip(struct scaling_point *pt, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void point_skip(struct scaling_point *pt, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(pt->skipped, sizeof(pt->skipped), fmt, ap);
	va_end(ap);
	warnx_("clients, %s: %s",
	       pt->workers ? (pt->workers == 1 ? "1 worker" : "2 workers") :
			     "the daemon's workers",
	       pt->skipped);
}

/*
 * Fork the clients; the first @*forked of them run. Each gets the read end
 * of @start and the write end of @res, and closes the other two: the start
 * pipe's end of file comes only once no process holds its write end.
 * 0 or -errno.
 */
static int fork_clients(const struct config *cfg, const char *socket,
			const int start[2], const int res[2],
			const struct client_start *cs, unsigned *forked)
{
	pid_t parent = getpid();
	sigset_t saved;
	int err = 0;

	fflush(NULL);
	for (unsigned i = 0; i < cfg->clients && !err; i++) {
		pid_t pid;

		/* No handler of ours may run in a child before it resets. */
		block_signals(1, &saved);
		pid = fork();
		if (pid == 0) {
			struct client_args a = {
				.index = i,
				.socket = socket,
				.pages = cfg->pages,
				.queue = cfg->clients_queue,
				.start_fd = start[0],
				.result_fd = res[1],
				.start = cs,
			};

			close(start[1]);
			close(res[0]);
			for (unsigned k = 0; k < NSIGNALS; k++)
				signal(stop_signals[k], SIG_DFL);
			block_signals(0, &saved);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(1);
			_exit(client_main(&a));
		}
		if (pid < 0) {
			err = -errno;
		} else {
			kids[i] = pid;
			nkids = (sig_atomic_t)(i + 1);
			*forked = i + 1;
		}
		block_signals(0, &saved);
	}
	return err;
}

/* A client that has exited (left to reap) before sending what @seen lacks. */
static int client_gone(unsigned n, const uint8_t *seen)
{
	for (unsigned i = 0; i < n; i++) {
		siginfo_t si = { 0 };

		if (seen[i] || kids[i] <= 0)
			continue;
		if (waitid(P_PID, (id_t)kids[i], &si,
			   WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid)
			return (int)i;
	}
	return -1;
}

/* What one block's clients reported. */
struct block {
	uint64_t t0_ns;
	struct client_msg c[SCALING_MAX_CLIENTS];
};

/*
 * Read one message of @phase from each of @n clients, into bl->c. 0, or
 * -1 with pt->skipped set.
 */
static int collect(int fd, struct scaling_point *pt, struct block *bl,
		   unsigned n, int phase, uint64_t timeout_ms)
{
	uint64_t until = now_ns() + timeout_ms * 1000000ull;
	uint8_t seen[SCALING_MAX_CLIENTS] = { 0 };
	unsigned got = 0;

	while (got < n) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct client_msg msg;
		uint64_t now = now_ns();
		ssize_t r;
		int ready;

		if (now >= until) {
			point_skip(pt, "%u of %u clients did not report in "
				   "%" PRIu64 " s", n - got, n,
				   timeout_ms / 1000);
			return -1;
		}
		/* A look at the clients every 100 ms: one may have died. */
		ready = poll(&pfd, 1, until - now > 100000000ull ? 100 :
				  (int)((until - now) / 1000000 + 1));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready < 0) {
			point_skip(pt, "poll: %s", strerror(errno));
			return -1;
		}
		if (ready == 0) {
			int gone = client_gone(n, seen);

			/* Its last message may have come meanwhile. */
			if (gone >= 0 && poll(&pfd, 1, 0) == 0) {
				point_skip(pt, "client %d exited without "
					   "reporting", gone);
				return -1;
			}
			continue;
		}
		r = read(fd, &msg, sizeof(msg));
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			point_skip(pt, "a client exited without reporting");
			return -1;
		}
		if (r != (ssize_t)sizeof(msg) || msg.index < 0 ||
		    (unsigned)msg.index >= n || seen[msg.index] ||
		    msg.phase != phase) {
			point_skip(pt, "a client sent a garbled message");
			return -1;
		}
		if (msg.err) {
			point_skip(pt, "client %d failed: %s", msg.index,
				   strerror(-msg.err));
			return -1;
		}
		seen[msg.index] = 1;
		bl->c[msg.index] = msg;
		got++;
	}
	return 0;
}

/* Reap every client; 0 if each exited with 0. */
static int reap(void)
{
	sigset_t saved;
	int err = 0;

	block_signals(1, &saved);
	for (int i = 0; i < nkids; i++) {
		int status = 0;

		if (kids[i] <= 0)
			continue;
		if (waitpid(kids[i], &status, 0) != kids[i] ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			err = -1;
		kids[i] = 0;
	}
	nkids = 0;
	block_signals(0, &saved);
	return err;
}

/* Add a block's counts to its worker count's. */
static void accumulate(struct scaling_point *pt, const struct block *bl,
		       unsigned n)
{
	uint64_t last = bl->t0_ns;

	for (unsigned i = 0; i < n; i++) {
		const struct client_msg *b = &bl->c[i];
		struct client_msg *c = &pt->c[i];

		if (b->end_ns > last)
			last = b->end_ns;
		pt->own_ns[i] += b->end_ns > bl->t0_ns ? b->end_ns - bl->t0_ns : 1;
		c->index = b->index;
		memcpy(c->device, b->device, sizeof(c->device));
		c->faults += b->faults;
		c->reads += b->reads;
		c->warm_reads += b->warm_reads;
		c->setup_faults += b->setup_faults;
		c->recold_ns += b->recold_ns;
		c->recolds += b->recolds;
		c->end_ns = b->end_ns;
	}
	pt->window_ns += last > bl->t0_ns ? last - bl->t0_ns : 1;
	pt->blocks++;
}

/* The figures, from the sums. */
static void compute(struct scaling_point *pt, unsigned n)
{
	uint64_t busy = 0, recold = 0;

	pt->faults = pt->reads = pt->warm_reads = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct client_msg *c = &pt->c[i];

		pt->rate[i] = (double)c->faults * 1e9 / (double)pt->own_ns[i];
		if (!i || pt->rate[i] < pt->min_per_client)
			pt->min_per_client = pt->rate[i];
		if (!i || pt->rate[i] > pt->max_per_client)
			pt->max_per_client = pt->rate[i];
		pt->faults += c->faults;
		pt->reads += c->reads;
		pt->warm_reads += c->warm_reads;
		busy += pt->own_ns[i];
		recold += c->recold_ns;
	}
	pt->seconds = (double)pt->window_ns / 1e9;
	pt->faults_per_sec = (double)pt->faults / pt->seconds;
	pt->recold_share = busy ? (double)recold / (double)busy : 0;
}

/*
 * A private daemon counted every fault since it started: it must agree with
 * the clients on device faults, and have seen no CPU fault (re-colding is
 * meant to stay out of it: see client.c).
 */
static void check_daemon_count(const char *socket, const struct block *bl,
			       unsigned n)
{
	struct hmmu_stats st;
	struct hmmu *h;
	uint64_t want = 0, warm = 0, reads = 0;

	for (unsigned i = 0; i < n; i++) {
		want += bl->c[i].faults + bl->c[i].setup_faults;
		warm += bl->c[i].warm_reads;
		reads += bl->c[i].reads;
	}
	if (warm)
		warnx_("clients: %" PRIu64 " of %" PRIu64 " reads took no "
		       "device fault: the buffers were not cold", warm, reads);
	if (!socket)
		return;
	if (hmmu_connect(socket, &h) < 0)
		return;
	if (hmmu_stats(h, &st, sizeof(st)) >= 0) {
		if (st.device_faults != want)
			warnx_("clients: hmmud counted %" PRIu64 " device "
			       "faults, the clients %" PRIu64 ": the figures "
			       "may not measure what they say",
			       st.device_faults, want);
		if (st.cpu_faults)
			warnx_("clients: hmmud served %" PRIu64 " CPU faults: "
			       "making the buffers cold went through it",
			       st.cpu_faults);
	}
	hmmu_disconnect(h);
}

/*
 * A block: N clients against the daemon at @socket for @seconds, added to
 * @pt. @private: the daemon is ours alone, its counts are checked. 0, or
 * -1 (pt->skipped says why).
 */
static int run_block(const struct config *cfg, const char *socket,
		     double seconds, struct scaling_point *pt, int private)
{
	static struct block bl;
	int start[2] = { -1, -1 }, res[2] = { -1, -1 };
	struct client_start *cs;
	unsigned forked = 0;
	int err = 0;

	memset(&bl, 0, sizeof(bl));

	cs = mmap(NULL, sizeof(*cs), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (cs == MAP_FAILED) {
		point_skip(pt, "mmap: %s", strerror(errno));
		return -1;
	}
	if (pipe2(start, O_CLOEXEC) < 0 || pipe2(res, O_CLOEXEC) < 0) {
		point_skip(pt, "pipe: %s", strerror(errno));
		err = -1;
		goto out;
	}
	handlers_install();
	err = fork_clients(cfg, socket, start, res, cs, &forked);
	if (err) {
		point_skip(pt, "fork: %s", strerror(-err));
		err = -1;
	}
	/* Ours closed, a client's death is the end of file if all die. */
	close(res[1]);
	res[1] = -1;
	close(start[0]);
	start[0] = -1;
	if (!err)
		err = collect(res[0], pt, &bl, forked, CLIENT_READY,
			      READY_TIMEOUT_MS);
	if (!err) {
		cs->t0_ns = now_ns();
		cs->deadline_ns = cs->t0_ns + (uint64_t)(seconds * 1e9);
		bl.t0_ns = cs->t0_ns;
		/* The start signal: every client reads end of file. */
		close(start[1]);
		start[1] = -1;
		err = collect(res[0], pt, &bl, forked, CLIENT_DONE,
			      (uint64_t)(seconds * 1000) + DONE_GRACE_MS);
	}
	if (err) {
		sigset_t saved;

		block_signals(1, &saved);
		kill_kids();
		block_signals(0, &saved);
	} else if (reap() < 0) {
		point_skip(pt, "a client did not exit cleanly");
		err = -1;
	}
	handlers_restore();
	if (!err) {
		accumulate(pt, &bl, forked);
		check_daemon_count(private ? socket : NULL, &bl, forked);
	}
out:
	for (int i = 0; i < 2; i++) {
		if (start[i] >= 0)
			close(start[i]);
		if (res[i] >= 0)
			close(res[i]);
	}
	munmap(cs, sizeof(*cs));
	return err;
}

/* A block of @pt's worker count, on its own private daemon. */
static int private_block(const struct config *cfg, double seconds,
			 struct scaling_point *pt)
{
	struct private_daemon pd;
	int err;

	if (daemon_start(&pd, cfg->hmmud, pt->workers) < 0) {
		point_skip(pt, "the daemon did not start");
		return -1;
	}
	err = run_block(cfg, pd.socket, seconds, pt, 1);
	if (daemon_stop(&pd) < 0)
		err = -1;
	return err;
}

int scaling_run(const struct config *cfg, struct scaling *sc)
{
	unsigned rounds = cfg->clients_rounds ? cfg->clients_rounds : 1;
	double seconds = cfg->clients_seconds / rounds;
	int failed = 0;

	memset(sc, 0, sizeof(*sc));
	sc->clients = cfg->clients;
	sc->seconds = cfg->clients_seconds;
	sc->rounds = rounds;
	sc->pages = cfg->pages;
	sc->queue = cfg->clients_queue;
	sc->ratio = NAN;
	if (cfg->socket) {
		snprintf(sc->daemon, sizeof(sc->daemon),
			 "hmmud at %s, its own worker count", cfg->socket);
		sc->npoints = 1;
	} else {
		snprintf(sc->daemon, sizeof(sc->daemon),
			 "private hmmud, --workers 1 and 2");
		sc->npoints = SCALING_POINTS;
	}
	for (unsigned i = 0; i < sc->npoints; i++)
		sc->pt[i].workers = cfg->socket ? 0 : i + 1;

	for (unsigned r = 0; r < rounds; r++) {
		for (unsigned k = 0; k < sc->npoints; k++) {
			/* 1 2, then 2 1: drift falls on both alike. */
			unsigned i = r % 2 ? sc->npoints - 1 - k : k;
			struct scaling_point *pt = &sc->pt[i];
			int err;

			if (pt->skipped[0])
				continue;
			if (cfg->socket) {
				progress("clients: %u against %s, round %u of "
					 "%u, %.3g s", cfg->clients, cfg->socket,
					 r + 1, rounds, seconds);
				err = run_block(cfg, cfg->socket, seconds, pt, 0);
			} else {
				progress("clients: %u, hmmud --workers %u, round "
					 "%u of %u, %.3g s", cfg->clients,
					 pt->workers, r + 1, rounds, seconds);
				err = private_block(cfg, seconds, pt);
			}
			if (err)
				failed = 1;
		}
	}
	for (unsigned i = 0; i < sc->npoints; i++)
		if (!sc->pt[i].skipped[0])
			compute(&sc->pt[i], sc->clients);
	if (sc->npoints == SCALING_POINTS && !sc->pt[0].skipped[0] &&
	    !sc->pt[1].skipped[0] && sc->pt[0].faults_per_sec > 0)
		sc->ratio = sc->pt[1].faults_per_sec / sc->pt[0].faults_per_sec;
	return failed ? -1 : 0;
}
