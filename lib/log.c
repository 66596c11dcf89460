/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int max_level = LOG_INFO_;
static int journal_prefix;
/* Read by every thread that logs, set by whoever configures: atomics. */
static atomic_uint ratelimit_burst = LOG_RATELIMIT_BURST;
static atomic_uint ratelimit_interval_ms = LOG_RATELIMIT_INTERVAL_MS;

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

void log_set_ratelimit(unsigned burst, unsigned interval_ms)
{
	atomic_store_explicit(&ratelimit_burst, burst, memory_order_relaxed);
	atomic_store_explicit(&ratelimit_interval_ms, interval_ms,
			      memory_order_relaxed);
}

/* $HMMUD_LOG_RATELIMIT: "BURST/MS", or "0" for no limit. */
static void ratelimit_from_env(void)
{
	const char *s = getenv("HMMUD_LOG_RATELIMIT");
	unsigned long burst, ms = LOG_RATELIMIT_INTERVAL_MS;
	char *end;

	if (!s || !*s)
		return;
	burst = strtoul(s, &end, 10);
	if (*end == '/')
		ms = strtoul(end + 1, &end, 10);
	if (*end || burst > 1000000 || ms == 0 || ms > 3600000) {
		fprintf(stderr, "hmmud: ignoring HMMUD_LOG_RATELIMIT=%s "
			"(want BURST/MS, or 0 for no limit)\n", s);
		return;
	}
	log_set_ratelimit((unsigned)burst, (unsigned)ms);
}

void log_init(const char *level)
{
	int l = level ? log_parse_level(level) : -EINVAL;

	if (l >= 0)
		max_level = l;
	journal_prefix = getenv("JOURNAL_STREAM") != NULL;
	ratelimit_from_env();
}

int log_enabled(enum log_level level)
{
	return (int)level <= max_level;
}

/* One write per line, so lines of concurrent threads never mix. */
static void emit(enum log_level level, const char *line, unsigned suppressed)
{
	char note[48] = "";

	if (suppressed)
		snprintf(note, sizeof(note), " (suppressed %u similar messages)",
			 suppressed);
	if (journal_prefix)
		fprintf(stderr, "<%d>hmmud: %s%s\n", level, line, note);
	else
		fprintf(stderr, "hmmud: %s%s\n", line, note);
}

static void vlog(enum log_level level, unsigned suppressed, const char *fmt,
		 va_list ap)
{
	char line[512];

	if (vsnprintf(line, sizeof(line), fmt, ap) < 0)
		return;
	emit(level, line, suppressed);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!log_enabled(level))
		return;
	va_start(ap, fmt);
	vlog(level, 0, fmt, ap);
	va_end(ap);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Dropped lines are counted, not formatted: a flood costs a lock and a
 * clock read per line. Their count is told by the first line of a later
 * interval, so a flood that stops for good goes untold, as with the
 * kernel's ratelimit.
 */
void log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level,
			 const char *fmt, ...)
{
	unsigned burst = atomic_load_explicit(&ratelimit_burst,
					      memory_order_relaxed);
	unsigned interval = atomic_load_explicit(&ratelimit_interval_ms,
						 memory_order_relaxed);
	unsigned told = 0;
	uint64_t now;
	va_list ap;

	if (!log_enabled(level))
		return;
	if (burst) {
		now = now_ms();
		pthread_mutex_lock(&rl->lock);
		if (!rl->begin_ms || now - rl->begin_ms >= interval) {
			told = rl->suppressed;
			rl->begin_ms = now ? now : 1;
			rl->printed = 0;
			rl->suppressed = 0;
		}
		if (rl->printed < burst) {
			rl->printed++;
		} else {
			rl->suppressed++;
			pthread_mutex_unlock(&rl->lock);
			return;
		}
		pthread_mutex_unlock(&rl->lock);
	}
	va_start(ap, fmt);
	vlog(level, told, fmt, ap);
	va_end(ap);
}
