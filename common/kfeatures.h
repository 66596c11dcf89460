/* SPDX-License-Identifier: MIT */
/*
 * Kernel behaviours that differ between machines of the same kernel
 * version, probed by doing the thing once and looking at the result. Shared
 * by hmmud (its probe and "hmmud --check") and the tests, which must expect
 * what this kernel really does.
 */
#ifndef HMMU_KFEATURES_H
#define HMMU_KFEATURES_H

/*
 * Does a CPU read of an untouched private anonymous page map the shared
 * zero page? Most kernels do; some never do (a boot option such as
 * pvm_no_zero_page=1 makes every read fault allocate a page). 1 yes, 0 no,
 * -EOPNOTSUPP if it cannot be told (no PAGEMAP_SCAN, before 6.7), or
 * another -errno.
 */
int hmmu_probe_zero_page_on_read(void);

#endif
