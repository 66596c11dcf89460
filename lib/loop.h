/* SPDX-License-Identifier: MIT */
/*
 * The event loop: one thread, one io_uring. Every fd the daemon waits on
 * (listening socket, client sockets, their pidfds, the processes'
 * userfaultfds, signals) is a watch with a multishot poll on the ring.
 *
 * Threading: the loop thread alone touches the ring. Watches are added and
 * removed on the loop thread; other threads ask for work on the loop thread
 * with loop_defer(). ready() and gone() run on the loop thread.
 */
#ifndef HMMUD_LOOP_H
#define HMMUD_LOOP_H

#include <stdbool.h>

struct loop;

struct loop_watch {
	int fd;
	/* The fd is readable (or hung up, or errored): revents as poll(2). */
	void (*ready)(struct loop_watch *w, unsigned revents);
	/* The watch is off the ring for good: the owner may free it now. */
	void (*gone)(struct loop_watch *w);
	bool armed;    /* a poll request for it is on the ring */
	bool removing; /* loop_watch_remove() was called */
	struct loop_watch *next, **pprev; /* the loop's list of watches */
};

int loop_create(struct loop **out);
void loop_destroy(struct loop *l);

/* Run until loop_stop(); returns 0 or -errno. */
int loop_run(struct loop *l);

/*
 * After loop_run() returned: end the watches whose removal was asked for
 * but whose cancellation the loop did not reap, calling their gone().
 */
void loop_finish(struct loop *l);
void loop_stop(struct loop *l); /* any thread */

/*
 * Loop thread only (or any thread once the loop has stopped). Handlers must
 * read their fd until EAGAIN.
 */
int loop_watch_add(struct loop *l, struct loop_watch *w);
void loop_watch_remove(struct loop *l, struct loop_watch *w);

/*
 * Run fn(arg) on the loop thread, soon. Any thread. Once the loop has
 * stopped, fn runs at once in the caller: shutdown needs no loop.
 */
int loop_defer(struct loop *l, void (*fn)(void *arg), void *arg);

/*
 * Run fn(arg) on the loop thread and wait until it has run. Not from the
 * loop thread. Once the loop has stopped, runs fn at once in the caller.
 */
int loop_call(struct loop *l, void (*fn)(void *arg), void *arg);

/* True on the loop thread while the loop runs. */
bool loop_is_current(struct loop *l);

#endif
