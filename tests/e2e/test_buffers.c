/* SPDX-License-Identifier: MIT */
/*
 * Shared buffers (hmmu_buffer_create()): a device read into one returns the
 * bytes a read into plain memory does; buffers are bounded per user, freed
 * with their handle, connection and process (the daemon's mappings of them
 * are counted in its /proc/PID/maps), never usable from a forked child or
 * another connection, and hostile ranges change nothing.
 */
#include "harness.h"
#include "helpers.h"
#include "common/proto.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(buffers, .init = daemon_start, .fini = daemon_stop, .timeout = 120);

#define NPAGES 2100 /* three chunks of the daemon's, the last one short */

/* How many shared buffers the daemon under test maps. */
static int daemon_buffers(void)
{
	char path[64], line[512];
	FILE *f;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/maps", daemon_under_test.pid);
	f = fopen(path, "r");
	cr_assert(f, "open %s", path);
	while (fgets(line, sizeof(line), f))
		n += strstr(line, "memfd:hmmu-buffer") != NULL;
	fclose(f);
	return n;
}

/* Wait up to ~5 s for the daemon to map @want buffers; the last count. */
static int wait_buffers(int want)
{
	int n = 0;

	for (int i = 0; i < 500 && (n = daemon_buffers()) != want; i++)
		usleep(10000);
	return n;
}

static struct hmmu_buffer *buffer(struct hmmu *h, size_t bytes, void **addr)
{
	struct hmmu_buffer *b = NULL;
	int err = hmmu_buffer_create(h, bytes, addr, &b);

	cr_assert_eq(err, 0, "hmmu_buffer_create: %s %s", strerror(-err),
		     hmmu_error_detail());
	return b;
}

Test(buffers, read_into_a_buffer_returns_the_bytes_of_a_plain_read)
{
	struct fixture f = fixture_open("dmirror0");
	size_t ps = page_size(), len = NPAGES * ps;
	unsigned char *src = map_filled(NPAGES, 3), *plain = map_rw(NPAGES);
	struct hmmu_buffer *b;
	struct hmmu_cmd c;
	void *addr;

	b = buffer(f.h, len + ps, &addr);
	memset(addr, 0xee, len + ps);
	/* hmmu_device_read() finds the buffer by itself. */
	c = dev_read(f.m, src, NPAGES, addr);
	cr_assert_eq(c.cpages, NPAGES);
	cr_assert_geq(c.faults, 1);
	expect_filled_pages(addr, NPAGES, 3);
	/* Named, at an offset: the same bytes again. */
	memset(addr, 0xee, len + ps);
	c = (struct hmmu_cmd){ .addr = (uint64_t)(uintptr_t)src,
			       .npages = NPAGES };
	cr_assert_eq(hmmu_device_read_buffer(f.m, &c, b, ps), 0, "%s",
		     hmmu_error_detail());
	cr_assert_eq(c.cpages, NPAGES);
	dev_read(f.m, src, NPAGES, plain);
	cr_assert_eq(memcmp((char *)addr + ps, plain, len), 0);
	cr_assert_eq(((unsigned char *)addr)[0], 0xee, "the page before is untouched");

	/* The device now holds the pages; a CPU write drops one; read again. */
	src[5 * ps + 7] ^= 0xff;
	plain[5 * ps + 7] ^= 0xff;
	c = dev_read(f.m, src, NPAGES, addr);
	cr_assert_eq(memcmp(addr, plain, len), 0);
	hmmu_buffer_destroy(b);
	cr_assert_eq(wait_buffers(0), 0);
	munmap(src, len);
	munmap(plain, len);
	fixture_close(&f);
}

