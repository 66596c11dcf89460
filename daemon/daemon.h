/* SPDX-License-Identifier: MIT */
/* The daemon's parts, wired together by main.c. */
#ifndef HMMUD_DAEMON_H
#define HMMUD_DAEMON_H

#include <stdatomic.h>

#include "../lib/loop.h"
#include "registry.h"

struct hmmu_device;
struct receivers;
struct session;
struct workers;

struct daemon {
	struct loop *loop;
	struct workers *workers;	/* long requests, teardowns */
	struct receivers *receivers;	/* the client sockets; short requests */
	struct registry registry;
	struct hmmu_device **devices; /* fixed once the loop runs */
	unsigned ndevices;
	struct loop_watch listen_watch;
	struct loop_watch signal_watch;
	struct session *sessions; /* open connections; loop thread only */
	int reserve_fd;		  /* kept for refusing a connection at EMFILE */
	/*
	 * Set on SIGTERM: every connection is being closed, and the loop
	 * stops once the last one is torn down, not before, so that the
	 * teardowns still have the loop to service the userfaultfds.
	 */
	atomic_bool stopping;
	/*
	 * Set once loop_run() has returned: from then on main() closes the
	 * sessions that are left, on its thread, and nobody else may.
	 */
	atomic_bool loop_done;
};

/* A connection's teardown is complete (any thread). */
void daemon_session_gone(struct daemon *d);

#endif
