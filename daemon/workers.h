/* SPDX-License-Identifier: MIT */
/*
 * A small pool of threads that run client requests. Requests may block (a
 * device reading client memory with process_vm_readv waits for the client's
 * userfaultfd to be serviced), so they never run on the event loop thread,
 * which is the one servicing userfaultfds.
 */
#ifndef HMMUD_WORKERS_H
#define HMMUD_WORKERS_H

struct workers;

struct work {
	void (*fn)(struct work *w);
	struct work *next;
};

/* @on_start (may be NULL) runs first in each thread, with @arg. */
int workers_start(unsigned nthreads, void (*on_start)(void *arg), void *arg,
		  struct workers **out);
/* Queue @w; fn runs on some worker thread. Never fails. */
void workers_queue(struct workers *ws, struct work *w);
/* Run everything queued, then join and free the threads. */
void workers_stop(struct workers *ws);

#endif
