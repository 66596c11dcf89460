/* SPDX-License-Identifier: MIT */
/*
 * hmmu-fake-service: a Type=notify service for tests/e2e/test_supervisor.c,
 * talking to its manager through libsystemd alone, as hmmud does.
 *
 * On start it writes to --report FILE (a temporary file, then renamed) its
 * pid and each fd it inherited: "fd=N name=NAME kind=socket|file ino=I
 * listening=0|1 content=TEXT". Then, in this order, before READY=1:
 *   --store NAME [--count K]  unless it inherited an fd named NAME, stores
 *                             K memfds (one message) holding "fake NAME";
 *   --remove-inherited        if it inherited NAME, FDSTOREREMOVE=1 it;
 *   --hup NAME [--no-poll]    unless inherited, stores one end of a
 *                             socketpair (with FDPOLL=0 if --no-poll) and
 *                             closes the other: the stored end polls POLLHUP;
 *   --child-store NAME        a child process stores a memfd as NAME (not
 *                             the main pid: the manager must ignore it).
 * It then waits for SIGTERM, sends STOPPING=1 and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

static const char *report, *store_name, *hup_name, *child_name;
static int count = 1;
static bool remove_inherited, no_poll;

static void die(const char *what)
{
	fprintf(stderr, "hmmu-fake-service: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int fake_memfd(const char *name)
{
	char text[300];
	int fd = memfd_create(name, MFD_CLOEXEC);

	snprintf(text, sizeof(text), "fake %s", name);
	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
		die("memfd");
	return fd;
}

static void describe(FILE *f, int fd, const char *name)
{
	char content[256] = "";
	struct stat st;
	int listening = 0;
	socklen_t len = sizeof(listening);
	ssize_t n;

	if (fstat(fd, &st) < 0)
		die("fstat of an inherited fd");
	if (S_ISSOCK(st.st_mode)) {
		getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
	} else {
		n = pread(fd, content, sizeof(content) - 1, 0);
		content[n > 0 ? n : 0] = '\0';
	}
	fprintf(f, "fd=%d name=%s kind=%s ino=%lu listening=%d content=%s\n",
		fd, name, S_ISSOCK(st.st_mode) ? "socket" : "file",
		(unsigned long)st.st_ino, listening, content);
}

static char **inherited_names;
static int n_inherited;

/* Writes the report of the fds it inherited. */
static void inventory(void)
{
	char tmp[4096];
	FILE *f;

	n_inherited = sd_listen_fds_with_names(1, &inherited_names);
	if (n_inherited < 0) {
		errno = -n_inherited;
		die("sd_listen_fds_with_names");
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", report);
	f = fopen(tmp, "w");
	if (!f)
		die(tmp);
	fprintf(f, "pid=%d\nfds=%d\n", (int)getpid(), n_inherited);
	for (int i = 0; i < n_inherited; i++)
		describe(f, SD_LISTEN_FDS_START + i, inherited_names[i]);
	if (fclose(f) != 0 || rename(tmp, report) < 0)
		die(report);
}

static bool inherited(const char *name)
{
	for (int i = 0; name && i < n_inherited; i++)
		if (!strcmp(inherited_names[i], name))
			return true;
	return false;
}

static void send_fds(const char *state, int *fds, int n)
{
	int r = sd_pid_notify_with_fds(0, 0, state, fds, (unsigned)n);

	if (r <= 0) {
		errno = r < 0 ? -r : ENOTCONN;
		die("sd_pid_notify_with_fds");
	}
}

static void store(const char *name)
{
	char state[300];
	int fds[16];

	for (int i = 0; i < count; i++)
		fds[i] = fake_memfd(name);
	snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name);
	send_fds(state, fds, count);
	for (int i = 0; i < count; i++)
		close(fds[i]);
}

static void store_hup(const char *name)
{
	char state[300];
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		die("socketpair");
	snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s%s", name,
		 no_poll ? "\nFDPOLL=0" : "");
	send_fds(state, &sv[0], 1);
	close(sv[0]);
	close(sv[1]);
}

static void child_store(const char *name)
{
	pid_t pid = fork();

	if (pid < 0)
		die("fork");
	if (pid == 0) {
		char state[300];
		int fd = fake_memfd(name);

		snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name);
		send_fds(state, &fd, 1);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
}

static void options(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "report", required_argument, NULL, 'r' },
		{ "store", required_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'c' },
		{ "remove-inherited", no_argument, NULL, 'R' },
		{ "hup", required_argument, NULL, 'h' },
		{ "no-poll", no_argument, NULL, 'P' },
		{ "child-store", required_argument, NULL, 'C' },
		{ 0 }
	};
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': report = optarg; break;
		case 's': store_name = optarg; break;
		case 'c': count = atoi(optarg); break;
		case 'R': remove_inherited = true; break;
		case 'h': hup_name = optarg; break;
		case 'P': no_poll = true; break;
		case 'C': child_name = optarg; break;
		default: exit(2);
		}
	}
	if (!report || count < 1 || count > 16) {
		fprintf(stderr, "hmmu-fake-service: --report FILE is required; "
			"--count takes 1 to 16\n");
		exit(2);
	}
}

int main(int argc, char **argv)
{
	sigset_t mask;
	bool had_store, had_hup;
	int sig;

	options(argc, argv);
	/* Never outlive a supervisor that was killed. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);

	inventory();
	had_store = inherited(store_name);
	had_hup = inherited(hup_name);
	if (store_name && !had_store)
		store(store_name);
	if (store_name && had_store && remove_inherited) {
		char state[300];

		snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s",
			 store_name);
		sd_notify(0, state);
	}
	if (hup_name && !had_hup)
		store_hup(hup_name);
	if (child_name)
		child_store(child_name);
	sd_notify(0, "READY=1\nSTATUS=fake service running");

	sigwait(&mask, &sig);
	sd_notify(0, "STOPPING=1");
	for (int i = 0; i < n_inherited; i++)
		free(inherited_names[i]);
	free(inherited_names);
	return 0;
}
