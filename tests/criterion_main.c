/* SPDX-License-Identifier: MIT */
/*
 * main() of every Criterion test program, in place of Criterion's own
 * (a weak symbol in libcriterion), for one reason: its exit status.
 *
 * Criterion 2.4 exits 0 when its tests were skipped (cr_skip_test), so
 * ctest would count a test that never ran as passed. Here the program exits
 * 77, which tests/CMakeLists.txt declares as SKIP_RETURN_CODE, when every
 * test it ran was skipped. ctest runs each Criterion test on its own
 * (--filter suite/test), so that is exactly the skipped ones.
 *
 * Two more things make it fail where Criterion's main would pass:
 *  - no test ran at all: a --filter that names no test, such as a ctest
 *    entry left behind by a renamed test;
 *  - a test started but its teardown never finished. Criterion 2.4 passes
 *    such a test with a warning ("crashed during its setup or teardown"),
 *    and that is how the e2e harness fails a test from its .fini (a daemon
 *    that did not stop cleanly, or logged what the test did not expect).
 *    It reports no POST_FINI for it, which is what is counted here.
 *
 * $HMMU_CRITERION_TESTS, set by tests/CMakeLists.txt to the number of tests
 * it registered for this program, is checked against the number the program
 * has: a test that the registration missed would otherwise never run.
 *
 * The report hooks run in the runner process, not in the test workers.
 */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>
#include <stdlib.h>

#define EXIT_SKIPPED 77

static size_t started, finished, skipped, total;

ReportHook(PRE_INIT)(struct criterion_test *test)
{
	(void)test;
	started++;
}

/* Criterion says why a test skipped only with --verbose: say it always. */
ReportHook(POST_FINI)(struct criterion_test_stats *stats)
{
	finished++;
	if (stats->test_status != CR_STATUS_SKIPPED)
		return;
	skipped++;
	fprintf(stderr, "%s::%s skipped: %s\n", stats->test->category,
		stats->test->name,
		stats->message ? stats->message : "(no reason given)");
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	total = stats->nb_tests;
}

/* What the runner's counts make of a run Criterion itself passed. */
static int verdict(const char *prog)
{
	const char *registered = getenv("HMMU_CRITERION_TESTS");

	if (registered && *registered &&
	    strtoul(registered, NULL, 10) != total) {
		fprintf(stderr, "%s: has %zu tests, but %s were registered "
			"with ctest (tests/CMakeLists.txt): one would never "
			"run\n", prog, total, registered);
		return 1;
	}
	if (!started) {
		fprintf(stderr, "%s: no test ran (does --filter name one?)\n",
			prog);
		return 1;
	}
	if (finished < started) {
		fprintf(stderr, "%s: %zu of %zu tests did not finish their "
			"teardown (see the warnings above)\n", prog,
			started - finished, started);
		return 1;
	}
	return skipped == started ? EXIT_SKIPPED : 0;
}

int main(int argc, char *argv[])
{
	struct criterion_test_set *tests = criterion_initialize();
	int status = 0;

	/* 0: --help, --list, --version and the like; nothing to run. */
	if (criterion_handle_args(argc, argv, true))
		status = criterion_run_all_tests(tests) ? verdict(argv[0]) : 1;
	criterion_finalize(tests);
	return status;
}
