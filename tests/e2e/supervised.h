/* SPDX-License-Identifier: MIT */
/*
 * A service run under hmmu-supervise, the tests' stand-in for systemd
 * (tests/supervisor/hmmu-supervise.c), in a private directory: start it,
 * wait for its state file to show something, crash it, stop it. One per
 * test process. Nothing is timed: waits poll the state file for 10 s.
 */
#ifndef HMMU_TEST_SUPERVISED_H
#define HMMU_TEST_SUPERVISED_H

#include <stdbool.h>
#include <sys/types.h>

struct supervised {
	pid_t pid;		/* of hmmu-supervise */
	char dir[64];		/* private, removed by supervised_cleanup() */
	char run[96];		/* --dir: its notify socket */
	char log[96];		/* --log: its events */
	char state[96];		/* --state */
	char out[96];		/* its stdout and stderr, and the service's */
	char sock[96];		/* a path for --listen */
};

extern struct supervised supervised;

/* hmmud to run: $HMMU_TEST_HMMUD (the TSan build in CI), else the build's. */
const char *supervised_hmmud_path(void);

/* Make the private directory and the paths in it, once. */
void supervised_prepare(void);

/*
 * Start hmmu-supervise with options @sup (NULL-terminated) and, after
 * "--", the service's argv @svc (NULL-terminated).
 */
void supervised_start(const char *const *sup, const char *const *svc);

/* Every "key=value" line of @want (separated by \n) in the state file. */
void supervised_wait_state(const char *want);
int supervised_state_value(const char *key);

/* SIGUSR1 (it SIGKILLs the service), then the successor's READY=1. */
void supervised_crash_and_wait(int restarts);

/* The whole of a file, NUL-terminated, after a leading \n (a static buffer). */
const char *supervised_slurp(const char *path);
bool supervised_logged(const char *what);

/* SIGTERM: it stops the service and exits 0, no sanitizer report. */
void supervised_stop(void);

/* Criterion .fini: kill what a failed test left, remove the directory. */
void supervised_cleanup(void);

#endif
