/* SPDX-License-Identifier: MIT */
/*
 * The kernel's HMM test device ABI (/dev/hmm_dmirror0..3), as a program
 * written for lib/test_hmm.c uses it: open, ioctl, mmap, close and fork on
 * the device nodes, with nothing of hmmu in sight. Run under hmmu-run
 * (tests/CMakeLists.txt), which preloads libhmmu-dmirror.so and starts a
 * private hmmud; the test itself only reaches hmmud through libhmmu to see
 * what the daemon holds. docs/kernel-abi.md is the contract.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hmmu/hmmu.h>

#include "common/kfeatures.h"
#include "kernel-abi/hmm_dmirror_abi.h"

/* What _FORTIFY_SOURCE makes of open() without a mode. */
extern int __open_2(const char *path, int flags);

static size_t ps;

static void setup(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	cr_assert(getenv("LD_PRELOAD") && strstr(getenv("LD_PRELOAD"),
						 "libhmmu-dmirror.so"),
		  "run this suite under hmmu-run");
}

TestSuite(dmirror_abi, .init = setup);

static int open_unit(int n)
{
	char path[32];
	int fd;

	snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", n);
	fd = open(path, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	return fd;
}

/* ioctl() as a test_hmm program makes it: 0 or -errno. */
static int dmirror(int fd, unsigned long req, void *addr, void *ptr,
		   uint64_t npages, struct hmm_dmirror_cmd *out)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (uintptr_t)addr,
		.ptr = (uintptr_t)ptr,
		.npages = npages,
		.cpages = 0xdead,
		.faults = 0xbeef,
	};
	int r = ioctl(fd, req, &cmd);

	if (out)
		*out = cmd;
	return r < 0 ? -errno : 0;
}

static int *map_ints(size_t npages, int prot, int flags)
{
	int *p = mmap(NULL, npages * ps, prot, flags | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	return p;
}

static void fill(int *p, size_t npages, int bias)
{
	for (size_t i = 0; i < npages * ps / sizeof(int); i++)
		p[i] = (int)i + bias;
}

static void expect_filled(const int *p, size_t npages, int bias,
			  const char *what)
{
	for (size_t i = 0; i < npages * ps / sizeof(int); i++)
		if (p[i] != (int)i + bias)
			cr_assert_fail("%s: int %zu is %d, not %d", what, i,
				       p[i], (int)i + bias);
}

/* The error left the command struct as the caller wrote it. */
static void expect_untouched(const struct hmm_dmirror_cmd *c)
{
	cr_expect_eq(c->cpages, 0xdead, "cpages written back on error");
	cr_expect_eq(c->faults, 0xbeef, "faults written back on error");
}

Test(dmirror_abi, device_fd_is_a_real_fd)
{
	int fd = open_unit(0), flags = fcntl(fd, F_GETFD);
	struct stat st;

	cr_expect(flags >= 0 && (flags & FD_CLOEXEC), "O_CLOEXEC kept");
	cr_expect_eq(fstat(fd, &st), 0);
	cr_expect(S_ISREG(st.st_mode), "a memfd behind it");
	cr_expect_eq(close(fd), 0);
	cr_expect_eq(close(fd), -1, "closed for real");
	cr_expect_eq(errno, EBADF);
}

Test(dmirror_abi, every_open_flavour_reaches_the_device)
{
	int fds[4] = {
		open64("/dev/hmm_dmirror0", O_RDWR),
		openat(AT_FDCWD, "/dev/hmm_dmirror1", O_RDWR),
		openat64(AT_FDCWD, "/dev/hmm_dmirror0", O_RDWR),
		__open_2("/dev/hmm_dmirror1", O_RDWR),
	};
	int *p = map_ints(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int buf[1024];

	fill(p, 1, 3);
	for (int i = 0; i < 4; i++) {
		cr_assert_geq(fds[i], 0, "open flavour %d: %s", i, strerror(errno));
		cr_expect_eq(dmirror(fds[i], HMM_DMIRROR_READ, p, buf, 1, NULL), 0);
		expect_filled(buf, 1, 3, "device read");
		close(fds[i]);
	}
	/* Other paths are the C library's business. */
	fds[0] = open("/dev/null", O_RDONLY);
	cr_expect_geq(fds[0], 0);
	cr_expect_eq(ioctl(fds[0], HMM_DMIRROR_READ, NULL), -1);
	cr_expect_eq(errno, ENOTTY, "/dev/null is no device of ours");
	close(fds[0]);
}

Test(dmirror_abi, coherent_units_do_not_exist)
{
	cr_expect_eq(open("/dev/hmm_dmirror2", O_RDWR), -1);
	cr_expect_eq(errno, ENOENT);
	cr_expect_eq(open("/dev/hmm_dmirror3", O_RDWR), -1);
	cr_expect_eq(errno, ENOENT);
}

Test(dmirror_abi, read_copies_counts_and_faults_once)
{
	const size_t n = 64;
	int fd = open_unit(0), *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(n * ps);
	struct hmm_dmirror_cmd c;

	fill(p, n, 1);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(c.faults, 1, "one fault round for the whole range");
	expect_filled(buf, n, 1, "device read");
	/* The device holds the pages now: no fault. */
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, n, &c), 0);
	cr_expect_eq(c.faults, 0, "a second read of held pages");
	/* A CPU write drops the device's copy: a fault again, new data. */
	p[5] = -5;
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, n, &c), 0);
	cr_expect_eq(c.faults, 1);
	cr_expect_eq(buf[5], -5);
	free(buf);
	close(fd);
}

