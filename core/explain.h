/* SPDX-License-Identifier: MIT */
/*
 * Saying why an access to a client's memory failed, for the client
 * (reason.h, through the command's context): what lies at the first address
 * that explains the error, and what to do about it. The MMU and DMA calls of
 * the driver API explain every error they return this way (driver.c).
 */
#ifndef HMMUD_EXPLAIN_H
#define HMMUD_EXPLAIN_H

#include <stdbool.h>
#include <stdint.h>

struct process;

/*
 * An access to [start, end) (any alignment) for reading, or writing if
 * @write, failed with @err: say why. Reads the VMAs again, so only on
 * failure. Errors it has nothing to say about are left to the caller.
 */
void explain_access(struct process *p, int err, uint64_t start, uint64_t end,
		    bool write);

#endif
