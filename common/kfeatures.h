/* SPDX-License-Identifier: MIT */
/*
 * What the running kernel offers, asked of the kernel itself (never guessed
 * from a version): one probe per feature, all in kfeatures.c, run once and
 * cached. hmmud probes at startup, before any thread, refuses to start
 * without what it cannot do without, and reads the cache wherever it would
 * otherwise try a feature and fall back; "hmmud --check" prints it. The
 * tests read the same cache to skip, with the reason, what this kernel
 * lacks, and to expect what it really does.
 *
 * Not part of libhmmu: a client negotiates its own userfaultfd's features
 * (libhmmu/uffd.c), which is a question about that fd, not a probe.
 */
#ifndef HMMU_KFEATURES_H
#define HMMU_KFEATURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

struct kfeatures {
	/*
	 * userfaultfd (4.3), from UFFDIO_API on a throw-away fd: an fd
	 * accepts UFFDIO_API only once. uffd_err is 0, or why no userfaultfd
	 * could be made to ask (-ENOSYS: this kernel has none), and then
	 * uffd_features is 0. uffd_open_err is 0 if this process may make a
	 * full userfaultfd, the kind a client needs; if not (-EPERM), the
	 * features were asked of a user-mode-only one, which needs no
	 * privilege (5.11) and reports the same.
	 */
	int uffd_err;
	int uffd_open_err;
	uint64_t uffd_features;
	/* io_uring: 0 or why no ring could be set up; multishot poll (5.13). */
	int io_uring_err;
	bool poll_multishot;
	/* pidfd_open (5.3): 0 or -errno. */
	int pidfd_err;
	bool pidfs;	    /* a pidfd is an inode of its own (6.9) */
	bool peer_pidfd;    /* SO_PEERPIDFD (6.5) */
	bool procmap_query; /* PROCMAP_QUERY on /proc/PID/maps (6.11) */
	bool pagemap_scan;  /* PAGEMAP_SCAN on /proc/PID/pagemap (6.7) */
	/*
	 * Does a CPU read of an untouched private anonymous page map the
	 * shared zero page? Most kernels do; some never do (a boot option
	 * such as pvm_no_zero_page=1 makes every read fault allocate a page).
	 * 1 yes, 0 no, -1 if it cannot be told (no PAGEMAP_SCAN).
	 */
	int zero_page_on_read;
	/*
	 * madvise(MADV_POPULATE_WRITE) (5.14): fault a range in writable in
	 * one call. The page-copy pool warms its pages with it, else touches
	 * them one by one.
	 */
	bool madv_populate_write;
};

/*
 * The features, probed on the first call (any thread; the others wait for
 * it), the same answers after. Read-only: never changes once returned.
 */
const struct kfeatures *kfeatures(void);

/*
 * If the kernel lacks a feature hmmud cannot run without, write it, with
 * the Linux version that brought it (and why, if a probe failed), into
 * @buf and return true. A feature that could not be asked (no permission)
 * counts as present: the daemon checks each client's userfaultfd anyway.
 */
bool kfeatures_missing(const struct kfeatures *kf, char *buf, size_t len);

/*
 * What decides whether this process, and the clients of its user, may use
 * what the kernel has: settings and privileges, read from /proc (nothing
 * is tried), so that "hmmud --check" can say how to fix what is missing.
 */
struct kaccess {
	uid_t uid;		  /* effective */
	bool cap_sys_ptrace;	  /* effective capabilities */
	bool cap_dac_override;
	bool cap_sys_admin;
	int io_uring_disabled;	  /* kernel.io_uring_disabled (6.6); -1: none */
	long long io_uring_group; /* kernel.io_uring_group; -1: none */
	int unprivileged_uffd;	  /* vm.unprivileged_userfaultfd; -1: none */
	int yama_ptrace_scope;	  /* kernel.yama.ptrace_scope; -1: no Yama */
	int dev_uffd; /* /dev/userfaultfd: 1 we may open it read-write, 0 not, -1 absent */
};

void kaccess_read(struct kaccess *a);

/*
 * How to get the first required feature kfeatures_missing() names, as one
 * sentence in @buf (a newer kernel, a sysctl, a seccomp filter...); false
 * if nothing required is missing.
 */
bool kfeatures_fix(const struct kfeatures *kf, const struct kaccess *a,
		   char *buf, size_t len);

/*
 * "hmmud --check": one line per feature, yes or no (? where it cannot be
 * told), the version that brought it and what hmmu does with it; then
 * whether this process has the privileges hmmud uses and this user's
 * clients may make a userfaultfd; then a line "fix: ..." for each missing
 * piece that matters, saying how to get it. Returns kfeatures_missing():
 * privileges and clients' userfaultfds do not stop hmmud from starting.
 */
bool kfeatures_print(const struct kfeatures *kf, const struct kaccess *a,
		     FILE *f);

#endif
