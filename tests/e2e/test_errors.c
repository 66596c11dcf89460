/* SPDX-License-Identifier: MIT */
/*
 * Errors that say what to do: for each failure whose errno alone is
 * ambiguous, the errno and the facts in hmmu_error_detail() (an address in
 * hex, a path, the fix), whether the library or hmmud found it (the daemon
 * sends its reason with the error reply, docs/protocol.md §2).
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(errors, .init = daemon_start, .fini = daemon_stop, .timeout = 60);

/* hmmu_error_detail() holds every one of the NULL-terminated @facts. */
#define expect_detail(...)                                                     \
	do {                                                                   \
		const char *facts_[] = { __VA_ARGS__, NULL };                  \
		for (int i_ = 0; facts_[i_]; i_++)                             \
			cr_expect(strstr(hmmu_error_detail(), facts_[i_]),     \
				  "the detail names '%s': '%s'", facts_[i_],   \
				  hmmu_error_detail());                        \
	} while (0)

static const char *hex(const void *p, char *buf, size_t size)
{
	snprintf(buf, size, "%#lx", (unsigned long)(uintptr_t)p);
	return buf;
}

/* ---- the library's own checks ----------------------------------------- */

Test(errors, unaligned_address_says_how_to_get_an_aligned_buffer)
{
	struct fixture f = fixture_open("dmirror0");
	char *buf = xmalloc(4 * page_size()), *p = (char *)map_rw(2) + 8;
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };
	char at[32];

	cr_expect_eq(hmmu_device_read(f.m, &c, buf), -EINVAL);
	expect_detail(hex(p, at, sizeof(at)), "not page-aligned",
		      "aligned_alloc(");
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 1 };
	cr_expect_eq(hmmu_migrate_to_device(f.m, &c), -EINVAL);
	expect_detail(at, "aligned_alloc(");
	free(buf);
	fixture_close(&f);
}

/* The daemon checks the same for a client that is not libhmmu. */
Test(errors, unaligned_address_from_another_client_gets_the_same_reason)
{
	struct fixture f = fixture_open("dmirror0");
	int sock = raw_session();
	uint64_t mirror = raw_mirror_create(sock, "dmirror0");
	char *p = (char *)map_rw(2) + 8;
	struct hmmu_wire_device_cmd cmd = {
		.cmd = HMMU_CMD_SNAPSHOT,
		.addr = (uintptr_t)p,
		.npages = 1,
		.buf = (uintptr_t)map_rw(1),
		.buf_len = page_size(),
	};
	union raw_msg m;
	uint64_t id;
	ssize_t n;
	char at[32];

	/* The process has its state already (f): no userfaultfd needed. */
	cr_assert_neq(mirror, 0);
	cr_assert_eq(raw_register(sock, mirror, -1, 0), 0);
	cmd.mirror = mirror;
	expect_daemon_log("device-cmd on dmirror0: %s", strerror(EINVAL));
	id = raw_post(sock, HMMU_OP_DEVICE_CMD, &cmd, sizeof(cmd), -1);
	cr_assert_neq(id, 0);
	n = raw_recv(sock, &m, RAW_REPLY_WAIT_MS);
	cr_assert_gt(n, 0);
	cr_assert_eq(hmmu_proto_check(&m, (size_t)n, 1), 0);
	cr_expect_eq(m.hdr.status, -EINVAL);
	cr_assert_not_null(hmmu_proto_reason(&m), "the reply has a reason");
	cr_expect(strstr(hmmu_proto_reason(&m), hex(p, at, sizeof(at))) &&
			  strstr(hmmu_proto_reason(&m), "aligned_alloc("),
		  "'%s'", hmmu_proto_reason(&m));
	/* Past the reason, the progress result, as without one. */
	cr_expect_eq((size_t)n - hmmu_proto_payload_offset(&m),
		     sizeof(struct hmmu_wire_cmd_result));
	close(sock);
	fixture_close(&f);
}

