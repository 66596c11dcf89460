/* SPDX-License-Identifier: MIT */
/*
 * Thread pools that run client requests. Requests may block (a device
 * command waits for the loop thread to read a userfaultfd event before its
 * write-protect can succeed), so they never run on the event loop thread,
 * which is the one servicing userfaultfds. Workers run queued work, taking
 * turns between classes; receivers (below) wait on sockets and run what
 * they receive themselves.
 */
#ifndef HMMUD_WORKERS_H
#define HMMUD_WORKERS_H

#include <stdbool.h>

struct workers;

struct work {
	void (*fn)(struct work *w);
	struct work *next;
};

/*
 * A class of work that takes turns with the others: each connection's
 * requests are one class, run in the order they came, and the classes with
 * work waiting are served round-robin, one item each. So a client that
 * queues thousands of requests delays another's by one request per worker,
 * not by its whole backlog. Belongs to the caller; must be empty and idle
 * before it is freed.
 */
struct work_class {
	struct work *head, *tail;
	struct work_class *next; /* in the round */
	bool queued;		 /* in the round now */
};

/* @on_start (may be NULL) runs first in each thread, with @arg. */
int workers_start(unsigned nthreads, void (*on_start)(void *arg), void *arg,
		  struct workers **out);
/* Queue @w; fn runs on some worker thread, before any class's work. */
void workers_queue(struct workers *ws, struct work *w);
/* Queue @w in @c, which takes its turn with the other classes. */
void workers_queue_fair(struct workers *ws, struct work_class *c,
			struct work *w);
/* Run everything queued, then join and free the threads. */
void workers_stop(struct workers *ws);

/*
 * Receivers: threads that wait on many fds at once (an epoll set) and run
 * what is ready themselves, on the thread that woke, with no hand-off.
 * The daemon's client sockets are sources; a receiver reads a request and
 * runs it when it is short (daemon/session.c).
 *
 * Each source is one-shot: its event goes to exactly one receiver, which
 * then holds the source's token, and no other thread hears of the fd until
 * the holder hands the token back (receivers_arm()) or ends the source
 * (receivers_remove()). The holder may pass the token to any thread first
 * (a request that completes later re-arms it); the rule is one holder.
 * Ready sources are served in the order they became ready, each once per
 * turn: a source with a backlog goes to the back when re-armed.
 */
struct receivers;

struct recv_source {
	int fd;
	/* On a receiver, with the token: @events as epoll_wait's. */
	void (*ready)(struct recv_source *src, unsigned events);
};

/* @on_start (may be NULL) runs first in each thread, with @arg. */
int receivers_start(unsigned nthreads, void (*on_start)(void *arg), void *arg,
		    struct receivers **out);
/* Add @src, armed: its token is the epoll set's. Any thread. 0 or -errno. */
int receivers_add(struct receivers *rs, struct recv_source *src);
/* The token's holder gives it back: @src is watched again. 0 or -errno. */
int receivers_arm(struct receivers *rs, struct recv_source *src);
/* The token's holder ends @src: no receiver will see it again. */
void receivers_remove(struct receivers *rs, struct recv_source *src);
/*
 * Wait until every source was removed (their holders, or the requests
 * that hold their tokens, end them), then join and free the threads.
 */
void receivers_stop(struct receivers *rs);

#endif
