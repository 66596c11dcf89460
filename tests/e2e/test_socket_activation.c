/* SPDX-License-Identifier: MIT */
/*
 * hmmud under socket activation, as systemd runs it: the listening socket
 * comes from systemd-socket-activate (sd_listen_fds), readiness and STATUS=
 * lines go to $NOTIFY_SOCKET (sd_notify), and SIGTERM stops it cleanly.
 *
 * Not the harness's daemon_start: here the test owns the socket's lifetime.
 * systemd-socket-activate binds the socket, and on the first connection
 * execs hmmud in its own process, so the pid we fork is the daemon's.
 */
#include "harness.h"
#include "helpers.h"

#include <hmmu/hmmu.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define SEE_LOG "; see %s (HMMU_TEST_KEEP=1 keeps it)"

static struct {
	pid_t pid;
	pid_t main_pid; /* the daemon's, kept after it is reaped */
	int notify_fd;
	char dir[64];
	char socket[108];
	char notify[108];
	char unused[108]; /* --socket: where hmmud would listen if not activated */
	char log[128];
} sa = { .notify_fd = -1 };

static void cleanup(void)
{
	char cmd[128];

	/* Only after a failed assertion is the daemon still running. */
	if (sa.pid > 0) {
		kill(sa.pid, SIGKILL);
		waitpid(sa.pid, NULL, 0);
	}
	if (sa.notify_fd >= 0)
		close(sa.notify_fd);
	if (sa.dir[0] && !getenv("HMMU_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", sa.dir);
		(void)!system(cmd);
	}
}

TestSuite(socket_activation, .fini = cleanup, .timeout = 60);

/* A datagram socket like systemd's, which reports each sender's pid. */
static int notify_socket(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int one = 1;

	cr_assert(fd >= 0);
	strcpy(addr.sun_path, path);
	cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0,
		     "bind %s: %s", path, strerror(errno));
	cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)),
		     0);
	return fd;
}

