/* SPDX-License-Identifier: MIT */
/* The handlers of client requests, run on workers. */
#ifndef HMMUD_REQUESTS_H
#define HMMUD_REQUESTS_H

#include <stddef.h>

#include "../common/proto.h"

struct session;

/*
 * Queue a checked request for a worker. Takes @fd (-1 if none) on success.
 * Loop thread. Returns 0 or -ENOMEM.
 */
int request_dispatch(struct session *s, const struct hmmu_wire_hdr *h,
		     size_t len, int fd);

/*
 * The end of a queued request: its status and its reply payload (none, or
 * the op's result), on the worker that ran it.
 */
typedef void (*request_done_fn)(void *arg, int status, const void *payload,
				size_t len);

/*
 * Queue a checked DEVICE_CMD or JOB message that came from a submission
 * ring (queue.c) for a worker: it runs exactly as one from the socket (the
 * same handler, checks, deadline, cancellation and turn), counts in the
 * connection's requests in flight, and its reply goes to @done instead of
 * the socket. Any thread. Returns 0, -EOPNOTSUPP or -ENOMEM.
 */
int request_dispatch_queued(struct session *s, const struct hmmu_wire_hdr *h,
			    size_t len, request_done_fn done, void *arg);

#endif
