/* SPDX-License-Identifier: MIT */
#include "loop.h"
#include "log.h"

#include <errno.h>
#include <liburing.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct deferred {
	void (*fn)(void *arg);
	void *arg;
	struct deferred *next;
};

struct loop {
	struct io_uring ring;
	struct loop_watch wake; /* eventfd: deferred work is queued */
	pthread_t thread;
	bool running;	       /* loop thread only */
	bool stop;	       /* under lock */
	bool stopped;	       /* under lock: loop_run() has returned */
	pthread_mutex_t lock;  /* protects deferred, stop, stopped, watches */
	struct deferred *deferred, **deferred_tail;
	struct loop_watch *watches;
};

/*
 * user_data of a poll is its watch; that of a poll removal is the watch
 * with the low bit set (watches are at least 8-byte aligned).
 */
#define UD_REMOVAL 1ul

static struct io_uring_sqe *get_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);

	if (!sqe) {
		/* Ring full: push what is queued to the kernel, then retry. */
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

static int arm(struct loop *l, struct loop_watch *w)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	if (!sqe)
		return -EBUSY;
	io_uring_prep_poll_multishot(sqe, w->fd, POLLIN);
	io_uring_sqe_set_data(sqe, w);
	w->armed = true;
	return 0;
}

/* The watch is off the ring for good: unlink it, tell its owner. */
static void finish(struct loop *l, struct loop_watch *w)
{
	pthread_mutex_lock(&l->lock);
	*w->pprev = w->next;
	if (w->next)
		w->next->pprev = w->pprev;
	pthread_mutex_unlock(&l->lock);
	w->gone(w);
}

int loop_watch_add(struct loop *l, struct loop_watch *w)
{
	int err;

	w->armed = false;
	w->removing = false;
	err = arm(l, w);
	if (err)
		return err;
	pthread_mutex_lock(&l->lock);
	w->next = l->watches;
	if (w->next)
		w->next->pprev = &w->next;
	w->pprev = &l->watches;
	l->watches = w;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static void submit_removal(struct loop *l, struct loop_watch *w)
{
	struct io_uring_sqe *sqe = get_sqe(l);

	if (!sqe) {
		/* Cannot happen after a submit; the final CQE still comes. */
		log_err("io_uring: no SQE to cancel a poll on fd %d", w->fd);
		return;
	}
	io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)w);
	io_uring_sqe_set_data64(sqe, (__u64)(uintptr_t)w | UD_REMOVAL);
}

void loop_watch_remove(struct loop *l, struct loop_watch *w)
{
	bool stopped;

	if (w->removing)
		return;
	w->removing = true;
	pthread_mutex_lock(&l->lock);
	stopped = l->stopped;
	pthread_mutex_unlock(&l->lock);
	/* No loop will reap the cancellation once it has stopped. */
	if (!w->armed || stopped) {
		w->armed = false;
		finish(l, w);
		return;
	}
	submit_removal(l, w);
}

static void run_deferred(struct loop *l)
{
	struct deferred *d;

	pthread_mutex_lock(&l->lock);
	d = l->deferred;
	l->deferred = NULL;
	l->deferred_tail = &l->deferred;
	pthread_mutex_unlock(&l->lock);

	while (d) {
		struct deferred *next = d->next;

		d->fn(d->arg);
		free(d);
		d = next;
	}
}

static void wake_ready(struct loop_watch *w, unsigned revents)
{
	struct loop *l = (struct loop *)((char *)w - offsetof(struct loop, wake));
	uint64_t n;

	(void)revents;
	while (read(w->fd, &n, sizeof(n)) == sizeof(n))
		;
	run_deferred(l);
}

static void wake_gone(struct loop_watch *w)
{
	(void)w;
}

int loop_create(struct loop **out)
{
	struct loop *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return -ENOMEM;
	err = io_uring_queue_init(256, &l->ring, 0);
	if (err < 0) {
		free(l);
		return err;
	}
	l->wake.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake.fd < 0) {
		err = -errno;
		io_uring_queue_exit(&l->ring);
		free(l);
		return err;
	}
	l->wake.ready = wake_ready;
	l->wake.gone = wake_gone;
	pthread_mutex_init(&l->lock, NULL);
	l->deferred_tail = &l->deferred;
	*out = l;
	return 0;
}

