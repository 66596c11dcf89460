/* SPDX-License-Identifier: MIT */
/*
 * hmmud's log: one line per event, on stderr or in syslog.
 *   - stderr that is the journal (systemd's $JOURNAL_STREAM names our
 *     stderr's device and inode): "<N>hmmud: ...", N the syslog priority,
 *     which journald reads; journald adds the time.
 *   - any other stderr (a terminal, a file): "2026-12-01T18:20:03.123
 *     hmmud: ...", local time with milliseconds.
 *   - syslog(3), ident "hmmud", facility daemon: a daemon that detached,
 *     once its stderr is gone (log_use_syslog()).
 *
 * Errors and warnings are rate-limited per call site, as the kernel's
 * printk_ratelimited(): a client can make the daemon fail the same way as
 * often as it likes, and one once made 1,169 identical warnings in a minute.
 * Each log_err()/log_warn() in the source lets through at most a burst of
 * lines per interval (LOG_RATELIMIT_BURST per LOG_RATELIMIT_INTERVAL_MS,
 * or $HMMUD_LOG_RATELIMIT="BURST/MS", "0" for no limit) and drops the rest;
 * the first line it lets through in a later interval ends with
 * "(suppressed K similar messages)". Info and debug lines are never limited.
 */
#ifndef HMMUD_LOG_H
#define HMMUD_LOG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

enum log_level { LOG_ERR_ = 3, LOG_WARN_ = 4, LOG_INFO_ = 6, LOG_DEBUG_ = 7 };

#define LOG_RATELIMIT_BURST 10
#define LOG_RATELIMIT_INTERVAL_MS 5000

void log_init(const char *level);	/* "error", "warning", "info", "debug" */
int log_parse_level(const char *s); /* -EINVAL if unknown */
/*
 * Log to stderr again, asking anew whether it is the journal (after it was
 * pointed elsewhere). log_init() does this.
 */
void log_use_stderr(void);
/* Log to syslog(3) from now on: for a daemon whose stderr is gone. */
void log_use_syslog(void);
/*
 * @ts as local time, "YYYY-MM-DDTHH:MM:SS.mmm" (ISO 8601, milliseconds):
 * the prefix of a line on a stderr that is not the journal. Returns its
 * length, 0 if it does not fit in @size.
 */
size_t log_timestamp(char *buf, size_t size, const struct timespec *ts);
int log_enabled(enum log_level level);
/* Lines per interval of each call site; burst 0: no limit. Any thread. */
void log_set_ratelimit(unsigned burst, unsigned interval_ms);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level,
						   const char *fmt, ...);

/*
 * One per call site. The lock makes "count, then print or drop" atomic
 * among the threads logging from the same place; it is a leaf lock, taken
 * under any other and never held while printing.
 */
struct log_ratelimit {
	pthread_mutex_t lock;
	uint64_t begin_ms;   /* start of the current interval, 0 before any */
	unsigned printed;    /* lines let through in it */
	unsigned suppressed; /* lines dropped in it */
};

__attribute__((format(printf, 3, 4))) void
log_msg_ratelimited(struct log_ratelimit *rl, enum log_level level,
		    const char *fmt, ...);

#define log_ratelimited(level, ...)                                            \
	({                                                                     \
		static struct log_ratelimit rl_ = {                            \
			.lock = PTHREAD_MUTEX_INITIALIZER                      \
		};                                                             \
		log_msg_ratelimited(&rl_, level, __VA_ARGS__);                 \
	})

#define log_err(...) log_ratelimited(LOG_ERR_, __VA_ARGS__)
#define log_warn(...) log_ratelimited(LOG_WARN_, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO_, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_enabled(LOG_DEBUG_))                                   \
			log_msg(LOG_DEBUG_, __VA_ARGS__);                      \
	} while (0)

#endif
