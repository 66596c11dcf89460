/* SPDX-License-Identifier: MIT */
/*
 * The fixes of the security review, end to end against a private hmmud,
 * one test per behaviour; each says which finding it guards:
 *
 *  1. an image a client exec'd into is never reached by the daemon;
 *  2. MIRROR_REGISTER racing MIRROR_DESTROY never leaves a registered mirror
 *     that its connection has freed;
 *  4. a migration whose pages hold libhmmu's own data, or a device command
 *     whose output lies in pages being migrated, never blocks;
 *  6. a DMA write during a migration is never lost;
 *  7. hmmud takes only the sender's own, full userfaultfd;
 *  and a client of another user does not see daemon-wide figures.
 *
 * Most tests speak the protocol by hand on a raw SOCK_SEQPACKET connection
 * (as test_bad_input does) so that they control what is queued and what
 * is in flight when; the checks go through libhmmu. Every test that
 * changes the daemon's state ends by checking that it still serves.
 */
#include "harness.h"
#include "helpers.h"
#include "exec_target.h"
#include "common/proto.h"
#include "common/uffd_open.h"
#include "common/kernel_uapi.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/*
 * Two workers whatever the machine: the exec test keeps both busy, so
 * that the requests it queues behind run only once the client has exec'd.
 */
static void security_start(void)
{
	/* Open to all: one test's client runs as another user. */
	static const char *const args[] = { "--workers", "2", "--socket-mode",
					    "0666", "--limit", "job-seconds=3",
					    NULL };

	daemon_start_args(args);
}

TestSuite(security, .init = security_start, .fini = daemon_stop,
	  .timeout = 120);

static const char *status_name(int st)
{
	/* Two of them may go in one message. */
	static __thread char bufs[4][64];
	static __thread unsigned next;
	char *buf = bufs[next++ % 4];

	if (st == RAW_NO_REPLY)
		return "no reply";
	if (st == HMMU_STATUS_NEED_UFFD)
		return "NEED_UFFD";
	snprintf(buf, sizeof(bufs[0]), "%d%s%s", st, st ? " " : "",
		 st ? strerror(-st) : "");
	return buf;
}

/* ---- the protocol by hand (helpers.h): what only these tests need -------- */

static struct hmmu_wire_device_cmd cmd_req(uint64_t mirror, uint32_t cmd,
					   const void *addr, uint64_t npages,
					   const void *buf, uint64_t buf_len)
{
	return (struct hmmu_wire_device_cmd){
		.mirror = mirror,
		.cmd = cmd,
		.addr = (uintptr_t)addr,
		.npages = npages,
		.buf = (uintptr_t)buf,
		.buf_len = buf_len,
	};
}

static int raw_cmd(int sock, const struct hmmu_wire_device_cmd *req,
		   struct hmmu_wire_cmd_result *res)
{
	memset(res, 0, sizeof(*res));
	return raw_call(sock, HMMU_OP_DEVICE_CMD, req, sizeof(*req), -1, res,
			sizeof(*res));
}

/*
 * Step 1 of a migration: PREPARE [addr, addr + npages pages) on @mirror.
 * The reply's map says which pages to discard (bit i: page i).
 */
static int raw_prepare(int sock, uint64_t mirror, void *addr, uint64_t npages,
		       uint8_t *discard, uint64_t *cpages)
{
	struct hmmu_wire_device_cmd req =
		cmd_req(mirror, HMMU_CMD_MIGRATE_PREPARE, addr, npages, NULL, 0);
	struct hmmu_wire_prepare_result rep;
	int st;

	memset(&rep, 0, sizeof(rep));
	st = raw_call(sock, HMMU_OP_DEVICE_CMD, &req, sizeof(req), -1, &rep,
		      sizeof(rep));
	memcpy(discard, rep.discard, (npages + 7) / 8);
	*cpages = rep.cpages;
	return st;
}

/* Step 2, as libhmmu does it: discard each page the map marks. */
static void discard_marked(void *addr, uint64_t npages, const uint8_t *map)
{
	for (uint64_t i = 0; i < npages; i++)
		if (map[i / 8] & (1u << (i % 8)))
			madvise((char *)addr + i * page_size(), page_size(),
				MADV_DONTNEED);
}

/* Step 3. */
static int raw_finish(int sock, uint64_t mirror, void *addr, uint64_t npages,
		      uint64_t *cpages)
{
	struct hmmu_wire_device_cmd req =
		cmd_req(mirror, HMMU_CMD_MIGRATE_FINISH, addr, npages, NULL, 0);
	struct hmmu_wire_cmd_result res;
	int st = raw_cmd(sock, &req, &res);

	*cpages = res.cpages;
	return st;
}

/* ---- userfaultfds -------------------------------------------------------- */

/*
 * A userfaultfd with the features hmmud requires, made as libhmmu makes
 * one (@flags 0) or with UFFD_USER_MODE_ONLY; -errno.
 */
static int uffd_make(int flags)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = HMMU_UFFD_REQUIRED_FEATURES };
	int fd = flags ? (int)syscall(SYS_userfaultfd,
				      O_CLOEXEC | O_NONBLOCK | flags) :
			 hmmu_uffd_open();

	if (fd < 0)
		return flags ? -errno : fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

/*
 * Register @mirror, the process's first, as libhmmu does: without an fd,
 * then with a userfaultfd and two untouched probe pages. Its status.
 */
static int raw_register_first(int sock, uint64_t mirror)
{
	void *probe;
	int st = raw_register(sock, mirror, -1, 0), uffd;

	if (st != HMMU_STATUS_NEED_UFFD)
		return st == 0 ? -EEXIST : st; /* the process had state */
	uffd = uffd_make(0);
	probe = map_rw_or_null(2);
	if (uffd < 0 || !probe)
		return uffd < 0 ? uffd : -ENOMEM;
	st = raw_register(sock, mirror, uffd, (uintptr_t)probe);
	close(uffd);
	munmap(probe, 2 * page_size());
	return st;
}

/* ---- checks shared by the tests ------------------------------------------ */

/* Wait up to ~5 s for the daemon's open fds to come back to @want. */
static int daemon_fds_settle(int want)
{
	int n = 0;

	for (int i = 0; i < 500; i++) {
		n = count_fds(daemon_under_test.pid);
		if (n == want)
			break;
		usleep(10000);
	}
	return n;
}

/*
 * The daemon did not crash and still serves: a new connection registers a
 * mirror, and its device reads this process's memory right.
 */
static void still_serves(void)
{
	struct fixture fresh;
	unsigned char *p;

	cr_assert_eq(kill(daemon_under_test.pid, 0), 0, "hmmud is alive");
	cr_assert_eq(daemon_log_count("AddressSanitizer"), 0,
		     "ASan reported in hmmud's log (%s)", daemon_under_test.log);
	cr_assert_eq(daemon_log_count("runtime error"), 0,
		     "UBSan reported in hmmud's log (%s)", daemon_under_test.log);
	fresh = fixture_open("dmirror0");
	p = map_rw(2);
	memset(p, 0x3c, 2 * page_size());
	device_touch(fresh.m, p, 2);
	fixture_close(&fresh);
	munmap(p, 2 * page_size());
}

/* ---- finding 1: an exec'd image is never reached ------------------------- */