void loop_destroy(struct loop *l)
{
	if (!l)
		return;
	run_deferred(l);
	io_uring_queue_exit(&l->ring);
	close(l->wake.fd);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

static void kick(struct loop *l)
{
	uint64_t one = 1;

	/* Only fails if the counter would overflow: then a wake is pending. */
	(void)!write(l->wake.fd, &one, sizeof(one));
}

int loop_defer(struct loop *l, void (*fn)(void *arg), void *arg)
{
	struct deferred *d;
	bool now;

	pthread_mutex_lock(&l->lock);
	now = l->stopped;
	pthread_mutex_unlock(&l->lock);
	if (now) {
		fn(arg);
		return 0;
	}

	d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->fn = fn;
	d->arg = arg;
	d->next = NULL;
	pthread_mutex_lock(&l->lock);
	*l->deferred_tail = d;
	l->deferred_tail = &d->next;
	pthread_mutex_unlock(&l->lock);
	kick(l);
	return 0;
}

struct call {
	void (*fn)(void *arg);
	void *arg;
	pthread_mutex_t lock;
	pthread_cond_t done_cond;
	bool done;
};

static void call_on_loop(void *arg)
{
	struct call *c = arg;

	c->fn(c->arg);
	pthread_mutex_lock(&c->lock);
	c->done = true;
	pthread_cond_signal(&c->done_cond);
	pthread_mutex_unlock(&c->lock);
}

int loop_call(struct loop *l, void (*fn)(void *arg), void *arg)
{
	struct call c = { .fn = fn, .arg = arg };
	int err;

	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.done_cond, NULL);
	err = loop_defer(l, call_on_loop, &c);
	if (!err) {
		pthread_mutex_lock(&c.lock);
		while (!c.done)
			pthread_cond_wait(&c.done_cond, &c.lock);
		pthread_mutex_unlock(&c.lock);
	}
	pthread_cond_destroy(&c.done_cond);
	pthread_mutex_destroy(&c.lock);
	return err;
}

void loop_stop(struct loop *l)
{
	pthread_mutex_lock(&l->lock);
	l->stop = true;
	pthread_mutex_unlock(&l->lock);
	kick(l);
}

bool loop_is_current(struct loop *l)
{
	return l->running && pthread_equal(l->thread, pthread_self());
}

static bool should_stop(struct loop *l)
{
	bool stop;

	pthread_mutex_lock(&l->lock);
	stop = l->stop;
	pthread_mutex_unlock(&l->lock);
	return stop;
}

static void handle_cqe(struct loop *l, struct io_uring_cqe *cqe)
{
	struct loop_watch *w = io_uring_cqe_get_data(cqe);

	if ((uintptr_t)w & UD_REMOVAL) {
		w = (struct loop_watch *)((uintptr_t)w & ~UD_REMOVAL);
		/*
		 * -EALREADY: the multishot poll was busy posting a completion
		 * and goes on; ask again, or it never ends. -ENOENT: it ended
		 * already, and its last CQE comes anyway.
		 */
		if (cqe->res == -EALREADY && w->armed)
			submit_removal(l, w);
		else if (cqe->res < 0 && cqe->res != -ENOENT &&
			 cqe->res != -EALREADY)
			log_err("io_uring: removing the poll on fd %d: %s",
				w->fd, strerror(-cqe->res));
		return;
	}

	/*
	 * w stays armed while ready() runs, so that a loop_watch_remove() from
	 * inside ready() never frees w under our feet: gone() comes only once
	 * the poll has ended for good, below or with a later CQE.
	 */
	if (cqe->res > 0 && !w->removing)
		w->ready(w, (unsigned)cqe->res);
	else if (cqe->res < 0 && cqe->res != -ECANCELED && !w->removing)
		log_warn("poll on fd %d failed: %s", w->fd, strerror(-cqe->res));

	if (cqe->flags & IORING_CQE_F_MORE)
		return;
	w->armed = false;
	if (w->removing) {
		finish(l, w);
		return;
	}
	/*
	 * A multishot poll can end on its own (overflow, or an error): arm it
	 * again. ready() may have removed the watch; then it is gone above.
	 */
	if (arm(l, w) < 0)
		log_err("cannot re-arm the poll on fd %d", w->fd);
}

void loop_finish(struct loop *l)
{
	for (;;) {
		struct loop_watch *w;

		pthread_mutex_lock(&l->lock);
		for (w = l->watches; w; w = w->next)
			if (w->removing)
				break;
		pthread_mutex_unlock(&l->lock);
		if (!w)
			return;
		w->armed = false;
		finish(l, w);
	}
}

int loop_run(struct loop *l)
{
	int err;

	l->thread = pthread_self();
	l->running = true;
	err = loop_watch_add(l, &l->wake);
	run_deferred(l);

	while (!err && !should_stop(l)) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;

		err = io_uring_submit_and_wait(&l->ring, 1);
		if (err == -EINTR) {
			err = 0;
			continue;
		}
		if (err < 0)
			break;
		err = 0;
		io_uring_for_each_cqe(&l->ring, head, cqe)
		{
			handle_cqe(l, cqe);
			n++;
		}
		io_uring_cq_advance(&l->ring, n);
	}

	l->running = false;
	pthread_mutex_lock(&l->lock);
	l->stopped = true;
	pthread_mutex_unlock(&l->lock);
	run_deferred(l);
	return err;
}
