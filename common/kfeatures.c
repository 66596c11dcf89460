/* SPDX-License-Identifier: MIT */
/*
 * One probe per kernel feature (CRIU's kerndat.c, liburing's probes): each
 * does the thing once and looks at the result. The daemon runs them at
 * startup, under its unit's system-call filter, so they use nothing that
 * filter does not allow (userfaultfd, io_uring, pidfd_open, socketpair,
 * ioctl on its own /proc/self files).
 */
#include "kfeatures.h"
#include "kernel_uapi.h"
#include "uffd_open.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <linux/capability.h>

static void probe_uffd(struct kfeatures *kf)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = hmmu_uffd_open();

	kf->uffd_open_err = fd < 0 ? fd : 0;
	/* Not allowed a full one: a user-mode-only one reports the same. */
	if (fd == -EPERM) {
		fd = (int)syscall(SYS_userfaultfd,
				  O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
		if (fd < 0)
			fd = errno == EINVAL ? -EPERM : -errno; /* before 5.11 */
	}
	if (fd < 0) {
		kf->uffd_err = fd;
		return;
	}
	/* UFFDIO_API is accepted once per fd: this one is thrown away. */
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		kf->uffd_err = -errno;
	else
		kf->uffd_features = api.features;
	close(fd);
}

/*
 * Multishot poll (IORING_POLL_ADD_MULTI, 5.13) cannot be told from the
 * opcode list: arm one on an eventfd that is readable already. A kernel
 * that has it posts a completion flagged MORE (the poll goes on); one that
 * has not fails the request with -EINVAL.
 */
static void probe_io_uring(struct kfeatures *kf)
{
	struct __kernel_timespec limit = { .tv_sec = 1 };
	struct io_uring_cqe *cqe = NULL;
	struct io_uring_sqe *sqe;
	struct io_uring ring;
	int efd, err;

	err = io_uring_queue_init(4, &ring, 0);
	if (err < 0) {
		kf->io_uring_err = err;
		return;
	}
	efd = eventfd(1, EFD_CLOEXEC | EFD_NONBLOCK);
	sqe = io_uring_get_sqe(&ring);
	if (efd < 0 || !sqe) {
		kf->io_uring_err = efd < 0 ? -errno : -EBUSY;
		goto out;
	}
	io_uring_prep_poll_multishot(sqe, efd, POLLIN);
	err = io_uring_submit_and_wait_timeout(&ring, &cqe, 1, &limit, NULL);
	if (err >= 0 && cqe) {
		kf->poll_multishot = cqe->res > 0 &&
				     (cqe->flags & IORING_CQE_F_MORE);
		io_uring_cqe_seen(&ring, cqe);
	}
out:
	if (efd >= 0)
		close(efd);
	io_uring_queue_exit(&ring); /* cancels the poll */
}

static void probe_pidfd(struct kfeatures *kf)
{
	struct statfs sfs;
	int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);

	if (fd < 0) {
		kf->pidfd_err = -errno;
		return;
	}
	kf->pidfs = fstatfs(fd, &sfs) == 0 && sfs.f_type == PID_FS_MAGIC;
	close(fd);
}

