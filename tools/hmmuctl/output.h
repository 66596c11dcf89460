/* SPDX-License-Identifier: MIT */
/*
 * hmmuctl's outputs, each rendering a snapshot (snapshot.h): text tables
 * for a person (tables.c), JSON documents for scripts (documents.c), the
 * Prometheus text format (metrics.c), and the refreshing view (watch.c).
 * They write to a stdio stream; main.c checks it for write errors.
 */
#ifndef HMMUCTL_OUTPUT_H
#define HMMUCTL_OUTPUT_H

#include <stdbool.h>
#include <stdio.h>

#include "json.h"
#include "snapshot.h"

/* tables.c: one per command, and the parts watch shows. */
void text_devices(FILE *f, const struct snapshot *s);
void text_processes(FILE *f, const struct snapshot *s);
void text_mirrors(FILE *f, const struct snapshot *s);
void text_stats(FILE *f, const struct snapshot *s);
void text_version(FILE *f, const struct snapshot *s);
/* At most @rows rows (at least 1), then a line saying how many more. */
void text_process_rows(FILE *f, const struct snapshot *s, unsigned rows);
void text_mirror_rows(FILE *f, const struct snapshot *s, unsigned rows);
/* @name (at most @max bytes) fit for a terminal: control bytes as '?'. */
const char *text_name(char out[64], const char *name, size_t max);
/* "512 B", "12.0 KiB", "256.0 MiB"... */
const char *text_bytes(char out[32], uint64_t bytes);

/* documents.c: one JSON document per command, and the parts watch sends. */
void json_devices(struct json *j, const struct snapshot *s);
void json_processes(struct json *j, const struct snapshot *s);
void json_mirrors(struct json *j, const struct snapshot *s);
void json_stats(struct json *j, const struct snapshot *s);
void json_version(struct json *j, const struct snapshot *s);
/* Members of an open object. */
void json_device_members(struct json *j, const struct hmmu_device_info *d);
void json_stats_members(struct json *j, const struct snapshot *s);
/* Values: arrays of objects. */
void json_process_array(struct json *j, const struct snapshot *s);
void json_mirror_array(struct json *j, const struct snapshot *s);

/* metrics.c: the whole exposition; @s holds every part. */
void metrics_write(FILE *f, const struct snapshot *s);

/* watch.c */
struct watch_options {
	double interval_s;
	unsigned long count; /* frames; 0: until SIGINT or SIGTERM */
	bool json;	     /* one JSON document per frame, one per line */
	const char *socket;  /* as given, for the header; NULL: the default */
};

/* Returns the exit status; prints its own error line. */
int watch_run(struct hmmu *h, const struct watch_options *o);

/*
 * main.c: the error line of a failed call to hmmud, "hmmuctl: WHAT:
 * strerror: hmmu_error_detail()"; returns the exit status, 1.
 */
int fail(const char *what, int err);
/* Flush stdout: 0, or 1 after an error line if writing failed. */
int output_flush(void);

#endif