/*
 * A delay job walks a self-looped node as long as a walk may (1 << 26
 * steps): the suite's daemon ends it at its job deadline (job-seconds=3,
 * security_start()), so it holds its worker for about 3 s on any machine,
 * sanitizers and load included. Its node lies on a page of its own, far
 * enough from the other's that no fault-ahead takes both.
 */
#define DELAY_NODES (1ull << 26)
#define DELAY_NODE_SPACING 64 /* pages */
#define QUEUED_JOBS 2 /* one per worker */
#define QUEUED_CMDS 3
#define QUEUED_ID 100 /* the first queued request's id */
#define SRC_PAGES 4
/*
 * The queued commands' pages: more than a receiver runs itself (16,
 * daemon/requests.c), so that they queue behind the delay jobs and run
 * after the exec. Past the old image's SRC_PAGES: had one run before the
 * exec, it would be -EFAULT.
 */
#define QUEUED_PAGES 17

/* Exit codes of the client before it execs: the step that failed. */
enum {
	OLD_CONNECT = 20,
	OLD_HELLO,
	OLD_CREATE,
	OLD_REGISTER,
	OLD_REGISTER_ACCEL,
	OLD_MEMORY,
	OLD_MIRRORED,
	OLD_QUEUE,
	OLD_DELAY,
	OLD_EXEC,
};

/*
 * Is our page at @addr write-protected through the userfaultfd? A device
 * fault does that before the device takes its copy: the daemon is running
 * a command on the page.
 */
static int uffd_protected(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;

	if (fd < 0)
		return 0;
	if (pread(fd, &e, 8, (off_t)((uintptr_t)addr / page_size() * 8)) != 8)
		e = 0;
	close(fd);
	return !!(e & PM_UFFD_WP);
}

/* Wait up to ~10 s until each delay job has faulted its node in. */
static int delay_jobs_running(unsigned char *nodes)
{
	for (int i = 0; i < 10000; i++) {
		int running = 0;

		for (int j = 0; j < QUEUED_JOBS; j++)
			running += uffd_protected(
				nodes + j * DELAY_NODE_SPACING * page_size());
		if (running == QUEUED_JOBS)
			return 1;
		usleep(1000);
	}
	return 0;
}

static int post_job_delay(int sock, uint64_t mirror, const uint64_t *node)
{
	struct hmmu_wire_job job = {
		.mirror = mirror,
		.kind = HMMU_WIRE_JOB_LIST_SUM,
		.src = (uintptr_t)node,
		.len = DELAY_NODES,
		.next_offset = 0,
		.value_offset = 8,
	};

	return raw_post(sock, HMMU_OP_JOB, &job, sizeof(job), -1) ? 0 : -1;
}

static int post_cmd(int sock, const struct hmmu_wire_device_cmd *req)
{
	return raw_post(sock, HMMU_OP_DEVICE_CMD, req, sizeof(*req), -1) ? 0 :
									   -1;
}

/*
 * The client, in a forked child: a raw connection it leaves open across
 * exec, a registered mirror whose device holds a copy of SRC_PAGES pages
 * (0xc3), then, if @queue, requests queued behind QUEUED_JOBS slow jobs
 * (so that they run once it has exec'd; long enough for the workers, not
 * the receivers), each aimed at EXEC_TARGET_ADDR,
 * where only the next image has memory: a READ of the device's copy into
 * it, a SNAPSHOT into it, a WRITE of the old image's page onto it. Then it
 * execs exec_target. Never returns.
 */
static void old_image(int queue, int report)
{
	const void *target = (const void *)(uintptr_t)EXEC_TARGET_ADDR;
	struct hmmu_wire_device_cmd req;
	struct hmmu_wire_cmd_result res;
	uint64_t dm, acc;
	unsigned char *src, *out, *nodes;
	char a_sock[16], a_report[16], a_queued[16], a_mirror[24], a_src[24];
	int sock = raw_open(0);

	if (sock < 0)
		_exit(OLD_CONNECT);
	if (raw_hello(sock))
		_exit(OLD_HELLO);
	dm = raw_mirror_create(sock, "dmirror0");
	acc = raw_mirror_create(sock, "acc0");
	if (!dm || !acc)
		_exit(OLD_CREATE);
	if (raw_register_first(sock, dm))
		_exit(OLD_REGISTER);
	if (raw_register(sock, acc, -1, 0))
		_exit(OLD_REGISTER_ACCEL);

	src = map_rw_or_null(SRC_PAGES);
	out = map_rw_or_null(SRC_PAGES);
	nodes = map_rw_or_null(QUEUED_JOBS * DELAY_NODE_SPACING);
	if (!src || !out || !nodes ||
	    msync((void *)target, page_size(), MS_ASYNC) == 0)
		_exit(OLD_MEMORY);
	memset(src, 0xc3, SRC_PAGES * page_size());
	for (int i = 0; i < QUEUED_JOBS; i++) {
		uint64_t *node = (uint64_t *)(nodes + i * DELAY_NODE_SPACING *
							      page_size());

		node[0] = (uintptr_t)node; /* next: itself */
		node[1] = 1;		   /* value */
	}
	req = cmd_req(dm, HMMU_CMD_READ, src, SRC_PAGES, out,
		      SRC_PAGES * page_size());
	if (raw_cmd(sock, &req, &res) || res.cpages != SRC_PAGES ||
	    memcmp(out, src, SRC_PAGES * page_size()))
		_exit(OLD_MIRRORED);

	if (queue) {
		struct hmmu_wire_device_cmd cmds[QUEUED_CMDS] = {
			cmd_req(dm, HMMU_CMD_READ, src, QUEUED_PAGES, target,
				QUEUED_PAGES * page_size()),
			cmd_req(dm, HMMU_CMD_SNAPSHOT, src, QUEUED_PAGES,
				target, QUEUED_PAGES),
			cmd_req(dm, HMMU_CMD_WRITE, target, QUEUED_PAGES, src,
				QUEUED_PAGES * page_size()),
		};

		atomic_store(&raw_next_id, QUEUED_ID);
		for (int i = 0; i < QUEUED_JOBS; i++)
			if (post_job_delay(sock, acc,
					   (uint64_t *)(nodes + i * DELAY_NODE_SPACING *
								page_size())))
				_exit(OLD_QUEUE);
		/* Both workers are walking now: the commands wait behind. */
		if (!delay_jobs_running(nodes))
			_exit(OLD_DELAY);
		for (int i = 0; i < QUEUED_CMDS; i++)
			if (post_cmd(sock, &cmds[i]))
				_exit(OLD_QUEUE);
	}

	/* Only the connection and the report pipe go to the next image. */
	close_range(3, ~0u, CLOSE_RANGE_CLOEXEC);
	fcntl(sock, F_SETFD, 0);
	fcntl(report, F_SETFD, 0);
	snprintf(a_sock, sizeof(a_sock), "%d", sock);
	snprintf(a_report, sizeof(a_report), "%d", report);
	snprintf(a_queued, sizeof(a_queued), "%d",
		 queue ? QUEUED_JOBS + QUEUED_CMDS : 0);
	snprintf(a_mirror, sizeof(a_mirror), "%llu", (unsigned long long)dm);
	snprintf(a_src, sizeof(a_src), "%#llx",
		 (unsigned long long)(uintptr_t)src);
	if (queue)
		execl(EXEC_TARGET_PATH, EXEC_TARGET_PATH, a_sock, a_report,
		      a_queued, (char *)NULL);
	else
		execl(EXEC_TARGET_PATH, EXEC_TARGET_PATH, a_sock, a_report,
		      a_queued, a_mirror, a_src, (char *)NULL);
	_exit(OLD_EXEC);
}