Test(errors, handle_used_after_fork_says_connect_again)
{
	struct fixture f = fixture_open(NULL);
	struct {
		int err;
		char detail[256];
	} rep = { 0, "" };
	int p[2], status;
	pid_t child;

	cr_assert_eq(pipe(p), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		rep.err = hmmu_device_count(f.h);
		snprintf(rep.detail, sizeof(rep.detail), "%s",
			 hmmu_error_detail());
		_exit(write(p[1], &rep, sizeof(rep)) == sizeof(rep) ? 0 : 1);
	}
	close(p[1]);
	cr_assert_eq(read(p[0], &rep, sizeof(rep)), (ssize_t)sizeof(rep));
	cr_assert_eq(waitpid(child, &status, 0), child);
	close(p[0]);
	cr_expect_eq(rep.err, -ECHILD);
	cr_expect(strstr(rep.detail, "parent process") &&
			  strstr(rep.detail, "fork()") &&
			  strstr(rep.detail, "hmmu_connect()"),
		  "'%s'", rep.detail);
	fixture_close(&f);
}

Test(errors, dead_daemon_says_restart_it_or_read_its_log)
{
	struct hmmu *h = connect_or_die();
	int status;

	cr_assert_eq(kill(daemon_under_test.pid, SIGTERM), 0);
	cr_assert_eq(waitpid(daemon_under_test.pid, &status, 0),
		     daemon_under_test.pid);
	daemon_under_test.pid = 0;
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	cr_expect_eq(hmmu_device_count(h), -ECONNRESET);
	expect_detail("hmmud went away", "journalctl -u hmmud");
	/* And so for every later call: the handle stays broken. */
	cr_expect_eq(hmmu_device_count(h), -ECONNRESET);
	expect_detail("hmmud went away");
	hmmu_disconnect(h);
	daemon_remove_dir();
}

/* ---- the daemon's reasons ------------------------------------------------ */

/* A file of @npages zeroed pages on the build tree's filesystem: its path. */
static int disk_file(char *path, size_t size, size_t npages, long *fs)
{
	char dir[] = "hmmu-errors-XXXXXX", cwd[256];
	struct statfs st;
	int fd;

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, size, "%s/%s/data", cwd, dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(ftruncate(fd, (off_t)(npages * page_size())), 0);
	cr_assert_eq(fstatfs(fd, &st), 0);
	*fs = (long)st.f_type;
	return fd;
}

static void disk_file_remove(const char *path)
{
	char dir[256];

	snprintf(dir, sizeof(dir), "%s", path);
	*strrchr(dir, '/') = '\0';
	unlink(path);
	rmdir(dir);
}

Test(errors, read_only_file_mapping_names_the_file_and_the_fix)
{
	struct fixture f = fixture_open("dmirror0");
	const size_t n = 2;
	char path[300], at[32], *p;
	void *src = xmalloc(n * page_size());
	struct hmmu_cmd c;
	long fs;
	int fd = disk_file(path, sizeof(path), n, &fs);

	if (fs == TMPFS_MAGIC || fs == HUGETLBFS_MAGIC) {
		close(fd);
		disk_file_remove(path);
		fixture_close(&f);
		cr_skip_test("the build directory is on tmpfs, which is shared "
			     "memory to userfaultfd, not a file-backed mapping");
	}
	p = mmap(NULL, n * page_size(), PROT_READ, MAP_SHARED, fd, 0);
	cr_assert_neq(p, MAP_FAILED);
	memset(src, 0x5a, n * page_size());
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = n };
	cr_expect_eq(hmmu_device_write(f.m, &c, src), -EPERM);
	/* A long path is cut at its front: its end names the file. */
	expect_detail(hex(p, at, sizeof(at)), "read-only",
		      "a file-backed mapping of ",
		      strlen(path) > 40 ? path + strlen(path) - 40 : path,
		      "PROT_WRITE");
	/* As root, hmmud can tell the filesystem too. */
	if (geteuid() == 0 && fs == EXT4_SUPER_MAGIC)
		expect_detail("(ext4)");
	munmap(p, n * page_size());
	close(fd);
	disk_file_remove(path);
	free(src);
	fixture_close(&f);
}

Test(errors, hugetlb_page_in_part_names_hugetlb_and_thp)
{
	struct fixture f = fixture_open("dmirror0");
	char *buf = xmalloc(page_size()), at[32];
	char *p = mmap(NULL, HUGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	struct hmmu_cmd c;

	if (p == MAP_FAILED) {
		fixture_close(&f);
		cr_skip_test("no hugetlbfs page reserved (vm.nr_hugepages): "
			     "MAP_HUGETLB failed");
	}
	p[0] = 1;
	/* One base page of a huge page: userfaultfd takes whole ones only. */
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 1 };
	expect_daemon_log("device-cmd on dmirror0: %s", strerror(EINVAL));
	cr_expect_eq(hmmu_device_read(f.m, &c, buf), -EINVAL);
	expect_detail(hex(p, at, sizeof(at)), "hugetlb", "THP");
	munmap(p, HUGE_SIZE);
	free(buf);
	fixture_close(&f);
}

