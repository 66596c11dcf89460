/* SPDX-License-Identifier: MIT */
/*
 * hmmu-supervise, the tests' stand-in for systemd (Type=notify,
 * Restart=always, FileDescriptorStoreMax=, FileDescriptorStorePreserve=yes),
 * checked with hmmu-fake-service: the fd store across a crash, its limit,
 * FDSTOREREMOVE=1, POLLHUP and FDPOLL=0, the listening socket, and the
 * messages it must ignore.
 *
 * Each test runs its own supervisor in a private directory. Nothing is
 * timed: the tests poll the state file (--state) until it shows what they
 * wait for, or give up after 10 s.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000

static struct {
	pid_t pid;
	char dir[64];
	char run[96], log[96], state[96], report[96], out[96], sock[96];
} sv;

static void cleanup(void)
{
	char cmd[128];

	/* Only after a failed assertion is it still running. */
	if (sv.pid > 0) {
		kill(sv.pid, SIGTERM);
		waitpid(sv.pid, NULL, 0);
	}
	if (sv.dir[0] && !getenv("HMMU_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", sv.dir);
		(void)!system(cmd);
	}
}

TestSuite(supervisor, .fini = cleanup, .timeout = 60);

/* The private directory and the paths in it. */
static void prepare(void)
{
	strcpy(sv.dir, "/tmp/hmmu-sup-XXXXXX");
	cr_assert_not_null(mkdtemp(sv.dir));
	snprintf(sv.run, sizeof(sv.run), "%s/run", sv.dir);
	snprintf(sv.log, sizeof(sv.log), "%s/events.log", sv.dir);
	snprintf(sv.state, sizeof(sv.state), "%s/state", sv.dir);
	snprintf(sv.report, sizeof(sv.report), "%s/report", sv.dir);
	snprintf(sv.out, sizeof(sv.out), "%s/out", sv.dir);
	snprintf(sv.sock, sizeof(sv.sock), "%s/hmmud.sock", sv.dir);
}

/* Supervisor options, "--", the fake service's options: NULL-terminated. */
static void start(const char *const *sup, const char *const *svc)
{
	const char *argv[64];
	int n = 0, out;

	if (!sv.dir[0])
		prepare();
	argv[n++] = SUPERVISE_PATH;
	argv[n++] = "--dir";
	argv[n++] = sv.run;
	argv[n++] = "--log";
	argv[n++] = sv.log;
	argv[n++] = "--state";
	argv[n++] = sv.state;
	while (*sup)
		argv[n++] = *sup++;
	argv[n++] = "--";
	argv[n++] = FAKE_SERVICE_PATH;
	argv[n++] = "--report";
	argv[n++] = sv.report;
	while (*svc)
		argv[n++] = *svc++;
	argv[n] = NULL;

	/* Its output and the service's: the sanitizers' reports land here. */
	out = open(sv.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(out, 0);
	sv.pid = fork();
	cr_assert_geq(sv.pid, 0);
	if (sv.pid == 0) {
		dup2(out, 1);
		dup2(out, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(out);
}

static char *slurp(const char *path)
{
	static char buf[65536];
	ssize_t n = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	buf[0] = '\n';
	if (fd >= 0) {
		n = read(fd, buf + 1, sizeof(buf) - 2);
		close(fd);
	}
	buf[1 + (n > 0 ? n : 0)] = '\0';
	return buf;
}

/* Every line of @want ("key=value\n"...) in the state file, within 10 s. */
static void wait_state(const char *want)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	char line[128];

	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		const char *state = slurp(sv.state), *w = want;
		bool all = true;

		while (all && *w) {
			size_t len = strcspn(w, "\n");

			snprintf(line, sizeof(line), "\n%.*s\n", (int)len, w);
			all = strstr(state, line) != NULL;
			w += len + (w[len] == '\n');
		}
		if (all)
			return;
		cr_assert_eq(waitpid(sv.pid, NULL, WNOHANG), 0,
			     "hmmu-supervise exited; see %s", sv.log);
		nanosleep(&tick, NULL);
	}
	fprintf(stderr, "state:%s", slurp(sv.state));
	fprintf(stderr, "log:%s", slurp(sv.log));
	cr_assert_fail("state never showed\n%s", want);
}

static int state_value(const char *key)
{
	char pattern[64];
	const char *p;

	snprintf(pattern, sizeof(pattern), "\n%s=", key);
	p = strstr(slurp(sv.state), pattern);
	cr_assert_not_null(p, "no %s in the state file", key);
	return atoi(p + strlen(pattern));
}

/* The fake service's report, checked to be that of the current pid. */
static const char *report(void)
{
	char want[32];
	const char *r;

	snprintf(want, sizeof(want), "\npid=%d\n", state_value("pid"));
	r = slurp(sv.report);
	cr_assert_not_null(strstr(r, want), "report not of %s:%s", want, r);
	return r;
}

static bool logged(const char *what)
{
	return strstr(slurp(sv.log), what) != NULL;
}

/* A crash: SIGUSR1 makes the supervisor SIGKILL the service. */
static void crash_and_wait(int restarts)
{
	char want[64];

	cr_assert_eq(kill(sv.pid, SIGUSR1), 0);
	snprintf(want, sizeof(want), "restarts=%d\nready=1", restarts);
	wait_state(want);
}

/* SIGTERM: it stops the service and exits 0, sanitizers silent. */
static void stop(void)
{
	int status;
	const char *out;

	cr_assert_eq(kill(sv.pid, SIGTERM), 0);
	cr_assert_eq(waitpid(sv.pid, &status, 0), sv.pid);
	sv.pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "hmmu-supervise: status %#x; log:%s", status, slurp(sv.log));
	cr_assert(logged("stop: SIGTERM to pid="));
	cr_assert(logged("status=exited/0"), "log:%s", slurp(sv.log));
	out = slurp(sv.out);
	cr_assert_null(strstr(out, "Sanitizer"), "%s", out);
	cr_assert_null(strstr(out, "runtime error"), "%s", out);
}

