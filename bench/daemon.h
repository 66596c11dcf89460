/* SPDX-License-Identifier: MIT */
/* A private hmmud for the run, as the end-to-end tests start theirs. */
#ifndef HMMU_BENCH_DAEMON_H
#define HMMU_BENCH_DAEMON_H

#include <sys/types.h>

struct private_daemon {
	pid_t pid;
	char dir[64];
	char socket[108];
	char log[128];
	char notify[108];
};

/*
 * Start @hmmud --foreground on a socket in a fresh directory and wait for
 * its READY=1 on $NOTIFY_SOCKET. @workers 0 keeps the daemon's default.
 * 0 or -errno (the log's path is printed on failure). Until daemon_stop(),
 * SIGINT, SIGTERM and SIGHUP stop the daemon and remove the directory
 * before the bench dies of them.
 */
int daemon_start(struct private_daemon *d, const char *hmmud,
		 unsigned workers);

/*
 * SIGTERM, wait; 0 if it stopped cleanly (the directory is then removed),
 * -1 if not (its log is kept and named).
 */
int daemon_stop(struct private_daemon *d);

#endif
