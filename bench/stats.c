/* SPDX-License-Identifier: MIT */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int samples_init(struct samples *s, size_t cap)
{
	memset(s, 0, sizeof(*s));
	if (cap == 0)
		cap = 16;
	s->v = malloc(cap * sizeof(*s->v));
	if (!s->v)
		return -ENOMEM;
	s->cap = cap;
	return 0;
}

int samples_add(struct samples *s, uint64_t ns)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = ns;
	s->sorted = 0;
	return 0;
}

void samples_free(struct samples *s)
{
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void samples_sort(struct samples *s)
{
	if (!s->sorted && s->n)
		qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	s->sorted = 1;
}

uint64_t samples_quantile(const struct samples *s, double q)
{
	/* Nearest rank: the smallest sample with at least q of them <= it. */
	double rank = ceil(q * (double)s->n - 1e-9);
	size_t i = rank < 1 ? 0 : (size_t)rank - 1;

	return s->v[i < s->n ? i : s->n - 1];
}

void samples_summarize(struct samples *s, struct summary *out)
{
	memset(out, 0, sizeof(*out));
	if (!s->n)
		return;
	samples_sort(s);
	out->count = s->n;
	out->min = s->v[0];
	out->p50 = samples_quantile(s, 0.5);
	out->p90 = samples_quantile(s, 0.9);
	out->p99 = samples_quantile(s, 0.99);
	out->p999 = samples_quantile(s, 0.999);
	out->max = s->v[s->n - 1];
}

int samples_quantile_sum(struct samples *a, double fa, struct samples *b,
			 double fb, struct samples *out)
{
	size_t n = a->n;
	int err;

	if (b && b->n > n)
		n = b->n;
	err = samples_init(out, n);
	if (err)
		return err;
	if (!a->n || (b && !b->n))
		return 0;
	samples_sort(a);
	if (b)
		samples_sort(b);
	for (size_t i = 0; i < n; i++) {
		double q = (double)(i + 1) / (double)n;
		double v = fa * (double)samples_quantile(a, q);

		if (b)
			v += fb * (double)samples_quantile(b, q);
		samples_add(out, (uint64_t)(v + 0.5));
	}
	out->sorted = 1;
	return 0;
}
