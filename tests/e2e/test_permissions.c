/* SPDX-License-Identifier: MIT */
/*
 * Who may use hmmu, and on whose memory, end to end against a private
 * hmmud: a client that may not create a userfaultfd is told -EPERM and how
 * to fix it, with no state left in the daemon; a client given access to
 * /dev/userfaultfd works unprivileged; and a device command's addresses are
 * always those of the caller's own address space, never another client's.
 *
 * The tests that change /dev/userfaultfd's mode, or depend on it, serialise
 * on a flock of the device node, so that they neither race each other nor
 * the same tests of another build running at the same time.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Clients here run as nobody: the socket is opened to every user. */
TestSuite(permissions, .init = daemon_start_open_to_all, .fini = daemon_stop,
	  .timeout = 60);

#define DEV_UFFD "/dev/userfaultfd"

/* What a child found out; it writes this to the parent through a pipe. */
struct report {
	int step;	  /* the last step reached, see each test */
	int err;	  /* that step's result */
	int uffd_errno;	  /* of a plain userfaultfd(2), as the child */
	uint32_t my_state; /* the child's stats after registering */
	int data_ok;
	char detail[256]; /* hmmu_error_detail() after the failure */
};

/* -1 if unreadable. */
static int unprivileged_userfaultfd_sysctl(void)
{
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	int v = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* Hold /dev/userfaultfd's mode still (@how: LOCK_SH or LOCK_EX); -1 if none. */
static int lock_dev_uffd(int how)
{
	int fd = open(DEV_UFFD, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	cr_assert_eq(flock(fd, how), 0, "flock " DEV_UFFD ": %s",
		     strerror(errno));
	return fd;
}

/* Fds a child closes first: nothing of the parent's it needs leaks into it. */
static int child_closes[2] = { -1, -1 };

/*
 * Run @fn in a child (as nobody if @nobody) and fill @rep with what it
 * reported. Asserts nothing: 0 if the child reported and exited 0, else a
 * wait status, or -1 if it exited 0 without a report.
 */
static int run_child(int nobody, void (*fn)(struct report *),
		     struct report *rep)
{
	int pfd[2], status;
	ssize_t n;
	pid_t pid;

	memset(rep, 0, sizeof(*rep));
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -1;
	}
	if (pid == 0) {
		for (int i = 0; i < 2; i++)
			if (child_closes[i] >= 0)
				close(child_closes[i]);
		close(pfd[0]);
		if (nobody && become_nobody())
			_exit(100);
		fn(rep);
		if (write(pfd[1], rep, sizeof(*rep)) != sizeof(*rep))
			_exit(101);
		_exit(0);
	}
	close(pfd[1]);
	n = read(pfd[0], rep, sizeof(*rep));
	close(pfd[0]);
	if (waitpid(pid, &status, 0) != pid)
		return -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return status ? status : -1;
	return n == (ssize_t)sizeof(*rep) ? 0 : -1;
}

static void assert_child_ok(int status)
{
	cr_assert_eq(status, 0,
		     "the child failed: wait status %#x (exit 100: cannot "
		     "become nobody; -1: no report)",
		     status);
}

static int plain_userfaultfd_errno(void)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* Steps: 1 connect, 2 mirror_create, 3 register. */
static void try_register(struct report *rep)
{
	struct hmmu_mirror *m;
	struct hmmu *h;

	rep->uffd_errno = plain_userfaultfd_errno();
	rep->step = 1;
	rep->err = hmmu_connect(daemon_under_test.socket, &h);
	if (rep->err)
		return;
	rep->step = 2;
	rep->err = hmmu_mirror_create(h, "dmirror0", &m);
	if (!rep->err) {
		rep->step = 3;
		rep->err = hmmu_mirror_register(m);
		snprintf(rep->detail, sizeof(rep->detail), "%s",
			 hmmu_error_detail());
		hmmu_mirror_destroy(m);
	}
	hmmu_disconnect(h);
}

Test(permissions, unprivileged_client_without_uffd_access_gets_eperm_naming_the_fix)
{
	struct fixture f;
	struct hmmu_stats before, after;
	struct report rep;
	struct stat st;
	int lock, status;

	require_root();
	if (unprivileged_userfaultfd_sysctl() == 1)
		cr_skip_test("vm.unprivileged_userfaultfd is 1: every user "
			     "may create a userfaultfd");
	lock = lock_dev_uffd(LOCK_SH);
	if (lock >= 0 && fstat(lock, &st) == 0 && (st.st_mode & 0006))
		cr_skip_test(DEV_UFFD " is open to all users (mode %o)",
			     st.st_mode & 07777);
	daemon_dir_open_to_all();

	f = fixture_open(NULL);
	before = stats_of(f.h);
	child_closes[0] = lock;
	status = run_child(1, try_register, &rep);
	child_closes[0] = -1;
	after = stats_of(f.h);
	if (lock >= 0)
		close(lock);
	assert_child_ok(status);

	if (rep.uffd_errno == 0)
		cr_skip_test("uid %d may create a userfaultfd here "
			     "(vm.unprivileged_userfaultfd absent?)",
			     NOBODY);
	cr_assert_eq(rep.uffd_errno, EPERM,
		     "as nobody, userfaultfd(2) is refused (got %s)",
		     strerror(rep.uffd_errno));
	cr_assert_eq(rep.step, 3, "step %d failed: %s", rep.step,
		     strerror(-rep.err));
	cr_assert_eq(rep.err, -EPERM, "register: %d (%s)", rep.err,
		     strerror(-rep.err));
	cr_assert(strstr(rep.detail, "/dev/userfaultfd"),
		  "the detail names the device: \"%s\"", rep.detail);
	cr_assert(strstr(rep.detail, "vm.unprivileged_userfaultfd"),
		  "the detail names the sysctl: \"%s\"", rep.detail);

	/* The daemon made no state for the refused client. */
	cr_assert_eq(after.processes, before.processes);
	cr_assert_eq(after.mirrors, before.mirrors);
	cr_assert_eq(after.releases, before.releases);
	cr_assert_eq(after.processes, 0);
	cr_assert_eq(after.mirrors, 0);
	fixture_close(&f);
}

/* Steps: 1-3 as try_register, 4 device read, 5 the data. */
static void register_and_read(struct report *rep)
{
	struct hmmu_mirror *m;
	struct hmmu_stats st;
	struct hmmu_cmd c;
	struct hmmu *h;
	char *p, *buf;

	rep->uffd_errno = plain_userfaultfd_errno();
	rep->step = 1;
	rep->err = hmmu_connect(daemon_under_test.socket, &h);
	if (rep->err)
		return;
	rep->step = 2;
	rep->err = hmmu_mirror_create(h, "dmirror0", &m);
	if (rep->err)
		goto out;
	rep->step = 3;
	rep->err = hmmu_mirror_register(m);
	snprintf(rep->detail, sizeof(rep->detail), "%s", hmmu_error_detail());
	if (rep->err)
		goto out_mirror;
	if (hmmu_stats(h, &st, sizeof(st)) >= 0)
		rep->my_state = st.my_state;

	p = map_rw_or_null(4);
	buf = malloc(4 * page_size());
	if (!p || !buf)
		_exit(102);
	for (size_t i = 0; i < 4 * page_size(); i++)
		p[i] = (char)(i * 7 + i / page_size());
	memset(buf, 0, 4 * page_size());
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 4 };
	rep->step = 4;
	rep->err = hmmu_device_read(m, &c, buf);
	if (!rep->err) {
		rep->step = 5;
		rep->data_ok = c.cpages == 4 &&
			       memcmp(buf, p, 4 * page_size()) == 0;
	}
	free(buf);
	munmap(p, 4 * page_size());
out_mirror:
	hmmu_mirror_destroy(m);
out:
	hmmu_disconnect(h);
}