Test(dmirror_abi, read_of_a_hole_or_prot_none_is_efault)
{
	int fd = open_unit(0), *p = map_ints(3, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(3 * ps);
	struct hmm_dmirror_cmd c;

	cr_assert_eq(mprotect(p, ps, PROT_NONE), 0);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, 3, &c), -EFAULT);
	expect_untouched(&c);
	cr_assert_eq(munmap((char *)p + 2 * ps, ps), 0);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_READ, (char *)p + ps, buf, 2, &c),
		     -EFAULT);
	expect_untouched(&c);
	free(buf);
	close(fd);
}

Test(dmirror_abi, write_reaches_the_cpu_and_read_only_is_eperm)
{
	const size_t n = 16;
	int fd = open_unit(1), *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *src = malloc(n * ps);
	struct hmm_dmirror_cmd c;

	fill(p, n, 0);
	fill(src, n, 100);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_WRITE, p, src, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(c.faults, 1);
	expect_filled(p, n, 100, "CPU view after the device write");

	cr_assert_eq(mprotect(p, n * ps, PROT_READ), 0);
	fill(src, n, 200);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_WRITE, p, src, n, &c), -EPERM);
	expect_untouched(&c);
	expect_filled(p, n, 100, "read-only memory after a refused write");
	free(src);
	close(fd);
}

Test(dmirror_abi, bad_commands_are_refused)
{
	int fd = open_unit(0), *p = map_ints(1, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int buf[1024];
	struct hmm_dmirror_cmd c;

	cr_expect_eq(dmirror(fd, HMM_DMIRROR_READ, (char *)p + 1, buf, 1, &c),
		     -EINVAL, "unaligned address");
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, 0, &c), -EINVAL,
		     "no page");
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, UINT64_MAX / 2, &c),
		     -EINVAL, "a range that wraps");
	cr_expect_eq(dmirror(fd, _IOWR('H', 0x42, struct hmm_dmirror_cmd), p,
			     buf, 1, &c), -EINVAL, "an unknown command");
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_FLAGS, p, buf, 1, &c), -EINVAL,
		     "FLAGS, which 6.12's driver does not know");
	cr_expect_eq(ioctl(fd, HMM_DMIRROR_READ, (void *)16), -1);
	cr_expect_eq(errno, EFAULT, "a command struct the caller cannot read");
	close(fd);
}

static uint8_t state_of(int fd, void *addr)
{
	uint8_t s = 0x77;

	cr_assert_eq(dmirror(fd, HMM_DMIRROR_SNAPSHOT, addr, &s, 1, NULL), 0);
	return s;
}

