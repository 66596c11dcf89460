/* SPDX-License-Identifier: MIT */
/*
 * Coarse-grained coherence: the written pages of a process, collected at
 * command boundaries with PAGEMAP_SCAN (coherence.h says why it is sound).
 *
 * Which pages a scan takes: category_mask WRITTEN|PFNZERO with PFNZERO
 * inverted, i.e. written and not the shared zero page.
 *  - A page the daemon copied while it was the zero page (a read through
 *    /proc/PID/mem of a page nobody touched maps it, unprotected) holds
 *    zeros, which is what the device's copy says: not a write. A CPU write
 *    to it copies it first, and the new page is unprotected: written.
 *  - An empty PTE is no page at all, and the generic walk does not count
 *    it as written (the kernel's own fast path for category_mask ==
 *    return_mask == WRITTEN would, and would fill it with a marker): a CPU
 *    write to it makes an unprotected page, which the next scan takes.
 * So the scan never has to protect what it does not report, and no
 * UFFDIO_WRITEPROTECT is ever needed: a protection that is not a scan's
 * could swallow a write nobody was told about.
 */
#include "coherence.h"
#include "../common/kernel_uapi.h"
#include "../common/page.h"
#include "../lib/log.h"
#include "process.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

/* Regions per ioctl: a run of written pages is one region. */
#define SCAN_REGIONS 256

/* p->scan_lock held. */
static int scan(struct process *p, uint64_t start, uint64_t end,
		uint64_t *written)
{
	struct page_region v[SCAN_REGIONS];
	uint64_t flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;

	while (start < end) {
		struct pm_scan_arg a = {
			.size = sizeof(a),
			.flags = flags,
			.start = start,
			.end = end,
			.vec = (uint64_t)(uintptr_t)v,
			.vec_len = SCAN_REGIONS,
			.category_inverted = PAGE_IS_PFNZERO,
			.category_mask = PAGE_IS_WRITTEN | PAGE_IS_PFNZERO,
			.return_mask = PAGE_IS_WRITTEN,
		};
		int n = ioctl(p->pagemap_fd, PAGEMAP_SCAN, &a);

		if (n < 0) {
			int err = -errno;

			/*
			 * A VMA in the range without asynchronous
			 * write-protect: one mapped over a registered range
			 * whose UNMAP the loop has not read yet. Nothing of
			 * ours is there; the scan skips it without the check.
			 */
			if (err == -EPERM && (flags & PM_SCAN_CHECK_WPASYNC)) {
				log_debug("client %d: %#" PRIx64 "-%#" PRIx64
					  " holds memory not registered for "
					  "asynchronous write-protect", p->pid,
					  start, end);
				flags &= ~(uint64_t)PM_SCAN_CHECK_WPASYNC;
				continue;
			}
			log_warn("client %d: PAGEMAP_SCAN %#" PRIx64 "-%#" PRIx64
				 ": %s", p->pid, start, end, strerror(-err));
			return err;
		}
		for (int i = 0; i < n; i++) {
			process_invalidate(p, v[i].start, v[i].end,
					   HMMU_NOTIFY_WRITE);
			if (written)
				*written += (v[i].end - v[i].start) / page_size();
		}
		/* Past walk_end nothing was looked at, nor protected. */
		if (a.walk_end <= start || a.walk_end > end)
			break;
		start = a.walk_end;
	}
	return 0;
}

int coherence_collect(struct process *p, uint64_t start, uint64_t end,
		      uint64_t *written)
{
	int err;

	if (written)
		*written = 0;
	pthread_mutex_lock(&p->scan_lock);
	err = scan(p, start, end, written);
	pthread_mutex_unlock(&p->scan_lock);
	return err;
}

int coherence_boundary(struct process *p)
{
	struct uffd_range stack[8], *ranges = stack;
	unsigned n;
	int err = 0;

	if (!p->coarse)
		return 0;
	/* A copy: the scan must not hold p->lock, which invalidations take. */
	pthread_rwlock_rdlock(&p->lock);
	n = p->nranges;
	if (n > sizeof(stack) / sizeof(stack[0]))
		ranges = malloc(n * sizeof(*ranges));
	if (ranges && n)
		memcpy(ranges, p->ranges, n * sizeof(*ranges));
	pthread_rwlock_unlock(&p->lock);
	if (!ranges)
		return -ENOMEM;

	pthread_mutex_lock(&p->scan_lock);
	for (unsigned i = 0; i < n && !err; i++)
		err = scan(p, ranges[i].start, ranges[i].end, NULL);
	pthread_mutex_unlock(&p->scan_lock);
	if (ranges != stack)
		free(ranges);
	return err;
}