Test(permissions, unprivileged_client_with_dev_userfaultfd_access_works)
{
	struct fixture f;
	struct report rep;
	struct stat st, restored;
	int lock, guard[2], status, child = -1;
	pid_t restorer;
	mode_t mode;

	require_root();
	lock = lock_dev_uffd(LOCK_EX);
	if (lock < 0)
		cr_skip_test(DEV_UFFD " does not exist (Linux < 6.1?)");
	cr_assert_eq(fstat(lock, &st), 0);
	mode = st.st_mode & 07777;
	daemon_dir_open_to_all();

	/*
	 * The restorer puts the mode back once the pipe closes: when this
	 * test is done with it, or when it dies however it dies (a failed
	 * assertion, a crash, the timeout). The lock is on the open file,
	 * which it shares: held until both it has restored the mode and this
	 * test has checked that. No assertion runs while the mode is changed.
	 */
	cr_assert_eq(pipe2(guard, O_CLOEXEC), 0);
	restorer = fork();
	cr_assert_geq(restorer, 0);
	if (restorer == 0) {
		char c;

		close(guard[1]);
		while (read(guard[0], &c, 1) > 0)
			;
		_exit(chmod(DEV_UFFD, mode) == 0 ? 0 : 1);
	}
	close(guard[0]);

	memset(&rep, 0, sizeof(rep));
	if (chmod(DEV_UFFD, 0666) == 0) {
		child_closes[0] = guard[1];
		child_closes[1] = lock;
		child = run_child(1, register_and_read, &rep);
		child_closes[0] = child_closes[1] = -1;
	} else {
		rep = (struct report){ .step = -1, .err = -errno };
	}
	close(guard[1]);
	cr_assert_eq(waitpid(restorer, &status, 0), restorer);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "restoring the mode of " DEV_UFFD);
	cr_assert_eq(stat(DEV_UFFD, &restored), 0);
	cr_assert_eq(restored.st_mode & 07777, mode, "mode restored");
	close(lock);

	cr_assert_neq(rep.step, -1, "chmod " DEV_UFFD ": %s",
		      strerror(-rep.err));
	assert_child_ok(child);
	cr_assert_eq(rep.step, 5, "step %d failed: %d (%s) %s", rep.step,
		     rep.err, strerror(-rep.err), rep.detail);
	cr_assert_eq(rep.err, 0);
	cr_assert_eq(rep.my_state, 1, "the daemon made the client's state");
	cr_assert(rep.data_ok, "the device read the client's own pages");
	f = fixture_open(NULL);
	cr_assert_eq(wait_for_stat(f.h, processes, 0), 0);
	cr_assert_eq(stats_of(f.h).mirrors, 0);
	fixture_close(&f);
}

