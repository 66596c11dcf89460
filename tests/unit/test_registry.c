/* SPDX-License-Identifier: MIT */
/*
 * The mirror registry on its own: no daemon, no socket, no event loop
 * (registry_init() with a NULL loop, so nobody watches a userfaultfd and
 * the last process_put() closes it). Pins down the lifecycle rules as the
 * registry implements them: when a userfaultfd is asked for and when it is
 * taken, when per-process state is created and torn down, -EBUSY / -EINVAL
 * / -EBADF without side effects, releases, two processes, pid reuse, and
 * register/unregister from many threads at once.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

/* GCC says __SANITIZE_ADDRESS__, clang __has_feature(address_sanitizer). */
#if defined(__SANITIZE_ADDRESS__)
#define HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_LSAN 1
#endif
#endif
#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#include "common/kernel_uapi.h"
#include "core/mirror.h"
#include "core/process.h"
#include "daemon/registry.h"
#include "core/device.h"

#define MAX_MIRRORS 32

static struct registry reg;
static struct hmmu_device *dev;
static struct peer self;		  /* this test process */
static struct hmmu_mirror *mirrors[MAX_MIRRORS]; /* made by new_mirror() */
static unsigned nmirrors;
static int extra_pidfds[4];
static unsigned nextra_pidfds;
static pid_t child = -1;		  /* a second process, if any */
static int child_pipe = -1;		  /* its stdin: closing it ends it */
/* What the second process made of its own: a userfaultfd and probe pages. */
static int other_uffd = -1;
static uint64_t other_probe;

static int pidfd_of(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	cr_assert_geq(fd, 0, "pidfd_open(%d): %s", pid, strerror(errno));
	return fd;
}

static struct peer peer_of(pid_t pid, int pidfd)
{
	struct peer p = { .pid = pid, .uid = getuid(), .gid = getgid(),
			  .pidfd = pidfd };
	struct stat st;

	cr_assert_eq(fstat(pidfd, &st), 0);
	p.pid_ino = (uint64_t)st.st_ino;
	return p;
}

static void setup(void)
{
	self.pidfd = -1;
	registry_init(&reg, NULL);
	cr_assert_eq(device_create("dmirror:name=d0", &dev), 0);
	self = peer_of(getpid(), pidfd_of(getpid()));
}

/* Whatever a test left registered is unregistered, then all is freed. */
static void teardown(void)
{
	for (unsigned i = 0; i < nmirrors; i++) {
		if (mirrors[i]->registered)
			registry_unregister(&reg, mirrors[i]);
		mirror_put(mirrors[i]);
	}
	nmirrors = 0;
	device_destroy(dev);
	registry_fini(&reg);
	if (self.pidfd >= 0)
		close(self.pidfd);
	for (unsigned i = 0; i < nextra_pidfds; i++)
		close(extra_pidfds[i]);
	nextra_pidfds = 0;
	if (other_uffd >= 0)
		close(other_uffd);
	other_uffd = -1;
	if (child > 0) {
		close(child_pipe);
		waitpid(child, NULL, 0);
		child = -1;
	}
#ifdef HAVE_LSAN
	/*
	 * A Criterion worker's exit status is not looked at once its test
	 * reported, and an assertion failing in .fini fails nothing either:
	 * check for leaks now, and crash the test if there are any.
	 */
	if (__lsan_do_recoverable_leak_check())
		abort();
#endif
}

TestSuite(registry, .init = setup, .fini = teardown, .timeout = 120);

static struct hmmu_mirror *new_mirror(const struct peer *owner)
{
	struct hmmu_mirror *m = mirror_new(0, dev, owner, NULL);

	cr_assert_not_null(m);
	cr_assert_lt(nmirrors, MAX_MIRRORS);
	mirrors[nmirrors++] = m;
	return m;
}

/* A userfaultfd with no UFFDIO_API yet, or -errno. */
static int raw_uffd(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	return fd >= 0 ? fd : -errno;
}

