/* SPDX-License-Identifier: MIT */
/* What a run shows: the table, the short summary, JSON and the plot. */
#ifndef HMMU_BENCH_REPORT_H
#define HMMU_BENCH_REPORT_H

#include "bench.h"

#include <stdio.h>

struct scaling;

struct report {
	const struct config *cfg;
	const char *daemon;  /* "private hmmud (4 workers)", "hmmud at PATH" */
	size_t page;
	long cpus;
	char kernel[65];
	struct result *classes; /* NCLASSES; NULL: no class ran (--clients) */
	struct result *floors;	/* NFLOORS; NULL with classes */
	const struct scaling *scaling; /* --clients; NULL: not run */
};

/* 1 met, 0 missed, -1 no target or nothing measured. */
int target_met(const struct report *rp, enum class_id id);

void report_table(FILE *f, const struct report *rp);
void report_summary(FILE *f, const struct report *rp);
/* The --clients table: faults per second by worker count. */
void report_scaling(FILE *f, const struct report *rp);
/* 0, or -errno (a message was printed). */
int report_json(const char *path, const struct report *rp);
/*
 * A PNG of the latency distributions, with gnuplot. 0 if written, 1 if
 * gnuplot is missing (a message says so), -1 on failure.
 */
int report_plot(const char *path, const struct report *rp);

#endif
