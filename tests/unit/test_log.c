/* SPDX-License-Identifier: MIT */
/*
 * The log's rate limit: a call site lets a burst of lines through per
 * interval, drops the rest, and the first line of a later interval says
 * how many it dropped. The daemon's stderr is captured in a file.
 *
 * No timing is measured: the flood runs under an interval far longer than
 * it can take, then the interval is made tiny and let elapse.
 */
#include "lib/log.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
