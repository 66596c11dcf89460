/* SPDX-License-Identifier: MIT */
/*
 * hmmu-supervise: runs a service the way systemd runs a Type=notify one
 * with Restart=always, FileDescriptorStoreMax=N and
 * FileDescriptorStorePreserve=yes, for test machines where systemd is not
 * PID 1. The protocol is systemd's own (sd_notify(3), sd_listen_fds(3),
 * systemd.service(5)), so that a daemon behaves the same under either:
 *
 *  - $NOTIFY_SOCKET is a datagram socket with SO_PASSCRED; only messages
 *    of the main pid count (NotifyAccess=main);
 *  - FDSTORE=1 keeps the fds sent with it, named by FDNAME= ("stored" if
 *    absent or invalid), at most --fdstore-max of them; FDSTOREREMOVE=1
 *    with FDNAME= closes all of that name; a stored fd that polls POLLHUP
 *    or POLLERR is closed, unless FDPOLL=0 came with it;
 *  - $FDSTORE tells the service --fdstore-max, if not 0 (systemd 254 and
 *    later do so);
 *  - a (re)started service gets the --listen socket first, then the store,
 *    newest first as systemd does (its documented order is "arbitrary"),
 *    through LISTEN_FDS, LISTEN_PID and LISTEN_FDNAMES.
 *
 * Control: SIGTERM or SIGINT stops the service (SIGTERM, then SIGKILL after
 * --stop-timeout-ms) and exits 0; SIGUSR1 kills it with SIGKILL, as a
 * crash, and it is restarted. Each event is a line in --log, and --state is
 * rewritten (temporary file and rename) after each one.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define NOTIFY_MAX 4096		/* systemd's NOTIFY_BUFFER_MAX */
#define FDS_MAX 253		/* the kernel's SCM_MAX_FD */
#define FDNAME_MAX 255		/* sd_notify(3) */

struct stored {
	int fd;
	bool poll;
	char *name;
};

enum timer { T_NONE, T_RESTART, T_READY, T_KILL };

static struct {
	const char *dir, *listen_path, *listen_name, *state_path;
	char *state_tmp, *notify_path;
	unsigned fdstore_max;
	long restart_ms, ready_timeout_ms, stop_timeout_ms, max_restarts;
	char **argv;

	FILE *log;
	int notify_fd, sig_fd, timer_fd, listen_fd, pidfd;
	pid_t pid;		/* the main pid; 0: none */
	bool ready, stopping, stop, done;
	unsigned restarts, refused, dropped;
	enum timer timer;
	uint64_t deadline;	/* CLOCK_MONOTONIC, ns */
	struct stored *store;
	size_t n_store;
	int status;
} s = {
	.listen_name = "hmmud.socket",
	.restart_ms = 100, .ready_timeout_ms = 10000,
	.stop_timeout_ms = 10000, .max_restarts = -1,
	.notify_fd = -1, .sig_fd = -1, .timer_fd = -1, .listen_fd = -1,
	.pidfd = -1,
};

static void write_state(void)
{
	FILE *f;

	if (!s.state_path)
		return;
	f = fopen(s.state_tmp, "we");
	if (!f) {
		fprintf(s.log, "state: %s: %s\n", s.state_tmp, strerror(errno));
		return;
	}
	fprintf(f, "pid=%d\nready=%d\nrestarts=%u\nstored=%zu\nrefused=%u\n"
		"dropped=%u\n", (int)s.pid, s.ready, s.restarts, s.n_store,
		s.refused, s.dropped);
	if (fclose(f) != 0 || rename(s.state_tmp, s.state_path) < 0)
		fprintf(s.log, "state: %s: %s\n", s.state_path, strerror(errno));
}