Test(supervisor, stored_memfd_survives_a_crash_with_its_name)
{
	const char *r;

	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--store", "state", NULL });
	wait_state("restarts=0\nready=1\nstored=1");
	cr_assert(strstr(report(), "\nfds=0\n"));

	crash_and_wait(1);
	cr_assert(logged("status=killed/KILL"));
	r = report();
	cr_assert(strstr(r, "\nfds=1\n"), "%s", r);
	cr_assert(strstr(r, "fd=3 name=state kind=file ino="), "%s", r);
	cr_assert(strstr(r, " content=fake state\n"), "%s", r);
	/* It found the fd, so it did not store another. */
	wait_state("stored=1");
	stop();
}

Test(supervisor, fdstoreremove_removes_it_from_the_next_start)
{
	const char *r;

	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--store", "state", "--remove-inherited",
				NULL });
	wait_state("restarts=0\nready=1\nstored=1");

	/* The second start gets it, and removes it before READY=1. */
	crash_and_wait(1);
	cr_assert(strstr(report(), "name=state kind=file"));
	wait_state("stored=0");
	cr_assert(logged("removed state"));

	crash_and_wait(2);
	r = report();
	cr_assert(strstr(r, "\nfds=0\n"), "%s", r);
	cr_assert_null(strstr(r, "name=state"), "%s", r);
	stop();
}

Test(supervisor, fds_past_the_store_limit_are_refused)
{
	const char *r;
	int pid;

	start((const char *[]){ "--fdstore-max", "2", NULL },
	      (const char *[]){ "--store", "many", "--count", "3", NULL });
	wait_state("restarts=0\nready=1\nstored=2\nrefused=1");
	cr_assert(logged("refused 1 fds named many"));
	pid = state_value("pid");
	cr_assert_eq(kill(pid, 0), 0, "the service died");

	crash_and_wait(1);
	r = report();
	cr_assert(strstr(r, "\nfds=2\n"), "%s", r);
	cr_assert(strstr(r, "fd=3 name=many"), "%s", r);
	cr_assert(strstr(r, "fd=4 name=many"), "%s", r);
	stop();
}

Test(supervisor, no_store_by_default)
{
	start((const char *[]){ NULL },
	      (const char *[]){ "--store", "state", NULL });
	wait_state("ready=1\nstored=0\nrefused=1");
	cr_assert(logged("--fdstore-max=0"));
	stop();
}

static unsigned long socket_ino(const char *r)
{
	const char *p = strstr(r, "name=hmmud.socket kind=socket ino=");

	cr_assert_not_null(p, "%s", r);
	return strtoul(p + strlen("name=hmmud.socket kind=socket ino="), NULL,
		       10);
}

