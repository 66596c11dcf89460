/* SPDX-License-Identifier: MIT */
/*
 * sockfuzz: a socket-level fuzzer for a running hmmud.
 *
 *   sockfuzz [--seconds N] [--clients N] [--seed S] [--hmmud PATH] [--keep]
 *            [--keep-going] [--avoid-known] [--jobs N] [--first N]
 *            [--log-level L] [--daemon-arg ARG]... (--help for the rest)
 *
 * Starts its own hmmud (built with -DHMMU_SANITIZE=ON, ideally) on a
 * private socket in a temporary directory, then runs clients, each a
 * forked child (sockfuzz_client.c), for a bounded time or count, a few at
 * once. Clients are killed at random points too. After each client it
 * checks that the daemon still exists and serves: a fresh connection gets
 * a correct HELLO and DEVICE_COUNT reply in time. At the end it stops the
 * daemon with SIGTERM and requires exit status 0 (a sanitizer report or a
 * leak makes it non-zero) in time.
 *
 * Findings: the daemon died, hung, answered the health check wrongly, did
 * not stop cleanly, or printed a sanitizer report; or a client saw a reply
 * that breaks docs/protocol.md. Any finding makes the exit status 1, keeps
 * the temporary directory (the daemon's log, the last clients' traces, the
 * stacks of a hung daemon) and prints the log's tail. Exit status 2 is a
 * usage or setup error. --keep-going restarts the daemon after a death or
 * hang instead of stopping; --avoid-known keeps away from the bugs already
 * found (sockfuzz.h).
 *
 * --seed S runs the same clients, in the same order, with the same random
 * choices; what the daemon's threads do in between is up to the scheduler,
 * so a finding may take a few runs of the same seed to come back. Client N
 * alone: --seed S --first N --clients 1 --jobs 1.
 */
#include "sockfuzz.h"
#include "wire.h"
#include "common/notify_wait.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SOCKFUZZ_DEFAULT_HMMUD
#define SOCKFUZZ_DEFAULT_HMMUD "build-sanitize/hmmud"
#endif

#define MAX_JOBS 16
#define TRACE_RING 16 /* trace files kept: the last clients' to end */
#define MAX_DAEMON_ARGS 16

struct options {
	double seconds;
	uint64_t clients; /* 0: no limit */
	uint64_t first;
	uint64_t seed;
	int seed_set;
	const char *hmmud;
	int keep;
	int keep_going;
	int avoid_known;
	unsigned jobs;
	const char *log_level;
	int probe_timeout_ms;
	int stop_timeout_ms;
	int client_timeout_ms;
	int reply_timeout_ms;
	uint64_t log_max;
	const char *daemon_args[MAX_DAEMON_ARGS];
	unsigned ndaemon_args;
};

struct slot {
	pid_t pid;
	uint64_t index;
	long started;
	long kill_at; /* LONG_MAX: let it run */
	int killed;   /* by us, at random */
	int timed_out;
};

static struct {
	struct options o;
	struct fuzz_shared *sh;
	struct fuzz_rng rng;
	char dir[PATH_MAX];
	char socket[PATH_MAX];
	char log[PATH_MAX];
	pid_t daemon;
	int daemon_status;
	int daemon_reaped;
	int log_fd; /* read-write: scanned, and truncated when too long */
	off_t log_scanned;
	char log_partial[1024];
	size_t log_partial_len;
	struct timespec start;

	/* The report. */
	uint64_t launched, finished, died, killed, timed_out, crashed,
		no_start;
	unsigned restarts;
	unsigned findings;
	unsigned client_findings_seen;
	int sanitizer_seen;
	int fatal; /* the daemon died or hangs: no more health checks */
	char first_sanitizer_line[512];
	volatile sig_atomic_t interrupted;
} F;

static long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - F.start.tv_sec) * 1000 +
	       (t.tv_nsec - F.start.tv_nsec) / 1000000;
}

__attribute__((format(printf, 1, 2))) static void report_finding(const char *fmt,
								  ...)
{
	va_list ap;

	F.findings++;
	printf("sockfuzz: FINDING: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/* ---- the daemon's log --------------------------------------------------- */

static int sanitizer_line(const char *line)
{
	static const char *const markers[] = {
		"ERROR: AddressSanitizer",
		"ERROR: LeakSanitizer",
		"AddressSanitizer:DEADLYSIGNAL",
		"runtime error:",
		"ERROR: UndefinedBehaviorSanitizer",
		"WARNING: ThreadSanitizer",
		"WARNING: MemorySanitizer",
	};

	for (size_t i = 0; i < sizeof(markers) / sizeof(markers[0]); i++)
		if (strstr(line, markers[i]))
			return 1;
	return 0;
}

static void scan_line(const char *line)
{
	if (!sanitizer_line(line))
		return;
	if (!F.sanitizer_seen) {
		snprintf(F.first_sanitizer_line, sizeof(F.first_sanitizer_line),
			 "%s", line);
		report_finding("sanitizer report in the daemon's log: %s", line);
	}
	F.sanitizer_seen = 1;
}

/* Read what the daemon logged since the last scan, line by line. */
static void scan_log(void)
{
	char buf[65536];
	ssize_t n;

	while ((n = pread(F.log_fd, buf, sizeof(buf), F.log_scanned)) > 0) {
		F.log_scanned += n;
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] != '\n' &&
			    F.log_partial_len < sizeof(F.log_partial) - 1) {
				F.log_partial[F.log_partial_len++] = buf[i];
				continue;
			}
			if (buf[i] != '\n')
				continue; /* an overlong line: its head will do */
			F.log_partial[F.log_partial_len] = '\0';
			scan_line(F.log_partial);
			F.log_partial_len = 0;
		}
	}
}

