/* SPDX-License-Identifier: MIT */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

void json_init(struct json *j, FILE *f, unsigned indent)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	j->indent = indent;
	j->empty[0] = true;
}

static void misuse(const char *what)
{
	fprintf(stderr, "hmmuctl: bug: JSON writer: %s\n", what);
	abort();
}

static void line_break(struct json *j)
{
	if (!j->indent)
		return;
	fputc('\n', j->f);
	for (unsigned i = 0; i < j->depth * j->indent; i++)
		fputc(' ', j->f);
}

/* What comes before an array element or a key: a comma, a line break. */
static void next_item(struct json *j)
{
	if (!j->empty[j->depth])
		fputc(',', j->f);
	j->empty[j->depth] = false;
	line_break(j);
}

/* What comes before any value. */
static void before_value(struct json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->depth == 0) {
		if (!j->empty[0])
			misuse("a second document");
		j->empty[0] = false;
		return;
	}
	if (j->object[j->depth])
		misuse("a value without a key in an object");
	next_item(j);
}

static void begin(struct json *j, bool object)
{
	before_value(j);
	if (j->depth == JSON_MAX_DEPTH)
		misuse("nested too deep");
	fputc(object ? '{' : '[', j->f);
	j->depth++;
	j->object[j->depth] = object;
	j->empty[j->depth] = true;
}

static void end(struct json *j, bool object)
{
	if (j->depth == 0 || j->object[j->depth] != object || j->after_key)
		misuse("a close that matches no open");
	j->depth--;
	if (!j->empty[j->depth + 1])
		line_break(j);
	fputc(object ? '}' : ']', j->f);
}

void json_begin_object(struct json *j)
{
	begin(j, true);
}

void json_end_object(struct json *j)
{
	end(j, true);
}

void json_begin_array(struct json *j)
{
	begin(j, false);
}

void json_end_array(struct json *j)
{
	end(j, false);
}

static void put_string(struct json *j, const char *s, size_t max)
{
	size_t len = strnlen(s, max);

	fputc('"', j->f);
	for (size_t i = 0; i < len;) {
		unsigned char c = (unsigned char)s[i];
		size_t n;

		switch (c) {
		case '"':
			fputs("\\\"", j->f);
			break;
		case '\\':
			fputs("\\\\", j->f);
			break;
		case '\b':
			fputs("\\b", j->f);
			break;
		case '\f':
			fputs("\\f", j->f);
			break;
		case '\n':
			fputs("\\n", j->f);
			break;
		case '\r':
			fputs("\\r", j->f);
			break;
		case '\t':
			fputs("\\t", j->f);
			break;
		default:
			/* DEL is legal JSON, but no friend of a terminal. */
			if (c < 0x20 || c == 0x7f) {
				fprintf(j->f, "\\u%04x", c);
				break;
			}
			n = utf8_sequence(s + i, len - i);
			if (n == 0) {
				fputs("\\ufffd", j->f);
				n = 1;
			} else {
				fwrite(s + i, 1, n, j->f);
			}
			i += n;
			continue;
		}
		i++;
	}
	fputc('"', j->f);
}

void json_key(struct json *j, const char *key)
{
	if (j->depth == 0 || !j->object[j->depth] || j->after_key)
		misuse("a key outside an object");
	next_item(j);
	put_string(j, key, SIZE_MAX);
	fputs(j->indent ? ": " : ":", j->f);
	j->after_key = true;
}

void json_string(struct json *j, const char *s, size_t max)
{
	before_value(j);
	put_string(j, s, max);
}

void json_uint(struct json *j, uint64_t v)
{
	before_value(j);
	fprintf(j->f, "%" PRIu64, v);
}

void json_int(struct json *j, int64_t v)
{
	before_value(j);
	fprintf(j->f, "%" PRId64, v);
}

void json_double(struct json *j, double v, int decimals)
{
	before_value(j);
	if (isfinite(v))
		fprintf(j->f, "%.*f", decimals, v);
	else
		fputs("null", j->f);
}

void json_null(struct json *j)
{
	before_value(j);
	fputs("null", j->f);
}

void json_finish(struct json *j)
{
	if (j->depth != 0 || j->after_key)
		misuse("a document left open");
	fputc('\n', j->f);
}
