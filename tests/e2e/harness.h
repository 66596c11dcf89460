/* SPDX-License-Identifier: MIT */
/*
 * End-to-end test harness: every test gets its own hmmud on a private
 * socket in a fresh temporary directory, started before the test and
 * stopped (SIGTERM, then a check that it exited cleanly) after it.
 */
#ifndef HMMU_TEST_HARNESS_H
#define HMMU_TEST_HARNESS_H

#include <stdint.h>
#include <sys/types.h>

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
/* Remove the daemon's temporary directory (done by daemon_stop()). */
void daemon_remove_dir(void);

/* Connect to the daemon under test, asserting success. */
struct hmmu *connect_or_die(void);

/* A mirror of this process on @device, registered, asserting success. */
struct hmmu_mirror *mirror_registered(struct hmmu *h, const char *device);

/* Counters, asserting success. */
struct hmmu_stats stats_of(struct hmmu *h);

/* How many lines of the daemon's log contain @needle. */
int daemon_log_count(const char *needle);

/* 1 if any VMA of this process has the uffd flags "uf" or "uw" in smaps. */
int smaps_has_uffd_flags(void);
/* 1 if the VMA containing @addr has the flag (two letters) in smaps. */
int smaps_vma_has_flag(const void *addr, const char *flag);

/* Number of fds open in process @pid. */
int count_fds(pid_t pid);

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