/* Run old_image() and exec_target in a child; what the latter reported. */
static struct exec_target_report run_exec(int queue)
{
	struct exec_target_report rep;
	int p[2], status;
	ssize_t n;
	pid_t pid;

	memset(&rep, 0, sizeof(rep));
	/* The delay jobs end at the suite's job deadline. */
	if (queue)
		expect_daemon_log("job on acc0: %s", strerror(ETIMEDOUT));
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(p[0]);
		old_image(queue, p[1]);
	}
	close(p[1]);
	n = read(p[0], &rep, sizeof(rep));
	close(p[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the client failed before or after its exec: status %#x "
		  "(exit %d-%d: connect, hello, create, register, register "
		  "accel, memory, mirrored read, queue, delay, exec)",
		  status, OLD_CONNECT, OLD_EXEC);
	cr_assert_eq(n, (ssize_t)sizeof(rep), "exec_target reported nothing");
	cr_assert(rep.mapped, "exec_target could not map its page at %#llx",
		  EXEC_TARGET_ADDR);
	return rep;
}

static const char *exec_request_name(uint64_t id, uint64_t first_queued)
{
	static const char *const queued[] = { "delay job", "delay job",
					      "queued READ", "queued SNAPSHOT",
					      "queued WRITE" };
	static const char *const own[] = { "its own READ", "its own SNAPSHOT",
					   "its own WRITE" };

	if (id >= EXEC_TARGET_OWN_ID && id < EXEC_TARGET_OWN_ID + 3)
		return own[id - EXEC_TARGET_OWN_ID];
	if (id >= first_queued && id < first_queued + 5)
		return queued[id - first_queued];
	return "unknown request";
}

static void expect_page_untouched(const struct exec_target_report *rep)
{
	cr_expect(rep->intact,
		  "the daemon wrote into the new image: its page at %#llx "
		  "starts %02x %02x %02x %02x %02x %02x %02x %02x (it holds "
		  "0x%02x; 0xc3 is the old image's data, a small value a "
		  "snapshot state)",
		  EXEC_TARGET_ADDR, rep->first[0], rep->first[1], rep->first[2],
		  rep->first[3], rep->first[4], rep->first[5], rep->first[6],
		  rep->first[7], EXEC_TARGET_FILL);
}

/*
 * Finding 1: the old image queues device commands aimed at an address only
 * the next image maps, then execs while they wait behind slow jobs. The
 * daemon must not reach the new image: each command is refused with
 * -ESRCH (or, had it run before the exec, -EFAULT: nothing was mapped
 * there yet), or never answered because the daemon hung up.
 */
Test(security, exec_image_is_never_reached_by_requests_queued_before_exec)
{
	struct fixture f = fixture_open(NULL);
	struct exec_target_report rep = run_exec(1);
	int commands = 0, after_exec = 0;
	char seen[512] = "";

	expect_page_untouched(&rep);
	for (int i = 0; i < rep.nreplies; i++) {
		const char *what = exec_request_name(rep.id[i], QUEUED_ID);
		int st = rep.status[i];
		size_t used = strlen(seen);

		snprintf(seen + used, sizeof(seen) - used, "%s%s %s", used ? ", " : "",
			 what, status_name(st));

		/* The delay jobs ran in the old image; their end is theirs. */
		if (strcmp(what, "delay job") == 0)
			continue;
		commands++;
		after_exec += st == -ESRCH;
		cr_expect(st == -ESRCH || st == -EFAULT,
			  "%s: %s after the exec, want -ESRCH", what,
			  status_name(st));
	}
	cr_expect(rep.eof || commands == QUEUED_CMDS,
		  "%d of %d commands answered, and the daemon did not hang up",
		  commands, QUEUED_CMDS);
	cr_expect(rep.eof || after_exec,
		  "no command ran after the exec: the delay jobs were too "
		  "short to test anything (replies: %s)", seen);
	/* Its state went with its session (or with its exit). */
	cr_assert_eq(wait_for_stat(f.h, processes, 0), 0);
	cr_assert_eq(stats_of(f.h).mirrors, 0);
	fixture_close(&f);
	still_serves();
}

/*
 * Finding 1, without timing: the new image itself sends device commands on
 * the connection it inherited, naming the old image's mirror. The mirror
 * is bound to the address space that registered it, which is gone: -ESRCH,
 * or no answer because the daemon hung up, and the new image is untouched.
 */
Test(security, exec_image_speaking_on_inherited_connection_is_never_reached)
{
	struct fixture f = fixture_open(NULL);
	struct exec_target_report rep = run_exec(0);

	cr_assert_geq(rep.sent, 1, "exec_target could not send: %s",
		      strerror(rep.send_err));
	/* The daemon may hang up after the first: the rest cannot go. */
	cr_expect(!rep.send_err || rep.send_err == EPIPE ||
			  rep.send_err == ECONNRESET,
		  "exec_target's send %d: %s", rep.sent + 1,
		  strerror(rep.send_err));
	expect_page_untouched(&rep);
	for (int i = 0; i < rep.nreplies; i++)
		cr_expect_eq(rep.status[i], -ESRCH, "%s: %s, want -ESRCH",
			     exec_request_name(rep.id[i], 0),
			     status_name(rep.status[i]));
	cr_expect(rep.eof || rep.nreplies == rep.sent,
		  "%d of %d requests answered, and the daemon did not hang up",
		  rep.nreplies, rep.sent);
	cr_assert_eq(wait_for_stat(f.h, processes, 0), 0);
	cr_assert_eq(stats_of(f.h).mirrors, 0);
	fixture_close(&f);
	still_serves();
}

/* ---- finding 2: REGISTER racing DESTROY ---------------------------------- */

#define RACE_WORKERS "16"
#define RACE_THREADS 8
#define RACE_PAIRS 30000 /* REGISTER + DESTROY pairs, all threads together */
#define RACE_BATCH 10	/* pairs in flight at once on a connection */

struct racer {
	int sock;
	const char *device;
	int failed;	      /* nonzero: what went wrong, see race_failure() */
	int status;	      /* the status that was wrong */
	uint64_t registered;  /* REGISTERs that won the race */
	uint64_t refused;     /* REGISTERs that lost it (-ENOENT) */
};

enum { RACE_CREATE = 1, RACE_SEND, RACE_REPLY, RACE_REGISTER, RACE_DESTROY };

static const char *race_failure(int failed)
{
	static const char *const what[] = {
		"", "MIRROR_CREATE failed", "a send failed",
		"a reply was missing or malformed",
		"REGISTER got neither 0 nor -ENOENT", "DESTROY did not get 0",
	};

	return what[failed];
}

