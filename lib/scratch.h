/* SPDX-License-Identifier: MIT */
/*
 * Per-thread scratch buffers, kept from one call to the next: a fault path
 * that allocated (and page-faulted in) a fresh multi-megabyte bounce buffer
 * on every call spent more time on that than on copying. Freed when the
 * thread exits.
 */
#ifndef HMMUD_SCRATCH_H
#define HMMUD_SCRATCH_H

#include <stddef.h>

enum scratch_slot {
	SCRATCH_COMMAND, /* a device command's data on its way to the client */
	SCRATCH_PAGES,	 /* a range fault's page list */
	SCRATCH_PINNED,	 /* a device command's list of pinned page copies */
	SCRATCH_DEVPAGE, /* a device page on its way back to the CPU */
	SCRATCH_MODEL,	 /* hmmu_thread_buffer()'s 4 slots */
	SCRATCH_MODEL_LAST_ = SCRATCH_MODEL + 3,
	SCRATCH_NR_
};

/*
 * A buffer of at least @size bytes, this thread's for @slot: valid until
 * the next call with the same slot on this thread. NULL if out of memory.
 */
void *scratch_get(enum scratch_slot slot, size_t size);

#endif
