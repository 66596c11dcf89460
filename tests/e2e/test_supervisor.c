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

#include "supervised.h"

static char report_path[128];

TestSuite(supervisor, .fini = supervised_cleanup, .timeout = 60);

/* Supervisor options; the fake service's options: NULL-terminated. */
static void start(const char *const *sup, const char *const *svc)
{
	const char *argv[40] = { FAKE_SERVICE_PATH, "--report", report_path };
	int n = 3;

	supervised_prepare();
	snprintf(report_path, sizeof(report_path), "%s/report",
		 supervised.dir);
	while (*svc && n < 39)
		argv[n++] = *svc++;
	argv[n] = NULL;
	supervised_start(sup, argv);
}

/* The fake service's report, checked to be that of the current pid. */
static const char *report(void)
{
	char want[32];
	const char *r;

	snprintf(want, sizeof(want), "\npid=%d\n",
		 supervised_state_value("pid"));
	r = supervised_slurp(report_path);
	cr_assert_not_null(strstr(r, want), "report not of %s:%s", want, r);
	return r;
}

Test(supervisor, stored_memfd_survives_a_crash_with_its_name)
{
	const char *r;

	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--store", "state", NULL });
	supervised_wait_state("restarts=0\nready=1\nstored=1");
	cr_assert(strstr(report(), "\nfds=0\n"));

	supervised_crash_and_wait(1);
	cr_assert(supervised_logged("status=killed/KILL"));
	r = report();
	cr_assert(strstr(r, "\nfds=1\n"), "%s", r);
	cr_assert(strstr(r, "fd=3 name=state kind=file ino="), "%s", r);
	cr_assert(strstr(r, " content=fake state\n"), "%s", r);
	/* It found the fd, so it did not store another. */
	supervised_wait_state("stored=1");
	supervised_stop();
}

Test(supervisor, fdstoreremove_removes_it_from_the_next_start)
{
	const char *r;

	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--store", "state", "--remove-inherited",
				NULL });
	supervised_wait_state("restarts=0\nready=1\nstored=1");

	/* The second start gets it, and removes it before READY=1. */
	supervised_crash_and_wait(1);
	cr_assert(strstr(report(), "name=state kind=file"));
	supervised_wait_state("stored=0");
	cr_assert(supervised_logged("removed state"));

	supervised_crash_and_wait(2);
	r = report();
	cr_assert(strstr(r, "\nfds=0\n"), "%s", r);
	cr_assert_null(strstr(r, "name=state"), "%s", r);
	supervised_stop();
}

Test(supervisor, fds_past_the_store_limit_are_refused)
{
	const char *r;
	int pid;

	start((const char *[]){ "--fdstore-max", "2", NULL },
	      (const char *[]){ "--store", "many", "--count", "3", NULL });
	supervised_wait_state("restarts=0\nready=1\nstored=2\nrefused=1");
	cr_assert(supervised_logged("refused 1 fds named many"));
	pid = supervised_state_value("pid");
	cr_assert_eq(kill(pid, 0), 0, "the service died");

	supervised_crash_and_wait(1);
	r = report();
	cr_assert(strstr(r, "\nfds=2\n"), "%s", r);
	cr_assert(strstr(r, "fd=3 name=many"), "%s", r);
	cr_assert(strstr(r, "fd=4 name=many"), "%s", r);
	supervised_stop();
}

Test(supervisor, no_store_by_default)
{
	start((const char *[]){ NULL },
	      (const char *[]){ "--store", "state", NULL });
	supervised_wait_state("ready=1\nstored=0\nrefused=1");
	cr_assert(supervised_logged("--fdstore-max=0"));
	supervised_stop();
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

	supervised_prepare();
	start((const char *[]){ "--fdstore-max", "4", "--listen", supervised.sock,
				NULL },
	      (const char *[]){ "--store", "state", NULL });
	supervised_wait_state("restarts=0\nready=1");
	r = report();
	cr_assert(strstr(r, "fd=3 name=hmmud.socket kind=socket"), "%s", r);
	cr_assert(strstr(r, "listening=1"), "%s", r);
	ino = socket_ino(r);
	cr_assert_eq(stat(supervised.sock, &before), 0);

	supervised_crash_and_wait(1);
	r = report();
	/* The socket first, the store after it. */
	cr_assert(strstr(r, "fd=3 name=hmmud.socket kind=socket"), "%s", r);
	cr_assert(strstr(r, "fd=4 name=state kind=file"), "%s", r);
	cr_assert_eq(socket_ino(r), ino, "a new socket: %s", r);
	cr_assert_eq(stat(supervised.sock, &after), 0);
	cr_assert_eq(after.st_ino, before.st_ino);

	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	strcpy(addr.sun_path, supervised.sock);
	cr_assert_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0,
		     "connect %s: %s", supervised.sock, strerror(errno));
	close(fd);
	supervised_stop();
}

Test(supervisor, stored_fd_with_pollhup_is_dropped)
{
	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--hup", "peer", NULL });
	supervised_wait_state("ready=1\nstored=0\ndropped=1");
	cr_assert(supervised_logged("stored peer fd-count=1"));
	cr_assert(supervised_logged("dropped peer (POLLHUP)"));
	supervised_stop();
}

Test(supervisor, stored_fd_with_fdpoll0_is_kept_despite_pollhup)
{
	const char *r;

	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--hup", "peer", "--no-poll", NULL });
	supervised_wait_state("restarts=0\nready=1\nstored=1");
	supervised_crash_and_wait(1);
	r = report();
	cr_assert(strstr(r, "fd=3 name=peer kind=socket"), "%s", r);
	supervised_wait_state("stored=1\ndropped=0");
	supervised_stop();
}

Test(supervisor, messages_not_from_the_main_pid_are_ignored)
{
	start((const char *[]){ "--fdstore-max", "4", NULL },
	      (const char *[]){ "--child-store", "stray", NULL });
	supervised_wait_state("ready=1\nstored=0");
	cr_assert(supervised_logged("not the main pid"), "%s", supervised_slurp(supervised.log));
	cr_assert_not(supervised_logged("stored stray"));
	supervised_stop();
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
	supervised_wait_state("restarts=0\nready=1");
	snprintf(notify, sizeof(notify), "%s/notify.sock", supervised.run);

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
	supervised_crash_and_wait(1);
	cr_assert(supervised_logged("longer than 4096 bytes"), "%s", supervised_slurp(supervised.log));
	cr_assert(supervised_logged("embedded NUL"), "%s", supervised_slurp(supervised.log));
	cr_assert_eq(supervised_state_value("stored"), 0);
	supervised_stop();
}