/* Reads the replies of one batch, in any order. */
static void race_replies(struct racer *r, const uint64_t *reg,
			 const uint64_t *des, int n)
{
	for (int k = 0; k < 2 * n && !r->failed; k++) {
		union raw_msg m;
		ssize_t len = raw_recv(r->sock, &m, RAW_REPLY_WAIT_MS);
		int is_reg = 0, known = 0;

		if (len <= 0 || hmmu_proto_check(&m, (size_t)len, 1)) {
			r->failed = RACE_REPLY;
			r->status = RAW_NO_REPLY;
			return;
		}
		for (int i = 0; i < n; i++) {
			is_reg |= m.hdr.id == reg[i];
			known |= m.hdr.id == reg[i] || m.hdr.id == des[i];
		}
		if (!known) {
			r->failed = RACE_REPLY;
		} else if (is_reg) {
			if (m.hdr.status == 0)
				r->registered++;
			else if (m.hdr.status == -ENOENT)
				r->refused++;
			else
				r->failed = RACE_REGISTER;
		} else if (m.hdr.status != 0) {
			r->failed = RACE_DESTROY;
		}
		if (r->failed)
			r->status = m.hdr.status;
	}
}

static void *race_register_destroy(void *arg)
{
	struct racer *r = arg;

	for (int done = 0; done < RACE_PAIRS / RACE_THREADS && !r->failed;
	     done += RACE_BATCH) {
		uint64_t ids[RACE_BATCH], reg[RACE_BATCH], des[RACE_BATCH];

		for (int i = 0; i < RACE_BATCH && !r->failed; i++)
			if (!(ids[i] = raw_mirror_create(r->sock, r->device)))
				r->failed = RACE_CREATE;
		r->status = r->failed ? RAW_NO_REPLY : 0;
		/* REGISTER and DESTROY of one mirror, back to back. */
		for (int i = 0; i < RACE_BATCH && !r->failed; i++) {
			struct hmmu_wire_register req = { .mirror = ids[i] };
			struct hmmu_wire_mirror des_req = { .mirror = ids[i] };

			reg[i] = raw_post(r->sock, HMMU_OP_MIRROR_REGISTER,
					  &req,
					  hmmu_proto_request_size(
						  HMMU_OP_MIRROR_REGISTER),
					  -1);
			des[i] = raw_post(r->sock, HMMU_OP_MIRROR_DESTROY,
					  &des_req, sizeof(des_req), -1);
			if (!reg[i] || !des[i]) {
				r->failed = RACE_SEND;
				r->status = RAW_NO_REPLY;
			}
		}
		if (!r->failed)
			race_replies(r, reg, des, RACE_BATCH);
	}
	return NULL;
}

/*
 * More workers than CPUs: the two requests of a pair then wait for the
 * registry lock together, and either may get it first.
 */
static void restart_with_race_workers(void)
{
	static const char *const args[] = { "--workers", RACE_WORKERS, NULL };

	daemon_stop();
	daemon_start_args(args);
}

/*
 * Finding 2: a DESTROY that took the mirror off its connection while a
 * REGISTER of it was under way let the REGISTER go on, leaving a registered
 * mirror its connection had freed, on the process's mirror list. After
 * RACE_PAIRS such races the process has exactly the mirror it registered
 * properly, and an invalidation (which walks that list) and a munmap of
 * mirrored memory run clean. Under ASan the old daemon dies of a use after
 * free in the race itself.
 */
Test(security, register_racing_destroy_never_leaves_a_freed_mirror_registered,
     .init = restart_with_race_workers)
{
	static const char *const devices[] = { "dmirror0", "dmirror1", "acc0" };
	/* The process's state exists: the racing REGISTERs need no fd. */
	struct fixture anchor = fixture_open("dmirror0");
	struct racer racers[RACE_THREADS];
	pthread_t threads[RACE_THREADS];
	uint64_t registered = 0, refused = 0;
	unsigned char *p, *buf;
	struct hmmu_stats st;
	struct hmmu_cmd c;
	int err;

	/* The REGISTERs that lose the race. */
	expect_daemon_log("no mirror");
	for (int i = 0; i < 3; i++)
		expect_daemon_log("on %s: %s", devices[i], strerror(ENOENT));
	p = map_rw_or_null(4);
	buf = malloc(4 * page_size());
	cr_assert(p && buf);
	memset(p, 0x11, 4 * page_size());
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 4 };
	cr_assert_eq(hmmu_device_read(anchor.m, &c, buf), 0);

	for (int i = 0; i < RACE_THREADS; i++) {
		racers[i] = (struct racer){ .sock = raw_session(),
					    .device = devices[i % 3] };
		cr_assert_eq(pthread_create(&threads[i], NULL,
					    race_register_destroy, &racers[i]),
			     0);
	}
	for (int i = 0; i < RACE_THREADS; i++) {
		pthread_join(threads[i], NULL);
		registered += racers[i].registered;
		refused += racers[i].refused;
	}
	for (int i = 0; i < RACE_THREADS; i++)
		cr_assert_not(racers[i].failed, "thread %d: %s (status %s)", i,
			      race_failure(racers[i].failed),
			      status_name(racers[i].status));
	cr_assert_eq(registered + refused, RACE_PAIRS);

	/* Every mirror that raced is gone: only the anchor is registered. */
	st = stats_of(anchor.h);
	cr_assert_eq(st.my_mirrors, 1,
		     "registered mirrors of this process: %u, want 1 (%llu "
		     "REGISTERs won, %llu lost the race)",
		     st.my_mirrors, (unsigned long long)registered,
		     (unsigned long long)refused);
	cr_assert_eq(st.mirrors, 1);

	/* A CPU write invalidates through the process's mirror list... */
	memset(p + page_size(), 0x22, page_size());
	cr_assert_eq(hmmu_device_read(anchor.m, &c, buf), 0);
	cr_assert_eq(buf[page_size()], 0x22, "the device sees the CPU's write");
	cr_assert_eq(buf[0], 0x11);
	/* ... and so does a munmap. */
	cr_assert_eq(munmap(p, 4 * page_size()), 0);
	err = hmmu_device_read(anchor.m, &c, buf);
	cr_assert_eq(err, -EFAULT, "device read of unmapped memory: %s",
		     strerror(-err));

	for (int i = 0; i < RACE_THREADS; i++)
		close(racers[i].sock);
	hmmu_mirror_destroy(anchor.m);
	anchor.m = NULL;
	cr_assert_eq(wait_for_stat(anchor.h, my_state, 0), 0);
	cr_assert_eq(stats_of(anchor.h).my_mirrors, 0);
	cr_assert_eq(wait_for_stat(anchor.h, processes, 0), 0);
	free(buf);
	fixture_close(&anchor);
	still_serves();
}

/* ---- finding 4: nothing blocks on pages being migrated ------------------- */

/*
 * Finding 4: libhmmu migrates whole pages, so a malloc'd buffer takes the
 * heap data around it along, libhmmu's own included (its connection
 * handle, which it writes while it waits for the daemon). The old daemon
 * wrote the migration's map into a heap buffer among the held pages and
 * waited forever. Migrating the pages around a 3-page buffer returns, with
 * every page counted, and all the data is intact. The timeout is the
 * watchdog.
 */