static void probe_peer_pidfd(struct kfeatures *kf)
{
	socklen_t len = sizeof(int);
	int sv[2], pidfd;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return;
	if (getsockopt(sv[0], SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0) {
		kf->peer_pidfd = true;
		close(pidfd);
	}
	close(sv[0]);
	close(sv[1]);
}

static void probe_procmap_query(struct kfeatures *kf)
{
	struct procmap_query q = {
		.size = sizeof(q),
		.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
	};
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	kf->procmap_query = ioctl(fd, PROCMAP_QUERY, &q) == 0;
	close(fd);
}

/* PAGEMAP_SCAN, and what it says of a page we only read. */
static void probe_pagemap_scan(struct kfeatures *kf)
{
	long page = sysconf(_SC_PAGESIZE);
	struct page_region region;
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.vec = (uint64_t)(uintptr_t)&region,
		.vec_len = 1,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
	};
	volatile char *p;
	int fd, n;

	kf->zero_page_on_read = -1;
	p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	(void)p[0]; /* the read fault under test */
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		arg.start = (uint64_t)(uintptr_t)p;
		arg.end = arg.start + (uint64_t)page;
		n = ioctl(fd, PAGEMAP_SCAN, &arg);
		if (n >= 0) {
			kf->pagemap_scan = true;
			kf->zero_page_on_read =
				n == 1 && (region.categories & PAGE_IS_PFNZERO);
		}
		close(fd);
	}
	munmap((void *)p, (size_t)page);
}

/* MADV_POPULATE_WRITE: older kernels say EINVAL to an advice they lack. */
static void probe_populate_write(struct kfeatures *kf)
{
	long page = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	kf->madv_populate_write =
		madvise(p, (size_t)page, MADV_POPULATE_WRITE) == 0;
	munmap(p, (size_t)page);
}

static struct kfeatures cache;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void probe_all(void)
{
	probe_uffd(&cache);
	probe_io_uring(&cache);
	probe_pidfd(&cache);
	probe_peer_pidfd(&cache);
	probe_procmap_query(&cache);
	probe_pagemap_scan(&cache);
	probe_populate_write(&cache);
}

const struct kfeatures *kfeatures(void)
{
	pthread_once(&cache_once, probe_all);
	return &cache;
}

/* ---- what each feature is to hmmu --------------------------------------- */

enum role { REQUIRED, FALLBACK, UNUSED, INFO };

/* Which answer of struct kfeatures a row shows. */
enum answer { A_UFFD, A_UFFD_BIT, A_POLL, A_PIDFD, A_PIDFS, A_PEER_PIDFD,
	      A_PROCMAP_QUERY, A_PAGEMAP_SCAN, A_ZERO_PAGE,
	      A_POPULATE_WRITE };

struct row {
	const char *group, *name;
	const char *since; /* the Linux version that brought it */
	enum role role;
	const char *what;
	enum answer answer;
	uint64_t uffd_bit; /* A_UFFD_BIT */
};