Test(dmirror_abi, migration_moves_reads_back_and_returns)
{
	const size_t n = 32;
	int fd0 = open_unit(0), fd1 = open_unit(1);
	int *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(n * ps);
	struct hmm_dmirror_cmd c;

	fill(p, n, 7);
	cr_assert_eq(dmirror(fd0, HMM_DMIRROR_MIGRATE_TO_DEV, p, buf, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	expect_filled(buf, n, 7, "what the device read back after migrating");
	cr_expect_eq(state_of(fd0, p), HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
					       HMM_DMIRROR_PROT_WRITE);
	cr_expect_eq(state_of(fd1, p), HMM_DMIRROR_PROT_NONE,
		     "another device's private page is not present to this one");
	/* Another device cannot take a page it does not own. */
	cr_expect_eq(dmirror(fd1, HMM_DMIRROR_MIGRATE_TO_DEV, p, buf, 1, &c),
		     -ENOENT);
	cr_assert_eq(dmirror(fd0, HMM_DMIRROR_MIGRATE_TO_SYS, p, buf, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(state_of(fd0, p), HMM_DMIRROR_PROT_WRITE);
	expect_filled(p, n, 7, "CPU view after migrating back");
	free(buf);
	close(fd1);
	close(fd0);
}

Test(dmirror_abi, migration_refuses_holes_and_shared_memory)
{
	int fd = open_unit(0), *buf = malloc(4 * ps), *p, *shared;
	struct hmm_dmirror_cmd c;

	p = map_ints(4, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	cr_assert_eq(munmap((char *)p + ps, ps), 0);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, buf, 4, &c),
		     -EINVAL, "a hole");
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_MIGRATE_TO_SYS, p, buf, 4, &c),
		     -EINVAL, "a hole, back");
	cr_assert_eq(mprotect((char *)p + 2 * ps, ps, PROT_NONE), 0);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_MIGRATE_TO_DEV, (char *)p + 2 * ps,
			     buf, 2, &c), -EINVAL, "PROT_NONE");
	expect_untouched(&c);

	shared = map_ints(4, PROT_READ | PROT_WRITE, MAP_SHARED);
	fill(shared, 4, 9);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_MIGRATE_TO_DEV, shared, buf, 4, &c),
		     -ENOENT, "shared anonymous memory stays with the CPU");
	cr_expect_eq(state_of(fd, shared), HMM_DMIRROR_PROT_WRITE);
	free(buf);
	close(fd);
}

Test(dmirror_abi, snapshot_bytes_are_the_kernels)
{
	int fd = open_unit(0);
	char *p = (char *)map_ints(5, PROT_NONE, MAP_PRIVATE);
	uint8_t s[5];
	struct hmm_dmirror_cmd c;
	volatile char sink;

	cr_assert_eq(munmap(p + ps, ps), 0);
	cr_assert_eq(mprotect(p + 2 * ps, ps, PROT_READ), 0);
	sink = p[2 * ps];
	(void)sink;
	cr_assert_eq(mprotect(p + 3 * ps, 2 * ps, PROT_READ | PROT_WRITE), 0);
	p[3 * ps] = 1;
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_SNAPSHOT, p, s, 5, &c), 0);
	cr_expect_eq(c.cpages, 5);
	cr_expect_eq(s[0], HMM_DMIRROR_PROT_ERROR, "PROT_NONE");
	cr_expect_eq(s[1], HMM_DMIRROR_PROT_ERROR, "a hole");
	/* Only where the kernel maps the shared zero page on a read fault. */
	if (kfeatures()->zero_page_on_read)
		cr_expect_eq(s[2], HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ);
	else
		cr_expect_eq(s[2], HMM_DMIRROR_PROT_READ,
			     "a read-only page the kernel allocated");
	cr_expect_eq(s[3], HMM_DMIRROR_PROT_WRITE);
	cr_expect_eq(s[4], HMM_DMIRROR_PROT_NONE, "never touched");
	close(fd);
}

