/* SPDX-License-Identifier: MIT */
#include "cpu_pages.h"
#include "../common/page.h"
#include "fault.h"
#include "process.h"
#include "vmas.h"
#include "client_mem.h"
#include "../common/kernel_uapi.h"
#include "../common/kfeatures.h"
#include <hmmu/driver.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/*
 * From the VMAs: ERROR for holes and PROT_NONE, NONE elsewhere; and which
 * pages lie in writable VMAs (writable[i], so that a present page can be
 * told READ or WRITE).
 */
/* How a page of a VMA may be written: writable[] of the walks below. */
enum { READ_ONLY = 0, WRITABLE_SHARED, WRITABLE_PRIVATE };

static int mark_vmas(struct process *p, uint64_t start, uint64_t end,
		     uint8_t *states, uint8_t *writable)
{
	struct vma_cursor c;
	struct vma v;
	int r;

	vma_cursor_init(&c, p, start);
	while ((r = vma_next(&c, &v)) == 1 && v.start < end) {
		if (!v.read)
			continue;
		for (uint64_t a = v.start < start ? start : v.start;
		     a < v.end && a < end; a += page_size()) {
			states[(a - start) / page_size()] = 0;
			writable[(a - start) / page_size()] =
				!v.write ? READ_ONLY :
				v.shared ? WRITABLE_SHARED : WRITABLE_PRIVATE;
		}
	}
	vma_cursor_done(&c);
	return r < 0 ? r : 0;
}

static int mark_present(struct process *p, uint64_t start, uint64_t npages,
			uint8_t *states, const uint8_t *writable)
{
	uint64_t entries[512];

	for (uint64_t i = 0; i < npages;) {
		uint64_t n = npages - i < 512 ? npages - i : 512;
		ssize_t got = pread(p->pagemap_fd, entries, n * 8,
				    (off_t)((start / page_size() + i) * 8));

		/*
		 * Nothing past the top of user space: those pages keep the
		 * ERROR the VMA walk gave them. Nothing at all, and the address
		 * space is gone.
		 */
		if (got < 0 || (got == 0 && !client_mm_alive(p)))
			return -ESRCH;
		if (got < 8)
			break;
		n = (uint64_t)got / 8;
		for (uint64_t j = 0; j < n; j++, i++) {
			uint64_t e = entries[j];

			if (states[i] == HMMU_PFN_ERROR || !(e & PM_PRESENT))
				continue;
			/*
			 * The CPU may write it without faulting first. Not a
			 * page-cache page in a private mapping: the kernel
			 * maps it read-only, and a write copies it first.
			 */
			if (writable[i] && !(e & PM_UFFD_WP) &&
			    (e & PM_MMAP_EXCLUSIVE) &&
			    !(writable[i] == WRITABLE_PRIVATE && (e & PM_FILE)))
				states[i] = HMMU_PFN_VALID | HMMU_PFN_WRITE;
			else
				states[i] = HMMU_PFN_VALID;
		}
	}
	return 0;
}

/* Zero page and huge pages, from PAGEMAP_SCAN; silently absent without it (6.7). */
static void mark_zero_and_huge(int fd, uint64_t start, uint64_t end,
			       uint8_t *states)
{
	struct page_region regions[64];
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.start = start,
		.end = end,
		.vec = (uint64_t)(uintptr_t)regions,
		.vec_len = 64,
		.category_anyof_mask = PAGE_IS_PFNZERO | PAGE_IS_HUGE,
		.return_mask = PAGE_IS_PFNZERO | PAGE_IS_HUGE | PAGE_IS_PRESENT,
	};

	if (!kfeatures()->pagemap_scan)
		return;
	while (arg.start < end) {
		int n = ioctl(fd, PAGEMAP_SCAN, &arg);

		if (n < 0)
			return;
		for (int r = 0; r < n; r++) {
			for (uint64_t a = regions[r].start; a < regions[r].end;
			     a += page_size()) {
				uint8_t *st = &states[(a - start) / page_size()];

				if (*st == HMMU_PFN_ERROR)
					continue;
				if (regions[r].categories & PAGE_IS_PFNZERO)
					*st = HMMU_PFN_VALID | HMMU_PFN_ZERO;
				else if (regions[r].categories & PAGE_IS_HUGE)
					*st |= HMMU_PFN_HUGE;
			}
		}
		if (arg.walk_end <= arg.start)
			return;
		arg.start = arg.walk_end;
	}
}

int cpu_pages_snapshot(struct process *p, uint64_t start, uint64_t npages,
		       uint8_t *states)
{
	uint64_t end = start + npages * page_size();
	uint8_t *writable;
	int err;

	writable = calloc(npages, 1);
	if (!writable)
		return -ENOMEM;
	memset(states, HMMU_PFN_ERROR, npages);
	err = process_alive(p);
	if (!err)
		err = mark_vmas(p, start, end, states, writable);
	if (err)
		goto out;
	/* The address space's own pagemap: never the pid's, which may be another's. */
	err = mark_present(p, start, npages, states, writable);
	if (!err)
		mark_zero_and_huge(p->pagemap_fd, start, end, states);
out:
	free(writable);
	return err;
}
