/* SPDX-License-Identifier: MIT */
/*
 * A small pool of threads that run client requests. Requests may block (a
 * device reading client memory with process_vm_readv waits for the client's
 * userfaultfd to be serviced), so they never run on the event loop thread,
 * which is the one servicing userfaultfds.
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

#endif