Test(security, migrating_pages_around_a_malloc_buffer_never_hangs,
     .timeout = 30)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char *before = malloc(64), *buf = malloc(3 * page_size()),
		      *after = malloc(64);
	uintptr_t start = (uintptr_t)buf & ~(page_size() - 1);
	uintptr_t end = ((uintptr_t)buf + 4 * page_size() - 1) &
			~(page_size() - 1);
	struct hmmu_cmd c = { .addr = start,
			      .npages = (end - start) / page_size() };
	int err;

	cr_assert(before && buf && after);
	memset(before, 'b', 64);
	memset(after, 'a', 64);
	for (size_t i = 0; i < 3 * page_size(); i++)
		buf[i] = (unsigned char)(i * 13 + 1);

	err = hmmu_migrate_to_device(f.m, &c);
	cr_assert_eq(err, 0, "migrate the pages around a malloc'd buffer: %s",
		     strerror(-err));
	cr_assert_eq(c.cpages, (end - start) / page_size(),
		     "heap pages are anonymous private memory: all migrate");
	for (size_t i = 0; i < 3 * page_size(); i++)
		if (buf[i] != (unsigned char)(i * 13 + 1))
			cr_assert_fail("byte %zu of the buffer: %#x", i, buf[i]);
	for (int i = 0; i < 64; i++) {
		cr_assert_eq(before[i], 'b');
		cr_assert_eq(after[i], 'a');
	}
	cr_assert_geq(stats_of(f.h).migrated_to_device,
		      (end - start) / page_size());
	free(before);
	free(buf);
	free(after);
	fixture_close(&f);
	still_serves();
}

/*
 * Finding 4, whatever the allocator puts next to that buffer: a migration
 * of the page holding libhmmu's connection handle itself returns. That
 * page stays with the CPU (the migrating thread writes it before FINISH,
 * and such a write would wait for itself): cpages 0, and the handle works.
 */
Test(security, migrating_the_page_of_libhmmus_own_handle_never_hangs,
     .timeout = 30)
{
	struct fixture f = fixture_open("dmirror0");
	struct hmmu_cmd c = { .addr = (uintptr_t)f.h & ~(page_size() - 1),
			      .npages = 1 };
	int err;

	err = hmmu_migrate_to_device(f.m, &c);
	cr_assert_eq(err, 0, "migrate the page of libhmmu's handle: %s",
		     strerror(-err));
	cr_assert_eq(c.cpages, 0, "libhmmu's own page stays with the CPU");
	cr_assert_eq(stats_of(f.h).my_mirrors, 1, "the handle still works");
	fixture_close(&f);
	still_serves();
}

/*
 * Finding 4, on the stack: a buffer in the caller's own frame shares its
 * pages with the frames libhmmu writes while it migrates. The call returns,
 * the pages it must keep stay with the CPU, and the buffer is intact.
 */
Test(security, migrating_a_buffer_on_the_callers_stack_never_hangs,
     .timeout = 30)
{
	struct fixture f = fixture_open("dmirror0");
	unsigned char buf[3 * 4096];
	/* The page of buf's start holds the frames below ours too. */
	struct hmmu_cmd c = { .addr = (uintptr_t)buf & ~(page_size() - 1),
			      .npages = 2 };
	int err;

	cr_assert_leq(2 * page_size(), sizeof(buf));
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7);
	err = hmmu_migrate_to_device(f.m, &c);
	cr_assert_eq(err, 0, "migrate a page of the stack: %s", strerror(-err));
	cr_assert_leq(c.cpages, 2);
	for (size_t i = 0; i < sizeof(buf); i++)
		cr_assert_eq(buf[i], (unsigned char)(i * 7), "byte %zu", i);
	fixture_close(&f);
	still_serves();
}

/*
 * A raw connection with a registered mirror on dmirror0, next to a libhmmu
 * one on dmirror1 (which made the process's state, so the raw REGISTER
 * needs no fd): the raw one drives a migration step by step.
 */
struct migration {
	struct fixture other;
	int sock;
	uint64_t mirror;
	unsigned char *range; /* MIG_PAGES pages, page i filled with 0x10 + i */
	uint8_t discard[1];
};

#define MIG_PAGES 4

static void migration_setup(struct migration *mg)
{
	int st;

	mg->other = fixture_open("dmirror1");
	mg->sock = raw_session();
	mg->mirror = raw_mirror_create(mg->sock, "dmirror0");
	cr_assert_neq(mg->mirror, 0);
	st = raw_register(mg->sock, mg->mirror, -1, 0);
	cr_assert_eq(st, 0, "raw register joining the state: %s",
		     status_name(st));
	mg->range = map_rw_or_null(MIG_PAGES);
	cr_assert_not_null(mg->range);
	for (int i = 0; i < MIG_PAGES; i++)
		memset(mg->range + i * page_size(), 0x10 + i, page_size());
}

static void migration_prepare(struct migration *mg)
{
	uint64_t cpages = 0;
	int st = raw_prepare(mg->sock, mg->mirror, mg->range, MIG_PAGES,
			     mg->discard, &cpages);

	cr_assert_eq(st, 0, "PREPARE: %s", status_name(st));
	cr_assert_eq(cpages, MIG_PAGES);
	cr_assert_eq(mg->discard[0], (1u << MIG_PAGES) - 1,
		     "every page is to be discarded");
}

/* Discard and FINISH; FINISH's cpages. */
static uint64_t migration_finish(struct migration *mg)
{
	uint64_t cpages = 0;
	int st;

	discard_marked(mg->range, MIG_PAGES, mg->discard);
	st = raw_finish(mg->sock, mg->mirror, mg->range, MIG_PAGES, &cpages);
	cr_assert_eq(st, 0, "FINISH: %s", status_name(st));
	return cpages;
}

/* Page @i of the range holds @byte throughout, seen by the CPU. */
static void expect_page(struct migration *mg, int i, unsigned char byte,
			const char *why)
{
	for (size_t b = 0; b < page_size(); b++)
		if (mg->range[i * page_size() + b] != byte)
			cr_assert_fail("page %d byte %zu: %#x, want %#x (%s)", i,
				       b, mg->range[i * page_size() + b], byte,
				       why);
}

static void migration_teardown(struct migration *mg)
{
	int st = raw_mirror_op(mg->sock, HMMU_OP_MIRROR_DESTROY, mg->mirror);

	cr_assert_eq(st, 0, "destroy: %s", status_name(st));
	close(mg->sock);
	hmmu_mirror_destroy(mg->other.m);
	mg->other.m = NULL;
	cr_assert_eq(wait_for_stat(mg->other.h, my_state, 0), 0);
	munmap(mg->range, MIG_PAGES * page_size());
	fixture_close(&mg->other);
	still_serves();
}

/*
 * Finding 4: a device READ whose output buffer lies in pages between
 * PREPARE and FINISH. The old daemon's write into them waited for the
 * migration to settle, which the client settles only after the READ
 * returns: a hang. Now it returns: -EBUSY (the page keeps its data), or 0
 * with the data read in and surviving the migration.
 */
