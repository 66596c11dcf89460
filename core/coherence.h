/* SPDX-License-Identifier: MIT */
/*
 * Coarse-grained coherence (OpenCL 2.0's coarse-grained SVM), chosen by a
 * process's first registration (docs/semantics.md, "Coherence modes").
 *
 * The process's userfaultfd has UFFD_FEATURE_WP_ASYNC: a CPU write to a
 * page we write-protected is resolved by the kernel alone, which clears
 * the page's uffd-wp bit and sends us nothing. A present (or swapped) page
 * without that bit, other than the shared zero page, is "written": the
 * CPU may have changed it since we last protected it, so a device copy of
 * it may be stale. One PAGEMAP_SCAN with PM_SCAN_WP_MATCHING finds those
 * pages and protects them again in the same pass, under the page-table
 * locks, so that no write is ever cleared without being reported to us.
 * Each page it reports is invalidated in every mirror (HMMU_NOTIFY_WRITE),
 * as a write fault of the fine-grained mode would have.
 *
 * Nothing else may set the uffd-wp bit of a coarse process's page (a
 * UFFDIO_WRITEPROTECT would silently forget a write): the range fault
 * protects with coherence_collect() too (fault.c).
 */
#ifndef HMMUD_COHERENCE_H
#define HMMUD_COHERENCE_H

#include <stdint.h>

struct process;

/*
 * A command or job of @p starts: invalidate every page of its registered
 * ranges written since it was protected, and protect it again. Returns
 * once the invalidations are done; no-op (0) for a fine-grained process.
 * A worker or compute unit, never the loop thread. 0 or -errno (logged).
 */
int coherence_boundary(struct process *p);

/*
 * The same over [start, end) only (registered, page aligned): the range
 * fault's write-protect step in a coarse process. @written, if not NULL,
 * gets the number of pages found written.
 */
int coherence_collect(struct process *p, uint64_t start, uint64_t end,
		      uint64_t *written);

#endif
