/* SPDX-License-Identifier: MIT */
#include "workers.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct workers {
	pthread_mutex_t lock; /* protects head, tail, stopping */
	pthread_cond_t cond;
	struct work *head, *tail;
	bool stopping;
	void (*on_start)(void *arg);
	void *arg;
	unsigned nthreads;
	pthread_t threads[];
};

static void *worker_main(void *arg)
{
	struct workers *ws = arg;

	if (ws->on_start)
		ws->on_start(ws->arg);
	for (;;) {
		struct work *w;

		pthread_mutex_lock(&ws->lock);
		while (!ws->head && !ws->stopping)
			pthread_cond_wait(&ws->cond, &ws->lock);
		w = ws->head;
		if (!w) {
			pthread_mutex_unlock(&ws->lock);
			return NULL;
		}
		ws->head = w->next;
		if (!ws->head)
			ws->tail = NULL;
		pthread_mutex_unlock(&ws->lock);
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
