/* SPDX-License-Identifier: MIT */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct workers {
	pthread_mutex_t lock; /* protects the queues, the round, stopping */
	pthread_cond_t cond;
	struct work *head, *tail;
	struct work_class *round, *round_tail; /* classes with work waiting */
	bool stopping;
	void (*on_start)(void *arg);
	void *arg;
	unsigned nthreads;
	pthread_t threads[];
};

/* ws->lock held: the next work, plain first, then the next class's turn. */
static struct work *take(struct workers *ws)
{
	struct work_class *c = ws->round;
	struct work *w = ws->head;

	if (w) {
		ws->head = w->next;
		if (!ws->head)
			ws->tail = NULL;
		return w;
	}
	if (!c)
		return NULL;
	w = c->head;
	c->head = w->next;
	if (!c->head)
		c->tail = NULL;
	/* Its turn is over: to the back of the round, or out of it. */
	ws->round = c->next;
	if (!ws->round)
		ws->round_tail = NULL;
	c->next = NULL;
	c->queued = c->head != NULL;
	if (c->queued) {
		if (ws->round_tail)
			ws->round_tail->next = c;
		else
			ws->round = c;
		ws->round_tail = c;
	}
	return w;
}

static void *worker_main(void *arg)
{
	struct workers *ws = arg;

	if (ws->on_start)
		ws->on_start(ws->arg);
	for (;;) {
		struct work *w;

		pthread_mutex_lock(&ws->lock);
		while (!(w = take(ws)) && !ws->stopping)
			pthread_cond_wait(&ws->cond, &ws->lock);
		pthread_mutex_unlock(&ws->lock);
		if (!w)
			return NULL;
		w->fn(w);
	}
}

int workers_start(unsigned nthreads, void (*on_start)(void *arg), void *arg,
		  struct workers **out)
{
	struct workers *ws;
	int err;

	if (nthreads == 0)
		return -EINVAL;
	ws = calloc(1, sizeof(*ws) + nthreads * sizeof(pthread_t));
	if (!ws)
		return -ENOMEM;
	pthread_mutex_init(&ws->lock, NULL);
	pthread_cond_init(&ws->cond, NULL);
	ws->on_start = on_start;
	ws->arg = arg;
	for (unsigned i = 0; i < nthreads; i++) {
		err = pthread_create(&ws->threads[i], NULL, worker_main, ws);
		if (err) {
			ws->nthreads = i;
			workers_stop(ws);
			return -err;
		}
	}
	ws->nthreads = nthreads;
	*out = ws;
	return 0;
}

void workers_queue(struct workers *ws, struct work *w)
{
	w->next = NULL;
	pthread_mutex_lock(&ws->lock);
	if (ws->tail)
		ws->tail->next = w;
	else
		ws->head = w;
	ws->tail = w;
	pthread_cond_signal(&ws->cond);
	pthread_mutex_unlock(&ws->lock);
}

void workers_queue_fair(struct workers *ws, struct work_class *c,
			struct work *w)
{
	w->next = NULL;
	pthread_mutex_lock(&ws->lock);
	if (c->tail)
		c->tail->next = w;
	else
		c->head = w;
	c->tail = w;
	if (!c->queued) {
		c->queued = true;
		c->next = NULL;
		if (ws->round_tail)
			ws->round_tail->next = c;
		else
			ws->round = c;
		ws->round_tail = c;
	}
	pthread_cond_signal(&ws->cond);
	pthread_mutex_unlock(&ws->lock);
}

void workers_stop(struct workers *ws)
{
	pthread_mutex_lock(&ws->lock);
	ws->stopping = true;
	pthread_cond_broadcast(&ws->cond);
	pthread_mutex_unlock(&ws->lock);
	for (unsigned i = 0; i < ws->nthreads; i++)
		pthread_join(ws->threads[i], NULL);
	pthread_cond_destroy(&ws->cond);
	pthread_mutex_destroy(&ws->lock);
	free(ws);
}

/* ---- receivers ------------------------------------------------------------ */

struct receivers {
	int epfd;
	/*
	 * Written once, by receivers_stop(), never read: level-triggered, so
	 * it wakes every receiver, each in its turn, and each then exits.
	 */
	int stop_fd;
	pthread_mutex_t lock; /* protects nsources; leaf */
	pthread_cond_t cond;  /* nsources reached 0 */
	unsigned nsources;
	void (*on_start)(void *arg);
	void *arg;
	unsigned nthreads;
	pthread_t threads[];
};

/* EPOLLHUP and EPOLLERR come whether asked or not. */
#define SOURCE_EVENTS (EPOLLIN | EPOLLONESHOT)