static const struct row rows[] = {
	{ "userfaultfd", "api", "4.3", REQUIRED,
	  "userfaultfd (CONFIG_USERFAULTFD), through which each client is "
	  "watched", A_UFFD, 0 },
	{ "userfaultfd", "wp", "5.7", REQUIRED, "write-protect faults",
	  A_UFFD_BIT, UFFD_FEATURE_PAGEFAULT_FLAG_WP },
	{ "userfaultfd", "event-remap", "4.11", REQUIRED, "mremap events",
	  A_UFFD_BIT, UFFD_FEATURE_EVENT_REMAP },
	{ "userfaultfd", "event-remove", "4.11", REQUIRED, "madvise events",
	  A_UFFD_BIT, UFFD_FEATURE_EVENT_REMOVE },
	{ "userfaultfd", "event-unmap", "4.11", REQUIRED, "munmap events",
	  A_UFFD_BIT, UFFD_FEATURE_EVENT_UNMAP },
	{ "userfaultfd", "event-fork", "4.11", FALLBACK,
	  "fork events (clients with CAP_SYS_PTRACE; else a child is not "
	  "mirrored)", A_UFFD_BIT, UFFD_FEATURE_EVENT_FORK },
	{ "userfaultfd", "missing-shmem", "4.11", FALLBACK,
	  "missing faults on shmem", A_UFFD_BIT, UFFD_FEATURE_MISSING_SHMEM },
	{ "userfaultfd", "wp-shmem", "5.19", FALLBACK,
	  "write-protect on shmem and hugetlbfs (else anonymous memory only)",
	  A_UFFD_BIT, UFFD_FEATURE_WP_HUGETLBFS_SHMEM },
	{ "userfaultfd", "wp-unpopulated", "6.4", FALLBACK,
	  "write-protect of untouched pages (else a range fault populates "
	  "them first)", A_UFFD_BIT, UFFD_FEATURE_WP_UNPOPULATED },
	{ "userfaultfd", "poison", "6.6", UNUSED, "UFFDIO_POISON", A_UFFD_BIT,
	  UFFD_FEATURE_POISON },
	{ "userfaultfd", "wp-async", "6.7", FALLBACK,
	  "asynchronous write-protect, with PAGEMAP_SCAN (else coarse-grained "
	  "mirrors are refused)", A_UFFD_BIT, UFFD_FEATURE_WP_ASYNC },
	{ "userfaultfd", "move", "6.8", UNUSED, "UFFDIO_MOVE", A_UFFD_BIT,
	  UFFD_FEATURE_MOVE },
	{ "io_uring", "poll-multishot", "5.13", REQUIRED,
	  "io_uring multishot poll, the event loop's watches", A_POLL, 0 },
	{ "pidfd", "pidfd-open", "5.3", REQUIRED,
	  "pidfd_open, how a client's exit is seen", A_PIDFD, 0 },
	{ "pidfd", "peer-pidfd", "6.5", FALLBACK,
	  "SO_PEERPIDFD (else pidfd_open of the peer's pid)", A_PEER_PIDFD, 0 },
	{ "pidfd", "pidfs", "6.9", FALLBACK,
	  "pidfd inode numbers, which tell a reused pid apart (else only the "
	  "old address space being gone does)", A_PIDFS, 0 },
	{ "procfs", "procmap-query", "6.11", FALLBACK,
	  "PROCMAP_QUERY (else /proc/PID/maps is parsed)", A_PROCMAP_QUERY, 0 },
	{ "procfs", "pagemap-scan", "6.7", FALLBACK,
	  "PAGEMAP_SCAN (else snapshots report no ZERO or HUGE page)",
	  A_PAGEMAP_SCAN, 0 },
	{ "mm", "zero-page-read", "-", INFO,
	  "a read fault maps the shared zero page (snapshots then report ZERO)",
	  A_ZERO_PAGE, 0 },
	{ "mm", "populate-write", "5.14", FALLBACK,
	  "MADV_POPULATE_WRITE, which warms the page-copy pool (else it "
	  "touches each page)", A_POPULATE_WRITE, 0 },
};

#define NROWS (sizeof(rows) / sizeof(rows[0]))

/* 1 yes, 0 no, -1 cannot be told. */
static int state(const struct kfeatures *kf, const struct row *r)
{
	switch (r->answer) {
	case A_UFFD:
	case A_UFFD_BIT:
		if (kf->uffd_err)
			return kf->uffd_err == -ENOSYS ? 0 : -1;
		return r->answer == A_UFFD || (kf->uffd_features & r->uffd_bit);
	case A_POLL:
		return kf->poll_multishot;
	case A_PIDFD:
		if (kf->pidfd_err)
			return kf->pidfd_err == -ENOSYS ? 0 : -1;
		return 1;
	case A_PIDFS:
		return kf->pidfd_err ? -1 : kf->pidfs;
	case A_PEER_PIDFD:
		return kf->peer_pidfd;
	case A_PROCMAP_QUERY:
		return kf->procmap_query;
	case A_PAGEMAP_SCAN:
		return kf->pagemap_scan;
	case A_ZERO_PAGE:
		return kf->zero_page_on_read;
	case A_POPULATE_WRITE:
		return kf->madv_populate_write;
	}
	return -1;
}

