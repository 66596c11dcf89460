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

#endif
