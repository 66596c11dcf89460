/* SPDX-License-Identifier: MIT */
/*
 * A small streaming JSON writer (RFC 8259) for hmmuctl --json. Values go
 * straight to the stream as they come; the writer keeps only where commas
 * and line breaks go. Strings are escaped (quote, backslash, every control
 * character) and made valid UTF-8; a number that is not finite is written
 * as null, which JSON has instead.
 *
 * Inside an object, every value follows json_key(). Nesting deeper than
 * JSON_MAX_DEPTH, or a value where a key belongs, is a bug of the caller:
 * the writer aborts.
 */
#ifndef HMMUCTL_JSON_H
#define HMMUCTL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 8

struct json {
	FILE *f;
	unsigned indent; /* spaces per level; 0: the document on one line */
	unsigned depth;
	/* Per open level: whether it is an object, and whether it is empty. */
	bool object[JSON_MAX_DEPTH + 1];
	bool empty[JSON_MAX_DEPTH + 1];
	bool after_key; /* a key was written: its value comes next */
};

void json_init(struct json *j, FILE *f, unsigned indent);
/* Ends the document with a line break; every level must be closed. */
void json_finish(struct json *j);

void json_begin_object(struct json *j);
void json_end_object(struct json *j);
void json_begin_array(struct json *j);
void json_end_array(struct json *j);
void json_key(struct json *j, const char *key);

/* A string of at most @max bytes (it may end earlier, at a NUL). */
void json_string(struct json *j, const char *s, size_t max);
void json_uint(struct json *j, uint64_t v);
void json_int(struct json *j, int64_t v);
/* With @decimals digits after the point; NaN and infinities as null. */
void json_double(struct json *j, double v, int decimals);
void json_null(struct json *j);

/* A key and its value, inside an object. */
static inline void json_member_uint(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	json_uint(j, v);
}

static inline void json_member_int(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	json_int(j, v);
}

static inline void json_member_string(struct json *j, const char *key,
				      const char *s, size_t max)
{
	json_key(j, key);
	json_string(j, s, max);
}

#endif
