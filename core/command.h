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

#include <stdarg.h>
#include <stdint.h>

struct hmmu_mirror;
struct reply_reason;

struct command_ctx {
	struct hmmu_mirror *m;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	struct reply_reason *reason; /* the request's (reason.h), or NULL */
};

/*
 * Start a command on this thread: @timeout_ms from now; its errors are
 * explained into @reason (may be NULL).
 */
void command_enter(struct command_ctx *c, struct hmmu_mirror *m,
		   uint64_t timeout_ms, struct reply_reason *reason);
/*
 * The command this thread runs has its buffer in memory the daemon maps
 * too (a client's hmmu_buffer_create()): the client's [addr, addr + len)
 * is the daemon's [local, local + len). Set after command_enter(), which
 * clears it, as does command_leave(); the caller holds the buffer until
 * then. Kept per thread, outside struct command_ctx (whose size the
 * driver API's struct hmmu_work bounds): compute units never see it.
 */
void command_dma_set(uint64_t addr, uint64_t len, void *local);
/*
 * Of this thread's command: the daemon's address of the client's
 * [addr, addr + len) if it lies wholly in the command's shared buffer
 * (above), else NULL.
 */
void *command_dma_map(uint64_t addr, uint64_t len);
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

/*
 * Say why the command of this thread fails with @err, for its client
 * (reason_set() on its reason); returns @err. Outside a command, only
 * returns @err.
 */
__attribute__((format(printf, 2, 3))) int command_fail(int err,
						       const char *fmt, ...);
int command_vfail(int err, const char *fmt, va_list ap);

/* Cancel every command of @m, now and later (@why: -ECANCELED or -ESHUTDOWN). */
void mirror_cancel(struct hmmu_mirror *m, int why);

#endif