Test(errors, unknown_device_is_named_escaped_with_the_fix)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_mirror *m = NULL;
	const char *d;

	expect_daemon_log("no device named");
	cr_expect_eq(hmmu_mirror_create(f.h, "dmirror9", &m), -ENODEV);
	expect_detail("'dmirror9'", "hmmu_device_info()", "dmirror0");
	/* A name's bytes come back escaped, never raw. */
	cr_expect_eq(hmmu_mirror_create(f.h, "dm\x01\n\\x", &m), -ENODEV);
	expect_detail("dm\\x01\\x0a\\x5cx");
	for (d = hmmu_error_detail(); *d; d++)
		cr_expect_geq((unsigned char)*d, 0x20, "a control character");
	cr_expect_null(m);
	fixture_close(&f);
}

Test(errors, command_on_unregistered_mirror_says_register_first)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_mirror *m;
	char *p = map_rw(1), *buf = xmalloc(page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };

	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror0", &m), 0);
	expect_daemon_log("device-cmd on dmirror0: %s", strerror(EINVAL));
	expect_daemon_log("not registered");
	expect_daemon_log("register mirror");
	cr_expect_eq(hmmu_device_read(m, &c, buf), -EINVAL);
	expect_detail("not registered", "hmmu_mirror_register()");
	cr_expect_eq(hmmu_mirror_unregister(m), -EINVAL);
	expect_detail("not registered");
	cr_assert_eq(hmmu_mirror_register(m), 0);
	cr_expect_eq(hmmu_mirror_register(m), -EBUSY);
	expect_detail("registered already", "unregister it first");
	hmmu_mirror_destroy(m);
	free(buf);
	fixture_close(&f);
}

Test(errors, prot_none_and_hole_name_the_address)
{
	struct fixture f = fixture_open("dmirror0");
	char *p = map_rw(3), *buf = xmalloc(3 * page_size()), at[32];
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 3 };

	cr_assert_eq(mprotect(p + page_size(), page_size(), PROT_NONE), 0);
	cr_expect_eq(hmmu_device_read(f.m, &c, buf), -EFAULT);
	expect_detail(hex(p + page_size(), at, sizeof(at)), "PROT_NONE");
	cr_assert_eq(munmap(p + 2 * page_size(), page_size()), 0);
	cr_assert_eq(mprotect(p + page_size(), page_size(), PROT_READ), 0);
	cr_expect_eq(hmmu_device_read(f.m, &c, buf), -EFAULT);
	expect_detail(hex(p + 2 * page_size(), at, sizeof(at)), "not mapped");
	munmap(p, 2 * page_size());
	free(buf);
	fixture_close(&f);
}

Test(errors, device_write_to_read_only_memory_names_the_address)
{
	struct fixture f = fixture_open(NULL);
	char *p = map_rw(2), *src = xmalloc(2 * page_size()), at[32];
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 2 };

	/* Before the device ever sees it: mprotect later is a known limit. */
	cr_assert_eq(mprotect(p + page_size(), page_size(), PROT_READ), 0);
	f.m = mirror_registered(f.h, "dmirror0");
	memset(src, 1, 2 * page_size());
	cr_expect_eq(hmmu_device_write(f.m, &c, src), -EPERM);
	expect_detail(hex(p + page_size(), at, sizeof(at)), "read-only",
		      "private anonymous memory", "PROT_WRITE");
	munmap(p, 2 * page_size());
	free(src);
	fixture_close(&f);
}

Test(errors, mirrors_past_the_user_limit_name_the_limit)
{
	const char *args[] = { "--limit", "mirrors-per-user=1", NULL };
	struct fixture f;
	struct hmmu_mirror *m = NULL;

	daemon_restart(args);
	f = fixture_open("dmirror0");
	expect_daemon_log("--limit mirrors-per-user");
	cr_expect_eq(hmmu_mirror_create(f.h, "dmirror1", &m), -EDQUOT);
	expect_detail("as many mirrors", "--limit mirrors-per-user",
		      "destroy some");
	cr_expect_null(m);
	fixture_close(&f);
}