/* A userfaultfd after UFFDIO_API asking for @features, or -errno. */
static int uffd_with(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = raw_uffd(), err;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/*
 * Two untouched pages of ours, as libhmmu sends with its userfaultfd: the
 * registry proves with them that the fd is this address space's.
 */
static uint64_t fresh_probe(void)
{
	void *p = mmap(NULL, 2 * (size_t)sysconf(_SC_PAGESIZE),
		       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	return (uint64_t)(uintptr_t)p;
}

/* What the daemon accepts: a userfaultfd with the required features. */
static int good_uffd(void)
{
	int fd = uffd_with(HMMU_UFFD_REQUIRED_FEATURES);

	cr_assert_geq(fd, 0, "userfaultfd with the required features: %s",
		      strerror(-fd));
	return fd;
}

/*
 * How many fds this process has open: all if @kind is NULL, else only the
 * userfaultfds (@kind "userfaultfd") or the pidfds ("pidfd").
 */
static int count_fds(const char *kind)
{
	char path[300], target[64], want[32];
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	ssize_t len;
	int n = 0;

	cr_assert_not_null(d);
	snprintf(want, sizeof(want), "anon_inode:[%s]", kind ? kind : "");
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (!kind) {
			n++;
			continue;
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%s", de->d_name);
		len = readlink(path, target, sizeof(target) - 1);
		if (len < 0)
			continue;
		target[len] = '\0';
		if (strcmp(target, want) == 0)
			n++;
	}
	closedir(d);
	return n;
}

static int fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

/* The registry's counts, and @peer's own as registry_stats() gives them. */
#define assert_counts(peer, procs, mirs, rels, my_state, my_mirrors)          \
	do {                                                                   \
		struct hmmu_wire_stats st_;                                    \
                                                                               \
		cr_assert_eq(reg.processes, (uint64_t)(procs), "processes");   \
		cr_assert_eq(reg.mirrors, (uint64_t)(mirs), "mirrors");        \
		cr_assert_eq(reg.releases, (uint64_t)(rels), "releases");      \
		registry_stats(&reg, (peer), NULL, &st_);                            \
		cr_assert_eq(st_.value[HMMU_STAT_PROCESSES], (uint64_t)(procs)); \
		cr_assert_eq(st_.value[HMMU_STAT_MIRRORS], (uint64_t)(mirs));  \
		cr_assert_eq(st_.value[HMMU_STAT_RELEASES], (uint64_t)(rels)); \
		cr_assert_eq(st_.value[HMMU_STAT_MY_STATE],                    \
			     (uint64_t)(my_state), "my_state");                \
		cr_assert_eq(st_.value[HMMU_STAT_MY_MIRRORS],                  \
			     (uint64_t)(my_mirrors), "my_mirrors");            \
	} while (0)

static void assert_unregistered(const struct hmmu_mirror *m)
{
	cr_assert_not(m->registered);
	cr_assert_null(m->proc);
	cr_assert_null(m->mmu.pt, "no device MMU while unbound");
}

/* Register @m, handing over a fresh userfaultfd; asserts it was taken. */
static void register_first(struct hmmu_mirror *m)
{
	int fd = good_uffd();

	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), 0);
	cr_assert_eq(fd, -1, "the registry owns the userfaultfd");
}

/* Register @m with no userfaultfd: the process must have state. */
static void register_join(struct hmmu_mirror *m)
{
	int fd = -1;

	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), 0);
	cr_assert_eq(fd, -1);
}

Test(registry, first_register_without_uffd_needs_uffd_and_changes_nothing)
{
	struct hmmu_mirror *m = new_mirror(&self);
	int fd = -1;

	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), HMMU_STATUS_NEED_UFFD);
	cr_assert_eq(fd, -1);
	assert_unregistered(m);
	assert_counts(&self, 0, 0, 0, 0, 0);
	cr_assert_null(registry_find_process(&reg, &self));
}

