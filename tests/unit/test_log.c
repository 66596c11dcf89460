/* SPDX-License-Identifier: MIT */
/*
 * The log's rate limit: a call site lets a burst of lines through per
 * interval, drops the rest, and the first line of a later interval says
 * how many it dropped. And its line format: a time stamp on a plain
 * stderr, a syslog priority and no stamp on the journal's. The daemon's
 * stderr is captured in a file.
 *
 * No timing is measured: the flood runs under an interval far longer than
 * it can take, then the interval is made tiny and let elapse.
 */
#include "lib/log.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BURST 10
#define FLOOD 1000
#define LONG_MS 3600000 /* an hour: no flood outlasts it */

static int saved_stderr = -1, capture_fd = -1;

static void capture_start(void)
{
	char path[] = "/tmp/hmmu-test-log-XXXXXX";

	capture_fd = mkstemp(path);
	cr_assert_geq(capture_fd, 0);
	unlink(path);
	fflush(stderr);
	saved_stderr = dup(2);
	cr_assert_geq(saved_stderr, 0);
	cr_assert_eq(dup2(capture_fd, 2), 2);
}

/* What was logged since capture_start(); the caller frees it. */
static char *capture_end(void)
{
	off_t len;
	char *buf;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	len = lseek(capture_fd, 0, SEEK_END);
	cr_assert_geq(len, 0);
	buf = calloc(1, (size_t)len + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(pread(capture_fd, buf, (size_t)len, 0), len);
	close(capture_fd);
	return buf;
}

static int count(const char *text, const char *needle)
{
	int n = 0;

	for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

static int ends_with(const char *s, const char *end)
{
	size_t n = strlen(s), m = strlen(end);

	return n >= m && strcmp(s + n - m, end) == 0;
}

static void setup(void)
{
	unsetenv("JOURNAL_STREAM");
	unsetenv("HMMUD_LOG_RATELIMIT");
	log_init("debug");
	log_set_ratelimit(BURST, LONG_MS);
}

TestSuite(log, .init = setup);

/* Each function is one call site, with its own budget. */
static void warn_site(void)
{
	log_warn("client %d: the same warning", 1234);
}

static void err_site(void)
{
	log_err("client %d: the same error", 1234);
}

/* Let the current interval of every call site end. */
static void next_interval(void)
{
	log_set_ratelimit(BURST, 1);
	usleep(5000);
}

Test(log, a_flood_from_one_call_site_stops_at_the_burst_then_tells_the_rest)
{
	char *out;

	capture_start();
	for (int i = 0; i < FLOOD; i++)
		warn_site();
	next_interval();
	warn_site();
	out = capture_end();

	cr_expect_eq(count(out, "hmmud: client 1234: the same warning"), BURST + 1,
		     "%s", out);
	cr_expect_eq(count(out, "(suppressed"), 1, "%s", out);
	/* The line that tells comes last, after the burst. */
	cr_expect(ends_with(out, "hmmud: client 1234: the same warning "
				 "(suppressed 990 similar messages)\n"),
		  "%s", out);
	free(out);
}

Test(log, each_call_site_has_its_own_budget)
{
	char *out;

	capture_start();
	for (int i = 0; i < FLOOD; i++)
		warn_site();
	for (int i = 0; i < FLOOD; i++)
		err_site();
	out = capture_end();

	cr_expect_eq(count(out, "the same warning"), BURST, "%s", out);
	cr_expect_eq(count(out, "the same error"), BURST, "%s", out);
	free(out);
}

Test(log, a_quiet_call_site_tells_nothing)
{
	char *out;

	capture_start();
	for (int i = 0; i < BURST; i++)
		warn_site();
	next_interval();
	warn_site();
	out = capture_end();

	cr_expect_eq(count(out, "the same warning"), BURST + 1, "%s", out);
	cr_expect_eq(count(out, "suppressed"), 0, "%s", out);
	free(out);
}

Test(log, info_and_debug_are_never_limited)
{
	char *out;

	capture_start();
	for (int i = 0; i < FLOOD; i++) {
		log_info("info %d", 1);
		log_debug("debug %d", 2);
	}
	out = capture_end();

	cr_expect_eq(count(out, "hmmud: info 1\n"), FLOOD);
	cr_expect_eq(count(out, "hmmud: debug 2\n"), FLOOD);
	free(out);
}

Test(log, burst_0_means_no_limit)
{
	char *out;

	log_set_ratelimit(0, LONG_MS);
	capture_start();
	for (int i = 0; i < FLOOD; i++)
		warn_site();
	out = capture_end();

	cr_expect_eq(count(out, "the same warning"), FLOOD);
	free(out);
}

Test(log, lines_below_the_level_do_not_count)
{
	char *out;

	log_init("error");
	capture_start();
	for (int i = 0; i < FLOOD; i++)
		warn_site();
	log_init("warning");
	warn_site();
	out = capture_end();

	cr_expect_eq(count(out, "the same warning"), 1, "%s", out);
	cr_expect_eq(count(out, "suppressed"), 0, "%s", out);
	free(out);
}

Test(log, environment_sets_the_limit)
{
	char *out;

	setenv("HMMUD_LOG_RATELIMIT", "3/3600000", 1);
	log_init(NULL);
	capture_start();
	for (int i = 0; i < FLOOD; i++)
		warn_site();
	out = capture_end();

	cr_expect_eq(count(out, "the same warning"), 3, "%s", out);
	free(out);
}

#define THREADS 4

static void *flood_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < FLOOD / THREADS; i++)
		warn_site();
	return NULL;
}

