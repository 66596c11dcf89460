/* SPDX-License-Identifier: MIT */
/* The handlers of client requests, run on receivers and workers. */
#ifndef HMMUD_REQUESTS_H
#define HMMUD_REQUESTS_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/proto.h"

struct session;

/*
 * Whether a checked request is short: it runs on the receiver that read it
 * (request_run_now()), else on a worker (request_queue()). Short means
 * bounded by a few pages of work and never waiting on anything a client
 * controls (docs/design.md, "The request path"); an op not known here is
 * long.
 */
bool request_is_short(const struct hmmu_wire_hdr *h);

/*
 * The caller counted the request in @s's inflight and took a session
 * reference for it; both end when it is done. @fd (-1 if none) is taken.
 */
void request_run_now(struct session *s, const struct hmmu_wire_hdr *h,
		     size_t len, int fd);
/* The same, queued for a worker. 0, or -ENOMEM and nothing taken. */
int request_queue(struct session *s, const struct hmmu_wire_hdr *h,
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
