/* SPDX-License-Identifier: MIT */
#include "daemon.h"
#include "bench.h"
#include "../common/notify_wait.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void remove_dir(struct private_daemon *d)
{
	unlink(d->log);
	unlink(d->socket);
	unlink(d->notify);
	rmdir(d->dir);
}

static struct private_daemon *running;

/* Interrupted: stop the daemon and leave nothing behind (signal-safe). */
static void on_signal(int sig)
{
	struct private_daemon *d = running;

	if (d && d->pid > 0) {
		kill(d->pid, SIGTERM);
		waitpid(d->pid, NULL, 0);
		remove_dir(d);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

int daemon_start(struct private_daemon *d, const char *hmmud, unsigned workers)
{
	char nworkers[16];
	const char *argv[12];
	pid_t parent = getpid();
	int nfd, n = 0;

	memset(d, 0, sizeof(*d));
	strcpy(d->dir, "/tmp/hmmu-bench-XXXXXX");
	if (!mkdtemp(d->dir))
		return -errno;
	snprintf(d->socket, sizeof(d->socket), "%s/hmmud.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/hmmud.log", d->dir);
	snprintf(d->notify, sizeof(d->notify), "%s/notify", d->dir);
	nfd = hmmu_notify_listen(d->notify);
	if (nfd < 0) {
		remove_dir(d);
		return nfd;
	}

	argv[n++] = hmmud;
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = d->socket;
	/* Warnings only: logging is no part of what is measured. */
	argv[n++] = "--log-level";
	argv[n++] = "warning";
	if (workers) {
		snprintf(nworkers, sizeof(nworkers), "%u", workers);
		argv[n++] = "--workers";
		argv[n++] = nworkers;
	}
	argv[n] = NULL;

	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0) {
		close(nfd);
		remove_dir(d);
		return -errno;
	}
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
			      0644);

		/* Never outlive the bench, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		setenv("NOTIFY_SOCKET", d->notify, 1);
		execv(hmmud, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", hmmud, strerror(errno));
		_exit(127);
	}
	if (!hmmu_notify_wait_ready(nfd, d->pid, 10000)) {
		close(nfd);
		warnx_("%s did not get ready; its log: %s", hmmud, d->log);
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
		return -EIO;
	}
	close(nfd);
	running = d;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	return 0;
}

int daemon_stop(struct private_daemon *d)
{
	int status = 0;

	if (d->pid <= 0)
		return 0;
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGHUP, SIG_DFL);
	running = NULL;
	kill(d->pid, SIGTERM);
	if (waitpid(d->pid, &status, 0) != d->pid)
		status = -1;
	d->pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		warnx_("hmmud did not stop cleanly (status %#x); its log: %s",
		       status, d->log);
		return -1;
	}
	remove_dir(d);
	return 0;
}