Test(security, device_read_into_pages_being_migrated_never_blocks,
     .timeout = 30)
{
	struct migration mg;
	unsigned char *src = map_rw_or_null(1);
	struct hmmu_cmd c = { .addr = (uintptr_t)src, .npages = 1 };
	int err;

	migration_setup(&mg);
	cr_assert_not_null(src);
	memset(src, 0x99, page_size());
	migration_prepare(&mg);
	expect_daemon_log("on dmirror1: %s", strerror(EBUSY));
	err = hmmu_device_read(mg.other.m, &c, mg.range + 2 * page_size());
	cr_assert(err == 0 || err == -EBUSY,
		  "device read into a page being migrated: %s", strerror(-err));
	if (err)
		cr_assert_eq(migration_finish(&mg), MIG_PAGES);
	else
		migration_finish(&mg);
	expect_page(&mg, 2, err ? 0x12 : 0x99,
		    err ? "the refused read changed nothing" :
			  "the read's data survives the migration");
	expect_page(&mg, 1, 0x11, "migrated and back");
	munmap(src, page_size());
	migration_teardown(&mg);
}

/*
 * Finding 4: the same for a SNAPSHOT whose state buffer lies in pages
 * being migrated.
 */
Test(security, snapshot_into_pages_being_migrated_never_blocks, .timeout = 30)
{
	struct migration mg;
	unsigned char *src = map_rw_or_null(1), *states;
	struct hmmu_cmd c = { .addr = (uintptr_t)src, .npages = 1 };
	int err;

	migration_setup(&mg);
	cr_assert_not_null(src);
	memset(src, 0x99, page_size());
	states = mg.range + page_size() + 100;
	migration_prepare(&mg);
	expect_daemon_log("on dmirror1: %s", strerror(EBUSY));
	err = hmmu_snapshot(mg.other.m, &c, states);
	cr_assert(err == 0 || err == -EBUSY,
		  "snapshot into a page being migrated: %s", strerror(-err));
	if (err)
		cr_assert_eq(migration_finish(&mg), MIG_PAGES);
	else
		migration_finish(&mg);
	if (err) {
		expect_page(&mg, 1, 0x11, "the refused snapshot changed nothing");
	} else {
		cr_assert_eq(states[0], HMMU_PAGE_WRITE,
			     "state of a written page: %#x", states[0]);
		states[0] = 0x11;
		expect_page(&mg, 1, 0x11, "the rest of the page survives");
	}
	expect_page(&mg, 0, 0x10, "migrated and back");
	munmap(src, page_size());
	migration_teardown(&mg);
}

/* ---- finding 6: a DMA write during a migration is never lost ------------- */

/*
 * Finding 6: a device WRITE (DMA into system memory, through a mirror of
 * another device) to a page between PREPARE and the client's discard.
 * The old daemon lifted the write-protection and wrote the CPU's page,
 * which the client then discarded: the migrated, stale copy came back.
 * Now the write is refused with -EBUSY and changes nothing, or it succeeds
 * and the CPU sees its data once the migration settled.
 */
Test(security, dma_write_between_prepare_and_discard_is_never_lost,
     .timeout = 30)
{
	struct migration mg;
	unsigned char *data = map_rw_or_null(1);
	struct hmmu_cmd c;
	uint64_t cpages;
	int err;

	migration_setup(&mg);
	cr_assert_not_null(data);
	memset(data, 0x77, page_size());
	migration_prepare(&mg);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)(mg.range + page_size()),
			       .npages = 1 };
	expect_daemon_log("on dmirror1: %s", strerror(EBUSY));
	err = hmmu_device_write(mg.other.m, &c, data);
	cr_assert(err == 0 || err == -EBUSY,
		  "DMA write to a page being migrated: %s", strerror(-err));
	cpages = migration_finish(&mg);
	if (err)
		cr_assert_eq(cpages, MIG_PAGES, "the refused write kept none back");
	expect_page(&mg, 1, err ? 0x11 : 0x77,
		    err ? "the refused write changed nothing" :
			  "the DMA write survives the migration");
	for (int i = 0; i < MIG_PAGES; i++)
		if (i != 1)
			expect_page(&mg, i, 0x10 + i, "migrated and back");
	munmap(data, page_size());
	migration_teardown(&mg);
}

/*
 * Finding 6, the other window: the client discarded its pages (they are
 * the device's now) but has not sent FINISH yet when the DMA write comes.
 */
Test(security, dma_write_between_discard_and_finish_is_never_lost,
     .timeout = 30)
{
	struct migration mg;
	unsigned char *data = map_rw_or_null(1);
	struct hmmu_cmd c;
	uint64_t cpages = 0;
	int err, st;

	migration_setup(&mg);
	cr_assert_not_null(data);
	memset(data, 0x77, page_size());
	migration_prepare(&mg);
	discard_marked(mg.range, MIG_PAGES, mg.discard);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)(mg.range + 2 * page_size()),
			       .npages = 1 };
	expect_daemon_log("on dmirror1: %s", strerror(EBUSY));
	err = hmmu_device_write(mg.other.m, &c, data);
	cr_assert(err == 0 || err == -EBUSY,
		  "DMA write to a discarded page being migrated: %s",
		  strerror(-err));
	st = raw_finish(mg.sock, mg.mirror, mg.range, MIG_PAGES, &cpages);
	cr_assert_eq(st, 0, "FINISH: %s", status_name(st));
	if (err)
		cr_assert_eq(cpages, MIG_PAGES, "the refused write kept none back");
	expect_page(&mg, 2, err ? 0x12 : 0x77,
		    err ? "the refused write changed nothing" :
			  "the DMA write survives the migration");
	for (int i = 0; i < MIG_PAGES; i++)
		if (i != 2)
			expect_page(&mg, i, 0x10 + i, "migrated and back");
	munmap(data, page_size());
	migration_teardown(&mg);
}

/* ---- finding 7: only the sender's own, full userfaultfd ------------------ */

/* A raw connection with one unregistered mirror, in a process with no state. */
struct refusal {
	struct fixture watch; /* a connection that watches the counters */
	int sock;
	uint64_t mirror;
	int daemon_fds;
};

static void refusal_setup(struct refusal *r)
{
	int st;

	r->watch = fixture_open(NULL);
	cr_assert_eq(stats_of(r->watch.h).my_state, 0);
	r->sock = raw_session();
	r->mirror = raw_mirror_create(r->sock, "dmirror0");
	cr_assert_neq(r->mirror, 0);
	st = raw_register(r->sock, r->mirror, -1, 0);
	cr_assert_eq(st, HMMU_STATUS_NEED_UFFD, "first register: %s",
		     status_name(st));
	r->daemon_fds = count_fds(daemon_under_test.pid);
}

/* REGISTER with @uffd and @probe gets @want, and leaves nothing behind. */
static void expect_refused(struct refusal *r, int uffd, uint64_t probe,
			   int want, const char *what)
{
	struct hmmu_stats st;
	int got;

	expect_daemon_log("refused its userfaultfd");
	expect_daemon_log("on dmirror0: %s", strerror(-want));
	got = raw_register(r->sock, r->mirror, uffd, probe);
	if (got == 0)
		cr_assert_fail("%s: accepted, want %s", what, status_name(want));
	cr_expect_eq(got, want, "%s: %s, want %s", what, status_name(got),
		     status_name(want));
	st = stats_of(r->watch.h);
	cr_expect_eq(st.my_state, 0, "%s: per-process state left", what);
	cr_expect_eq(st.my_mirrors, 0, "%s: a mirror registered", what);
	cr_expect_eq(st.processes, 0, "%s: processes", what);
	cr_expect_eq(daemon_fds_settle(r->daemon_fds), r->daemon_fds,
		     "%s: the daemon's open fds (the refused userfaultfd, the "
		     "/proc files of a state) are back to before", what);
}

