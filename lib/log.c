/* SPDX-License-Identifier: MIT */
#include "log.h"
#include "clock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>

static int max_level = LOG_INFO_;

/*
 * Where lines go (log.h). Changes once, when a detached daemon is ready,
 * while other threads log: atomic.
 */
enum sink { SINK_STDERR, SINK_JOURNAL, SINK_SYSLOG };
static _Atomic enum sink sink = SINK_STDERR;
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

/*
 * systemd sets $JOURNAL_STREAM to "DEV:INO" of the stream it connected to
 * the journal. It is inherited by children whose stderr may be anything
 * else (a shell started from a unit, a file), so the journal is ours only
 * if our stderr is that very stream.
 */
static bool stderr_is_journal(void)
{
	const char *s = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	int end = 0;

	if (!s || sscanf(s, "%llu:%llu%n", &dev, &ino, &end) != 2 || s[end])
		return false;
	return fstat(2, &st) == 0 && (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void log_init(const char *level)
{
	int l = level ? log_parse_level(level) : -EINVAL;

	if (l >= 0)
		max_level = l;
	log_use_stderr();
	ratelimit_from_env();
}

void log_use_stderr(void)
{
	atomic_store(&sink, stderr_is_journal() ? SINK_JOURNAL : SINK_STDERR);
}

void log_use_syslog(void)
{
	openlog("hmmud", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	atomic_store(&sink, SINK_SYSLOG);
}

size_t log_timestamp(char *buf, size_t size, const struct timespec *ts)
{
	struct tm tm;
	size_t n;

	if (!localtime_r(&ts->tv_sec, &tm))
		return 0;
	n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
	if (n == 0 || n + 5 > size)
		return 0;
	return n + (size_t)snprintf(buf + n, size - n, ".%03ld",
				    ts->tv_nsec / 1000000);
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
	switch (atomic_load_explicit(&sink, memory_order_relaxed)) {
	case SINK_JOURNAL: /* journald stamps the time itself */
		fprintf(stderr, "<%d>hmmud: %s%s\n", level, line, note);
		break;
	case SINK_SYSLOG: /* and so does syslog */
		syslog((int)level, "%s%s", line, note);
		break;
	case SINK_STDERR: {
		struct timespec ts;
		char stamp[40] = "";

		clock_gettime(CLOCK_REALTIME, &ts);
		log_timestamp(stamp, sizeof(stamp), &ts);
		fprintf(stderr, "%s hmmud: %s%s\n", stamp, line, note);
		break;
	}
	}
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
		now = monotonic_ms();
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