static void __attribute__((format(printf, 1, 2))) event(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(s.log, fmt, ap);
	va_end(ap);
	fputc('\n', s.log);
	fflush(s.log);
	write_state();
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void set_timer(enum timer t, uint64_t deadline)
{
	struct itimerspec its = { 0 };

	s.timer = t;
	s.deadline = deadline;
	if (t != T_NONE) {
		its.it_value.tv_sec = (time_t)(deadline / 1000000000u);
		its.it_value.tv_nsec = (long)(deadline % 1000000000u);
	}
	if (timerfd_settime(s.timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		event("timer: %s", strerror(errno));
}

static void arm(enum timer t, long ms)
{
	set_timer(t, now_ns() + (uint64_t)ms * 1000000u);
}

static int signal_main(int sig)
{
	if (syscall(SYS_pidfd_send_signal, s.pidfd, sig, NULL, 0) < 0 &&
	    errno != ESRCH) {
		event("signal %d to pid=%d: %s", sig, (int)s.pid,
		      strerror(errno));
		return -1;
	}
	return 0;
}

static void describe(const siginfo_t *si, char *buf, size_t size)
{
	const char *sig = sigabbrev_np(si->si_status);

	if (si->si_code == CLD_EXITED)
		snprintf(buf, size, "exited/%d", si->si_status);
	else if (sig)
		snprintf(buf, size, "killed/%s", sig);
	else
		snprintf(buf, size, "killed/%d", si->si_status);
}

static void drain_notify(void);

/* The main process is gone: @how is its status. Restart it, or finish. */
static void main_exited(const char *how)
{
	pid_t pid = s.pid;

	/* What it sent before it died is still queued: systemd reads it. */
	drain_notify();
	close(s.pidfd);
	s.pidfd = -1;
	s.pid = 0;
	s.ready = false;
	s.stopping = false;
	set_timer(T_NONE, 0);
	event("exit pid=%d status=%s", (int)pid, how);
	if (s.stop) {
		s.done = true;
	} else if (s.max_restarts >= 0 &&
		   s.restarts >= (unsigned long)s.max_restarts) {
		event("giving up after %u restarts (--max-restarts)",
		      s.restarts);
		s.status = 1;
		s.done = true;
	} else {
		arm(T_RESTART, s.restart_ms);
	}
}

/*
 * The fds a start passes: the listening socket, then the store, newest
 * first (systemd prepends to its list and passes it in list order).
 */
static size_t collect_fds(int *fds, char **names)
{
	size_t n = 0, len = 1;
	char *p;

	if (s.listen_fd >= 0) {
		fds[n++] = s.listen_fd;
		len += strlen(s.listen_name) + 1;
	}
	for (size_t i = s.n_store; i-- > 0;) {
		fds[n++] = s.store[i].fd;
		len += strlen(s.store[i].name) + 1;
	}
	*names = p = malloc(len);
	if (!p)
		return n;
	*p = '\0';
	if (s.listen_fd >= 0)
		p = stpcpy(stpcpy(p, s.listen_name), ":");
	for (size_t i = s.n_store; i-- > 0;)
		p = stpcpy(stpcpy(p, s.store[i].name), ":");
	if (p > *names)
		p[-1] = '\0';
	return n;
}

/* In the child: @fds to 3, 4, ..., inheritable; the others close on exec. */
static int pass_fds(const int *fds, int *tmp, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		tmp[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, (int)(3 + n));
		if (tmp[i] < 0)
			return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (dup2(tmp[i], (int)(3 + i)) < 0)
			return -1;
	return 0;
}

static void child(const int *fds, int *tmp, size_t n, const char *names)
{
	sigset_t none;
	char num[32];

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	setsid();
	if (pass_fds(fds, tmp, n) < 0) {
		fprintf(stderr, "hmmu-supervise: passing fds: %s\n",
			strerror(errno));
		_exit(127);
	}
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDNAMES");
	setenv("NOTIFY_SOCKET", s.notify_path, 1);
	/* As systemd 254 and later tell a service its FileDescriptorStoreMax=. */
	unsetenv("FDSTORE");
	if (s.fdstore_max) {
		snprintf(num, sizeof(num), "%u", s.fdstore_max);
		setenv("FDSTORE", num, 1);
	}
	if (n) {
		snprintf(num, sizeof(num), "%zu", n);
		setenv("LISTEN_FDS", num, 1);
		snprintf(num, sizeof(num), "%d", (int)getpid());
		setenv("LISTEN_PID", num, 1);
		setenv("LISTEN_FDNAMES", names, 1);
	}
	execvp(s.argv[0], s.argv);
	fprintf(stderr, "hmmu-supervise: exec %s: %s\n", s.argv[0],
		strerror(errno));
	_exit(127);
}

static void start(void)
{
	size_t max = s.n_store + 1, n;
	int *fds = calloc(max, sizeof(*fds)), *tmp = calloc(max, sizeof(*tmp));
	char *names = NULL;
	pid_t pid;

	if (!fds || !tmp)
		goto fail;
	n = collect_fds(fds, &names);
	if (!names)
		goto fail;
	pid = fork();
	if (pid == 0)
		child(fds, tmp, n, names);
	if (pid < 0)
		goto fail;
	s.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (s.pidfd < 0) {
		/* Without it the pid could not be watched: a crash. */
		event("pidfd_open %d: %s; killing it", (int)pid,
		      strerror(errno));
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto fail;
	}
	s.pid = pid;
	arm(T_READY, s.ready_timeout_ms);
	event("start pid=%d fds=%zu", (int)pid, n);
	goto out;
fail:
	event("start: %s; retrying in %ld ms", strerror(errno), s.restart_ms);
	arm(T_RESTART, s.restart_ms);
out:
	free(fds);
	free(tmp);
	free(names);
}

static void stop(void)
{
	if (s.stop)
		return;
	s.stop = true;
	if (!s.pid) {
		event("stop: no service running");
		s.done = true;
		return;
	}
	event("stop: SIGTERM to pid=%d", (int)s.pid);
	signal_main(SIGTERM);
	arm(T_KILL, s.stop_timeout_ms);
}

/* ---- the fd store ---- */

/* Both the same open file (systemd's same_fd()): a duplicate. */
static bool same_file(int a, int b)
{
	struct stat sa, sb;
	pid_t me = getpid();

	if (fstat(a, &sa) < 0 || fstat(b, &sb) < 0 ||
	    sa.st_dev != sb.st_dev || sa.st_ino != sb.st_ino)
		return false;
	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

/* sd_notify(3): ASCII, no control characters, no ':', at most 255. */
static bool fdname_valid(const char *name)
{
	size_t i;

	for (i = 0; name[i]; i++)
		if (name[i] < ' ' || name[i] >= 127 || name[i] == ':')
			return false;
	return i <= FDNAME_MAX;
}

static void store_fds(int *fds, size_t n, const char *name, bool poll)
{
	for (size_t i = 0; i < n; i++) {
		struct stored *grown;
		bool dup = false;

		if (s.n_store >= s.fdstore_max) {
			s.refused += (unsigned)(n - i);
			event("refused %zu fds named %s: the store is full "
			      "(--fdstore-max=%u)", n - i, name, s.fdstore_max);
			return;
		}
		for (size_t j = 0; j < s.n_store && !dup; j++)
			dup = same_file(s.store[j].fd, fds[i]);
		if (dup) {
			event("duplicate %s: already stored, closed", name);
			close(fds[i]);
			fds[i] = -1;
			continue;
		}
		grown = realloc(s.store, (s.n_store + 1) * sizeof(*grown));
		if (!grown) {
			event("cannot store %s: out of memory", name);
			return;
		}
		s.store = grown;
		s.store[s.n_store].name = strdup(name);
		if (!s.store[s.n_store].name) {
			event("cannot store %s: out of memory", name);
			return;
		}
		s.store[s.n_store].fd = fds[i];
		s.store[s.n_store].poll = poll;
		s.n_store++;
		fds[i] = -1;
		event("stored %s fd-count=%zu", name, s.n_store);
	}
}

static void unstore(size_t i)
{
	close(s.store[i].fd);
	free(s.store[i].name);
	s.n_store--;
	memmove(&s.store[i], &s.store[i + 1],
		(s.n_store - i) * sizeof(*s.store));
}

static void remove_named(const char *name)
{
	bool found = false;

	for (size_t i = 0; i < s.n_store;) {
		if (strcmp(s.store[i].name, name)) {
			i++;
			continue;
		}
		unstore(i);
		found = true;
		event("removed %s", name);
	}
	if (!found)
		event("FDSTOREREMOVE=1: no fd named %s stored", name);
}

static void drop(int fd, short revents)
{
	for (size_t i = 0; i < s.n_store; i++) {
		char *name = s.store[i].name;

		if (s.store[i].fd != fd)
			continue;
		s.store[i].name = NULL;
		unstore(i);
		s.dropped++;
		event("dropped %s (%s)", name,
		      revents & POLLERR ? "POLLERR" :
		      revents & POLLHUP ? "POLLHUP" : "POLLNVAL");
		free(name);
		return;
	}
}

/* ---- notify messages ---- */

struct message {
	char **lines;
	size_t n;
};

static bool has(const struct message *m, const char *line)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->lines[i], line))
			return true;
	return false;
}

/* The value of the first KEY= line, as systemd's strv_find_startswith(). */
static const char *find(const struct message *m, const char *key)
{
	size_t len = strlen(key);

	for (size_t i = 0; i < m->n; i++)
		if (!strncmp(m->lines[i], key, len))
			return m->lines[i] + len;
	return NULL;
}

/* Whether @pid descends from us: our stand-in for the service's cgroup. */
static bool ours(pid_t pid)
{
	for (int depth = 0; pid > 1 && depth < 4096; depth++) {
		char path[64], buf[512], *p;
		FILE *f;
		int ppid;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
		f = fopen(path, "re");
		if (!f)
			return false;
		p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
		fclose(f);
		if (!p || sscanf(p, ") %*c %d", &ppid) != 1)
			return false;
		if (ppid == getpid())
			return true;
		pid = ppid;
	}
	return false;
}

static void new_main_pid(const char *value, uid_t sender)
{
	char *end;
	long pid;
	int fd;

	errno = 0;
	pid = strtol(value, &end, 10);
	if (errno || end == value || *end || pid <= 1 || pid == getpid() ||
	    pid > INT32_MAX) {
		event("MAINPID=%s: not a valid pid, ignored", value);
		return;
	}
	if (pid == s.pid)
		return;
	/* systemd: one outside the service only on root's word. */
	if (!ours((pid_t)pid) && sender != 0) {
		event("MAINPID=%ld: not a process of the service, refused",
		      pid);
		return;
	}
	fd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
	if (fd < 0) {
		event("MAINPID=%ld: %s, refused", pid, strerror(errno));
		return;
	}
	close(s.pidfd);
	s.pidfd = fd;
	event("mainpid %ld (was %d)", pid, (int)s.pid);
	s.pid = (pid_t)pid;
}

static void extend_timeout(const char *value)
{
	char *end;
	unsigned long long us;

	errno = 0;
	us = strtoull(value, &end, 10);
	if (errno || end == value || *end) {
		event("EXTEND_TIMEOUT_USEC=%s: not a number, ignored", value);
		return;
	}
	/* Only the start has a timeout here: TimeoutStartSec=. */
	if (s.timer != T_READY)
		return;
	if (us > UINT64_MAX / 1000 - now_ns() / 1000)
		us = UINT64_MAX / 1000 - now_ns() / 1000;
	if (now_ns() + us * 1000 > s.deadline)
		set_timer(T_READY, now_ns() + us * 1000);
	event("start timeout of pid=%d extended by %llu us", (int)s.pid, us);
}

/* One datagram, in systemd's order of interpretation (service.c). */
static void interpret(const struct message *m, const struct ucred *cred,
		      int *fds, size_t n_fds)
{
	const char *v, *name;

	if (cred->pid != s.pid || !s.pid) {
		event("ignored a notify message from pid=%d: not the main "
		      "pid (%d); %zu fds closed", (int)cred->pid, (int)s.pid,
		      n_fds);
		return;
	}
	v = find(m, "MAINPID=");
	if (v)
		new_main_pid(v, cred->uid);

	if (has(m, "STOPPING=1")) {
		if (!s.stopping)
			event("stopping pid=%d", (int)s.pid);
		s.stopping = true;
	} else if (has(m, "READY=1") && !s.stopping && !s.ready) {
		/* After STOPPING=1, systemd does not let it come back. */
		s.ready = true;
		if (s.timer == T_READY)
			set_timer(T_NONE, 0);
		event("ready pid=%d", (int)s.pid);
	} else if (has(m, "RELOADING=1")) {
		event("reloading pid=%d", (int)s.pid);
	}

	v = find(m, "STATUS=");
	if (v)
		event("status pid=%d: %s", (int)s.pid, v);
	v = find(m, "ERRNO=");
	if (v)
		event("errno pid=%d: %s", (int)s.pid, v);
	v = find(m, "EXTEND_TIMEOUT_USEC=");
	if (v)
		extend_timeout(v);

	name = find(m, "FDNAME=");
	if (has(m, "FDSTOREREMOVE=1")) {
		if (!name || !fdname_valid(name))
			event("FDSTOREREMOVE=1 without a valid FDNAME=: "
			      "ignored");
		else
			remove_named(name);
	} else if (has(m, "FDSTORE=1")) {
		if (name && !fdname_valid(name)) {
			event("FDNAME= not a valid fd name: storing as "
			      "\"stored\"");
			name = NULL;
		}
		store_fds(fds, n_fds, name ? name : "stored",
			  !has(m, "FDPOLL=0"));
		return;
	}
	if (n_fds)
		event("pid=%d sent %zu fds without FDSTORE=1: closed",
		      (int)s.pid, n_fds);
}

static void split(char *buf, struct message *m)
{
	char *save = NULL;

	m->n = 0;
	for (char *l = strtok_r(buf, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		m->lines[m->n++] = l;
}

static void handle_message(char *buf, ssize_t len, int flags,
			   const struct ucred *cred, int *fds, size_t n_fds)
{
	struct message m;

	if (flags & MSG_CTRUNC) {
		event("ignored a notify message: its control data was "
		      "truncated (more than %d fds?); %zu fds closed", FDS_MAX,
		      n_fds);
		return;
	}
	if ((flags & MSG_TRUNC) || len > NOTIFY_MAX) {
		event("ignored a notify message: longer than %d bytes; %zu fds "
		      "closed", NOTIFY_MAX, n_fds);
		return;
	}
	if (!cred || cred->pid <= 0) {
		event("ignored a notify message without credentials; %zu fds "
		      "closed", n_fds);
		return;
	}
	/* systemd allows one trailing NUL, no other. */
	if (len > 1 && memchr(buf, 0, (size_t)len - 1)) {
		event("ignored a notify message from pid=%d with embedded NUL "
		      "bytes; %zu fds closed", (int)cred->pid, n_fds);
		return;
	}
	buf[len] = '\0';
	/* At most one line per two bytes, and one more. */
	m.lines = calloc((size_t)len / 2 + 2, sizeof(*m.lines));
	if (!m.lines) {
		event("ignored a notify message: out of memory");
		return;
	}
	split(buf, &m);
	if (has(&m, "BARRIER=1")) {
		/* sd_notify_barrier(): closing its fd is the answer. */
		if (m.n != 1 || n_fds != 1)
			event("BARRIER=1 from pid=%d with %zu lines and %zu "
			      "fds: only its fds are closed", (int)cred->pid,
			      m.n, n_fds);
	} else {
		interpret(&m, cred, fds, n_fds);
	}
	free(m.lines);
}

static void drain_notify(void)
{
	for (;;) {
		char buf[NOTIFY_MAX + 1];
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(struct ucred)) +
				 CMSG_SPACE(sizeof(int) * FDS_MAX)];
		} control;
		struct iovec iov = { .iov_base = buf, .iov_len = NOTIFY_MAX };
		struct msghdr msg = {
			.msg_iov = &iov, .msg_iovlen = 1,
			.msg_control = &control,
			.msg_controllen = sizeof(control),
		};
		struct ucred cred, *credp = NULL;
		int fds[FDS_MAX];
		size_t n_fds = 0;
		ssize_t len;

		len = recvmsg(s.notify_fd, &msg,
			      MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
		if (len < 0) {
			if (errno != EAGAIN && errno != EINTR)
				event("notify socket: %s", strerror(errno));
			return;
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
		     c = CMSG_NXTHDR(&msg, c)) {
			if (c->cmsg_level != SOL_SOCKET)
				continue;
			if (c->cmsg_type == SCM_CREDENTIALS &&
			    c->cmsg_len == CMSG_LEN(sizeof(cred))) {
				memcpy(&cred, CMSG_DATA(c), sizeof(cred));
				credp = &cred;
			} else if (c->cmsg_type == SCM_RIGHTS) {
				size_t k = (c->cmsg_len - CMSG_LEN(0)) /
					   sizeof(int);
				int fd;

				for (size_t i = 0; i < k; i++) {
					memcpy(&fd, CMSG_DATA(c) +
					       i * sizeof(int), sizeof(int));
					if (n_fds < FDS_MAX)
						fds[n_fds++] = fd;
					else
						close(fd);
				}
			}
		}
		handle_message(buf, len, msg.msg_flags, credp, fds, n_fds);
		for (size_t i = 0; i < n_fds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
	}
}

/* ---- events ---- */

static void reap(void)
{
	for (;;) {
		siginfo_t si = { 0 };
		char how[64];

		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) < 0) {
			if (errno != ECHILD)
				event("waitid: %s", strerror(errno));
			return;
		}
		if (!si.si_pid)
			return;
		describe(&si, how, sizeof(how));
		if (si.si_pid == s.pid && s.pid)
			main_exited(how);
		else
			event("reaped pid=%d status=%s", (int)si.si_pid, how);
	}
}

