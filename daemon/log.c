/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int max_level = LOG_INFO_;
static int journal_prefix;

static const struct {
	const char *name;
	enum log_level level;
} levels[] = {
	{ "error", LOG_ERR_ },
	{ "warning", LOG_WARN_ },
	{ "info", LOG_INFO_ },
	{ "debug", LOG_DEBUG_ },
};

int log_parse_level(const char *s)
{
	for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++)
		if (strcmp(s, levels[i].name) == 0)
			return levels[i].level;
	return -EINVAL;
}

void log_init(const char *level)
{
	int l = level ? log_parse_level(level) : -EINVAL;

	if (l >= 0)
		max_level = l;
	journal_prefix = getenv("JOURNAL_STREAM") != NULL;
}

int log_enabled(enum log_level level)
{
	return (int)level <= max_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	/* One write per line, so lines of concurrent threads never mix. */
	if (journal_prefix)
		fprintf(stderr, "<%d>hmmud: %s\n", level, line);
	else
		fprintf(stderr, "hmmud: %s\n", line);
}