Test(buffers, buffers_past_the_user_limit_are_edquot)
{
	const char *args[] = { "--limit", "buffers-per-user=2", "--limit",
			       "buffer-mib-per-user=1", NULL };
	struct hmmu_buffer *b1, *b2, *b3 = NULL;
	struct fixture f;
	void *a1, *a2, *a3 = NULL;

	daemon_restart(args);
	f = fixture_open(NULL);
	expect_daemon_log("shared buffers as allowed");
	cr_assert_eq(hmmu_buffer_create(f.h, (1 << 20) + 1, &a3, &b3), -EDQUOT,
		     "past the bytes");
	cr_assert_eq(hmmu_buffer_create(f.h, SIZE_MAX, &a3, &b3), -EDQUOT,
		     "SIZE_MAX bytes");
	b1 = buffer(f.h, 1 << 19, &a1);
	cr_assert_eq(hmmu_buffer_create(f.h, (1 << 19) + 1, &a3, &b3), -EDQUOT,
		     "past the bytes with another");
	b2 = buffer(f.h, 4096, &a2);
	cr_assert_eq(hmmu_buffer_create(f.h, 4096, &a3, &b3), -EDQUOT,
		     "past the count");
	cr_assert_null(b3);
	cr_assert_eq(hmmu_buffer_create(f.h, 0, &a3, &b3), -EINVAL);
	cr_assert_eq(daemon_buffers(), 2);
	/* Room again once one is gone. */
	hmmu_buffer_destroy(b1);
	b1 = buffer(f.h, 4096, &a1);
	hmmu_buffer_destroy(b1);
	hmmu_buffer_destroy(b2);
	cr_assert_eq(wait_buffers(0), 0);
	fixture_close(&f);
}

Test(buffers, buffers_go_with_their_connection)
{
	struct hmmu *h = connect_or_die();
	struct hmmu_buffer *b;
	void *a;

	b = buffer(h, 1 << 20, &a);
	(void)b;
	buffer(h, 4096, &a);
	cr_assert_eq(daemon_buffers(), 2);
	hmmu_disconnect(h);
	cr_assert_eq(wait_buffers(0), 0, "freed on disconnect");
}

/*
 * A child that makes a buffer, then waits to be told to exit or to be
 * killed: it must not be gone before the parent counted its buffer.
 */