/* The main pid's pidfd polled readable: it ended, child of ours or not. */
static void main_pidfd_ready(void)
{
	struct pollfd p = { .fd = s.pidfd, .events = POLLIN };
	siginfo_t si = { 0 };
	char how[64];

	/* Confirm: a MAINPID= in this round may have replaced the pidfd. */
	if (poll(&p, 1, 0) != 1)
		return;
	if (waitid((idtype_t)P_PIDFD, (id_t)s.pidfd, &si,
		   WEXITED | WNOHANG) == 0) {
		if (si.si_pid) {
			describe(&si, how, sizeof(how));
			main_exited(how);
		}
	} else if (errno == ECHILD) {
		main_exited("unknown (not our child)");
	} else {
		event("waitid pid=%d: %s", (int)s.pid, strerror(errno));
	}
}

static void timer_fired(void)
{
	uint64_t n;

	if (read(s.timer_fd, &n, sizeof(n)) < 0 || s.timer == T_NONE ||
	    now_ns() < s.deadline)
		return;
	switch (s.timer) {
	case T_RESTART:
		s.restarts++;
		set_timer(T_NONE, 0);
		event("restart #%u", s.restarts);
		start();
		break;
	case T_READY:
		event("ready timeout pid=%d: no READY=1 in %ld ms, SIGTERM",
		      (int)s.pid, s.ready_timeout_ms);
		signal_main(SIGTERM);
		arm(T_KILL, s.stop_timeout_ms);
		break;
	case T_KILL:
		set_timer(T_NONE, 0);
		event("stop timeout pid=%d: SIGKILL", (int)s.pid);
		signal_main(SIGKILL);
		break;
	case T_NONE:
		break;
	}
}

