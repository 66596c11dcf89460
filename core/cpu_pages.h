/* SPDX-License-Identifier: MIT */
/*
 * What the CPU's page table says about a client's pages, read from
 * /proc/PID/maps, /proc/PID/pagemap and, where the kernel has it (6.7), the
 * PAGEMAP_SCAN ioctl: the userspace counterpart of hmm_range_fault() with
 * no fault requested, as test_hmm's snapshot uses it.
 */
#ifndef HMMUD_CPU_PAGES_H
#define HMMUD_CPU_PAGES_H

#include <stdint.h>

struct process;

/*
 * The HMMU_PFN_* flags (hmmu/driver.h) of each page of [start, start +
 * npages pages) into @states, a byte a page: 0 for a mapped page that is
 * not present, HMMU_PFN_ERROR for holes and PROT_NONE. Returns 0,
 * -ESRCH if the process is gone, -ENOMEM.
 */
int cpu_pages_snapshot(struct process *p, uint64_t start, uint64_t npages,
		       uint8_t *states);

#endif