Test(dmirror_abi, exclusive_until_the_cpu_touches)
{
	const size_t n = 8;
	int fd = open_unit(0), *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(n * ps);
	struct hmm_dmirror_cmd c;

	fill(p, n, 4);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_EXCLUSIVE, p, buf, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	expect_filled(buf, n, 4, "what the device read back");
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_CHECK_EXCLUSIVE, p, buf, n, &c),
		     -EPERM, "still the device's");
	/* One page touched: the others are still exclusive. */
	p[0]++;
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_CHECK_EXCLUSIVE, p, buf, n, &c),
		     -EPERM, "some still the device's");
	for (size_t i = 1; i < n; i++)
		p[i * ps / sizeof(int)]++;
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_CHECK_EXCLUSIVE, p, buf, n, &c), 0);
	cr_expect_eq(p[0], 5);
	free(buf);
	close(fd);
}

Test(dmirror_abi, release_brings_every_page_back)
{
	const size_t n = 16;
	int fd = open_unit(0), *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(n * ps);

	fill(p, n, 11);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, buf, n, NULL), 0);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_RELEASE, p, buf, n, NULL), 0);
	cr_expect_eq(state_of(fd, p), HMM_DMIRROR_PROT_WRITE);
	expect_filled(p, n, 11, "CPU view after RELEASE");
	free(buf);
	close(fd);
}

Test(dmirror_abi, device_mmap_is_a_zeroed_present_read_only_page)
{
	int fd = open_unit(0);
	char *m = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);

	cr_assert_neq(m, MAP_FAILED, "mmap: %s", strerror(errno));
	cr_expect_eq(state_of(fd, m), HMM_DMIRROR_PROT_READ);
	for (size_t i = 0; i < ps; i++)
		if (m[i])
			cr_assert_fail("byte %zu is %d", i, m[i]);
	m[0] = 1; /* a private copy, as for any private mapping */
	cr_expect_eq(state_of(fd, m), HMM_DMIRROR_PROT_WRITE);
	munmap(m, ps);
	close(fd);
}