/*
 * The daemon logs a line per bad message: hours of fuzzing would fill the
 * disk. Past --log-max bytes (scanned by then), the log keeps its last
 * 1 MiB in hmmud.log.1 and starts again empty. The daemon appends
 * (O_APPEND), so it follows the truncation.
 */
static void rotate_log(void)
{
	struct stat st;
	char old[PATH_MAX + 8], *tail;
	off_t keep = 1 << 20, from;
	ssize_t n;
	int fd;

	if (fstat(F.log_fd, &st) < 0 || (uint64_t)st.st_size < F.o.log_max)
		return;
	scan_log();
	from = st.st_size > keep ? st.st_size - keep : 0;
	tail = malloc((size_t)keep);
	snprintf(old, sizeof(old), "%s.1", F.log);
	fd = open(old, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (tail && fd >= 0) {
		n = pread(F.log_fd, tail, (size_t)keep, from);
		if (n > 0)
			(void)!write(fd, tail, (size_t)n);
	}
	if (fd >= 0)
		close(fd);
	free(tail);
	if (ftruncate(F.log_fd, 0) == 0) {
		F.log_scanned = 0;
		F.log_partial_len = 0;
	}
}

static void print_log_tail(unsigned lines)
{
	struct stat st;
	off_t from;
	char *buf, *p;
	size_t want = 256 * 1024, n;
	ssize_t got;

	if (fstat(F.log_fd, &st) < 0)
		return;
	from = st.st_size > (off_t)want ? st.st_size - (off_t)want : 0;
	buf = malloc(want + 1);
	if (!buf)
		return;
	got = pread(F.log_fd, buf, want, from);
	n = got > 0 ? (size_t)got : 0;
	buf[n] = '\0';
	/* If the sanitizer spoke, show its report whole (it ends the log). */
	p = F.first_sanitizer_line[0] ? strstr(buf, F.first_sanitizer_line) :
					NULL;
	if (!p) {
		p = buf + n;
		for (unsigned k = 0; p > buf && k <= lines; p--)
			if (p[-1] == '\n' && ++k > lines)
				break;
	} else {
		while (p > buf && p[-1] != '\n')
			p--;
	}
	printf("sockfuzz: ---- the daemon's log, %s, from %s ----\n%s",
	       F.log, p == buf && from == 0 ? "the start" : "near its end", p);
	printf("sockfuzz: ---- end of the daemon's log ----\n");
	free(buf);
}

/* ---- the daemon ---------------------------------------------------------- */

static void setenv_default(const char *name, const char *value)
{
	if (!getenv(name))
		setenv(name, value, 1);
}

static int daemon_start(void)
{
	char notify[PATH_MAX];
	const char *argv[8 + MAX_DAEMON_ARGS];
	int n = 0, nfd;

	snprintf(notify, sizeof(notify), "%s/notify", F.dir);
	nfd = hmmu_notify_listen(notify);
	if (nfd < 0) {
		fprintf(stderr, "sockfuzz: notify socket %s: %s\n", notify,
			strerror(-nfd));
		return -1;
	}
	argv[n++] = F.o.hmmud;
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = F.socket;
	argv[n++] = "--log-level";
	argv[n++] = F.o.log_level;
	for (unsigned i = 0; i < F.o.ndaemon_args; i++)
		argv[n++] = F.o.daemon_args[i];
	argv[n] = NULL;

	F.daemon = fork();
	if (F.daemon < 0) {
		perror("sockfuzz: fork");
		return -1;
	}
	if (F.daemon == 0) {
		int fd = open(F.log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND,
			      0644);

		/* Never outlive us; and not in our process group (^C). */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		setpgid(0, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		close_range(3, ~0u, 0);
		setenv("NOTIFY_SOCKET", notify, 1);
		/* Leaks fail the exit status; a sanitizer report ends the run. */
		setenv_default("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0");
		setenv_default("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1");
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "sockfuzz: exec %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	F.log_fd = -1;
	for (int i = 0; i < 100 && F.log_fd < 0; i++) {
		F.log_fd = open(F.log, O_RDWR | O_CLOEXEC);
		if (F.log_fd < 0)
			usleep(10000);
	}
	/* READY=1 once it listens; an ASan build takes a moment. */
	if (!hmmu_notify_wait_ready(nfd, F.daemon, 30000)) {
		close(nfd);
		fprintf(stderr, "sockfuzz: %s did not get ready\n", F.o.hmmud);
		return -1;
	}
	close(nfd);
	return 0;
}

/* Has the daemon exited? Reaps it once, keeping its status. */
static int daemon_gone(void)
{
	if (!F.daemon_reaped &&
	    waitpid(F.daemon, &F.daemon_status, WNOHANG) == F.daemon)
		F.daemon_reaped = 1;
	return F.daemon_reaped;
}

static void describe_status(int st, char *out, size_t room)
{
	if (WIFEXITED(st))
		snprintf(out, room, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, room, "killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else
		snprintf(out, room, "status %#x", st);
}

/*
 * A hung daemon: where is each thread? Kernel stacks from /proc, user
 * stacks from gdb when there is one, into hang-N.txt in the directory.
 */
static void dump_daemon_stacks(const char *why)
{
	static unsigned dumps;
	char path[PATH_MAX + 32], cmd[2 * PATH_MAX + 256], buf[4096];
	FILE *out, *in;
	DIR *d;
	struct dirent *e;

	if (daemon_gone() || dumps >= 10)
		return;
	snprintf(path, sizeof(path), "%s/hang-%u.txt", F.dir, dumps++);
	out = fopen(path, "w");
	if (!out)
		return;
	fprintf(out, "%s\n\n", why);
	snprintf(buf, sizeof(buf), "/proc/%d/task", F.daemon);
	d = opendir(buf);
	while (d && (e = readdir(d))) {
		char file[128];
		size_t n;

		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "/proc/%d/task/%s/stack", F.daemon,
			 e->d_name);
		fprintf(out, "---- thread %s, kernel stack:\n", e->d_name);
		in = fopen(file, "r");
		while (in && (n = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, n, out);
		if (in)
			fclose(in);
	}
	if (d)
		closedir(d);
	/* Its userfaultfds: what is queued (pending) and read but not woken. */
	snprintf(buf, sizeof(buf), "/proc/%d/fd", F.daemon);
	d = opendir(buf);
	while (d && (e = readdir(d))) {
		char file[128], link[128];
		ssize_t n;

		snprintf(file, sizeof(file), "/proc/%d/fd/%s", F.daemon,
			 e->d_name);
		n = readlink(file, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		if (!strstr(link, "userfaultfd"))
			continue;
		snprintf(file, sizeof(file), "/proc/%d/fdinfo/%s", F.daemon,
			 e->d_name);
		fprintf(out, "---- fd %s, %s:\n", e->d_name, link);
		in = fopen(file, "r");
		while (in && (n = (ssize_t)fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, (size_t)n, out);
		if (in)
			fclose(in);
	}
	if (d)
		closedir(d);
	fclose(out);
	snprintf(cmd, sizeof(cmd),
		 "command -v gdb >/dev/null && timeout -k 5 30 gdb -p %d -batch -nx "
		 "-ex 'thread apply all bt' >>'%s' 2>&1", F.daemon, path);
	(void)!system(cmd);
	printf("sockfuzz: the daemon's threads, as it hangs: %s\n", path);
	fflush(stdout);
}

/* SIGTERM, then a clean exit in time: 0 on success. */
static int daemon_stop(void)
{
	char what[128];

	if (!daemon_gone()) {
		kill(F.daemon, SIGTERM);
		for (long t = 0; t < F.o.stop_timeout_ms && !daemon_gone();
		     t += 10)
			usleep(10000);
		if (!daemon_gone()) {
			report_finding("hmmud did not stop within %d ms of "
				       "SIGTERM; killed",
				       F.o.stop_timeout_ms);
			dump_daemon_stacks("did not stop on SIGTERM");
			kill(F.daemon, SIGKILL);
			waitpid(F.daemon, &F.daemon_status, 0);
			F.daemon_reaped = 1;
			return -1;
		}
	}
	if (!WIFEXITED(F.daemon_status) || WEXITSTATUS(F.daemon_status) != 0) {
		describe_status(F.daemon_status, what, sizeof(what));
		report_finding("hmmud did not stop cleanly: %s", what);
		return -1;
	}
	return 0;
}

/* ---- the health check ------------------------------------------------------ */

static int probe_connect(long deadline)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", F.socket);
	for (;;) {
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
			return fd;
		close(fd);
		/* A full backlog is busy, not dead: try again until the end. */
		if ((errno != EAGAIN && errno != ECONNREFUSED) ||
		    now_ms() >= deadline)
			return -errno;
		usleep(10000);
	}
}

/* One request, its reply, checked. Returns NULL or what went wrong. */
static const char *probe_call(int fd, unsigned op, uint64_t id,
			      const void *p, size_t plen, long deadline,
			      union wire_msg *rep)
{
	static char why[256];
	union wire_msg m;
	size_t n = wire_request(&m, op, id, p, plen);
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t got;
	int err;

	if (send(fd, &m, n, MSG_NOSIGNAL) != (ssize_t)n) {
		snprintf(why, sizeof(why), "%s: send: %s",
			 hmmu_proto_op_name(op), strerror(errno));
		return why;
	}
	for (;;) {
		long left = deadline - now_ms();

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			snprintf(why, sizeof(why), "%s: no reply within %d ms",
				 hmmu_proto_op_name(op), F.o.probe_timeout_ms);
			return why;
		}
		got = recv(fd, rep->buf, sizeof(rep->buf), MSG_DONTWAIT);
		if (got < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		break;
	}
	if (got <= 0) {
		snprintf(why, sizeof(why), "%s: %s", hmmu_proto_op_name(op),
			 got == 0 ? "the daemon hung up" : strerror(errno));
		return why;
	}
	err = hmmu_proto_check(rep, (size_t)got, 1);
	if (err || rep->hdr.op != op || rep->hdr.id != id ||
	    rep->hdr.status != 0) {
		snprintf(why, sizeof(why), "%s: bad reply (%zd bytes, %s, op "
			 "%u, id %" PRIu64 ", status %d)", hmmu_proto_op_name(op),
			 got, err ? strerror(-err) : "decodes", rep->hdr.op,
			 rep->hdr.id, rep->hdr.status);
		return why;
	}
	return NULL;
}

/*
 * A fresh connection: HELLO, DEVICE_COUNT, checked. With @learn, also asks
 * for every device's name and model, for the clients.
 */
static const char *probe(int learn)
{
	static char why[300];
	long deadline = now_ms() + F.o.probe_timeout_ms;
	struct hmmu_wire_hello hello = { .version = HMMU_PROTO_VERSION };
	union wire_msg rep;
	const char *err;
	unsigned count;
	int fd = probe_connect(deadline);

	if (fd < 0) {
		snprintf(why, sizeof(why), "connect: %s", strerror(-fd));
		return why;
	}
	err = probe_call(fd, HMMU_OP_HELLO, 1, &hello, sizeof(hello), deadline,
			 &rep);
	if (!err && ((struct hmmu_wire_hello *)wire_payload(&rep))->version !=
			    HMMU_PROTO_VERSION)
		err = "hello: wrong version in the reply";
	if (!err)
		err = probe_call(fd, HMMU_OP_DEVICE_COUNT, 2, NULL, 0, deadline,
				 &rep);
	if (err)
		goto out;
	count = ((struct hmmu_wire_count *)wire_payload(&rep))->count;
	if (!learn) {
		if (count != F.sh->ndevices) {
			snprintf(why, sizeof(why), "device-count: %u, was %u",
				 count, F.sh->ndevices);
			err = why;
		}
		goto out;
	}
	if (count == 0 || count > FUZZ_MAX_DEVICES) {
		snprintf(why, sizeof(why), "device-count: %u devices", count);
		err = why;
		goto out;
	}
	F.sh->ndevices = count;
	for (unsigned i = 0; i < count && !err; i++) {
		struct hmmu_wire_index idx = { .index = i };
		const struct hmmu_wire_device_info *info = wire_payload(&rep);

		err = probe_call(fd, HMMU_OP_DEVICE_INFO, 3 + i, &idx,
				 sizeof(idx), deadline, &rep);
		if (err)
			break;
		memcpy(F.sh->devices[i], info->name, HMMU_NAME_MAX);
		memcpy(F.sh->models[i], info->model, HMMU_NAME_MAX);
		F.sh->devices[i][HMMU_NAME_MAX - 1] = '\0';
		F.sh->models[i][HMMU_NAME_MAX - 1] = '\0';
	}
out:
	close(fd);
	return err;
}

/* ---- clients ----------------------------------------------------------------- */

static void trace_path(uint64_t index, char *out, size_t room)
{
	snprintf(out, room, "%s/client-%" PRIu64 ".trace", F.dir, index);
}

static void launch(struct slot *s, uint64_t index)
{
	char trace[PATH_MAX];
	struct fuzz_client_args a = {
		.shared = F.sh,
		.socket = F.socket,
		.trace = trace,
		.index = index,
		.seed = fuzz_client_seed(F.o.seed, index),
		.reply_timeout_ms = F.o.reply_timeout_ms,
		.avoid_known = F.o.avoid_known,
	};
	pid_t pid;

	trace_path(index, trace, sizeof(trace));
	/* Decided before the fork: the same for the same seed. */
	s->kill_at = fuzz_rng_chance(&F.rng, 1, 5) ?
			     now_ms() + (long)fuzz_rng_below(&F.rng, 300) :
			     LONG_MAX;
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		perror("sockfuzz: fork");
		s->pid = 0;
		return;
	}
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		fuzz_client_main(&a);
	}
	s->pid = pid;
	s->index = index;
	s->started = now_ms();
	s->killed = 0;
	s->timed_out = 0;
	F.launched++;
}

static void keep_trace(uint64_t index);
static void forget_old_trace(uint64_t index);

/*
 * A client that outlives --client-timeout is stuck somewhere: most often in
 * a page fault on its mirrored memory that nobody resolves. Where each of
 * its threads sleeps goes to the end of its trace, before it is killed.
 */
static void client_stuck(const struct slot *s)
{
	char trace[PATH_MAX], path[128], buf[4096];
	FILE *out, *in;
	DIR *d;
	struct dirent *e;

	trace_path(s->index, trace, sizeof(trace));
	printf("sockfuzz: client #%" PRIu64 " (pid %d) still runs after %ld ms;"
	       " its threads' kernel stacks: %s\n", s->index, s->pid,
	       now_ms() - s->started, trace);
	out = fopen(trace, "a");
	snprintf(path, sizeof(path), "/proc/%d/task", s->pid);
	d = opendir(path);
	while (out && d && (e = readdir(d))) {
		size_t n;

		if (e->d_name[0] == '.')
			continue;
		fprintf(out, "STUCK: thread %s:\n", e->d_name);
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stack", s->pid,
			 e->d_name);
		in = fopen(path, "r");
		if (!in)
			continue;
		while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
			fwrite(buf, 1, n, out);
		fclose(in);
	}
	if (d)
		closedir(d);
	if (out)
		fclose(out);
	keep_trace(s->index);
}

/*
 * Traces are named after their client. Of the clients that ended, the last
 * TRACE_RING keep theirs; a kept trace (keep_trace()) is a second name for
 * the file and stays.
 */
static void forget_old_trace(uint64_t index)
{
	static uint64_t ended[TRACE_RING];
	static unsigned n;
	char path[PATH_MAX];

	if (n >= TRACE_RING) {
		trace_path(ended[n % TRACE_RING], path, sizeof(path));
		unlink(path);
	}
	ended[n++ % TRACE_RING] = index;
}

static void client_ended(struct slot *s, int st)
{
	if (WIFEXITED(st)) {
		if (WEXITSTATUS(st) == 0)
			F.finished++;
		else
			F.no_start++;
	} else if (s->killed) {
		F.killed++;
	} else if (s->timed_out) {
		F.timed_out++;
	} else if (WTERMSIG(st) == SIGKILL || WTERMSIG(st) == SIGABRT) {
		F.died++; /* by its own hand */
	} else {
		/*
		 * SIGSEGV, SIGBUS: the client keeps its memory away from
		 * wild device writes, so this is worth a look at its trace.
		 */
		F.crashed++;
		printf("sockfuzz: client #%" PRIu64 " crashed: signal %d "
		       "(%s)\n", s->index, WTERMSIG(st),
		       strsignal(WTERMSIG(st)));
		keep_trace(s->index);
	}
	s->pid = 0;
	forget_old_trace(s->index);
}

/* Old traces go: a client with a finding keeps its own. */
static void keep_trace(uint64_t index)
{
	char from[PATH_MAX], to[PATH_MAX + 32];

	trace_path(index, from, sizeof(from));
	snprintf(to, sizeof(to), "%s/kept-client-%" PRIu64 ".trace", F.dir,
		 index);
	if (link(from, to) == 0 || errno == EEXIST)
		printf("sockfuzz: its trace: %s\n", to);
	fflush(stdout);
}

/* After each client: alive, serving, quiet. 0, or -1 to stop the run. */
static int check_daemon(uint64_t after)
{
	unsigned n = atomic_load(&F.sh->nfindings);
	char what[128];
	const char *err;

	for (; F.client_findings_seen < n; F.client_findings_seen++) {
		const struct fuzz_finding *f =
			&F.sh->findings[F.client_findings_seen];

		if (F.client_findings_seen >= FUZZ_MAX_FINDINGS) {
			F.findings++;
			continue;
		}
		report_finding("protocol: %s", f->text);
		keep_trace(f->client);
	}
	scan_log();
	if (F.fatal)
		return -1;
	F.fatal = 1;
	if (daemon_gone()) {
		describe_status(F.daemon_status, what, sizeof(what));
		report_finding("hmmud died (%s), noticed after client #%" PRIu64,
			       what, after);
		return -1;
	}
	err = probe(0);
	if (err) {
		scan_log();
		if (daemon_gone()) {
			describe_status(F.daemon_status, what, sizeof(what));
			report_finding("hmmud died (%s), noticed after client "
				       "#%" PRIu64, what, after);
		} else {
			report_finding("hmmud does not serve after client "
				       "#%" PRIu64 ": %s", after, err);
			dump_daemon_stacks(err);
		}
		return -1;
	}
	if (F.sanitizer_seen)
		return -1;
	F.fatal = 0;
	rotate_log();
	return 0;
}

/*
 * --keep-going: after a daemon death or hang, keep its log as
 * finding-N.hmmud.log, start a fresh daemon and go on.
 */
static int daemon_restart(void)
{
	char saved[PATH_MAX + 32], notify[PATH_MAX];
	const char *err;

	if (!daemon_gone()) {
		kill(F.daemon, SIGKILL);
		waitpid(F.daemon, &F.daemon_status, 0);
		F.daemon_reaped = 1;
	}
	scan_log();
	print_log_tail(40);
	snprintf(saved, sizeof(saved), "%s/finding-%u.hmmud.log", F.dir,
		 F.restarts++);
	rename(F.log, saved);
	close(F.log_fd);
	printf("sockfuzz: its log: %s; starting a new hmmud\n", saved);
	F.log_scanned = 0;
	F.log_partial_len = 0;
	F.sanitizer_seen = 0;
	F.first_sanitizer_line[0] = '\0';
	F.daemon_reaped = 0;
	F.fatal = 0;
	snprintf(notify, sizeof(notify), "%s/notify", F.dir);
	unlink(notify);
	if (daemon_start() < 0)
		return -1;
	err = probe(0);
	if (err) {
		fprintf(stderr, "sockfuzz: the new daemon fails its health "
			"check: %s\n", err);
		return -1;
	}
	return 0;
}

static void progress(void)
{
	const _Atomic uint64_t *c = F.sh->count;

	printf("sockfuzz: %ld s: %" PRIu64 " clients, %" PRIu64 " messages, "
	       "%" PRIu64 " fds, %" PRIu64 " replies, %u findings\n",
	       now_ms() / 1000, F.launched, (uint64_t)c[FC_MESSAGES],
	       (uint64_t)c[FC_FDS], (uint64_t)c[FC_REPLIES], F.findings);
	fflush(stdout);
}

static void run(void)
{
	struct slot slots[MAX_JOBS] = { 0 };
	uint64_t next = F.o.first, end = F.o.clients ? F.o.first + F.o.clients :
							  UINT64_MAX;
	long stop_at = F.o.seconds > 0 ? (long)(F.o.seconds * 1000) : LONG_MAX;
	long next_progress = 10000;
	int running = 0, stopping = 0;

	for (;;) {
		long t = now_ms();

		if (!stopping && (t >= stop_at || next >= end || F.interrupted))
			stopping = 1;
		for (unsigned i = 0; i < F.o.jobs && !stopping; i++) {
			if (slots[i].pid || next >= end)
				continue;
			launch(&slots[i], next++);
			running += slots[i].pid != 0;
		}
		if (stopping && !running)
			break;
		for (unsigned i = 0; i < F.o.jobs; i++) {
			struct slot *s = &slots[i];
			int st;

			if (!s->pid)
				continue;
			if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
				uint64_t index = s->index;

				client_ended(s, st);
				running--;
				if (check_daemon(index) < 0) {
					/*
					 * The others are of no use now, but
					 * where they are may tell why.
					 */
					for (unsigned k = 0; k < F.o.jobs; k++) {
						if (!slots[k].pid)
							continue;
						client_stuck(&slots[k]);
						kill(slots[k].pid, SIGKILL);
						slots[k].killed = 1;
						waitpid(slots[k].pid, &st, 0);
						client_ended(&slots[k], st);
						running--;
					}
					if (!F.o.keep_going || F.interrupted ||
					    daemon_restart() < 0)
						stopping = 1;
				}
				continue;
			}
			t = now_ms();
			if (!s->killed && t >= s->kill_at) {
				kill(s->pid, SIGKILL);
				s->killed = 1;
			} else if (!s->timed_out &&
				   t >= s->started + F.o.client_timeout_ms) {
				client_stuck(s);
				kill(s->pid, SIGKILL);
				s->timed_out = 1;
			}
		}
		if (now_ms() >= next_progress) {
			progress();
			next_progress = now_ms() + 10000;
		}
		usleep(2000);
	}
}

/* ---- main ----------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sockfuzz [options]\n"
		"  --seconds N        run for N seconds (default 60, unless --clients)\n"
		"  --clients N        run N clients (default: no limit)\n"
		"  --seed S           the run's seed (default: random, printed)\n"
		"  --first N          number clients from N (with --seed: replay)\n"
		"  --hmmud PATH       the daemon to fuzz (default %s)\n"
		"  --jobs N           clients at once (default 2, at most %d)\n"
		"  --keep             keep the temporary directory\n"
		"  --keep-going       after a daemon death or hang, restart it, go on\n"
		"  --avoid-known      do not trigger the bugs already known (sockfuzz.h)\n"
		"  --log-level L      the daemon's (default warning)\n"
		"  --log-max MIB      rotate the daemon's log past MIB (default 256)\n"
		"  --daemon-arg ARG   one more argument for hmmud (repeatable)\n"
		"  --probe-timeout MS a health check's limit (default 10000)\n"
		"  --reply-timeout MS a client's wait for a reply (default 10000)\n"
		"  --client-timeout MS a client's whole life (default 30000)\n"
		"  --stop-timeout MS  SIGTERM to exit (default 30000)\n",
		SOCKFUZZ_DEFAULT_HMMUD, MAX_JOBS);
}

static int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	errno = 0;
	*out = strtoull(s, &end, 0);
	return errno || *end || end == s ? -1 : 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
	enum { O_LOGMAX = 256, O_DARG, O_PROBE, O_REPLY, O_CLIENT, O_STOP,
	       O_FIRST, O_KEEP_GOING, O_AVOID };
	static const struct option longopts[] = {
		{ "seconds", required_argument, NULL, 't' },
		{ "clients", required_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "first", required_argument, NULL, O_FIRST },
		{ "hmmud", required_argument, NULL, 'd' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "keep", no_argument, NULL, 'k' },
		{ "keep-going", no_argument, NULL, O_KEEP_GOING },
		{ "avoid-known", no_argument, NULL, O_AVOID },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-max", required_argument, NULL, O_LOGMAX },
		{ "daemon-arg", required_argument, NULL, O_DARG },
		{ "probe-timeout", required_argument, NULL, O_PROBE },
		{ "reply-timeout", required_argument, NULL, O_REPLY },
		{ "client-timeout", required_argument, NULL, O_CLIENT },
		{ "stop-timeout", required_argument, NULL, O_STOP },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	uint64_t v;
	int c, have_seconds = 0;

	memset(o, 0, sizeof(*o));
	o->hmmud = getenv("HMMU_FUZZ_HMMUD") ? getenv("HMMU_FUZZ_HMMUD") :
					       SOCKFUZZ_DEFAULT_HMMUD;
	o->jobs = 2;
	o->log_level = "warning";
	o->log_max = 256ull << 20;
	o->probe_timeout_ms = 10000;
	o->reply_timeout_ms = 10000;
	o->client_timeout_ms = 30000;
	o->stop_timeout_ms = 30000;
	while ((c = getopt_long(argc, argv, "t:n:s:d:j:kl:h", longopts,
				NULL)) != -1) {
		switch (c) {
		case 't': {
			char *end;

			o->seconds = strtod(optarg, &end);
			if (*end || o->seconds <= 0)
				goto bad;
			have_seconds = 1;
			break;
		}
		case 'n':
			if (parse_u64(optarg, &o->clients) || !o->clients)
				goto bad;
			break;
		case 's':
			if (parse_u64(optarg, &o->seed))
				goto bad;
			o->seed_set = 1;
			break;
		case O_FIRST:
			if (parse_u64(optarg, &o->first))
				goto bad;
			break;
		case 'd':
			o->hmmud = optarg;
			break;
		case 'j':
			if (parse_u64(optarg, &v) || !v || v > MAX_JOBS)
				goto bad;
			o->jobs = (unsigned)v;
			break;
		case 'k':
			o->keep = 1;
			break;
		case O_KEEP_GOING:
			o->keep_going = 1;
			break;
		case O_AVOID:
			o->avoid_known = 1;
			break;
		case 'l':
			o->log_level = optarg;
			break;
		case O_LOGMAX:
			if (parse_u64(optarg, &v) || !v)
				goto bad;
			o->log_max = v << 20;
			break;
		case O_DARG:
			if (o->ndaemon_args == MAX_DAEMON_ARGS)
				goto bad;
			o->daemon_args[o->ndaemon_args++] = optarg;
			break;
		case O_PROBE:
		case O_REPLY:
		case O_CLIENT:
		case O_STOP:
			if (parse_u64(optarg, &v) || !v || v > INT_MAX)
				goto bad;
			*(c == O_PROBE ? &o->probe_timeout_ms :
			  c == O_REPLY ? &o->reply_timeout_ms :
			  c == O_CLIENT ? &o->client_timeout_ms :
					  &o->stop_timeout_ms) = (int)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc)
		goto bad;
	if (!have_seconds && !o->clients)
		o->seconds = 60;
	return 0;
bad:
	fprintf(stderr, "sockfuzz: bad option or value (%s)\n",
		optind <= argc && optarg ? optarg : "?");
	usage(stderr);
	return -1;
}

static void on_signal(int sig)
{
	(void)sig;
	F.interrupted = 1;
}

static void remove_dir(void)
{
	char cmd[PATH_MAX + 16];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", F.dir);
	(void)!system(cmd);
}

int main(int argc, char **argv)
{
	const _Atomic uint64_t *c;
	struct sigaction sa = { .sa_handler = on_signal };
	const char *tmp = getenv("TMPDIR"), *err;

	if (parse_options(argc, argv, &F.o) < 0)
		return 2;
	if (!F.o.seed_set &&
	    getrandom(&F.o.seed, sizeof(F.o.seed), 0) != sizeof(F.o.seed))
		F.o.seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	fuzz_rng_seed(&F.rng, F.o.seed ^ 0x736f636b66757a7aull);
	if (access(F.o.hmmud, X_OK) < 0) {
		fprintf(stderr, "sockfuzz: %s: %s (see --hmmud)\n", F.o.hmmud,
			strerror(errno));
		return 2;
	}
	snprintf(F.dir, sizeof(F.dir), "%s/hmmu-fuzz-XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(F.dir)) {
		perror("sockfuzz: mkdtemp");
		return 2;
	}
	snprintf(F.socket, sizeof(F.socket), "%s/s.sock", F.dir);
	snprintf(F.log, sizeof(F.log), "%s/hmmud.log", F.dir);
	F.sh = mmap(NULL, sizeof(*F.sh), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (F.sh == MAP_FAILED) {
		perror("sockfuzz: mmap");
		return 2;
	}
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	clock_gettime(CLOCK_MONOTONIC, &F.start);

	printf("sockfuzz: seed %#" PRIx64 ", hmmud %s, dir %s\n", F.o.seed,
	       F.o.hmmud, F.dir);
	if (daemon_start() < 0) {
		if (F.log_fd >= 0)
			print_log_tail(40);
		return 2;
	}
	err = probe(1);
	if (err) {
		fprintf(stderr, "sockfuzz: the fresh daemon fails its health "
			"check: %s\n", err);
		print_log_tail(40);
		daemon_stop();
		return 2;
	}
	printf("sockfuzz: hmmud ready, %u device(s):", F.sh->ndevices);
	for (unsigned i = 0; i < F.sh->ndevices; i++)
		printf(" %s (%s)", F.sh->devices[i], F.sh->models[i]);
	printf("\n");
	if (F.o.seconds > 0)
		printf("sockfuzz: running %g s%s, %u client(s) at once\n",
		       F.o.seconds, F.o.clients ? " (or until the count)" : "",
		       F.o.jobs);
	else
		printf("sockfuzz: running %" PRIu64 " clients, %u at once\n",
		       F.o.clients, F.o.jobs);
	fflush(stdout);

	clock_gettime(CLOCK_MONOTONIC, &F.start);
	run();
	if (F.interrupted)
		printf("sockfuzz: interrupted\n");
	if (!F.findings && !daemon_gone()) {
		err = probe(0);
		if (err)
			report_finding("hmmud does not serve at the end: %s", err);
	}
	daemon_stop();
	scan_log();

	c = F.sh->count;
	printf("sockfuzz: %.1f s, seed %#" PRIx64 "\n", now_ms() / 1000.0,
	       F.o.seed);
	printf("sockfuzz: clients run: %" PRIu64 " (finished %" PRIu64
	       ", died by their own hand %" PRIu64 ", killed at random %" PRIu64
	       ", timed out %" PRIu64 ", crashed %" PRIu64
	       ", could not start %" PRIu64 ")\n",
	       F.launched, F.finished, F.died, F.killed, F.timed_out, F.crashed,
	       F.no_start);
	printf("sockfuzz: messages sent: %" PRIu64 " (valid %" PRIu64
	       ", mutated %" PRIu64 ", random %" PRIu64 ", foreign %" PRIu64
	       "), replies checked: %" PRIu64 "\n",
	       (uint64_t)c[FC_MESSAGES], (uint64_t)c[FC_VALID],
	       (uint64_t)c[FC_MUTATED], (uint64_t)c[FC_RANDOM],
	       (uint64_t)c[FC_FOREIGN], (uint64_t)c[FC_REPLIES]);
	printf("sockfuzz: fds sent: %" PRIu64 " (userfaultfds %" PRIu64
	       "), connections: %" PRIu64 ", registrations: %" PRIu64
	       ", migrations: %" PRIu64 ", memory changes: %" PRIu64
	       ", forks: %" PRIu64 ", hang-ups: %" PRIu64 "\n",
	       (uint64_t)c[FC_FDS], (uint64_t)c[FC_UFFDS],
	       (uint64_t)c[FC_CONNECTIONS], (uint64_t)c[FC_REGISTERED],
	       (uint64_t)c[FC_MIGRATIONS], (uint64_t)c[FC_MEM_OPS],
	       (uint64_t)c[FC_FORKS], (uint64_t)c[FC_HANGUPS]);
	printf("sockfuzz: findings: %u%s\n", F.findings,
	       F.restarts ? " (the daemon was restarted after each fatal one)" :
			    "");
	if (F.findings) {
		print_log_tail(60);
		printf("sockfuzz: kept %s (hmmud.log, client-N.trace of the "
		       "last %d clients)\n", F.dir, TRACE_RING);
		printf("sockfuzz: to reproduce: sockfuzz --seed %#" PRIx64
		       " --hmmud %s\n", F.o.seed, F.o.hmmud);
		return 1;
	}
	if (F.o.keep)
		printf("sockfuzz: kept %s\n", F.dir);
	else
		remove_dir();
	return 0;
}
