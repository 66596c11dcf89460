/* SPDX-License-Identifier: MIT */
/*
 * Kernel UAPI newer than the system headers (Debian 12 ships Linux 6.1
 * headers; the kernels we run on are newer), in one place: userfaultfd,
 * PAGEMAP_SCAN, PROCMAP_QUERY, the pidfd bits, and the /proc/PID/pagemap
 * entry bits no header carries. Each is defined only where the system
 * header lacks it, so newer headers win. Nothing else in the tree defines
 * these. Whether the running kernel supports a feature is never inferred
 * from these constants: it is asked once (common/kfeatures.c).
 */
#ifndef HMMU_KERNEL_UAPI_H
#define HMMU_KERNEL_UAPI_H

#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/types.h>
#include <linux/userfaultfd.h>
#include <sys/socket.h>

/* ---- madvise ------------------------------------------------------------ */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* 5.14 */
#endif

/* ---- userfaultfd --------------------------------------------------------- */

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1 /* 5.11 */
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00) /* /dev/userfaultfd, 6.1 */
#endif
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

/* ---- /proc/PID/pagemap ---------------------------------------------------- */

/*
 * Entry bits (Documentation/admin-guide/mm/pagemap.rst): kernel ABI, but in
 * no UAPI header. The PFN reads 0 without CAP_SYS_ADMIN.
 */
#ifndef PM_PRESENT
#define PM_PRESENT (1ull << 63)
#define PM_SWAP (1ull << 62)	       /* or any other swap-type entry */
#define PM_FILE (1ull << 61)	       /* page cache or shared anon */
#define PM_UFFD_WP (1ull << 57)	       /* 5.13 */
#define PM_MMAP_EXCLUSIVE (1ull << 56) /* 4.2 */
#define PM_PFN_MASK ((1ull << 55) - 1)
/* With PM_SWAP: the entry's swap type, 5 bits; the last is a PTE marker. */
#define PM_SWAP_TYPE_MASK 0x1full
#define PM_SWAP_TYPE_PTE_MARKER 0x1full
#endif

/* PAGEMAP_SCAN on /proc/PID/pagemap (6.7). */
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
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)   /* write-protect the pages matched */
#define PM_SCAN_CHECK_WPASYNC (1 << 1) /* -EPERM on a VMA not WP_ASYNC */
#endif

/* ---- /proc/PID/maps -------------------------------------------------------- */

/* PROCMAP_QUERY on /proc/PID/maps (6.11): one VMA per ioctl. */
#ifndef PROCMAP_QUERY
#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_VMA_READABLE 0x01
#define PROCMAP_QUERY_VMA_WRITABLE 0x02
#define PROCMAP_QUERY_VMA_EXECUTABLE 0x04
#define PROCMAP_QUERY_VMA_SHARED 0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA 0x10
#define PROCMAP_QUERY_FILE_BACKED_VMA 0x20
struct procmap_query {
	__u64 size, query_flags, query_addr;
	__u64 vma_start, vma_end, vma_flags, vma_page_size, vma_offset;
	__u64 inode;
	__u32 dev_major, dev_minor, vma_name_size, build_id_size;
	__u64 vma_name_addr, build_id_addr;
};
#endif

/* ---- pidfds ------------------------------------------------------------------ */

/* A peer's pidfd, from its socket (6.5). */
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif
/*
 * pidfs (6.9): a pidfd is an inode of its own, numbered uniquely for the
 * boot; before, every pidfd shared one anonymous inode.
 */
#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

#endif