Test(registry, first_register_takes_the_uffd_and_creates_process_state)
{
	struct hmmu_mirror *m = new_mirror(&self);
	int fd = good_uffd();
	int uffds = count_fds("userfaultfd"), pidfds = count_fds("pidfd");
	struct process *p;

	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), 0);
	cr_assert_eq(fd, -1, "ownership of the userfaultfd moved");
	cr_assert_eq(count_fds("userfaultfd"), uffds, "kept, not duplicated");
	cr_assert_eq(count_fds("pidfd"), pidfds + 1,
		     "the state has its own pidfd");
	cr_assert(m->registered);
	cr_assert_not_null(m->proc);
	cr_assert_not_null(m->mmu.pt, "the core bound its device MMU");
	assert_counts(&self, 1, 1, 0, 1, 1);

	p = registry_find_process(&reg, &self);
	cr_assert_eq(p, m->proc);
	cr_assert_eq(p->pid, self.pid);
	cr_assert_eq(p->pid_ino, self.pid_ino);
	cr_assert_eq(p->nmirrors, 1);
	cr_assert_eq(p->mirrors, m);
	cr_assert_eq(p->uffd_features & HMMU_UFFD_REQUIRED_FEATURES,
		     HMMU_UFFD_REQUIRED_FEATURES);
	cr_assert_eq(fcntl(p->uffd, F_GETFL) & O_NONBLOCK, O_NONBLOCK);
	process_put(p);
}

Test(registry, second_mirror_of_same_process_joins_without_uffd)
{
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&self);

	register_first(a);
	register_join(b);
	cr_assert(b->registered);
	cr_assert_eq(b->proc, a->proc, "one state per process");
	cr_assert_eq(a->proc->nmirrors, 2);
	assert_counts(&self, 1, 2, 0, 1, 2);
}

Test(registry, uffd_offered_while_state_exists_is_not_taken)
{
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&self);
	struct process *p;
	int fd;

	register_first(a);
	p = a->proc;
	fd = good_uffd();
	cr_assert_eq(registry_register(&reg, b, &fd, fresh_probe(), NULL), 0);
	cr_assert_geq(fd, 0, "the caller still owns the spare userfaultfd");
	cr_assert(fd_is_open(fd));
	cr_assert_neq(fd, p->uffd, "the state keeps its own userfaultfd");
	cr_assert_eq(b->proc, p);
	assert_counts(&self, 1, 2, 0, 1, 2);
	close(fd);
}

Test(registry, double_register_is_ebusy_and_changes_nothing)
{
	struct hmmu_mirror *m = new_mirror(&self);
	struct process *p;
	int fd = -1;

	register_first(m);
	p = m->proc;
	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), -EBUSY);
	assert_counts(&self, 1, 1, 0, 1, 1);
	cr_assert_eq(m->proc, p);
	cr_assert_eq(p->nmirrors, 1);

	/* Not even a userfaultfd offered with it is taken. */
	fd = good_uffd();
	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), -EBUSY);
	cr_assert_geq(fd, 0);
	cr_assert(fd_is_open(fd));
	assert_counts(&self, 1, 1, 0, 1, 1);
	close(fd);
}

Test(registry, unregister_of_unregistered_mirror_is_einval)
{
	struct hmmu_mirror *m = new_mirror(&self);

	cr_assert_eq(registry_unregister(&reg, m), -EINVAL);
	assert_counts(&self, 0, 0, 0, 0, 0);
	register_first(m);
	cr_assert_eq(registry_unregister(&reg, m), 0);
	cr_assert_eq(registry_unregister(&reg, m), -EINVAL, "twice");
	assert_unregistered(m);
	assert_counts(&self, 0, 0, 0, 0, 0);
}

Test(registry, unregister_of_one_of_two_mirrors_keeps_the_state)
{
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&self);
	struct process *p;

	register_first(a);
	register_join(b);
	p = a->proc;
	cr_assert_eq(registry_unregister(&reg, a), 0);
	assert_unregistered(a);
	assert_counts(&self, 1, 1, 0, 1, 1);
	cr_assert_eq(b->proc, p);
	cr_assert_eq(p->nmirrors, 1);
	cr_assert_eq(p->mirrors, b, "a left the process's mirror list");
	cr_assert_null(b->proc_next);
}