static void *receiver_main(void *arg)
{
	struct receivers *rs = arg;

	if (rs->on_start)
		rs->on_start(rs->arg);
	for (;;) {
		struct epoll_event ev;
		struct recv_source *src;
		/*
		 * One event a wait: another source that is ready goes to
		 * another receiver, not behind what this one will run.
		 */
		int n = epoll_wait(rs->epfd, &ev, 1, -1);

		if (n <= 0)
			continue; /* EINTR; nothing else can fail here */
		src = ev.data.ptr;
		if (!src)
			return NULL; /* stop_fd */
		src->ready(src, ev.events);
	}
}

int receivers_start(unsigned nthreads, void (*on_start)(void *arg), void *arg,
		    struct receivers **out)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	struct receivers *rs;
	int err;

	if (nthreads == 0)
		return -EINVAL;
	rs = calloc(1, sizeof(*rs) + nthreads * sizeof(pthread_t));
	if (!rs)
		return -ENOMEM;
	rs->epfd = epoll_create1(EPOLL_CLOEXEC);
	rs->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (rs->epfd < 0 || rs->stop_fd < 0 ||
	    epoll_ctl(rs->epfd, EPOLL_CTL_ADD, rs->stop_fd, &ev) < 0) {
		err = -errno;
		if (rs->epfd >= 0)
			close(rs->epfd);
		if (rs->stop_fd >= 0)
			close(rs->stop_fd);
		free(rs);
		return err;
	}
	pthread_mutex_init(&rs->lock, NULL);
	pthread_cond_init(&rs->cond, NULL);
	rs->on_start = on_start;
	rs->arg = arg;
	for (unsigned i = 0; i < nthreads; i++) {
		err = pthread_create(&rs->threads[i], NULL, receiver_main, rs);
		if (err) {
			rs->nthreads = i;
			receivers_stop(rs);
			return -err;
		}
	}
	rs->nthreads = nthreads;
	*out = rs;
	return 0;
}

int receivers_add(struct receivers *rs, struct recv_source *src)
{
	struct epoll_event ev = { .events = SOURCE_EVENTS, .data.ptr = src };

	/* Counted first: an event may come, and its holder end src, at once. */
	pthread_mutex_lock(&rs->lock);
	rs->nsources++;
	pthread_mutex_unlock(&rs->lock);
	if (epoll_ctl(rs->epfd, EPOLL_CTL_ADD, src->fd, &ev) == 0)
		return 0;
	ev.events = (uint32_t)-errno; /* kept across the unlock */
	pthread_mutex_lock(&rs->lock);
	if (--rs->nsources == 0)
		pthread_cond_broadcast(&rs->cond);
	pthread_mutex_unlock(&rs->lock);
	return (int)ev.events;
}

int receivers_arm(struct receivers *rs, struct recv_source *src)
{
	struct epoll_event ev = { .events = SOURCE_EVENTS, .data.ptr = src };

#if defined(__SANITIZE_THREAD__)
	/*
	 * ThreadSanitizer takes EPOLL_CTL_ADD, not EPOLL_CTL_MOD, for a
	 * release that the next epoll_wait() acquires: under it, re-arm by
	 * deleting and adding, so that it sees the one-shot source pass from
	 * this receiver to the next (a MOD would look like a race on all the
	 * session holds).
	 */
	(void)epoll_ctl(rs->epfd, EPOLL_CTL_DEL, src->fd, NULL);
	return epoll_ctl(rs->epfd, EPOLL_CTL_ADD, src->fd, &ev) < 0 ? -errno : 0;
#else
	return epoll_ctl(rs->epfd, EPOLL_CTL_MOD, src->fd, &ev) < 0 ? -errno : 0;
#endif
}

void receivers_remove(struct receivers *rs, struct recv_source *src)
{
	/* The fd stays open (its owner closes it): take it out ourselves. */
	(void)epoll_ctl(rs->epfd, EPOLL_CTL_DEL, src->fd, NULL);
	pthread_mutex_lock(&rs->lock);
	if (--rs->nsources == 0)
		pthread_cond_broadcast(&rs->cond);
	pthread_mutex_unlock(&rs->lock);
}

void receivers_stop(struct receivers *rs)
{
	uint64_t one = 1;

	pthread_mutex_lock(&rs->lock);
	while (rs->nsources && rs->nthreads)
		pthread_cond_wait(&rs->cond, &rs->lock);
	pthread_mutex_unlock(&rs->lock);
	(void)!write(rs->stop_fd, &one, sizeof(one));
	for (unsigned i = 0; i < rs->nthreads; i++)
		pthread_join(rs->threads[i], NULL);
	close(rs->stop_fd);
	close(rs->epfd);
	pthread_cond_destroy(&rs->cond);
	pthread_mutex_destroy(&rs->lock);
	free(rs);
}