static void child_with_buffer(int kill_it)
{
	int ready[2], go[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	cr_assert_eq(pipe(go), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu *h;
		struct hmmu_buffer *b;
		void *a;

		close(ready[0]);
		close(go[1]);
		if (hmmu_connect(daemon_under_test.socket, &h) ||
		    hmmu_buffer_create(h, 1 << 20, &a, &b))
			_exit(1);
		memset(a, 1, 1 << 20);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		/* Returns on "x" or when the parent is gone. */
		(void)!read(go[0], &c, 1);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the child made its buffer");
	cr_assert_eq(daemon_buffers(), 1);
	if (kill_it)
		kill(pid, SIGKILL);
	else
		cr_assert_eq(write(go[1], "x", 1), 1);
	waitpid(pid, NULL, 0);
	close(ready[0]);
	close(go[1]);
	cr_assert_eq(wait_buffers(0), 0, "freed when the child %s",
		     kill_it ? "was killed" : "exited");
}

Test(buffers, buffers_go_with_their_process_on_exit)
{
	child_with_buffer(0);
}

Test(buffers, buffers_go_with_their_process_on_sigkill)
{
	child_with_buffer(1);
}

Test(buffers, handle_used_after_fork_is_echild)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char *src = map_filled(4, 9);
	struct hmmu_buffer *b;
	int status;
	void *a;
	pid_t pid;

	b = buffer(f.h, 4 * page_size(), &a);
	memset(a, 0x55, 4 * page_size());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu_cmd c = { .addr = (uint64_t)(uintptr_t)src,
				      .npages = 4 };
		int e1 = hmmu_device_read_buffer(f.m, &c, b, 0);
		int e2 = hmmu_device_read(f.m, &c, a);

		/* Lets go of its own copy only: the parent's stays. */
		hmmu_buffer_destroy(b);
		_exit(e1 == -ECHILD && e2 == -ECHILD ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the child's calls were -ECHILD");
	cr_assert_eq(((unsigned char *)a)[0], 0x55, "nothing was read");
	cr_assert_eq(daemon_buffers(), 1, "the parent's buffer is still there");
	dev_read(f.m, src, 4, a);
	expect_filled_pages(a, 4, 9);
	hmmu_buffer_destroy(b);
	munmap(src, 4 * page_size());
	fixture_close(&f);
}

/* DEVICE_CMD_BUFFER by hand: its status. */
static int raw_buffer_read(int sock, uint64_t mirror, uint64_t buffer,
			   uint64_t addr, uint64_t npages, uint64_t buf,
			   uint64_t buf_len, uint64_t offset)
{
	struct hmmu_wire_device_cmd_buffer req = {
		.cmd = { .mirror = mirror, .cmd = HMMU_CMD_READ, .addr = addr,
			 .npages = npages, .buf = buf, .buf_len = buf_len },
		.buffer = buffer,
		.offset = offset,
	};
	struct hmmu_wire_cmd_result rep;

	return raw_call(sock, HMMU_OP_DEVICE_CMD_BUFFER, &req, sizeof(req), -1,
			&rep, sizeof(rep));
}

Test(buffers, hostile_ranges_are_einval_and_change_nothing)
{
	struct fixture f = fixture_open("dmirror0");
	size_t ps = page_size();
	unsigned char *src = map_filled(4, 5);
	struct hmmu_wire_buffer_create create = { .bytes = 2 * ps };
	struct hmmu_wire_buffer rep = { 0, 0 };
	uint64_t s = (uint64_t)(uintptr_t)src, mirror;
	struct hmmu_buffer *mine, *first, *second;
	struct hmmu_cmd c;
	void *a;
	int sock = raw_session(), err;

	expect_daemon_log("device-cmd-buffer");
	/* The library's connection has buffers 1 and 2, the raw one 1 only. */
	first = buffer(f.h, ps, &a);
	second = buffer(f.h, ps, &a);

	/* The process has its state: a mirror of the raw connection registers. */
	mirror = raw_mirror_create(sock, "dmirror0");
	cr_assert_neq(mirror, 0);
	cr_assert_eq(raw_register(sock, mirror, -1, 0), 0);
	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_CREATE, &create,
			      sizeof(create), -1, &rep, sizeof(rep)), 0);
	cr_assert_eq(rep.bytes, 2 * ps);
	cr_assert_eq(daemon_buffers(), 2 + 1);

	/* Partly past its end, wrapping, short, reading onto itself. */
	err = raw_buffer_read(sock, mirror, rep.buffer, s, 2, 0x10000, 2 * ps, ps);
	cr_expect_eq(err, -EINVAL, "partly past the end: %d", err);
	err = raw_buffer_read(sock, mirror, rep.buffer, s, 1, 0x10000, 2 * ps,
			      UINT64_MAX - ps + 1);
	cr_expect_eq(err, -EINVAL, "offset wraps: %d", err);
	err = raw_buffer_read(sock, mirror, rep.buffer, s, 1, 0x10000,
			      UINT64_MAX, 0);
	cr_expect_eq(err, -EINVAL, "length past everything: %d", err);
	err = raw_buffer_read(sock, mirror, rep.buffer, s, 2, 0x10000, ps, 0);
	cr_expect_eq(err, -EINVAL, "room for one page of two: %d", err);
	err = raw_buffer_read(sock, mirror, rep.buffer, s, 2, s + ps, 2 * ps, 0);
	cr_expect_eq(err, -EINVAL, "source overlaps destination: %d", err);
	err = raw_buffer_read(sock, mirror, rep.buffer + 1000, s, 1, 0x10000,
			      ps, 0);
	cr_expect_eq(err, -ENOENT, "no such buffer: %d", err);
	/* A buffer of another connection cannot be named. */
	mine = buffer(f.h, ps, &a);
	memset(a, 0x77, ps);
	err = raw_buffer_read(sock, mirror, 2, s, 1, 0x10000, ps, 0);
	cr_expect_eq(err, -ENOENT, "the other connection's buffer 2: %d", err);
	cr_assert_eq(((unsigned char *)a)[0], 0x77);
	/* A correct one works, on the raw connection. */
	err = raw_buffer_read(sock, mirror, rep.buffer, s, 2, 0x10000, 2 * ps, 0);
	cr_expect_eq(err, 0, "a good read: %d", err);
	/* The library refuses bad ranges before they go out. */
	c = (struct hmmu_cmd){ .addr = s, .npages = 2 };
	cr_assert_eq(hmmu_device_read_buffer(f.m, &c, mine, 0), -EINVAL);
	c.npages = 1;
	cr_assert_eq(hmmu_device_read_buffer(f.m, &c, mine, SIZE_MAX), -EINVAL);
	cr_assert_eq(((unsigned char *)a)[0], 0x77, "nothing was written");
	cr_assert_eq(hmmu_device_read_buffer(f.m, &c, mine, 0), 0);
	expect_filled_pages(a, 1, 5);
	/* Destroyed twice: -ENOENT. */
	struct hmmu_wire_buffer id = { .buffer = rep.buffer };
	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_DESTROY, &id, sizeof(id), -1,
			      NULL, 0), 0);
	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_DESTROY, &id, sizeof(id), -1,
			      NULL, 0), -ENOENT);
	cr_assert_eq(wait_buffers(3), 3);
	hmmu_buffer_destroy(mine);
	hmmu_buffer_destroy(first);
	hmmu_buffer_destroy(second);
	close(sock);
	cr_assert_eq(wait_buffers(0), 0);
	munmap(src, 4 * ps);
	fixture_close(&f);
}