bool kfeatures_missing(const struct kfeatures *kf, char *buf, size_t len)
{
	for (size_t i = 0; i < NROWS; i++) {
		const struct row *r = &rows[i];

		if (r->role != REQUIRED || state(kf, r) != 0)
			continue;
		if (r->answer == A_POLL && kf->io_uring_err)
			snprintf(buf, len, "io_uring, which the event loop "
				 "runs on (io_uring_setup fails here: %s)",
				 strerror(-kf->io_uring_err));
		else if (r->answer == A_UFFD_BIT)
			snprintf(buf, len, "userfaultfd %s (Linux %s or newer)",
				 r->what, r->since);
		else
			snprintf(buf, len, "%s (Linux %s or newer)", r->what,
				 r->since);
		return true;
	}
	return false;
}

/* ---- what the user can do about it --------------------------------------- */

static long long read_number(const char *path)
{
	long long v;
	FILE *f = fopen(path, "re");
	int n;

	if (!f)
		return -1;
	n = fscanf(f, "%lld", &v);
	fclose(f);
	return n == 1 ? v : -1;
}

/* The effective capability set, from /proc/self/status. */
static uint64_t effective_caps(void)
{
	unsigned long long caps = 0;
	char line[256];
	FILE *f = fopen("/proc/self/status", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "CapEff: %llx", &caps) == 1)
			break;
	fclose(f);
	return caps;
}

void kaccess_read(struct kaccess *a)
{
	uint64_t caps = effective_caps();

	a->uid = geteuid();
	a->cap_sys_ptrace = caps & (1ull << CAP_SYS_PTRACE);
	a->cap_dac_override = caps & (1ull << CAP_DAC_OVERRIDE);
	a->cap_sys_admin = caps & (1ull << CAP_SYS_ADMIN);
	a->io_uring_disabled =
		(int)read_number("/proc/sys/kernel/io_uring_disabled");
	a->io_uring_group = read_number("/proc/sys/kernel/io_uring_group");
	a->unprivileged_uffd =
		(int)read_number("/proc/sys/vm/unprivileged_userfaultfd");
	a->yama_ptrace_scope =
		(int)read_number("/proc/sys/kernel/yama/ptrace_scope");
	if (access("/dev/userfaultfd", F_OK) < 0)
		a->dev_uffd = -1;
	else
		a->dev_uffd = faccessat(AT_FDCWD, "/dev/userfaultfd",
					R_OK | W_OK, AT_EACCESS) == 0;
}

/* Why io_uring_setup() fails here, and what lets hmmud have it. */
static void io_uring_fix(const struct kfeatures *kf, const struct kaccess *a,
			 char *buf, size_t len)
{
	switch (kf->io_uring_err) {
	case -EPERM:
		if (a->io_uring_disabled == 2)
			snprintf(buf, len, "io_uring is disabled for every "
				 "process (sysctl kernel.io_uring_disabled=2): "
				 "set kernel.io_uring_disabled=0, or =1 with "
				 "kernel.io_uring_group set to a group hmmud "
				 "runs in");
		else if (a->io_uring_disabled == 1)
			snprintf(buf, len, "io_uring is allowed only to "
				 "CAP_SYS_ADMIN and to the group "
				 "kernel.io_uring_group names (%lld%s) "
				 "(sysctl kernel.io_uring_disabled=1): set "
				 "kernel.io_uring_disabled=0, or "
				 "kernel.io_uring_group to a group hmmud runs "
				 "in (hmmud.service gives it no CAP_SYS_ADMIN)",
				 a->io_uring_group,
				 a->io_uring_group < 0 ? ": none" : "");
		else
			snprintf(buf, len, "io_uring_setup is refused although "
				 "kernel.io_uring_disabled allows it: a seccomp "
				 "filter (a container's, usually) must allow "
				 "io_uring_setup, io_uring_enter and "
				 "io_uring_register");
		return;
	case -ENOSYS:
		snprintf(buf, len, "use a kernel built with CONFIG_IO_URING=y "
			 "(Linux 5.13 or newer); a seccomp filter (a "
			 "container's) that refuses io_uring_setup looks the "
			 "same");
		return;
	case -ENOMEM:
		snprintf(buf, len, "io_uring could not have memory for its "
			 "rings: raise RLIMIT_MEMLOCK (ulimit -l, LimitMEMLOCK=), "
			 "which kernels before 5.12 charge them to");
		return;
	case 0:
		snprintf(buf, len, "upgrade to Linux 5.13 or newer");
		return;
	default:
		snprintf(buf, len, "io_uring_setup fails with %s",
			 strerror(-kf->io_uring_err));
	}
}