Test(dmirror_abi, thp_and_hugetlb_are_mirrored)
{
	const size_t huge = 2u << 20, n = huge / ps;
	int fd = open_unit(0), *src = malloc(huge);
	char *raw = (char *)map_ints(2 * n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *p = (int *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
	struct hmm_dmirror_cmd c;

	cr_assert_eq(madvise(p, huge, MADV_HUGEPAGE), 0);
	fill(p, n, 0);
	fill(src, n, 50);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_WRITE, p, src, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(c.faults, 1);
	expect_filled(p, n, 50, "THP after the device write");

	p = mmap(NULL, huge, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED) {
		close(fd);
		cr_skip_test("no hugetlbfs page reserved (vm.nr_hugepages): "
			     "THP checked, MAP_HUGETLB not");
	}
	fill(p, n, 0);
	cr_assert_eq(dmirror(fd, HMM_DMIRROR_WRITE, p, src, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	expect_filled(p, n, 50, "hugetlb page after the device write");
	free(src);
	close(fd);
}

/* A file of @npages pages filled with fill(..., @bias), deleted on close. */
static int tmpfile_of(size_t npages, int bias)
{
	int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);
	int *data = malloc(npages * ps);

	cr_assert_geq(fd, 0, "O_TMPFILE: %s", strerror(errno));
	fill(data, npages, bias);
	cr_assert_eq(pwrite(fd, data, npages * ps, 0), (ssize_t)(npages * ps));
	free(data);
	return fd;
}

Test(dmirror_abi, file_mappings_read_write_and_copy_on_write)
{
	const size_t n = 8;
	int dev = open_unit(0), fd = tmpfile_of(n, 20), *buf = malloc(n * ps);
	int *shared_ro = mmap(NULL, n * ps, PROT_READ, MAP_SHARED, fd, 0);
	int *shared_rw = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, MAP_SHARED,
			      fd, 0);
	int *private = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE,
			    fd, 0);
	struct hmm_dmirror_cmd c;

	cr_assert(shared_ro != MAP_FAILED && shared_rw != MAP_FAILED &&
		  private != MAP_FAILED);
	cr_assert_eq(dmirror(dev, HMM_DMIRROR_READ, shared_ro, buf, n, &c), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(c.faults, 1);
	expect_filled(buf, n, 20, "device read of a shared file mapping");

	fill(buf, n, 30);
	cr_assert_eq(dmirror(dev, HMM_DMIRROR_WRITE, shared_rw, buf, n, &c), 0);
	expect_filled(shared_ro, n, 30, "the file, through another mapping");
	cr_expect_eq(dmirror(dev, HMM_DMIRROR_WRITE, shared_ro, buf, n, &c),
		     -EPERM, "a read-only shared mapping");

	/* Private: COW'd pages are the process's own. */
	private[0] = -1;
	cr_assert_eq(dmirror(dev, HMM_DMIRROR_READ, private, buf, n, &c), 0);
	cr_expect_eq(buf[0], -1, "the CPU's copied page");
	cr_expect_eq(buf[ps / sizeof(int)], (int)(ps / sizeof(int)) + 30,
		     "the file's page");
	fill(buf, n, 40);
	cr_assert_eq(dmirror(dev, HMM_DMIRROR_WRITE, private, buf, n, &c), 0);
	expect_filled(private, n, 40, "the private mapping after a device write");
	expect_filled(shared_ro, n, 30, "the file after a device write to a "
					"private mapping of it");
	close(fd);
	close(dev);
}

Test(dmirror_abi, fork_child_needs_its_own_fd)
{
	const size_t n = 4;
	int fd = open_unit(0), *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(n * ps), status;
	pid_t pid;

	fill(p, n, 5);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmm_dmirror_cmd c;
		int own, ok;

		/* The parent's fd is the parent's mirror: ECHILD. */
		ok = dmirror(fd, HMM_DMIRROR_READ, p, buf, n, &c) == -ECHILD;
		own = open("/dev/hmm_dmirror0", O_RDWR);
		ok = ok && own >= 0 &&
		     dmirror(own, HMM_DMIRROR_WRITE, p, buf, n, &c) == 0 &&
		     c.cpages == n;
		_exit(ok ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "child: inherited fd ECHILD, own fd works (status %#x)", status);
	/* The parent's unit is untouched by the child's exit. */
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_READ, p, buf, n, NULL), 0);
	expect_filled(buf, n, 5, "parent's device read after the child");
	free(buf);
	close(fd);
}

/* hmmud no longer holds state for @pid, within 10 s. */
static bool daemon_forgets(pid_t pid)
{
	struct hmmu_process_info info[64];
	struct hmmu *h;
	bool gone = false;

	cr_assert_eq(hmmu_connect(NULL, &h), 0);
	for (int tries = 0; tries < 1000 && !gone; tries++) {
		int n = hmmu_list_processes(h, info, 64);

		gone = n >= 0;
		for (int i = 0; i < n && i < 64; i++)
			if (info[i].pid == pid)
				gone = false;
		if (!gone)
			usleep(10000);
	}
	hmmu_disconnect(h);
	return gone;
}

Test(dmirror_abi, a_killed_process_is_released_and_others_go_on)
{
	const size_t n = 16;
	int *p = map_ints(n, PROT_READ | PROT_WRITE, MAP_PRIVATE);
	int *buf = malloc(n * ps), fd, status;
	pid_t pid;

	fill(p, n, 8);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int dev = open("/dev/hmm_dmirror0", O_RDWR);

		/* Pages on the device, the fd never closed. */
		if (dev < 0 || dmirror(dev, HMM_DMIRROR_MIGRATE_TO_DEV, p, buf,
				       n, NULL))
			_exit(1);
		raise(SIGKILL);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "the child got its pages on the device (status %#x)", status);
	cr_expect(daemon_forgets(pid), "hmmud released the killed process");

	fd = open_unit(0);
	cr_expect_eq(dmirror(fd, HMM_DMIRROR_MIGRATE_TO_DEV, p, buf, n, NULL), 0);
	expect_filled(buf, n, 8, "the next process's migration");
	free(buf);
	close(fd);
}