/* Then registering properly works, and the state goes with the mirror. */
static void refusal_teardown(struct refusal *r)
{
	int st = raw_register_first(r->sock, r->mirror);

	cr_assert_eq(st, 0, "proper register after the refusal: %s",
		     status_name(st));
	cr_assert_eq(stats_of(r->watch.h).my_mirrors, 1);
	st = raw_mirror_op(r->sock, HMMU_OP_MIRROR_DESTROY, r->mirror);
	cr_assert_eq(st, 0, "destroy: %s", status_name(st));
	cr_assert_eq(wait_for_stat(r->watch.h, my_state, 0), 0);
	close(r->sock);
	fixture_close(&r->watch);
	still_serves();
}

/*
 * Finding 7: a UFFD_USER_MODE_ONLY userfaultfd (which a user may create
 * without the privilege a full one needs) lets every fault the kernel
 * takes on the client's behalf fail, the daemon's own accesses included.
 * With valid probe pages it is refused with -EPERM.
 */
Test(security, user_mode_only_userfaultfd_is_eperm_and_leaves_no_state)
{
	struct refusal r;
	void *probe = map_rw_or_null(2);
	int uffd = uffd_make(UFFD_USER_MODE_ONLY);

	if (uffd == -EINVAL)
		cr_skip_test("this kernel has no UFFD_USER_MODE_ONLY");
	cr_assert_geq(uffd, 0, "user-mode-only userfaultfd: %s",
		      strerror(-uffd));
	cr_assert_not_null(probe);
	refusal_setup(&r);
	expect_refused(&r, uffd, (uintptr_t)probe, -EPERM,
		       "user-mode-only userfaultfd");
	close(uffd);
	munmap(probe, 2 * page_size());
	refusal_teardown(&r);
}

/*
 * Finding 7: the same fd, with the second probe page (the one the daemon's
 * kernel-mode read must fault on) touched beforehand, so that the read
 * does not fault at all. It must still be refused, as a user-mode-only fd
 * (-EPERM) or for its probe pages (-EFAULT).
 */
Test(security, user_mode_only_uffd_with_second_probe_page_touched_is_refused)
{
	struct refusal r;
	unsigned char *probe = map_rw_or_null(2);
	int uffd = uffd_make(UFFD_USER_MODE_ONLY), got;
	struct hmmu_stats st;

	if (uffd == -EINVAL)
		cr_skip_test("this kernel has no UFFD_USER_MODE_ONLY");
	cr_assert_geq(uffd, 0, "user-mode-only userfaultfd: %s",
		      strerror(-uffd));
	cr_assert_not_null(probe);
	probe[page_size()] = 1;
	refusal_setup(&r);
	expect_daemon_log("refused its userfaultfd");
	expect_daemon_log("on dmirror0: %s", strerror(EPERM));
	expect_daemon_log("on dmirror0: %s", strerror(EFAULT));
	got = raw_register(r.sock, r.mirror, uffd, (uintptr_t)probe);
	st = stats_of(r.watch.h);
	cr_expect(got == -EPERM || got == -EFAULT,
		  "user-mode-only userfaultfd, second probe page touched: %s, "
		  "want -EPERM or -EFAULT (my_state now %u)",
		  status_name(got), st.my_state);
	if (got == 0) {
		/* Accepted: undo it, so that the teardown can go on. */
		raw_mirror_op(r.sock, HMMU_OP_MIRROR_UNREGISTER, r.mirror);
		wait_for_stat(r.watch.h, my_state, 0);
	}
	close(uffd);
	munmap(probe, 2 * page_size());
	cr_expect_eq(stats_of(r.watch.h).my_state, 0);
	refusal_teardown(&r);
}

/*
 * A userfaultfd made by a forked child, which sends it to us and then
 * stays alive (until @keep is closed) or exits (@keep is -1 then).
 */
static int child_uffd(int *keep, pid_t *child)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	char c = 0;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	int sp[2], fd = -1, stay = keep != NULL;
	pid_t pid;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp),
		     0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

		close(sp[0]);
		fd = uffd_make(0);
		if (fd < 0)
			_exit(1);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		if (sendmsg(sp[1], &msg, 0) != 1)
			_exit(2);
		if (stay)
			(void)!read(sp[1], &c, 1); /* EOF: the test is done */
		_exit(0);
	}
	close(sp[1]);
	cr_assert_eq(recvmsg(sp[0], &msg, MSG_CMSG_CLOEXEC), 1,
		     "the child made no userfaultfd");
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof(int));
	*child = pid;
	if (stay) {
		*keep = sp[0];
	} else {
		close(sp[0]);
		cr_assert_eq(waitpid(pid, NULL, 0), pid);
	}
	return fd;
}

/*
 * Finding 7: a userfaultfd of another address space (here a forked child's,
 * whose probe pages lie where ours do, untouched, as ours) sent as our
 * own: a value placed through it does not show in our memory. -EINVAL.
 */
Test(security, userfaultfd_of_a_live_child_is_einval_and_leaves_no_state)
{
	struct refusal r;
	/* Mapped before the fork: the child has the very same pages. */
	void *probe = map_rw_or_null(2);
	int keep = -1, uffd;
	pid_t child;

	cr_assert_not_null(probe);
	refusal_setup(&r);
	uffd = child_uffd(&keep, &child);
	expect_refused(&r, uffd, (uintptr_t)probe, -EINVAL,
		       "a live child's userfaultfd");
	close(uffd);
	close(keep);
	cr_assert_eq(waitpid(child, NULL, 0), child);
	munmap(probe, 2 * page_size());
	refusal_teardown(&r);
}

/* Finding 7: the same once the child has exited (its address space is gone). */
Test(security, userfaultfd_of_an_exited_child_is_einval_and_leaves_no_state)
{
	struct refusal r;
	void *probe = map_rw_or_null(2);
	int uffd;
	pid_t child;

	cr_assert_not_null(probe);
	refusal_setup(&r);
	uffd = child_uffd(NULL, &child);
	expect_refused(&r, uffd, (uintptr_t)probe, -EINVAL,
		       "an exited child's userfaultfd");
	close(uffd);
	munmap(probe, 2 * page_size());
	refusal_teardown(&r);
}

/*
 * Finding 7: the proof needs two private pages nobody touched. Probe pages
 * written or read before, no probe at all, a misaligned or unmapped one:
 * each refused with -EFAULT, with our own good userfaultfd.
 */
Test(security, touched_or_missing_probe_pages_are_efault_and_leave_no_state)
{
	struct refusal r;
	unsigned char *written = map_rw_or_null(2), *read = map_rw_or_null(2);
	unsigned char *gone = map_rw_or_null(2);
	volatile unsigned char sink;
	const struct {
		const char *what;
		uint64_t probe;
	} bad[] = {
		{ "probe page written before", (uintptr_t)written },
		{ "probe page read before", (uintptr_t)read },
		{ "no probe (0)", 0 },
		{ "misaligned probe", (uintptr_t)gone + 8 },
		{ "unmapped probe", (uintptr_t)gone },
	};

	cr_assert(written && read && gone);
	written[0] = 1;
	sink = read[0];
	(void)sink;
	cr_assert_eq(munmap(gone, 2 * page_size()), 0);
	refusal_setup(&r);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int uffd = uffd_make(0);

		cr_assert_geq(uffd, 0, "userfaultfd: %s", strerror(-uffd));
		expect_refused(&r, uffd, bad[i].probe, -EFAULT, bad[i].what);
		close(uffd);
	}
	munmap(written, 2 * page_size());
	munmap(read, 2 * page_size());
	refusal_teardown(&r);
}