static void row_fix(const struct row *r, const struct kfeatures *kf,
		    const struct kaccess *a, char *buf, size_t len)
{
	switch (r->answer) {
	case A_POLL:
		io_uring_fix(kf, a, buf, len);
		return;
	case A_UFFD:
		snprintf(buf, len, "use a kernel built with "
			 "CONFIG_USERFAULTFD=y (Linux %s or newer); a seccomp "
			 "filter (a container's) that refuses userfaultfd(2) "
			 "looks the same", r->since);
		return;
	case A_UFFD_BIT:
		if (r->uffd_bit == UFFD_FEATURE_PAGEFAULT_FLAG_WP)
			snprintf(buf, len, "upgrade to Linux %s or newer, on "
				 "an architecture with userfaultfd write-protect "
				 "(CONFIG_HAVE_ARCH_USERFAULTFD_WP: x86-64 has "
				 "it)", r->since);
		else
			snprintf(buf, len, "upgrade to Linux %s or newer",
				 r->since);
		return;
	case A_PIDFD:
		snprintf(buf, len, "upgrade to Linux %s or newer (or, in a "
			 "container, let its seccomp filter allow pidfd_open)",
			 r->since);
		return;
	default:
		snprintf(buf, len, "upgrade to Linux %s or newer", r->since);
	}
}

bool kfeatures_fix(const struct kfeatures *kf, const struct kaccess *a,
		   char *buf, size_t len)
{
	for (size_t i = 0; i < NROWS; i++) {
		if (rows[i].role != REQUIRED || state(kf, &rows[i]) != 0)
			continue;
		row_fix(&rows[i], kf, a, buf, len);
		return true;
	}
	return false;
}

/*
 * The daemon reaches a client's memory through /proc/PID/{mem,pagemap}
 * and process_vm_readv/writev: ptrace access, which the kernel grants
 * without CAP_SYS_PTRACE only over processes of the same uid (and, under
 * Yama's ptrace_scope 1, only over descendants); the files belong to the
 * client's uid, hence CAP_DAC_OVERRIDE (docs/operations.md).
 */
static void print_privilege_fixes(const struct kaccess *a, FILE *f)
{
	if (a->yama_ptrace_scope >= 3)
		fprintf(f, "fix: privileges: kernel.yama.ptrace_scope=3 "
			"forbids reading other processes' memory to everyone, "
			"root too: boot with it at 2 or lower (it cannot be "
			"lowered at run time)\n");
	if (a->cap_sys_ptrace && a->cap_dac_override)
		return;
	fprintf(f, "fix: privileges: without CAP_SYS_PTRACE and "
		"CAP_DAC_OVERRIDE, hmmud (uid %u) can serve only clients of "
		"uid %u%s: run hmmud as root, or give it CAP_SYS_PTRACE and "
		"CAP_DAC_OVERRIDE (as hmmud.service does)\n",
		(unsigned)a->uid, (unsigned)a->uid,
		a->yama_ptrace_scope == 1 ? ", and of those only its own "
					    "descendants (kernel.yama.ptrace_scope=1)" :
		a->yama_ptrace_scope == 2 ? ", and none at all "
					    "(kernel.yama.ptrace_scope=2)" : "");
}