/* ---- BUFFER_RESTORE (docs/protocol.md §11) ------------------------------ */

#define BUFFER_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* A memfd named @name, of @bytes, with @seals added (0: none). */
static int memfd_named(const char *name, size_t bytes, int seals)
{
	int fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);

	cr_assert_geq(fd, 0, "memfd_create: %s", strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)bytes), 0);
	if (seals)
		cr_assert_eq(fcntl(fd, F_ADD_SEALS, seals), 0, "seals %#x: %s",
			     seals, strerror(errno));
	return fd;
}

/* What hmmud makes for a buffer of @bytes (daemon/buffers.c). */
static int buffer_memfd(size_t bytes)
{
	return memfd_named("hmmu-buffer", bytes, BUFFER_SEALS);
}

/* BUFFER_RESTORE by hand, with @fd unless it is -1: its status. */
static int raw_restore(int sock, uint64_t id, uint64_t bytes, int fd)
{
	struct hmmu_wire_buffer req = { .buffer = id, .bytes = bytes };

	return raw_call(sock, HMMU_OP_BUFFER_RESTORE, &req, sizeof(req), fd,
			NULL, 0);
}

/* BUFFER_CREATE by hand, asserting: the id (its memfd is not taken). */
static uint64_t raw_create(int sock, uint64_t bytes)
{
	struct hmmu_wire_buffer_create req = { .bytes = bytes };
	struct hmmu_wire_buffer rep = { 0, 0 };

	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_CREATE, &req, sizeof(req),
			      -1, &rep, sizeof(rep)), 0);
	return rep.buffer;
}

/* A raw connection with a registered mirror (the fixture's state): its id. */
static uint64_t raw_mirror(int sock)
{
	uint64_t mirror = raw_mirror_create(sock, "dmirror0");

	cr_assert_neq(mirror, 0);
	cr_assert_eq(raw_register(sock, mirror, -1, 0), 0);
	return mirror;
}

Test(buffers, a_restored_buffer_is_the_memfd_handed_back_under_its_id)
{
	struct fixture f = fixture_open("dmirror0");
	size_t ps = page_size();
	unsigned char *src = map_filled(2, 6), *mem;
	struct hmmu_wire_buffer id = { .buffer = 7 };
	int sock = raw_session(), fd;
	uint64_t mirror = raw_mirror(sock);

	fd = buffer_memfd(2 * ps);
	mem = mmap(NULL, 2 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(mem, MAP_FAILED);
	memset(mem, 0xee, 2 * ps);
	cr_assert_eq(raw_restore(sock, 7, 2 * ps, fd), 0);
	cr_assert_eq(daemon_buffers(), 1);

	/* The daemon reads into the pages the client maps. */
	cr_assert_eq(raw_buffer_read(sock, mirror, 7, (uintptr_t)src, 2,
				     (uintptr_t)mem, 2 * ps, 0), 0);
	expect_filled_pages(mem, 2, 6);
	/* A buffer made now has an id past it, even past the largest. */
	cr_assert_eq(raw_create(sock, ps), 8);
	cr_assert_eq(raw_restore(sock, UINT64_MAX, 2 * ps, fd), 0);
	cr_assert_eq(raw_create(sock, ps), 1, "wrapped, to an id not taken");
	cr_assert_eq(daemon_buffers(), 4);

	/* Freed as one it made: its pages punched out, uncharged. */
	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_DESTROY, &id, sizeof(id),
			      -1, NULL, 0), 0);
	id.buffer = UINT64_MAX;
	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_DESTROY, &id, sizeof(id),
			      -1, NULL, 0), 0);
	cr_assert_eq(wait_buffers(2), 2);
	cr_expect_eq(mem[0], 0, "the pages stayed with the daemon gone");
	close(sock);
	cr_assert_eq(wait_buffers(0), 0);
	munmap(mem, 2 * ps);
	close(fd);
	munmap(src, 2 * ps);
	fixture_close(&f);
}