static void signals(void)
{
	struct signalfd_siginfo si;

	while (read(s.sig_fd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGCHLD:
			reap();
			break;
		case SIGTERM:
		case SIGINT:
			stop();
			break;
		case SIGUSR1:
			if (s.pid && !s.stop) {
				event("kill pid=%d (SIGUSR1)", (int)s.pid);
				signal_main(SIGKILL);
			} else {
				event("SIGUSR1: no service to kill");
			}
			break;
		}
	}
}

static int run(void)
{
	struct pollfd *p = NULL;

	start();
	while (!s.done) {
		size_t n = 4;
		struct pollfd *grown = realloc(p, (4 + s.n_store) * sizeof(*p));

		if (!grown) {
			event("out of memory");
			break;
		}
		p = grown;
		p[0] = (struct pollfd){ .fd = s.notify_fd, .events = POLLIN };
		p[1] = (struct pollfd){ .fd = s.sig_fd, .events = POLLIN };
		p[2] = (struct pollfd){ .fd = s.timer_fd, .events = POLLIN };
		p[3] = (struct pollfd){ .fd = s.pidfd, .events = POLLIN };
		/* No events asked: poll reports POLLHUP and POLLERR anyway. */
		for (size_t i = 0; i < s.n_store; i++)
			if (s.store[i].poll)
				p[n++] = (struct pollfd){ .fd = s.store[i].fd };
		if (poll(p, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			event("poll: %s", strerror(errno));
			break;
		}
		/* First, while the store is as polled. */
		for (size_t i = 4; i < n; i++)
			if (p[i].revents & (POLLHUP | POLLERR | POLLNVAL))
				drop(p[i].fd, p[i].revents);
		if (p[0].revents)
			drain_notify();
		if (p[3].revents && s.pidfd >= 0)
			main_pidfd_ready();
		if (p[1].revents)
			signals();
		if (p[2].revents && !s.done)
			timer_fired();
	}
	free(p);
	return s.done ? s.status : 1;
}

/* ---- setup ---- */

static int bind_unix(int type, const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, one = 1;

	if (strlen(path) >= sizeof(addr.sun_path)) {
		fprintf(s.log, "%s: path too long for a socket (at most %zu "
			"bytes)\n", path, sizeof(addr.sun_path) - 1);
		return -1;
	}
	strcpy(addr.sun_path, path);
	/* As systemd does for a socket unit: a stale socket is replaced. */
	if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
		unlink(path);
	/* Blocking, as systemd passes sockets (NonBlocking=no). */
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
	    (type == SOCK_DGRAM &&
	     setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) ||
	    (type == SOCK_SEQPACKET && listen(fd, SOMAXCONN) < 0)) {
		fprintf(s.log, "%s: %s\n", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

static int setup(void)
{
	sigset_t mask;

	if (mkdir(s.dir, 0700) < 0 && errno != EEXIST) {
		fprintf(s.log, "--dir %s: %s\n", s.dir, strerror(errno));
		return -1;
	}
	if (asprintf(&s.notify_path, "%s/notify.sock", s.dir) < 0 ||
	    (s.state_path && asprintf(&s.state_tmp, "%s.tmp", s.state_path) < 0)) {
		fprintf(s.log, "out of memory\n");
		return -1;
	}
	s.notify_fd = bind_unix(SOCK_DGRAM, s.notify_path);
	if (s.notify_fd < 0)
		return -1;
	if (s.listen_path) {
		s.listen_fd = bind_unix(SOCK_SEQPACKET, s.listen_path);
		if (s.listen_fd < 0)
			return -1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGUSR1);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	s.sig_fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
	s.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (s.sig_fd < 0 || s.timer_fd < 0) {
		fprintf(s.log, "signalfd/timerfd: %s\n", strerror(errno));
		return -1;
	}
	/* Orphans of the service come to us, as to systemd: MAINPID=. */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	return 0;
}

static void cleanup(void)
{
	for (size_t i = 0; i < s.n_store; i++) {
		close(s.store[i].fd);
		free(s.store[i].name);
	}
	free(s.store);
	s.store = NULL;
	s.n_store = 0;
	if (s.notify_fd >= 0) {
		close(s.notify_fd);
		unlink(s.notify_path);
	}
	if (s.listen_fd >= 0)
		close(s.listen_fd);
	if (s.sig_fd >= 0)
		close(s.sig_fd);
	if (s.timer_fd >= 0)
		close(s.timer_fd);
	if (s.pidfd >= 0)
		close(s.pidfd);
	free(s.notify_path);
	if (s.log)
		write_state();
	free(s.state_tmp);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hmmu-supervise --dir DIR [options] -- COMMAND [ARG]...\n"
		"Runs COMMAND as systemd runs a Type=notify service with\n"
		"Restart=always and a preserved fd store.\n"
		"  --dir DIR              where the notify socket is made (required)\n"
		"  --listen PATH          a SOCK_SEQPACKET socket to bind, passed first\n"
		"  --listen-name NAME     its name in LISTEN_FDNAMES (hmmud.socket)\n"
		"  --fdstore-max N        FileDescriptorStoreMax= (0)\n"
		"  --restart-ms MS        RestartSec= (100)\n"
		"  --max-restarts N       then give up and exit 1 (unlimited)\n"
		"  --ready-timeout-ms MS  TimeoutStartSec= (10000)\n"
		"  --stop-timeout-ms MS   TimeoutStopSec= (10000)\n"
		"  --log FILE             one line per event (stderr)\n"
		"  --state FILE           pid=, ready=, restarts=, stored=, refused=,\n"
		"                         dropped=, rewritten after each event\n"
		"SIGTERM/SIGINT: stop it and exit 0. SIGUSR1: SIGKILL it (restarted).\n");
}

static int number(const char *opt, const char *arg, long *out)
{
	char *end;

	errno = 0;
	*out = strtol(arg, &end, 10);
	if (errno || end == arg || *end || *out < 0 || *out > INT32_MAX) {
		fprintf(stderr, "hmmu-supervise: %s takes a number from 0 to "
			"%d, not '%s'\n", opt, INT32_MAX, arg);
		return -1;
	}
	return 0;
}

static int options(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "listen", required_argument, NULL, 'l' },
		{ "listen-name", required_argument, NULL, 'n' },
		{ "fdstore-max", required_argument, NULL, 'F' },
		{ "restart-ms", required_argument, NULL, 'r' },
		{ "max-restarts", required_argument, NULL, 'm' },
		{ "ready-timeout-ms", required_argument, NULL, 't' },
		{ "stop-timeout-ms", required_argument, NULL, 'T' },
		{ "log", required_argument, NULL, 'L' },
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 }
	};
	const char *log_path = NULL;
	long v;
	int c;

	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'd': s.dir = optarg; break;
		case 'l': s.listen_path = optarg; break;
		case 'n':
			if (!fdname_valid(optarg)) {
				fprintf(stderr, "hmmu-supervise: --listen-name "
					"'%s': not a valid fd name\n", optarg);
				return -1;
			}
			s.listen_name = optarg;
			break;
		case 'F':
			if (number("--fdstore-max", optarg, &v) < 0)
				return -1;
			s.fdstore_max = (unsigned)v;
			break;
		case 'r':
			if (number("--restart-ms", optarg, &s.restart_ms) < 0)
				return -1;
			break;
		case 'm':
			if (number("--max-restarts", optarg, &s.max_restarts) < 0)
				return -1;
			break;
		case 't':
			if (number("--ready-timeout-ms", optarg,
				   &s.ready_timeout_ms) < 0)
				return -1;
			break;
		case 'T':
			if (number("--stop-timeout-ms", optarg,
				   &s.stop_timeout_ms) < 0)
				return -1;
			break;
		case 'L': log_path = optarg; break;
		case 's': s.state_path = optarg; break;
		case 'h': usage(stdout); exit(0);
		default: usage(stderr); return -1;
		}
	}
	if (!s.dir || optind >= argc) {
		fprintf(stderr, "hmmu-supervise: %s\n", !s.dir ?
			"--dir is required" : "no command to run");
		usage(stderr);
		return -1;
	}
	s.argv = argv + optind;
	s.log = log_path ? fopen(log_path, "ae") : stderr;
	if (!s.log) {
		fprintf(stderr, "hmmu-supervise: --log %s: %s\n", log_path,
			strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int status = 2;

	if (options(argc, argv) < 0)
		return 2;
	if (setup() == 0) {
		status = run();
		event("supervisor exits %d", status);
	}
	cleanup();
	if (s.log != stderr)
		fclose(s.log);
	return status;
}