Test(registry, last_unregister_removes_state_and_next_register_needs_uffd)
{
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&self);
	int fds = count_fds(NULL), fd = -1;

	register_first(a);
	register_join(b);
	cr_assert_eq(registry_unregister(&reg, a), 0);
	cr_assert_eq(registry_unregister(&reg, b), 0);
	assert_counts(&self, 0, 0, 0, 0, 0);
	cr_assert_null(registry_find_process(&reg, &self));
	cr_assert_eq(count_fds(NULL), fds,
		     "every fd of the state (userfaultfd, pidfd) is closed");

	/* Fresh state: a userfaultfd is asked for again, for either mirror. */
	cr_assert_eq(registry_register(&reg, b, &fd, fresh_probe(), NULL), HMMU_STATUS_NEED_UFFD);
	cr_assert_eq(registry_register(&reg, a, &fd, fresh_probe(), NULL), HMMU_STATUS_NEED_UFFD);
	assert_counts(&self, 0, 0, 0, 0, 0);
	register_first(b);
	register_join(a);
	assert_counts(&self, 1, 2, 0, 1, 2);
}

Test(registry, pipe_as_uffd_is_ebadf_and_not_taken)
{
	struct hmmu_mirror *m = new_mirror(&self);
	int pfd[2], fd;

	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	fd = pfd[0];
	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), -EBADF);
	cr_assert_eq(fd, pfd[0], "not taken");
	cr_assert(fd_is_open(pfd[0]));
	cr_assert_eq(fcntl(pfd[0], F_GETFL) & O_NONBLOCK, 0,
		     "a rejected fd is left as it was");
	assert_unregistered(m);
	assert_counts(&self, 0, 0, 0, 0, 0);
	close(pfd[0]);
	close(pfd[1]);
}

Test(registry, uffd_without_uffdio_api_is_einval_and_not_taken)
{
	struct hmmu_mirror *m = new_mirror(&self);
	int fd = raw_uffd(), orig = fd;

	cr_assert_geq(fd, 0, "userfaultfd: %s", strerror(-fd));
	cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), -EINVAL);
	cr_assert_eq(fd, orig, "not taken");
	cr_assert(fd_is_open(orig));
	assert_unregistered(m);
	assert_counts(&self, 0, 0, 0, 0, 0);
	close(orig);
}

Test(registry, uffd_without_required_features_is_einval_and_not_taken)
{
	struct hmmu_mirror *m = new_mirror(&self);
	uint64_t required = HMMU_UFFD_REQUIRED_FEATURES;

	/* With none of them, and with each one of them missing. */
	for (int i = -1; i < 64; i++) {
		uint64_t want;
		int fd, orig;

		if (i >= 0 && !(required & (1ULL << i)))
			continue;
		want = i < 0 ? 0 : required & ~(1ULL << i);
		fd = orig = uffd_with(want);
		cr_assert_geq(fd, 0, "UFFDIO_API %#llx: %s",
			      (unsigned long long)want, strerror(-fd));
		cr_assert_eq(registry_register(&reg, m, &fd, fresh_probe(), NULL), -EINVAL,
			     "features %#llx", (unsigned long long)want);
		cr_assert_eq(fd, orig, "not taken");
		cr_assert(fd_is_open(orig));
		close(orig);
		assert_unregistered(m);
		assert_counts(&self, 0, 0, 0, 0, 0);
	}
}

Test(registry, release_of_registered_mirror_counts_and_unregisters)
{
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&self);
	int fd = -1;

	register_first(a);
	register_join(b);
	registry_release(&reg, a);
	assert_unregistered(a);
	assert_counts(&self, 1, 1, 1, 1, 1);
	registry_release(&reg, b);
	assert_unregistered(b);
	assert_counts(&self, 0, 0, 2, 0, 0);
	/* Released is unregistered: unregister finds nothing to do... */
	cr_assert_eq(registry_unregister(&reg, a), -EINVAL);
	/* ... and its connection is gone: it is never registered again. */
	cr_assert_eq(registry_register(&reg, a, &fd, 0, NULL), -ENOENT);
	assert_counts(&self, 0, 0, 2, 0, 0);
}

