/* SPDX-License-Identifier: MIT */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

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