/*
 * An address no process of this test maps but child A: below the usual
 * mmap base, above ASan's shadow, inside 47-bit user space.
 */
#define FOREIGN_ADDR ((void *)0x7e0000000000UL)

static int is_mapped(void *addr)
{
	/* msync() on an unmapped page fails with ENOMEM. */
	return msync(addr, page_size(), MS_ASYNC) == 0;
}

/* Child A: its page at FOREIGN_ADDR holds 0xAA, and its device saw it. */
static void a_maps_and_mirrors(int ready, int go)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)FOREIGN_ADDR, .npages = 1 };
	struct hmmu_mirror *m;
	struct hmmu *h;
	char *p, *buf = malloc(page_size()), ok = 'n', x;

	p = mmap(FOREIGN_ADDR, page_size(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p == FOREIGN_ADDR && buf) {
		memset(p, 0xaa, page_size());
		if (hmmu_connect(daemon_under_test.socket, &h) == 0) {
			if (hmmu_mirror_create(h, "dmirror0", &m) == 0 &&
			    hmmu_mirror_register(m) == 0 &&
			    hmmu_device_read(m, &c, buf) == 0 &&
			    c.cpages == 1 && memcmp(buf, p, page_size()) == 0)
				ok = 'y';
			/* Stay mapped and mirrored until B is done. */
			(void)!write(ready, &ok, 1);
			(void)!read(go, &x, 1);
			hmmu_disconnect(h);
			_exit(0);
		}
	}
	(void)!write(ready, &ok, 1);
	_exit(1);
}