/* ---- STATS of another user ----------------------------------------------- */

/*
 * A client of another user than the one whose mirrors the daemon holds
 * learns the figures of its own user only, as HMMU_OP_LIST shows a non-root
 * client the processes of its own uid only: not how many processes and
 * mirrors others have, nor what their devices did.
 */
Test(security, client_of_another_user_sees_no_daemon_wide_figures)
{
	struct fixture f;
	struct hmmu_stats mine, seen;
	unsigned char *p, *buf;
	struct hmmu_cmd c;
	int sp[2], status;
	ssize_t n;
	pid_t pid;

	require_root();
	f = fixture_open("dmirror0");
	p = map_rw_or_null(8);
	buf = malloc(8 * page_size());
	cr_assert(p && buf);
	memset(p, 1, 8 * page_size());
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 8 };
	cr_assert_eq(hmmu_device_read(f.m, &c, buf), 0);
	mine = stats_of(f.h);
	cr_assert_eq(mine.processes, 1);
	cr_assert_eq(mine.mirrors, 1);
	cr_assert_gt(mine.device_faults, 0);
	cr_assert_gt(mine.device_pages, 0);

	daemon_dir_open_to_all();
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp),
		     0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct hmmu *other;
		struct hmmu_stats st;

		close(sp[0]);
		if (become_nobody())
			_exit(1);
		if (hmmu_connect(daemon_under_test.socket, &other) ||
		    hmmu_stats(other, &st, sizeof(st)) < 0)
			_exit(2);
		_exit(write(sp[1], &st, sizeof(st)) == sizeof(st) ? 0 : 3);
	}
	close(sp[1]);
	n = read(sp[0], &seen, sizeof(seen));
	close(sp[0]);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the client as nobody failed: status %#x", status);
	cr_assert_eq(n, (ssize_t)sizeof(seen));

	cr_expect_eq(seen.processes, 0, "root's processes are not nobody's");
	cr_expect_eq(seen.mirrors, 0, "root's mirrors are not nobody's");
	cr_expect_eq(seen.my_state, 0);
	cr_expect_eq(seen.my_mirrors, 0);
	cr_expect_eq(seen.releases, 0);
	cr_expect_eq(seen.device_faults, 0, "root's device faults");
	cr_expect_eq(seen.cpu_faults, 0);
	cr_expect_eq(seen.invalidations, 0);
	cr_expect_eq(seen.migrated_to_device, 0);
	cr_expect_eq(seen.migrated_to_system, 0);
	cr_expect_eq(seen.device_pages, 0, "root's pages on devices");
	cr_expect_eq(seen.device_mem_pages, 0);
	cr_expect_leq(seen.sessions, 1, "only its own session");

	free(buf);
	munmap(p, 8 * page_size());
	fixture_close(&f);
	still_serves();
}

/*
 * Found by the socket fuzzer: the pages of a migration move (mremap)
 * before its FINISH, which names the old range. The moved pages that were
 * still being migrated must not stay so for ever: a CPU write to them goes
 * through, FINISH answers, and every page keeps its data at its new place.
 */
Test(security, migration_moved_by_mremap_before_finish_settles, .timeout = 30)
{
	struct migration mg;
	unsigned char *moved;
	uint64_t cpages = 0;
	int st;

	migration_setup(&mg);
	migration_prepare(&mg);
	moved = mmap(NULL, MIG_PAGES * page_size(), PROT_NONE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(moved, MAP_FAILED);
	moved = mremap(mg.range, MIG_PAGES * page_size(),
		       MIG_PAGES * page_size(), MREMAP_MAYMOVE | MREMAP_FIXED,
		       moved);
	cr_assert_neq(moved, MAP_FAILED);
	moved[page_size()] = 0x99; /* held for ever before the fix */
	st = raw_finish(mg.sock, mg.mirror, mg.range, MIG_PAGES, &cpages);
	cr_assert_eq(st, 0, "FINISH of the old range: %s", status_name(st));
	cr_expect_eq(moved[page_size()], 0x99);
	for (int i = 0; i < MIG_PAGES; i++)
		cr_expect_eq(moved[i * page_size() + 1],
			     (unsigned char)(0x10 + i), "page %d", i);
	/* The teardown unmaps mg.range: let it unmap the pages' new place. */
	mg.range = moved;
	migration_teardown(&mg);
}

/*
 * A client gets its device memory file read-only: it holds the journal a
 * restarted hmmud adopts (which pages are the device's, and charged to
 * whom). Reopening its fd through /proc/self/fd read-write must fail for
 * a client without CAP_DAC_OVERRIDE, as writing the open it was given
 * does. (A client of root's uid without that capability stands for any
 * user: one not root cannot make a userfaultfd on many machines.)
 */
static int drop_dac_capabilities(void)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct d[2];
	const int caps[] = { CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH,
			     CAP_FOWNER };

	if (syscall(SYS_capget, &hdr, d) < 0)
		return -1;
	for (unsigned i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		d[caps[i] / 32].effective &= ~(1u << (caps[i] % 32));
		d[caps[i] / 32].permitted &= ~(1u << (caps[i] % 32));
	}
	return (int)syscall(SYS_capset, &hdr, d);
}

static int devmem_reopen_without_dac(void)
{
	char path[64], target[128];
	unsigned char *p;
	struct hmmu_mirror *m;
	struct hmmu *h;
	struct hmmu_cmd c;
	int found = -1, fd;

	if (drop_dac_capabilities() < 0)
		return 1;
	p = mmap(NULL, 4 * page_size(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return 2;
	memset(p, 7, 4 * page_size());
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = 4 };
	if (hmmu_connect(daemon_under_test.socket, &h) ||
	    hmmu_mirror_create(h, "dmirror0", &m) ||
	    hmmu_mirror_register(m) || hmmu_migrate_to_device(m, &c)) {
		fprintf(stderr, "without DAC capabilities: %s\n",
			hmmu_error_detail());
		return 3;
	}
	for (int i = 3; i < 1024 && found < 0; i++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%d", i);
		n = readlink(path, target, sizeof(target) - 1);
		if (n > 0 && (target[n] = '\0', strstr(target, "hmmu-devmem")))
			found = i;
	}
	if (found < 0)
		return 4; /* libhmmu holds no device memory file */
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd >= 0) {
		close(fd);
		return 5; /* reopened for writing */
	}
	return errno == EACCES ? 0 : 6;
}

Test(security, a_client_cannot_reopen_its_device_memory_file_for_writing)
{
	int status;
	pid_t pid;

	require_root();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		_exit(devmem_reopen_without_dac());
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status), "status %#x", status);
	cr_expect_eq(WEXITSTATUS(status), 0,
		     "%d (1: capset, 3: no migration, 4: no file held, 5: "
		     "reopened read-write, 6: another errno)",
		     WEXITSTATUS(status));
}