Test(supervisor, listening_socket_is_the_same_across_a_restart)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct stat before, after;
	unsigned long ino;
	const char *r;
	int fd;

	prepare();
	start((const char *[]){ "--fdstore-max", "4", "--listen", sv.sock,
				NULL },
	      (const char *[]){ "--store", "state", NULL });
	wait_state("restarts=0\nready=1");
	r = report();
	cr_assert(strstr(r, "fd=3 name=hmmud.socket kind=socket"), "%s", r);
	cr_assert(strstr(r, "listening=1"), "%s", r);
	ino = socket_ino(r);
	cr_assert_eq(stat(sv.sock, &before), 0);

	crash_and_wait(1);
	r = report();
	/* The socket first, the store after it. */
	cr_assert(strstr(r, "fd=3 name=hmmud.socket kind=socket"), "%s", r);
	cr_assert(strstr(r, "fd=4 name=state kind=file"), "%s", r);
	cr_assert_eq(socket_ino(r), ino, "a new socket: %s", r);
	cr_assert_eq(stat(sv.sock, &after), 0);
	cr_assert_eq(after.st_ino, before.st_ino);

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	strcpy(addr.sun_path, sv.sock);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0,
		     "connect %s: %s", sv.sock, strerror(errno));
	close(fd);
	stop();
}

Test(supervisor, stored_fd_with_pollhup_is_dropped)
{
	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--hup", "peer", NULL });
	wait_state("ready=1\nstored=0\ndropped=1");
	cr_assert(logged("stored peer fd-count=1"));
	cr_assert(logged("dropped peer (POLLHUP)"));
	stop();
}

Test(supervisor, stored_fd_with_fdpoll0_is_kept_despite_pollhup)
{
	const char *r;

	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--hup", "peer", "--no-poll", NULL });
	wait_state("restarts=0\nready=1\nstored=1");
	crash_and_wait(1);
	r = report();
	cr_assert(strstr(r, "fd=3 name=peer kind=socket"), "%s", r);
	wait_state("stored=1\ndropped=0");
	stop();
}

Test(supervisor, messages_not_from_the_main_pid_are_ignored)
{
	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--child-store", "stray", NULL });
	wait_state("ready=1\nstored=0");
	cr_assert(logged("not the main pid"), "%s", slurp(sv.log));
	cr_assert_not(logged("stored stray"));
	stop();
}

static void send_raw(const char *path, const void *buf, size_t len,
		     const int *fds, size_t n_fds)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 16)];
	} control;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = {
		.msg_name = &addr, .msg_namelen = sizeof(addr),
		.msg_iov = &iov, .msg_iovlen = 1,
	};
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	strcpy(addr.sun_path, path);
	if (n_fds) {
		struct cmsghdr *c;

		msg.msg_control = &control;
		msg.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
	}
	cr_assert_geq(sendmsg(fd, &msg, 0), 0, "sendmsg: %s", strerror(errno));
	close(fd);
}

Test(supervisor, malformed_messages_are_ignored)
{
	static char big[5000];
	char notify[128];
	int fds[16];

	start((const char *[]){ "--fdstore-max", "64", NULL },
	      (const char *[]){ NULL });
	wait_state("restarts=0\nready=1");
	snprintf(notify, sizeof(notify), "%s/notify.sock", sv.run);

	memset(big, 'A', sizeof(big));
	send_raw(notify, big, sizeof(big), NULL, 0);
	send_raw(notify, "READY=1\0STOPPING=1", 18, NULL, 0);
	send_raw(notify, "\n\n=\n", 4, NULL, 0);
	send_raw(notify, "", 0, NULL, 0);
	for (int i = 0; i < 16; i++)
		fds[i] = memfd_create("junk", MFD_CLOEXEC);
	send_raw(notify, "FDSTORE=1", 9, fds, 16);
	for (int i = 0; i < 16; i++)
		close(fds[i]);

	/* Still supervising, and nothing stored. */
	crash_and_wait(1);
	cr_assert(logged("longer than 4096 bytes"), "%s", slurp(sv.log));
	cr_assert(logged("embedded NUL"), "%s", slurp(sv.log));
	cr_assert_eq(state_value("stored"), 0);
	stop();
}