Test(registry, release_of_unregistered_mirror_changes_nothing)
{
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&self);

	registry_release(&reg, a);
	assert_counts(&self, 0, 0, 0, 0, 0);

	register_first(b);
	registry_release(&reg, a); /* never registered */
	assert_counts(&self, 1, 1, 0, 1, 1);
	cr_assert_eq(registry_unregister(&reg, b), 0);
	registry_release(&reg, b); /* no longer registered */
	assert_counts(&self, 0, 0, 0, 0, 0);
}


/*
 * A second, real process, alive until teardown. It makes a userfaultfd and
 * two probe pages in its own address space, as libhmmu would, and hands
 * them over (other_uffd, other_probe).
 */
static struct peer other_process(void)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = &other_probe,
			     .iov_len = sizeof(other_probe) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	int sp[2];
	char c;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		int fd = uffd_with(HMMU_UFFD_REQUIRED_FEATURES);
		void *probe = mmap(NULL, 2 * (size_t)sysconf(_SC_PAGESIZE),
				   PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

		close(sp[0]);
		other_probe = (uint64_t)(uintptr_t)probe;
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		if (fd < 0 || probe == MAP_FAILED || sendmsg(sp[1], &msg, 0) < 0)
			_exit(1);
		(void)!read(sp[1], &c, 1); /* EOF: the test is over */
		_exit(0);
	}
	close(sp[1]);
	cr_assert_eq(recvmsg(sp[0], &msg, MSG_CMSG_CLOEXEC), sizeof(other_probe),
		     "the second process made no userfaultfd");
	memcpy(&other_uffd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
	child_pipe = sp[0];
	extra_pidfds[nextra_pidfds] = pidfd_of(child);
	return peer_of(child, extra_pidfds[nextra_pidfds++]);
}

/* Register the second process's @m with its own userfaultfd. */
static void register_other_first(struct hmmu_mirror *m)
{
	cr_assert_eq(registry_register(&reg, m, &other_uffd, other_probe, NULL), 0);
	cr_assert_eq(other_uffd, -1, "the registry took the fd");
}

Test(registry, uffd_of_another_process_is_refused_and_changes_nothing)
{
	struct peer other = other_process();
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&other);
	int mine = good_uffd();
	int theirs = other_uffd, err;

	/*
	 * Theirs, offered for ours; ours, offered for theirs. (In that order:
	 * the other process's probe pages may lie where ours do, and the
	 * check of ours reads there, which would populate its pages.)
	 */
	err = registry_register(&reg, a, &theirs, other_probe, NULL);
	cr_assert_eq(err, -EINVAL, "theirs for ours: %s", strerror(-err));
	err = registry_register(&reg, b, &mine, fresh_probe(), NULL);
	cr_assert_eq(err, -EINVAL, "ours for theirs: %s", strerror(-err));
	cr_assert_not(a->registered);
	cr_assert_not(b->registered);
	assert_counts(&self, 0, 0, 0, 0, 0);
	assert_counts(&other, 0, 0, 0, 0, 0);
	/* Refused fds are taken and closed, as any the state could not use. */
	cr_assert_eq(mine, -1);
	cr_assert_eq(theirs, -1);
	other_uffd = -1;
	/* With its own: accepted. */
	register_first(a);
	assert_counts(&self, 1, 1, 0, 1, 1);
}

Test(registry, probe_pages_that_were_touched_are_refused)
{
	struct hmmu_mirror *a = new_mirror(&self);
	uint64_t probe = fresh_probe();
	int fd = good_uffd();

	*(volatile char *)(uintptr_t)probe = 1; /* populated: no proof possible */
	cr_assert_eq(registry_register(&reg, a, &fd, probe, NULL), -EFAULT);
	cr_assert_not(a->registered);
	assert_counts(&self, 0, 0, 0, 0, 0);
	fd = -1;
	cr_assert_eq(registry_register(&reg, a, &fd, 0, NULL), HMMU_STATUS_NEED_UFFD);
}

