/* SPDX-License-Identifier: MIT */
#include "command.h"
#include "mirror.h"
#include "reason.h"
#include "../lib/clock.h"

#include <errno.h>
#include <stddef.h>

static _Thread_local const struct command_ctx *current;

/* command_dma_set()'s window, of the command this thread runs. */
struct dma_window {
	uint64_t addr, len;
	char *local;
};
static _Thread_local struct dma_window dma;

void command_enter(struct command_ctx *c, struct hmmu_mirror *m,
		   uint64_t timeout_ms, struct reply_reason *reason)
{
	c->m = m;
	c->deadline_ns = monotonic_ns() + timeout_ms * 1000000ull;
	c->reason = reason;
	dma = (struct dma_window){ 0, 0, NULL };
	current = c;
}

void command_dma_set(uint64_t addr, uint64_t len, void *local)
{
	dma = (struct dma_window){ addr, len, local };
}

void *command_dma_map(uint64_t addr, uint64_t len)
{
	/* Written so that no sum can wrap: the addresses are the client's. */
	if (!current || !dma.len || addr < dma.addr ||
	    addr - dma.addr > dma.len || len > dma.len - (addr - dma.addr))
		return NULL;
	return dma.local + (addr - dma.addr);
}

const struct command_ctx *command_current(void)
{
	return current;
}

void command_adopt(const struct command_ctx *c)
{
	current = c;
}

void command_leave(void)
{
	dma = (struct dma_window){ 0, 0, NULL };
	current = NULL;
}

int command_check(void)
{
	const struct command_ctx *c = current;
	int why;

	if (!c)
		return 0;
	why = atomic_load_explicit(&c->m->cancel, memory_order_relaxed);
	if (why)
		return why;
	return monotonic_ns() > c->deadline_ns ? -ETIMEDOUT : 0;
}

void mirror_cancel(struct hmmu_mirror *m, int why)
{
	int none = 0;

	atomic_compare_exchange_strong(&m->cancel, &none, why);
}

int command_vfail(int err, const char *fmt, va_list ap)
{
	return reason_vset(current ? current->reason : NULL, err, 1, fmt, ap);
}

int command_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	command_vfail(err, fmt, ap);
	va_end(ap);
	return err;
}
