/* SPDX-License-Identifier: MIT */
/*
 * Waiting for hmmud's READY=1, as systemd would: for whoever starts a
 * private daemon (the test harness, the benchmark). The daemon sends it on
 * $NOTIFY_SOCKET once it listens.
 */
#ifndef HMMU_NOTIFY_WAIT_H
#define HMMU_NOTIFY_WAIT_H

#include <sys/types.h>

/* A datagram socket bound at @path, to pass as NOTIFY_SOCKET. -errno. */
int hmmu_notify_listen(const char *path);

/*
 * 1 once READY=1 arrives on @fd, 0 if process @pid exits first or
 * @timeout_ms passes. An exited @pid is left for the caller to reap.
 */
int hmmu_notify_wait_ready(int fd, pid_t pid, int timeout_ms);

#endif
