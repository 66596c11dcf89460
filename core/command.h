/* SPDX-License-Identifier: MIT */
/*
 * What a device command or an accelerator job runs under: a deadline, and
 * its mirror's cancellation (the client went away, or the daemon is
 * stopping). Long loops (a range fault chunk, a job's block, a list node)
 * call command_check() and stop with its error: no command outlives its
 * client, its deadline or the daemon's stop, whatever the client asked for.
 *
 * The context is per thread: the worker running a request enters it, and
 * a compute unit running a slice of a job enters a copy of it.
 */
#ifndef HMMUD_COMMAND_H
#define HMMUD_COMMAND_H

#include <stdint.h>

struct hmmu_mirror;

struct command_ctx {
	struct hmmu_mirror *m;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
};

/* Start a command on this thread: @timeout_ms from now. */
void command_enter(struct command_ctx *c, struct hmmu_mirror *m, uint64_t timeout_ms);
/* This thread's context, or NULL. */
const struct command_ctx *command_current(void);
/* Run under a context another thread made (a compute unit). */
void command_adopt(const struct command_ctx *c);
void command_leave(void);

/*
 * 0 to go on; -ECANCELED if the client is gone, -ESHUTDOWN if the daemon is
 * stopping, -ETIMEDOUT past the deadline. 0 outside any command.
 */
int command_check(void);

/* Cancel every command of @m, now and later (@why: -ECANCELED or -ESHUTDOWN). */
void mirror_cancel(struct hmmu_mirror *m, int why);

#endif