static void start_activator(int foreground)
{
	static char prefix[512];
	const char *argv[32];
	char notify_env[128], journal_env[64];
	int n = 0, log;

	strcpy(sa.dir, "/tmp/hmmu-sa-XXXXXX");
	cr_assert_not_null(mkdtemp(sa.dir));
	snprintf(sa.socket, sizeof(sa.socket), "%s/hmmud.sock", sa.dir);
	snprintf(sa.notify, sizeof(sa.notify), "%s/notify.sock", sa.dir);
	snprintf(sa.unused, sizeof(sa.unused), "%s/unused.sock", sa.dir);
	snprintf(sa.log, sizeof(sa.log), "%s/hmmud.log", sa.dir);
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", sa.notify);
	sa.notify_fd = notify_socket(sa.notify);
	/* Each line with its level, for stop_cleanly() to judge (harness.h). */
	log = open(sa.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(log, 0, "%s: %s", sa.log, strerror(errno));
	journal_stream_env(log, journal_env, sizeof(journal_env));

	/* -E: it passes only the environment it is told to. */
	argv[n++] = "systemd-socket-activate";
	argv[n++] = "--seqpacket";
	argv[n++] = "-l";
	argv[n++] = sa.socket;
	argv[n++] = "-E";
	argv[n++] = notify_env;
	argv[n++] = "-E";
	argv[n++] = journal_env;
	/*
	 * As in the harness, $HMMU_TEST_DAEMON_PREFIX (blank-separated) runs
	 * hmmud under a command that execs it in the same process: the
	 * activator's pid stays the daemon's.
	 */
	snprintf(prefix, sizeof(prefix), "%s",
		 getenv("HMMU_TEST_DAEMON_PREFIX") ? getenv("HMMU_TEST_DAEMON_PREFIX") : "");
	for (char *save = NULL, *w = strtok_r(prefix, " \t", &save); w && n < 24;
	     w = strtok_r(NULL, " \t", &save))
		argv[n++] = w;
	argv[n++] = HMMUD_PATH;
	argv[n++] = "--socket";
	argv[n++] = sa.unused;
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	if (foreground)
		argv[n++] = "--foreground";
	argv[n] = NULL;

	sa.pid = sa.main_pid = fork();
	cr_assert(sa.pid >= 0);
	if (sa.pid == 0) {
		dup2(log, 1);
		dup2(log, 2);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(log);
}

/*
 * The first connection starts hmmud. Until the activator listens, connect
 * fails with ENOENT (not bound yet) or ECONNREFUSED (not listening yet).
 */
static struct hmmu *first_connect(void)
{
	struct hmmu *h = NULL;
	int err;

	while ((err = hmmu_connect(sa.socket, &h)) == -ENOENT ||
	       err == -ECONNREFUSED) {
		if (waitpid(sa.pid, NULL, WNOHANG) == sa.pid) {
			sa.pid = 0;
			cr_assert_fail("systemd-socket-activate exited" SEE_LOG,
				       sa.log);
		}
		usleep(1000);
	}
	cr_assert_eq(err, 0, "hmmu_connect: %s", strerror(-err));
	return h;
}

/*
 * Among the notifications queued so far, one holds the line @what; all come
 * from the daemon's pid.
 */
static void expect_notification(const char *what)
{
	char buf[4096], cbuf[CMSG_SPACE(sizeof(struct ucred))];

	for (;;) {
		struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
		struct msghdr msg = { .msg_iov = &iov,
				      .msg_iovlen = 1,
				      .msg_control = cbuf,
				      .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c;
		struct ucred cred = { 0 };
		ssize_t n = recvmsg(sa.notify_fd, &msg, MSG_DONTWAIT);
		char *line, *save;

		cr_assert(n >= 0, "no %s: %s", what, strerror(errno));
		buf[n] = '\0';
		for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET &&
			    c->cmsg_type == SCM_CREDENTIALS)
				memcpy(&cred, CMSG_DATA(c), sizeof(cred));
		/* NotifyAccess=main: only the main pid's messages count. */
		cr_assert_eq(cred.pid, sa.main_pid,
			     "notification '%s' from pid %d, not %d", buf,
			     cred.pid, sa.main_pid);
		for (line = strtok_r(buf, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save))
			if (strcmp(line, what) == 0)
				return;
	}
}

/*
 * Wait until a STATUS= line that starts with @prefix arrives, followed by
 * the faults per second ("N faults/s"). The daemon sends one every 2 s
 * when its text changed, so a few seconds are plenty.
 */
static void wait_status(const char *prefix)
{
	char seen[1024] = "", buf[4096];

	for (int waited = 0; waited < 15000; waited += 100) {
		struct pollfd pfd = { .fd = sa.notify_fd, .events = POLLIN };
		char *line, *save;
		ssize_t n;

		if (poll(&pfd, 1, 100) != 1)
			continue;
		n = recv(sa.notify_fd, buf, sizeof(buf) - 1, 0);
		cr_assert_geq(n, 0, "notify socket: %s", strerror(errno));
		buf[n] = '\0';
		for (line = strtok_r(buf, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			unsigned long long rate;
			char unit[16];
			size_t len = strlen(prefix);

			if (strncmp(line, "STATUS=", 7) != 0)
				continue;
			if (strlen(seen) + strlen(line) + 3 < sizeof(seen)) {
				strcat(seen, line);
				strcat(seen, "; ");
			}
			if (strncmp(line + 7, prefix, len) != 0)
				continue;
			cr_assert_eq(sscanf(line + 7 + len, "%llu %15s", &rate,
					    unit), 2, "%s", line);
			cr_assert(strcmp(unit, "faults/s") == 0 ||
				  (rate == 1 && strcmp(unit, "fault/s") == 0),
				  "%s", line);
			return;
		}
	}
	cr_assert_fail("no STATUS=%s... in 15 s; seen: %s" SEE_LOG, prefix,
		       seen, sa.log);
}

static void stop_cleanly(void)
{
	char report[2048];
	long judged = 0;
	int status, n;

	cr_assert_eq(kill(sa.pid, SIGTERM), 0);
	cr_assert_eq(waitpid(sa.pid, &status, 0), sa.pid);
	sa.pid = 0;
	/* Under ASan, a leak would make it exit 23. */
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "hmmud did not stop cleanly (status %#x)" SEE_LOG, status,
		  sa.log);
	n = daemon_log_unexpected(sa.log, &judged, report, sizeof(report));
	cr_assert_eq(n, 0, "hmmud logged what the test did not expect (%d "
		     "lines)" SEE_LOG ":\n%s", n, sa.log, report);
}

/*
 * Activate hmmud, check it is ready and serves mirrors, stop it. The pid
 * checks prove hmmud never forked: READY=1 and the exit status come from the
 * process systemd would know as the service's main pid.
 */
static void activate_serve_stop(int foreground)
{
	struct hmmu_mirror *m;
	struct stat st;
	struct hmmu *h;

	start_activator(foreground);
	h = first_connect();
	/* Sent before it served anything: queued by now. */
	expect_notification("READY=1");

	cr_assert_geq(hmmu_device_count(h), 2);
	m = mirror_registered(h, "dmirror0");
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	/* It served the socket from sd_listen_fds, not one of its own. */
	cr_expect_neq(lstat(sa.unused, &st), 0,
		      "hmmud listened on its --socket despite activation");

	stop_cleanly();
	expect_notification("STOPPING=1");
	/* The socket is systemd's (RemoveOnStop=): hmmud leaves it alone. */
	cr_expect_eq(lstat(sa.socket, &st), 0,
		     "hmmud removed the socket it was passed");
}

Test(socket_activation, serves_the_passed_socket_and_stops_on_sigterm)
{
	activate_serve_stop(1);
}

/* Without --foreground too: $NOTIFY_SOCKET alone keeps it from detaching. */
Test(socket_activation, does_not_fork_under_notify_socket)
{
	activate_serve_stop(0);
}

/*
 * What systemctl status shows: the clients (connections), the mirrors
 * registered, the faults per second, sent as STATUS= when they change.
 */
Test(socket_activation, status_tells_clients_mirrors_and_faults)
{
	struct hmmu_mirror *m0, *m1;
	struct hmmu *h, *h2;
	void *mem;

	start_activator(1);
	h = first_connect();
	/* With READY=1, before any connection was accepted. */
	expect_notification("STATUS=0 clients, 0 mirrors, 0 faults/s");

	m0 = mirror_registered(h, "dmirror0");
	m1 = mirror_registered(h, "dmirror1");
	cr_assert_eq(hmmu_connect(sa.socket, &h2), 0);
	mem = map_rw(16);
	device_touch(m0, mem, 16);
	wait_status("2 clients, 2 mirrors, ");

	hmmu_mirror_destroy(m1);
	wait_status("2 clients, 1 mirror, ");

	hmmu_mirror_destroy(m0);
	hmmu_disconnect(h2);
	hmmu_disconnect(h);
	wait_status("0 clients, 0 mirrors, ");
	munmap(mem, 16 * page_size());
	stop_cleanly();
}