Test(log, threads_share_their_call_site_budget)
{
	pthread_t t[THREADS];
	char *out;

	capture_start();
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, flood_thread, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	next_interval();
	warn_site();
	out = capture_end();

	cr_expect_eq(count(out, "the same warning"), BURST + 1, "%s", out);
	cr_expect_not_null(strstr(out, "(suppressed 990 similar messages)"),
			   "%s", out);
	free(out);
}

/* ---- the line format ------------------------------------------------------ */

static int matches(const char *text, const char *pattern)
{
	regex_t re;
	int ok;

	cr_assert_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NEWLINE | REG_NOSUB),
		     0);
	ok = regexec(&re, text, 0, NULL, 0) == 0;
	regfree(&re);
	return ok;
}

Test(log, timestamp_is_iso_8601_local_time_with_milliseconds)
{
	/* 2026-12-01T18:20:03Z, and 123.456789 ms */
	struct timespec ts = { .tv_sec = 1796149203, .tv_nsec = 123456789 };
	char buf[40];

	setenv("TZ", "UTC", 1);
	tzset();
	cr_assert_eq(log_timestamp(buf, sizeof(buf), &ts), 23);
	cr_expect_str_eq(buf, "2026-12-01T18:20:03.123");
	/* Local time: UTC+2 two hours later, and no zone suffix. */
	setenv("TZ", "EET-2", 1);
	tzset();
	log_timestamp(buf, sizeof(buf), &ts);
	cr_expect_str_eq(buf, "2026-12-01T20:20:03.123");
	ts.tv_nsec = 999999;
	log_timestamp(buf, sizeof(buf), &ts);
	cr_expect_str_eq(buf, "2026-12-01T20:20:03.000");
	/* Too small a buffer: nothing, rather than a cut stamp. */
	cr_expect_eq(log_timestamp(buf, 20, &ts), 0);
}

#define STAMP "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}"

Test(log, lines_on_a_plain_stderr_start_with_the_time)
{
	char *out;

	capture_start();
	log_init("debug");
	log_warn("client %d: stamped", 7);
	log_info("an info line");
	out = capture_end();

	cr_expect(matches(out, "^" STAMP " hmmud: client 7: stamped$"), "%s", out);
	cr_expect(matches(out, "^" STAMP " hmmud: an info line$"), "%s", out);
	cr_expect(!matches(out, "^<"), "%s", out);
	free(out);
}

/* $JOURNAL_STREAM naming the device and inode of stderr, as systemd does. */
static void journal_is_stderr(void)
{
	struct stat st;
	char env[64];

	cr_assert_eq(fstat(2, &st), 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", env, 1);
}

Test(log, lines_to_the_journal_carry_their_priority_and_no_time)
{
	char *out;

	capture_start();
	journal_is_stderr();
	log_init("debug");
	log_err("an error");
	log_warn("a warning");
	log_info("an info line");
	log_debug("a debug line");
	out = capture_end();

	cr_expect(matches(out, "^<3>hmmud: an error$"), "%s", out);
	cr_expect(matches(out, "^<4>hmmud: a warning$"), "%s", out);
	cr_expect(matches(out, "^<6>hmmud: an info line$"), "%s", out);
	cr_expect(matches(out, "^<7>hmmud: a debug line$"), "%s", out);
	free(out);
}

/*
 * A $JOURNAL_STREAM inherited by a process whose stderr is something else
 * (a shell started from a unit, run into a file) is not the journal.
 */
Test(log, journal_stream_of_another_file_is_not_the_journal)
{
	char *out;

	setenv("JOURNAL_STREAM", "1:1", 1);
	capture_start();
	log_init("debug");
	log_warn("not to the journal");
	out = capture_end();

	cr_expect(matches(out, "^" STAMP " hmmud: not to the journal$"), "%s",
		  out);
	free(out);
}

/* After stderr was pointed elsewhere (--log-file), the question is asked anew. */
Test(log, use_stderr_asks_again_whether_it_is_the_journal)
{
	char *out;

	capture_start();
	log_init("debug"); /* JOURNAL_STREAM unset: a plain stderr */
	journal_is_stderr();
	log_use_stderr();
	log_warn("now the journal");
	unsetenv("JOURNAL_STREAM");
	log_use_stderr();
	log_warn("a plain file again");
	out = capture_end();

	cr_expect(matches(out, "^<4>hmmud: now the journal$"), "%s", out);
	cr_expect(matches(out, "^" STAMP " hmmud: a plain file again$"), "%s",
		  out);
	free(out);
}