/*
 * Child B, with nothing at FOREIGN_ADDR. Steps: 1 connect, 2 register,
 * 3 read of the unmapped address, 4 map its own page, 5 read it.
 * data_ok: bit 0 the buffer was untouched by the failed read, bit 1 the
 * second read returned B's own 0x55.
 */
static void b_reads_foreign_address(struct report *rep)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)FOREIGN_ADDR, .npages = 1 };
	struct hmmu_mirror *m;
	struct hmmu *h;
	char *p, *buf = malloc(page_size());
	int untouched = 1;

	if (!buf || is_mapped(FOREIGN_ADDR))
		_exit(103);
	rep->step = 1;
	rep->err = hmmu_connect(daemon_under_test.socket, &h);
	if (rep->err)
		return;
	rep->step = 2;
	rep->err = hmmu_mirror_create(h, "dmirror0", &m);
	if (!rep->err)
		rep->err = hmmu_mirror_register(m);
	if (rep->err)
		goto out;

	rep->step = 3;
	memset(buf, 0x11, page_size());
	rep->err = hmmu_device_read(m, &c, buf);
	for (size_t i = 0; i < page_size(); i++)
		if (buf[i] != 0x11)
			untouched = 0;
	rep->data_ok = untouched;
	if (rep->err != -EFAULT)
		goto out;

	rep->step = 4;
	p = mmap(FOREIGN_ADDR, page_size(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != FOREIGN_ADDR) {
		rep->err = p == MAP_FAILED ? -errno : -EEXIST;
		goto out;
	}
	memset(p, 0x55, page_size());
	rep->step = 5;
	c = (struct hmmu_cmd){ .addr = (uintptr_t)FOREIGN_ADDR, .npages = 1 };
	memset(buf, 0x11, page_size());
	rep->err = hmmu_device_read(m, &c, buf);
	if (!rep->err && c.cpages == 1 && memcmp(buf, p, page_size()) == 0)
		rep->data_ok |= 2;
out:
	free(buf);
	hmmu_disconnect(h);
}

Test(permissions, client_cannot_read_memory_of_another_process)
{
	int ready[2], go[2], status, child;
	struct report rep;
	pid_t a;
	char c = 0;

	cr_assert_not(is_mapped(FOREIGN_ADDR),
		      "the test process itself maps nothing there");
	cr_assert_eq(pipe2(ready, O_CLOEXEC), 0);
	cr_assert_eq(pipe2(go, O_CLOEXEC), 0);
	a = fork();
	cr_assert_geq(a, 0);
	if (a == 0) {
		close(ready[0]);
		close(go[1]);
		a_maps_and_mirrors(ready[1], go[0]);
	}
	close(ready[1]);
	close(go[0]);
	cr_assert_eq(read(ready[0], &c, 1), 1);
	if (c != 'y') {
		close(go[1]);
		waitpid(a, NULL, 0);
		cr_assert_fail("child A could not map, mirror and read its "
			       "page at %p",
			       FOREIGN_ADDR);
	}

	/* B must not keep A's go pipe open. */
	child_closes[0] = go[1];
	child_closes[1] = ready[0];
	child = run_child(0, b_reads_foreign_address, &rep);
	child_closes[0] = child_closes[1] = -1;

	close(go[1]); /* A may go */
	close(ready[0]);
	cr_assert_eq(waitpid(a, &status, 0), a);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child A: status %#x", status);
	assert_child_ok(child);

	cr_assert_geq(rep.step, 3, "B: step %d failed: %s", rep.step,
		      strerror(-rep.err));
	if (rep.step == 3)
		cr_assert_eq(rep.err, -EFAULT,
			     "B's read of an address only A maps: %d (%s)",
			     rep.err, strerror(-rep.err));
	cr_assert(rep.data_ok & 1, "B's buffer is untouched by the failed read");
	cr_assert_eq(rep.step, 5, "B: step %d failed: %s", rep.step,
		     strerror(-rep.err));
	cr_assert_eq(rep.err, 0, "B's read of its own page: %s",
		     strerror(-rep.err));
	cr_assert(rep.data_ok & 2, "B reads its own 0x55, not A's 0xAA");
}