Test(registry, two_processes_get_two_states_torn_down_independently)
{
	struct peer other = other_process();
	struct hmmu_mirror *a = new_mirror(&self), *b = new_mirror(&other);
	struct hmmu_mirror *a2 = new_mirror(&self);
	int fd = -1;

	register_first(a);
	/* The other process has no state: it must bring its own fd. */
	cr_assert_eq(registry_register(&reg, b, &fd, 0, NULL), HMMU_STATUS_NEED_UFFD);
	register_other_first(b);
	register_join(a2);
	cr_assert_neq(a->proc, b->proc);
	cr_assert_eq(a->proc, a2->proc);
	cr_assert_eq(b->proc->pid, other.pid);
	assert_counts(&self, 2, 3, 0, 1, 2);
	assert_counts(&other, 2, 3, 0, 1, 1);

	cr_assert_eq(registry_unregister(&reg, b), 0);
	assert_counts(&self, 1, 2, 0, 1, 2);
	assert_counts(&other, 1, 2, 0, 0, 0);
	cr_assert_null(registry_find_process(&reg, &other));

	registry_release(&reg, a);
	registry_release(&reg, a2);
	assert_counts(&self, 0, 0, 2, 0, 0);
	assert_counts(&other, 0, 0, 2, 0, 0);
}

Test(registry, same_pid_with_another_pid_inode_is_another_process)
{
	/* pid reuse: the pidfs inode tells the two processes apart. */
	struct peer reused = self;
	struct hmmu_mirror *a = new_mirror(&self), *b;
	int fd = -1;

	reused.pid_ino = self.pid_ino + 1;
	b = new_mirror(&reused);
	register_first(a);
	cr_assert_eq(registry_register(&reg, b, &fd, fresh_probe(), NULL), HMMU_STATUS_NEED_UFFD,
		     "the old process's state is not the new one's");
	register_first(b);
	cr_assert_neq(a->proc, b->proc);
	assert_counts(&self, 2, 2, 0, 1, 1);
	cr_assert_eq(registry_unregister(&reg, a), 0);
	assert_counts(&reused, 1, 1, 0, 1, 1);
	assert_counts(&self, 1, 1, 0, 0, 0);
	cr_assert_eq(registry_unregister(&reg, b), 0);
	assert_counts(&self, 0, 0, 0, 0, 0);
}

#define THREADS 8
#define ROUNDS 2000

struct worker {
	pthread_t thread;
	struct hmmu_mirror *m;
	int err;     /* first unexpected result, 0 if none */
	int round;   /* ... and in which round */
	int fd_used; /* rounds whose userfaultfd the registry took */
};

static void *worker_run(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < ROUNDS && !w->err; i++) {
		int fd = -1, err;

		err = registry_register(&reg, w->m, &fd, fresh_probe(), NULL);
		if (err == HMMU_STATUS_NEED_UFFD) {
			fd = uffd_with(HMMU_UFFD_REQUIRED_FEATURES);
			if (fd < 0) {
				err = fd;
			} else {
				/* Another thread may have made state since. */
				err = registry_register(&reg, w->m, &fd, fresh_probe(), NULL);
				if (fd >= 0)
					close(fd);
				else
					w->fd_used++;
			}
		}
		if (!err && !w->m->registered)
			err = -ENOTRECOVERABLE;
		if (!err)
			err = registry_unregister(&reg, w->m);
		if (err) {
			w->err = err;
			w->round = i;
		}
	}
	return NULL;
}

Test(registry, concurrent_register_unregister_leaves_nothing_behind)
{
	struct worker w[THREADS];
	int fds = count_fds(NULL), used = 0;

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .m = new_mirror(&self) };
		cr_assert_eq(pthread_create(&w[i].thread, NULL, worker_run,
					    &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_join(w[i].thread, NULL), 0);
	for (int i = 0; i < THREADS; i++) {
		cr_assert_eq(w[i].err, 0, "thread %d, round %d: %d (%s)", i,
			     w[i].round, w[i].err, strerror(-w[i].err));
		assert_unregistered(w[i].m);
		used += w[i].fd_used;
	}
	cr_assert_geq(used, 1, "some round created the state");
	assert_counts(&self, 0, 0, 0, 0, 0);
	cr_assert_null(registry_find_process(&reg, &self));
	cr_assert_eq(count_fds(NULL), fds, "no userfaultfd, pidfd or other fd "
		     "leaked");
}