/* A file with a page of room, on a disk if /tmp is one. */
static int regular_file(size_t bytes)
{
	int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0) {
		char path[128];

		snprintf(path, sizeof(path), "%s/plain", daemon_under_test.dir);
		fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
		cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
		unlink(path);
	}
	cr_assert_eq(ftruncate(fd, (off_t)bytes), 0);
	return fd;
}

/* A read-only open of a good memfd, as the device memory file comes. */
static int read_only_memfd(size_t bytes)
{
	int good = buffer_memfd(bytes), fd;
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", good);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	close(good);
	return fd;
}

struct bad_restore {
	const char *what;
	int fd;		/* -1: none */
	uint64_t id;
	uint64_t bytes;
	int err;
	const char *why; /* in the daemon's log line */
};

/* A pipe's read end. */
static int pipe_end(void)
{
	int p[2];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	close(p[1]);
	return p[0];
}

Test(buffers, restore_of_anything_but_a_buffer_memfd_is_refused)
{
	const char *not_memfd = "not a buffer's memfd";
	const char *seals = "seals are";
	size_t ps = page_size();
	struct bad_restore bad[16];
	struct fixture f;
	unsigned n = 0;
	uint64_t made;
	int sock, fd;

	/* One log line each: more than one call site's burst. */
	setenv("HMMUD_LOG_RATELIMIT", "0", 1);
	daemon_restart(NULL);
	expect_daemon_log("restore buffer");
	f = fixture_open(NULL);
	sock = raw_session();
	/* Ids 3 (restored) and 4 (made) are taken. */
	fd = buffer_memfd(ps);
	cr_assert_eq(raw_restore(sock, 3, ps, fd), 0);
	close(fd);
	made = raw_create(sock, ps);
	cr_assert_eq(made, 4);

	bad[n++] = (struct bad_restore){ "no fd", -1, 10, ps, -EBADF,
					 "needs the buffer's memfd" };
	bad[n++] = (struct bad_restore){ "a pipe", pipe_end(), 10, ps,
					 -EINVAL, not_memfd };
	bad[n++] = (struct bad_restore){ "a regular file", regular_file(ps),
					 10, ps, -EINVAL, not_memfd };
	fd = open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0) {
		cr_assert_eq(ftruncate(fd, (off_t)ps), 0);
		bad[n++] = (struct bad_restore){ "a file on tmpfs", fd, 10, ps,
						 -EINVAL, not_memfd };
	}
	bad[n++] = (struct bad_restore){ "the device memory file's name",
		memfd_named("hmmu-devmem", ps, BUFFER_SEALS), 10, ps, -EINVAL,
		not_memfd };
	bad[n++] = (struct bad_restore){ "a read-only open of a memfd",
		read_only_memfd(ps), 10, ps, -EINVAL, "not open for reading "
		"and writing" };
	bad[n++] = (struct bad_restore){ "an unsealed memfd",
		memfd_named("hmmu-buffer", ps, 0), 10, ps, -EINVAL, seals };
	bad[n++] = (struct bad_restore){ "a memfd that may shrink",
		memfd_named("hmmu-buffer", ps, F_SEAL_GROW | F_SEAL_SEAL), 10,
		ps, -EINVAL, seals };
	bad[n++] = (struct bad_restore){ "a memfd sealed against writes",
		memfd_named("hmmu-buffer", ps, BUFFER_SEALS | F_SEAL_WRITE),
		10, ps, -EINVAL, seals };
	bad[n++] = (struct bad_restore){ "a memfd sealed against future "
		"writes", memfd_named("hmmu-buffer", ps, BUFFER_SEALS |
				      F_SEAL_FUTURE_WRITE), 10, ps, -EINVAL,
		seals };
	bad[n++] = (struct bad_restore){ "a memfd of another size",
		buffer_memfd(2 * ps), 10, ps, -EINVAL, "bytes, not" };
	bad[n++] = (struct bad_restore){ "a size not in pages",
		buffer_memfd(ps), 10, ps + 1, -EINVAL,
		"whole number of pages" };
	bad[n++] = (struct bad_restore){ "past buffer-mib-per-user",
		buffer_memfd(ps), 10, 512ull << 20, -EDQUOT,
		"buffer-mib-per-user=256" };
	bad[n++] = (struct bad_restore){ "the id of a restored buffer",
		buffer_memfd(ps), 3, ps, -EEXIST, "exists on this connection" };
	bad[n++] = (struct bad_restore){ "the id of a buffer it made",
		buffer_memfd(ps), made, ps, -EEXIST,
		"exists on this connection" };

	for (unsigned i = 0; i < n; i++) {
		const struct bad_restore *c = &bad[i];
		int fds = count_fds(daemon_under_test.pid), now = 0;
		int lines = daemon_log_count("restore buffer");
		int whys = daemon_log_count(c->why), err;

		err = raw_restore(sock, c->id, c->bytes, c->fd);
		cr_expect_eq(err, c->err, "%s: %d (%s), want %d", c->what,
			     err, strerror(-err), c->err);
		cr_expect_eq(daemon_log_count("restore buffer"), lines + 1,
			     "%s: one log line", c->what);
		cr_expect_eq(daemon_log_count(c->why), whys + 1,
			     "%s: logged \"%s\"", c->what, c->why);
		cr_expect_eq(daemon_buffers(), 2, "%s: the daemon maps it",
			     c->what);
		/*
		 * The fd is closed once the request ends, after its reply
		 * (and so is the one of the request before: fewer is fine).
		 */
		for (int t = 0; t < 500; t++) {
			now = count_fds(daemon_under_test.pid);
			if (now <= fds)
				break;
			usleep(10000);
		}
		cr_expect_leq(now, fds, "%s: the daemon kept an fd", c->what);
		if (c->fd >= 0)
			close(c->fd);
	}
	/* The connection goes on: a buffer made now takes the next id. */
	cr_assert_eq(raw_create(sock, ps), 5);
	close(sock);
	cr_assert_eq(wait_buffers(0), 0);
	fixture_close(&f);
}

