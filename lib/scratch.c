/* SPDX-License-Identifier: MIT */
#include "scratch.h"

#include <pthread.h>
#include <stdlib.h>

struct scratch {
	void *buf[SCRATCH_NR_];
	size_t cap[SCRATCH_NR_];
};

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void scratch_free(void *arg)
{
	struct scratch *s = arg;

	for (int i = 0; i < SCRATCH_NR_; i++)
		free(s->buf[i]);
	free(s);
}

static void make_key(void)
{
	pthread_key_create(&key, scratch_free);
}

void *scratch_get(enum scratch_slot slot, size_t size)
{
	struct scratch *s;

	pthread_once(&once, make_key);
	s = pthread_getspecific(key);
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s || pthread_setspecific(key, s)) {
			free(s);
			return NULL;
		}
	}
	if (s->cap[slot] < size) {
		void *b = malloc(size);

		if (!b)
			return NULL;
		free(s->buf[slot]);
		s->buf[slot] = b;
		s->cap[slot] = size;
	}
	return s->buf[slot];
}