/*
 * A client needs a userfaultfd that also serves faults the kernel takes
 * on its behalf (the daemon refuses UFFD_USER_MODE_ONLY). The kernel
 * makes one for CAP_SYS_PTRACE, for anyone if vm.unprivileged_userfaultfd
 * is 1, and through /dev/userfaultfd (6.1) for whoever may open it.
 */
static void print_client_fix(const struct kfeatures *kf,
			     const struct kaccess *a, FILE *f)
{
	if (kf->uffd_open_err != -EPERM)
		return;
	if (a->unprivileged_uffd == 1) {
		fprintf(f, "fix: clients: userfaultfd(2) is refused to uid %u "
			"although vm.unprivileged_userfaultfd=1: a seccomp "
			"filter or security module refuses it\n",
			(unsigned)a->uid);
		return;
	}
	fprintf(f, "fix: clients: processes of uid %u may not create a "
		"userfaultfd that serves kernel faults, so as hmmu clients "
		"they cannot register a mirror: set sysctl "
		"vm.unprivileged_userfaultfd=1, %sor run them as root (with "
		"CAP_SYS_PTRACE)\n", (unsigned)a->uid,
		a->dev_uffd == 0 ? "or give them read-write access to "
				   "/dev/userfaultfd (e.g. a udev rule "
				   "KERNEL==\"userfaultfd\", GROUP=\"hmmu\", "
				   "MODE=\"0660\", and the users in group hmmu), " :
				   "");
}

static void print_row(FILE *f, const char *group, const char *name, int s,
		      const char *since, const char *role, const char *what)
{
	fprintf(f, "%-11s %-15s %-4s %-5s %s%s\n", group, name,
		s < 0 ? "?" : s ? "yes" : "no", since, role, what);
}

bool kfeatures_print(const struct kfeatures *kf, const struct kaccess *a,
		     FILE *f)
{
	static const char *const roles[] = {
		[REQUIRED] = "required: ", [FALLBACK] = "", [UNUSED] = "unused: ",
		[INFO] = "",
	};
	struct utsname u;
	char why[256], fix[512];
	bool missing;

	if (uname(&u) == 0)
		fprintf(f, "kernel      %-15s %s\n", "release", u.release);
	for (size_t i = 0; i < NROWS; i++)
		print_row(f, rows[i].group, rows[i].name, state(kf, &rows[i]),
			  rows[i].since, roles[rows[i].role], rows[i].what);
	print_row(f, "privilege", "sys-ptrace", a->cap_sys_ptrace, "-", "",
		  "CAP_SYS_PTRACE: reach the memory of other users' clients");
	print_row(f, "privilege", "dac-override", a->cap_dac_override, "-", "",
		  "CAP_DAC_OVERRIDE: open their /proc/PID/mem and pagemap");
	print_row(f, "client", "userfaultfd",
		  kf->uffd_open_err == -EPERM ? 0 : kf->uffd_open_err ? -1 : 1,
		  "-", "", "a userfaultfd that serves kernel faults, which a "
		  "client run by this user needs");
	if (kf->uffd_err && kf->uffd_err != -ENOSYS)
		fprintf(f, "userfaultfd: cannot be asked here (%s)\n",
			strerror(-kf->uffd_err));

	for (size_t i = 0; i < NROWS; i++) {
		if (rows[i].role != REQUIRED || state(kf, &rows[i]) != 0)
			continue;
		row_fix(&rows[i], kf, a, fix, sizeof(fix));
		fprintf(f, "fix: %s %s: %s\n", rows[i].group, rows[i].name, fix);
	}
	if (kf->uffd_err && kf->uffd_err != -ENOSYS)
		fprintf(f, "fix: userfaultfd: to see its features, run hmmud "
			"--check as root\n");
	print_privilege_fixes(a, f);
	print_client_fix(kf, a, f);

	missing = kfeatures_missing(kf, why, sizeof(why));
	if (missing)
		fprintf(f, "hmmud cannot run here: it lacks %s\n", why);
	return missing;
}