Test(buffers, restored_buffers_count_against_the_user_limits)
{
	const char *args[] = { "--limit", "buffers-per-user=1", "--limit",
			       "buffer-mib-per-user=1", NULL };
	size_t ps = page_size();
	struct hmmu_wire_buffer id = { .buffer = 1 };
	struct fixture f;
	int sock, fd;

	daemon_restart(args);
	expect_daemon_log("restore buffer");
	f = fixture_open(NULL);
	sock = raw_session();
	fd = buffer_memfd(2 << 20);
	cr_expect_eq(raw_restore(sock, 1, 2 << 20, fd), -EDQUOT,
		     "past the bytes");
	close(fd);
	fd = buffer_memfd(ps);
	cr_assert_eq(raw_restore(sock, 1, ps, fd), 0);
	cr_expect_eq(raw_restore(sock, 2, ps, fd), -EDQUOT, "past the count");
	cr_assert_eq(daemon_buffers(), 1);
	/* Room again once it is gone. */
	cr_assert_eq(raw_call(sock, HMMU_OP_BUFFER_DESTROY, &id, sizeof(id),
			      -1, NULL, 0), 0);
	cr_expect_eq(raw_restore(sock, 2, ps, fd), 0);
	close(fd);
	close(sock);
	cr_assert_eq(wait_buffers(0), 0);
	fixture_close(&f);
}