Test(errors, device_without_jobs_or_commands_says_which_it_takes)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_mirror *acc = mirror_registered(f.h, "acc0");
	char *p = map_rw(1);
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)p,
				.len = 1 };
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };

	expect_daemon_log("job on dmirror0: %s", strerror(EOPNOTSUPP));
	expect_daemon_log("device-cmd on acc0: %s", strerror(EOPNOTSUPP));
	cr_expect_eq(hmmu_job_run(f.m, &job), -EOPNOTSUPP);
	expect_detail("dmirror0", "runs no jobs", "hmmu_device_read()");
	cr_expect_eq(hmmu_snapshot(acc, &c, (uint8_t *)p), -EOPNOTSUPP);
	expect_detail("acc0", "no device commands", "hmmu_job_run()");
	hmmu_mirror_destroy(acc);
	fixture_close(&f);
}

Test(errors, job_arguments_a_device_refuses_say_which_rule)
{
	struct fixture f = fixture_open("acc0");
	char *p = map_rw(1), at[32];
	struct hmmu_job job = { .kind = HMMU_JOB_FILL, .dst = (uintptr_t)p + 3,
				.len = 64 };

	expect_daemon_log("job on acc0: %s", strerror(EINVAL));
	cr_expect_eq(hmmu_job_run(f.m, &job), -EINVAL);
	expect_detail("FILL", hex(p + 3, at, sizeof(at)), "multiples of 8");
	fixture_close(&f);
}

Test(errors, success_clears_the_detail_and_cleanup_keeps_it)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_mirror *m;

	expect_daemon_log("no device named");
	cr_expect_eq(hmmu_mirror_create(f.h, "nosuch", &m), -ENODEV);
	expect_detail("nosuch");
	cr_assert_eq(hmmu_mirror_create(f.h, "dmirror0", &m), 0);
	cr_expect_str_eq(hmmu_error_detail(), "", "a success clears it");

	cr_expect_eq(hmmu_mirror_create(f.h, "nosuch", &m), -ENODEV);
	hmmu_mirror_destroy(m);
	cr_expect(strstr(hmmu_error_detail(), "nosuch"),
		  "hmmu_mirror_destroy() left it: '%s'", hmmu_error_detail());
	fixture_close(&f);
}

Test(errors, daemon_version_names_the_release)
{
	struct fixture f = fixture_open(NULL);
	const char *v = hmmu_daemon_version(f.h);

	cr_expect_eq(strncmp(v, HMMU_VERSION " (git ", strlen(HMMU_VERSION) + 6),
		     0, "'%s'", v);
	cr_expect_eq(v[strlen(v) - 1], ')', "'%s'", v);
	fixture_close(&f);
}

/* Before the handshake the daemon sends no reason: the client may not read them. */
Test(errors, reasons_come_only_after_the_handshake)
{
	int sock = raw_connect();
	union raw_msg m;
	size_t len = raw_build(&m, HMMU_OP_DEVICE_COUNT, 7, NULL, 0);
	ssize_t n;

	expect_daemon_log("bad device-count message");
	expect_daemon_log("bad device-info message");
	cr_assert_eq(raw_sendmsg(sock, &m, len, NULL, 0, NULL), 0);
	n = raw_recv(sock, &m, RAW_REPLY_WAIT_MS);
	cr_assert_eq(n, (ssize_t)RAW_HDR, "a bare header");
	cr_expect_eq(m.hdr.status, -EPROTO);

	raw_say_hello(sock);
	len = raw_build(&m, HMMU_OP_DEVICE_INFO, 8, NULL, 4);
	cr_assert_eq(raw_sendmsg(sock, &m, len, NULL, 0, NULL), 0);
	n = raw_recv(sock, &m, RAW_REPLY_WAIT_MS);
	cr_assert_gt(n, 0);
	cr_assert_eq(hmmu_proto_check(&m, (size_t)n, 1), 0);
	cr_expect_eq(m.hdr.status, -EMSGSIZE);
	cr_assert_not_null(hmmu_proto_reason(&m));
	cr_expect(strstr(hmmu_proto_reason(&m), "4 bytes") &&
			  strstr(hmmu_proto_reason(&m), "takes 8"),
		  "'%s'", hmmu_proto_reason(&m));
	close(sock);
}
