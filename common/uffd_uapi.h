/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd UAPI newer than the system headers (Debian 12 ships Linux 6.1
 * headers; the kernels we run on are newer). Everything the kernel added
 * after 6.1 that hmmu uses is defined here, in one place, and only where the
 * system header lacks it. Whether the running kernel supports a feature is
 * never inferred from these constants: see daemon/probe.c.
 */
#ifndef HMMU_UFFD_UAPI_H
#define HMMU_UFFD_UAPI_H

#include <linux/userfaultfd.h>
#include <sys/socket.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13) /* 6.4 */
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14) /* 6.6 */
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15) /* 6.7 */
#endif
#ifndef UFFD_FEATURE_MOVE
#define UFFD_FEATURE_MOVE (1 << 16) /* 6.8 */
#endif

/* PAGEMAP_SCAN on /proc/PID/pagemap (6.7). */
#include <linux/fs.h>
#ifndef PAGEMAP_SCAN
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
struct page_region {
	__u64 start, end, categories;
};
struct pm_scan_arg {
	__u64 size, flags, start, end, walk_end, vec, vec_len, max_pages;
	__u64 category_inverted, category_mask, category_anyof_mask;
	__u64 return_mask;
};
#endif

/* Socket options for a peer's pidfd (6.5). */
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

/*
 * The events every hmmu userfaultfd must deliver: they are how the daemon
 * learns that the CPU side of a mirrored range changed.
 */
#define HMMU_UFFD_REQUIRED_FEATURES                                            \
	(UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE |                \
	 UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_PAGEFAULT_FLAG_WP)

/*
 * Enabled when the kernel offers them; the daemon checks which it got.
 * EVENT_FORK needs CAP_SYS_PTRACE (since 5.11): without it a child simply
 * inherits no registration, which is what hmmu wants of a child anyway.
 */
#define HMMU_UFFD_OPTIONAL_FEATURES                                            \
	(UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_WP_UNPOPULATED |               \
	 UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_MISSING_SHMEM |        \
	 UFFD_FEATURE_MISSING_HUGETLBFS | UFFD_FEATURE_THREAD_ID)

#endif
