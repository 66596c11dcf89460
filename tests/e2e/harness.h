/* SPDX-License-Identifier: MIT */
/*
 * End-to-end test harness: every test gets its own hmmud on a private
 * socket in a fresh temporary directory, started before the test and
 * stopped (SIGTERM, then a check that it exited cleanly and logged nothing
 * the test did not expect) after it; and the fixture most tests share, a
 * connection to that daemon with a registered mirror.
 *
 * The helpers the tests share otherwise (memory, smaps, users, the wire
 * protocol by hand) are in helpers.h.
 */
#ifndef HMMU_TEST_HARNESS_H
#define HMMU_TEST_HARNESS_H

#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include <hmmu/hmmu.h>

struct daemon_instance {
	pid_t pid;
	char dir[64];
	char socket[108];
	char log[128];
};

extern struct daemon_instance daemon_under_test;

/*
 * Skip the test (cr_skip_test, naming what is missing) unless this machine
 * can give hmmu a userfaultfd with the features it requires, as hmmud's own
 * probe (kfeatures()) answers. daemon_start_args() calls it first.
 */
void require_userfaultfd(void);

/* Start hmmud with extra arguments (NULL-terminated list, may be empty). */
void daemon_start_args(const char *const *extra);
/* Criterion .init / .fini of the end-to-end suites. */
void daemon_start(void);
/* The same, with the socket open to every user (tests with other uids). */
void daemon_start_open_to_all(void);
void daemon_stop(void);
/*
 * Kill the daemon under test with SIGKILL, as a crash would, and reap it:
 * it must have died of that signal, not stopped on its own. Then judge its
 * log up to its death and remove its directory; daemon_stop() has nothing
 * left to do, and a test may start another daemon.
 */
void daemon_kill(void);
/* Stop the daemon under test and start another with @extra (may be NULL). */
void daemon_restart(const char *const *extra);
/*
 * Judge the log of a daemon the test stopped itself (and reaped, setting
 * daemon_under_test.pid to 0), then remove its temporary directory.
 * daemon_stop() does this too.
 */
void daemon_remove_dir(void);
/* Let users other than root reach the socket's directory. */
void daemon_dir_open_to_all(void);

/*
 * The daemon's log. hmmud logs to stderr, which goes to daemon_under_test.log;
 * it runs with $JOURNAL_STREAM set, as under systemd, so that each line
 * starts with its syslog level ("<4>hmmud: ..."). Every error or warning it
 * logs fails the test, unless the test declared it with expect_daemon_log()
 * first: a line that contains one of the declared strings may appear (it
 * need not: a test that requires a line counts it with daemon_log_count()).
 * The lines are judged by fixture_close() and daemon_log_check(), which fail
 * the test with them, and at the latest by daemon_stop() once the daemon has
 * exited, which aborts (Criterion ignores a failed assertion in a .fini) and
 * so fails the test through criterion_main.c and ctest.
 */
__attribute__((format(printf, 1, 2))) void expect_daemon_log(const char *fmt,
							     ...);
/* Fail the test now if the daemon logged what it did not expect so far. */
void daemon_log_check(void);
/*
 * The lines of the hmmud log @path, from byte *@offset on, that are errors
 * or warnings no expect_daemon_log() declared: their count; as many as fit
 * are copied to @report. *@offset moves past the complete lines judged.
 */
int daemon_log_unexpected(const char *path, long *offset, char *report,
			  size_t size);
/* "JOURNAL_STREAM=DEV:INO" of the file open at @fd, for hmmud's environment. */
void journal_stream_env(int fd, char *out, size_t size);
/* How many lines of the daemon's log contain @needle. */
int daemon_log_count(const char *needle);

/* Connect to the daemon under test, asserting success. */
struct hmmu *connect_or_die(void);

/* A mirror of this process on @device, registered, asserting success. */
struct hmmu_mirror *mirror_registered(struct hmmu *h, const char *device);

/* Counters, asserting success. */
struct hmmu_stats stats_of(struct hmmu *h);

/*
 * The frame of most tests: a connection to the daemon under test and, if
 * @device is not NULL, a mirror of this process on it, registered.
 * fixture_close() destroys the mirror (if f->m is not NULL: a test that
 * destroyed it itself sets it to NULL), checks that the daemon still
 * answers on the connection, disconnects and judges the daemon's log.
 */
struct fixture {
	struct hmmu *h;
	struct hmmu_mirror *m;
};

struct fixture fixture_open(const char *device);
void fixture_close(struct fixture *f);
/*
 * fixture_open() for a forked child, where no assertion may fail: 0, or
 * -errno of the first step that failed. The child lets the fixture go with
 * its process, or closes it with fixture_close() if it may assert.
 */
int fixture_try_open(struct fixture *f, const char *device);

/* Wait up to ~5 s for stats_of(h).field to reach @want; returns last value. */
#define wait_for_stat(h, field, want)                                          \
	({                                                                     \
		uint64_t v_ = 0;                                               \
		for (int i_ = 0; i_ < 500; i_++) {                             \
			v_ = stats_of(h).field;                                \
			if (v_ == (uint64_t)(want))                            \
				break;                                         \
			usleep(10000);                                         \
		}                                                              \
		v_;                                                            \
	})

#endif
