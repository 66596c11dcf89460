/* SPDX-License-Identifier: MIT */
/* Latency samples and their percentiles (nearest rank, from sorted samples). */
#ifndef HMMU_BENCH_STATS_H
#define HMMU_BENCH_STATS_H

#include <stddef.h>
#include <stdint.h>

struct samples {
	uint64_t *v; /* ns */
	size_t n, cap;
	int sorted;
};

struct summary {
	uint64_t count, min, p50, p90, p99, p999, max;
};

/* 0 or -ENOMEM. Adding past @cap grows the array. */
int samples_init(struct samples *s, size_t cap);
int samples_add(struct samples *s, uint64_t ns);
void samples_free(struct samples *s);
void samples_sort(struct samples *s);

/* The q-quantile (0 < q <= 1) by nearest rank; @s sorted and not empty. */
uint64_t samples_quantile(const struct samples *s, double q);

/* Sorts @s, then fills @out; all zero if @s is empty. */
void samples_summarize(struct samples *s, struct summary *out);

/*
 * @out = fa * a + fb * b, quantile by quantile (@b may be NULL): the
 * distribution whose every percentile is the sum of theirs. With equal
 * counts that is the element-wise sum of the sorted arrays, so the
 * percentiles of @out are exactly those sums.
 */
int samples_quantile_sum(struct samples *a, double fa, struct samples *b,
			 double fb, struct samples *out);

#endif
