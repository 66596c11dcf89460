/* SPDX-License-Identifier: MIT */
/* The daemon's parts, wired together by main.c. */
#ifndef HMMUD_DAEMON_H
#define HMMUD_DAEMON_H

#include "loop.h"
#include "registry.h"

struct device;
struct session;
struct workers;

struct daemon {
	struct loop *loop;
	struct workers *workers;
	struct registry registry;
	struct device **devices; /* fixed once the loop runs */
	unsigned ndevices;
	struct loop_watch listen_watch;
	struct loop_watch signal_watch;
	struct session *sessions; /* open connections; loop thread only */
};

#endif
