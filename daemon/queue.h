/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous submission: a mirror's submission and completion rings in a
 * memfd shared with its client (docs/design.md, "Queues"; the layout and
 * the wake-up protocol are in docs/protocol.md §9).
 *
 * A small pool of servicer threads (--limit queue-threads) takes the
 * queues that have work: a servicer reads each submission once into its own
 * memory, checks it with the request decoder and hands it to the request
 * path (requests.c), which runs it on a worker exactly as a request from the
 * socket and posts its completion. A queue with nothing to do keeps its
 * servicer a little while (a short spin, then a futex wait on the ring's
 * tail with a timeout), then parks: its doorbell becomes an eventfd the
 * loop watches.
 */
#ifndef HMMUD_QUEUE_H
#define HMMUD_QUEUE_H

#include <stdint.h>

#include "../common/proto.h"

struct reply_reason;
struct session;

/*
 * A new queue of @s for mirror @mirror: its reply into @rep, its memfd and
 * eventfd (for the client; the caller sends and closes them) into @fds.
 * Worker. Errors: -ENOSPC (queues-per-connection), -ENOMEM, -EMFILE, the
 * errors of memfd_create/mmap; says why into @why.
 */
int queue_create(struct session *s, uint64_t mirror, uint32_t entries,
		 struct hmmu_wire_queue_reply *rep, int fds[2],
		 struct reply_reason *why);

/* QUEUE_DESTROY: -ENOENT if @s has no queue @id. Any thread. */
int queue_destroy(struct session *s, uint64_t id);

/*
 * RESERVE_IDS: every queue made from now on has an id above @above (at
 * most HMMU_RESERVE_IDS_MAX). The count is the daemon's, not the
 * connection's, so this raises it for every connection: harmless, since
 * ids only need to be unique, and a connection names its own queues only.
 * Any thread.
 */
void queue_reserve_ids(uint64_t above);

/* Mirror @mirror of @s is destroyed: so are its queues. Any thread. */
void queue_mirror_gone(struct session *s, uint64_t mirror);

/* @s is closing (loop thread): every queue of it stops. */
void queue_session_closed(struct session *s);

/* A request of @s finished: a queue held back by its share goes on. */
void queue_session_kick(struct session *s);

/* Join the servicers (at the daemon's stop, after the sessions closed). */
void queues_stop(void);

#endif
