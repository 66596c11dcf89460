/* SPDX-License-Identifier: MIT */
/*
 * A session is one client connection: who the peer is, the mirrors it
 * created, and the requests in flight on it.
 *
 * The loop thread accepts and watches the peer's pidfd. The socket is a
 * source of the receivers (lib/workers.h): the receiver that wakes reads one
 * message, decodes it, and runs it there if it is short (requests.c says
 * which), else queues it for the workers, which run it and send the reply
 * themselves (a SOCK_SEQPACKET send is atomic, so concurrent replies never
 * interleave). Neither ever runs on the loop thread, which services the
 * userfaultfds that requests may wait on.
 *
 * Lifetime: the loop holds a reference while it watches the pidfd, the
 * socket's receive token one (below), each request in flight one. When the
 * peer hangs up or its process exits, the session closes; the last
 * reference queues the teardown (release of every registered mirror) on a
 * worker, never on the loop thread, which must not wait for the registry
 * lock.
 */
#ifndef HMMUD_SESSION_H
#define HMMUD_SESSION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buffers.h"
#include "../common/proto.h"
#include "../lib/loop.h"
#include "../core/peer.h"
#include "../lib/workers.h"

struct daemon;
struct hmmu_mirror;

/* At most this many mirrors per connection: bounds what a client can pin. */
#define SESSION_MAX_MIRRORS 4096

struct session {
	struct daemon *d;
	int fd;
	struct peer peer;
	struct account *acct; /* its user's, with one connection counted */
	int refused;	      /* over a limit: answer -refused, then hang up */
	atomic_uint refs;

	/* Loop thread only. */
	struct loop_watch pidfd_watch;
	unsigned watches; /* 1 while the pidfd is on the ring */
	struct session *next, **pprev; /* d->sessions */

	/* Set once, on the loop thread; read by receivers and workers. */
	atomic_bool closing;

	/*
	 * The socket, as a source of the receivers. Its token (one holder:
	 * the epoll set, the receiver reading, or the request that brought
	 * the connection to its share) holds a reference to the session.
	 * recv_lock is held while reading a message: only the token's holder
	 * reads, but the holder changes threads, and the lock says so to the
	 * sanitizers. It protects hello_done. Leaf.
	 */
	struct recv_source recv;
	pthread_mutex_t recv_lock;
	bool hello_done;

	pthread_mutex_t lock; /* protects mirrors, nmirrors, next_id */
	struct hmmu_mirror *mirrors;
	unsigned nmirrors;
	uint64_t next_id;

	uint64_t serial; /* its name in the fd store, or 0 (restart.c) */

	struct session_buffers buffers; /* hmmu_buffer_create()'s (buffers.h) */

	struct work teardown;

	/*
	 * Its long requests, a class of the worker pool (fair turns with the
	 * other connections), and how many requests are queued or running,
	 * short ones included. At requests-per-connection the socket's token
	 * is parked: nobody reads it, the rest wait there, in the client's own
	 * socket buffer, and its sends block. The request that brings the
	 * count under the share re-arms it. Requests from submission queues
	 * count too, so token_parked says whether the token waits there.
	 */
	struct work_class requests;
	atomic_uint inflight;
	atomic_bool token_parked;
};

/*
 * Take a new connection (loop thread). On failure, logs why, then closes
 * @fd.
 */
int session_accept(struct daemon *d, int fd);

/* The one log line for a connection refused for want of fds. */
void log_out_of_fds(void);

/* Stop serving @s (loop thread): used at shutdown and on hang-up. */
void session_close(struct session *s);

/*
 * The same from any thread (the peer's address space is gone, say): the
 * loop closes the session soon; the caller keeps its own reference.
 */
void session_end(struct session *s);

void session_get(struct session *s);
void session_put(struct session *s);

/* A request of @s is done (any thread): reading may resume. */
void session_request_done(struct session *s);

/*
 * Send a reply; any thread. An error reply carries @reason if not NULL or
 * "" (cut to HMMU_REASON_MAX - 1 bytes): the caller passes none before the
 * handshake, when the client may not read them (docs/protocol.md §2).
 */
void session_reply(struct session *s, const struct hmmu_wire_hdr *req,
		   int status, const char *reason, const void *payload,
		   size_t len);
/*
 * A successful reply of @len bytes of @payload carrying @nfds fds (1 to 4),
 * which stay the caller's. 0, or -errno: then the client got nothing (a
 * client that does not read its replies is hung up on, and logged).
 */
int session_reply_fds(struct session *s, const struct hmmu_wire_hdr *req,
		      const void *payload, size_t len, const int *fds,
		      unsigned nfds);

/* Mirror table of the connection. */
struct hmmu_mirror *session_find_mirror(struct session *s, uint64_t id);
/* Add @m to the table; its new id in *@id. -ENOSPC if the table is full. */
int session_add_mirror(struct session *s, struct hmmu_mirror *m, uint64_t *id);
struct hmmu_mirror *session_take_mirror(struct session *s, uint64_t id);
/*
 * RESERVE_IDS: every mirror MIRROR_CREATE makes on @s from now on has an
 * id above @above (at most HMMU_RESERVE_IDS_MAX); a lower one changes
 * nothing.
 */
void session_reserve_ids(struct session *s, uint64_t above);
/*
 * Add @m under @id, which a MIRROR_RESTORE names (protocol.md §11): later
 * ids come after it. -EEXIST if taken, -ENOSPC if the table is full.
 */
int session_add_mirror_id(struct session *s, struct hmmu_mirror *m,
			  uint64_t id);

#endif
