/* SPDX-License-Identifier: MIT */
/*
 * hmmud's log: one line per event on stderr. Under systemd (JOURNAL_STREAM
 * set) each line carries a <N> syslog priority prefix, which journald reads.
 */
#ifndef HMMUD_LOG_H
#define HMMUD_LOG_H

#include <sys/types.h>

enum log_level { LOG_ERR_ = 3, LOG_WARN_ = 4, LOG_INFO_ = 6, LOG_DEBUG_ = 7 };

void log_init(const char *level);	/* "error", "warning", "info", "debug" */
int log_parse_level(const char *s); /* -EINVAL if unknown */
int log_enabled(enum log_level level);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level,
						   const char *fmt, ...);

#define log_err(...) log_msg(LOG_ERR_, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN_, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO_, __VA_ARGS__)
#define log_debug(...)                                                         \
	do {                                                                   \
		if (log_enabled(LOG_DEBUG_))                                   \
			log_msg(LOG_DEBUG_, __VA_ARGS__);                      \
	} while (0)

#endif
