/* SPDX-License-Identifier: MIT */
/*
 * two_processes: two processes, two devices each. hmmud keeps one mirror
 * state per address space, as the kernel keeps one struct hmm per mm: the
 * parent and its forked child each mirror themselves on dmirror0 and
 * dmirror1, and each device reads, at the same virtual address, what that
 * process wrote there, never the other's bytes.
 *
 * It also shows the rule for fork(): a connection belongs to the process
 * that made it. The child finds the parent's handle refusing with -ECHILD,
 * and connects anew.
 *
 * Build:  make two_processes      (pkg-config --cflags --libs hmmu)
 * Run:    ./two_processes         (hmmud at $HMMU_SOCKET, else
 *                                  /run/hmmu/hmmud.sock)
 *
 * Prints what it checks; exits 1 on any failure or mismatch.
 */
#include <hmmu/hmmu.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define NPAGES 8

static const char *const devices[] = { "dmirror0", "dmirror1" };
static const char *me = "parent";
static int failed;

static void check(int err, const char *what)
{
	const char *detail;

	if (err >= 0)
		return;
	detail = hmmu_error_detail();
	fprintf(stderr, "two_processes: %s: %s: %s%s%s\n", me, what,
		strerror(-err), *detail ? ": " : "", detail);
	exit(1);
}

static void expect(int ok, const char *what, const char *device)
{
	printf("  %-6s %-9s %-44s %s\n", me, device, what, ok ? "ok" : "FAIL");
	if (!ok)
		failed = 1;
}

/* A one-byte message on a pipe, so that the two processes wait for each other. */
static void signal_peer(int fd)
{
	if (write(fd, "x", 1) != 1) {
		perror("two_processes: write");
		exit(1);
	}
}

static void wait_peer(int fd)
{
	char x;

	if (read(fd, &x, 1) != 1) {
		fprintf(stderr, "two_processes: %s: the other process is gone\n", me);
		exit(1);
	}
}

/*
 * One process's part: mirror itself on both devices, fill @buf with @fill,
 * wait until the other process has done the same, and check that each
 * device reads @fill. Returns 0 if every check passed.
 */
static int run(unsigned char *buf, unsigned char fill, int to_peer, int from_peer)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = NPAGES * page;
	struct hmmu_mirror *m[2];
	struct hmmu_stats st;
	unsigned char *out;
	struct hmmu *h;

	out = malloc(len);
	if (!out) {
		perror("two_processes: malloc");
		exit(1);
	}
	/* The pages were shared copy-on-write at fork(): this write makes them ours. */
	memset(buf, fill, len);

	check(hmmu_connect(NULL, &h), "connect");
	for (int d = 0; d < 2; d++) {
		check(hmmu_mirror_create(h, devices[d], &m[d]), "mirror create");
		check(hmmu_mirror_register(m[d]), "mirror register");
	}

	/* Both processes are mirrored from here on. */
	signal_peer(to_peer);
	wait_peer(from_peer);

	for (int d = 0; d < 2; d++) {
		struct hmmu_cmd c = { .addr = (uintptr_t)buf, .npages = NPAGES };

		memset(out, 0, len);
		check(hmmu_device_read(m[d], &c, out), "device read");
		expect(c.cpages == NPAGES && !memcmp(out, buf, len) &&
			       out[0] == fill,
		       fill == 'P' ? "reads the parent's 'P's at buf" :
				     "reads the child's 'C's at buf",
		       devices[d]);
	}
	check(hmmu_stats(h, &st, sizeof(st)), "stats");
	expect(st.my_mirrors == 2, "this process has 2 mirrors", "");
	expect(st.processes >= 2, "hmmud mirrors (at least) both processes", "");

	/* The other process must not unregister before these checks are done. */
	signal_peer(to_peer);
	wait_peer(from_peer);

	for (int d = 0; d < 2; d++)
		hmmu_mirror_destroy(m[d]);
	hmmu_disconnect(h);
	free(out);
	return failed;
}

int main(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE), len = NPAGES * page;
	int to_child[2], to_parent[2], status, err;
	unsigned char *buf;
	struct hmmu *h;
	pid_t pid;

	/* The parent connects first, to see that both devices are there. */
	check(hmmu_connect(NULL, &h), "connect");
	for (int d = 0; d < 2; d++) {
		struct hmmu_mirror *probe;

		check(hmmu_mirror_create(h, devices[d], &probe), devices[d]);
		hmmu_mirror_destroy(probe);
	}

	/* One buffer, at the same address in both processes after fork(). */
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED || pipe(to_child) || pipe(to_parent)) {
		perror("two_processes: setup");
		return 1;
	}
	fflush(stdout); /* nothing buffered twice */
	pid = fork();
	if (pid < 0) {
		perror("two_processes: fork");
		return 1;
	}
	if (pid == 0) {
		me = "child";
		/* Each end kept by one process only: a peer that dies is EOF. */
		close(to_child[1]);
		close(to_parent[0]);
		/* The parent's connection is not this process's to use... */
		err = hmmu_device_count(h);
		expect(err == -ECHILD, "the parent's handle fails with -ECHILD", "");
		/* ...but this copy of it is ours to free (the parent's stays open). */
		hmmu_disconnect(h);
		return run(buf, 'C', to_parent[1], to_child[0]);
	}
	close(to_child[0]);
	close(to_parent[1]);
	hmmu_disconnect(h);
	failed = run(buf, 'P', to_child[1], to_parent[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 0) {
		fprintf(stderr, "two_processes: the child failed\n");
		failed = 1;
	}
	munmap(buf, len);
	printf(failed ? "two_processes: FAILED\n" :
			"two_processes: all checks passed\n");
	return failed;
}
