/* SPDX-License-Identifier: MIT */
/*
 * Broken and hostile clients, end to end: hand-built messages on a raw
 * SOCK_SEQPACKET connection to a private hmmud. For each kind of bad input:
 *  1. the daemon answers with a well-formed reply carrying the exact errno
 *     (naming the request's op and id if its header was sound, its id alone
 *     with op NONE if only the op was unknown);
 *  2. it logs one line about it (up to the log's rate limit: a flood of
 *     them from one place logs a burst per interval, daemon/log.h);
 *  3. nothing changes: counters and the daemon's open fds are as before, and
 *     fds that came with the message are not kept;
 *  4. it still serves, on the same connection (unless it hangs up on
 *     purpose) and on a new one.
 */
#include "harness.h"
#include "helpers.h"
/* The decoder itself, to judge the daemon's replies by libhmmu's rules. */
#include "common/proto.h"
/* The log's rate limit, which the flood runs into. */
#include "lib/log.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

TestSuite(bad_input, .init = daemon_start, .fini = daemon_stop, .timeout = 60);

#define HDR RAW_HDR
/* Only so that a daemon that never answers fails the test, not hangs it. */
#define REPLY_WAIT_MS 5000

static void send_raw(int sock, const void *buf, size_t len, const int *fds,
		     int nfds)
{
	int err = raw_sendmsg(sock, buf, len, fds, nfds, NULL);

	cr_assert_eq(err, 0, "sendmsg of %zu bytes: %s", len, strerror(-err));
}

/*
 * Receive one reply and check that it is a well-formed reply for @op and
 * @id with @status. Returns its length.
 */
static size_t expect_reply(int sock, union raw_msg *m, unsigned op,
			   uint64_t id, int status, const char *what)
{
	ssize_t n = raw_recv(sock, m, REPLY_WAIT_MS);

	cr_assert_geq(n, 0, "%s: no reply: %s", what, strerror((int)-n));
	cr_assert_gt(n, 0, "%s: the daemon hung up instead of replying", what);
	cr_assert_eq(hmmu_proto_check(m, (size_t)n, 1), 0,
		     "%s: malformed reply (%zd bytes)", what, n);
	cr_assert_eq(m->hdr.status, status, "%s: status %d (%s), want %d (%s)",
		     what, m->hdr.status, strerror(-m->hdr.status), status,
		     strerror(-status));
	cr_assert_eq(m->hdr.op, op, "%s: reply op %u, want %u", what, m->hdr.op,
		     op);
	cr_assert_eq(m->hdr.id, id, "%s: reply id %llu, want %llu", what,
		     (unsigned long long)m->hdr.id, (unsigned long long)id);
	return (size_t)n;
}

/* Send @len bytes of @m, expect one reply for @op and @id with @status. */
static size_t call(int sock, union raw_msg *m, size_t len, unsigned op,
		   uint64_t id, int status, const char *what)
{
	send_raw(sock, m, len, NULL, 0);
	return expect_reply(sock, m, op, id, status, what);
}

/*
 * The daemon still serves: on @sock (unless it is -1) a DEVICE_COUNT gets
 * the right answer, and so does a new libhmmu connection. @h watches the
 * daemon's sessions, so that the new one is gone when this returns.
 */
static void still_serves(struct hmmu *h, int sock)
{
	uint64_t before = stats_of(h).sessions;
	struct fixture fresh;
	union raw_msg m;

	if (sock >= 0) {
		size_t n = raw_build(&m, HMMU_OP_DEVICE_COUNT, 0x5e5e, NULL, 0);
		struct hmmu_wire_count *count = raw_payload(&m);

		n = call(sock, &m, n, HMMU_OP_DEVICE_COUNT, 0x5e5e, 0,
			 "device count on the same connection");
		cr_assert_eq(n, HDR + sizeof(struct hmmu_wire_count));
		cr_assert_geq(count->count, 2);
	}
	fresh = fixture_open(NULL);
	cr_assert_geq(hmmu_device_count(fresh.h), 2,
		      "a new connection is served");
	fixture_close(&fresh);
	cr_assert_eq(wait_for_stat(h, sessions, before), before,
		     "the new connection's session is gone");
}

/* What must not change: the daemon's counters and open fds. */
struct snapshot {
	struct hmmu_stats st;
	int fds;
};

static struct snapshot snapshot(struct hmmu *h)
{
	return (struct snapshot){ .st = stats_of(h),
				  .fds = count_fds(daemon_under_test.pid) };
}

static void expect_unchanged(struct hmmu *h, const struct snapshot *before,
			     const char *what)
{
	struct hmmu_stats st = stats_of(h);

	cr_expect_eq(st.processes, before->st.processes, "%s: processes", what);
	cr_expect_eq(st.mirrors, before->st.mirrors, "%s: mirrors", what);
	cr_expect_eq(st.my_state, before->st.my_state, "%s: my_state", what);
	cr_expect_eq(st.my_mirrors, before->st.my_mirrors, "%s: my_mirrors",
		     what);
	cr_expect_eq(st.sessions, before->st.sessions, "%s: sessions", what);
	cr_expect_eq(st.device_pages, before->st.device_pages,
		     "%s: device_pages", what);
	cr_expect_eq(st.releases, before->st.releases, "%s: releases", what);
	cr_expect_eq(count_fds(daemon_under_test.pid), before->fds,
		     "%s: the daemon's open fds", what);
}

/* Lines of the daemon's log about this process's connections. */
static int my_log_lines(void)
{
	char tag[32];

	snprintf(tag, sizeof(tag), "client %d:", (int)getpid());
	return daemon_log_count(tag);
}

/*
 * The log line of receive_one() for a message it refused, which the test
 * provokes: declared expected.
 */
static void bad_line(char *out, size_t size, const char *op, size_t len,
		     int err)
{
	snprintf(out, size, "bad %s message (%zu bytes): %s", op, len,
		 strerror(-err));
	expect_daemon_log("%s", out);
}

/* A pipe whose read end goes to the daemon: p[0] read, p[1] write. */
static void pipe_or_die(int p[2])
{
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
}

/*
 * 1 once no process holds the read end of the pipe whose write end is
 * @wfd: the fd we sent is closed everywhere, in the daemon too.
 */
static int readers_gone(int wfd)
{
	struct pollfd p = { .fd = wfd, .events = 0 };

	return poll(&p, 1, REPLY_WAIT_MS) == 1 && (p.revents & POLLERR);
}

/* ---- malformed messages, one table -------------------------------------- */

static void cut_to_10_bytes(union raw_msg *m, size_t *len)
{
	(void)m;
	*len = 10;
}

static void drop_last_payload_byte(union raw_msg *m, size_t *len)
{
	m->hdr.len = (uint32_t)--*len;
}

static void add_payload_byte(union raw_msg *m, size_t *len)
{
	m->hdr.len = (uint32_t)++*len;
}

static void len_field_one_more(union raw_msg *m, size_t *len)
{
	m->hdr.len = (uint32_t)*len + 1;
}

static void len_field_one_less(union raw_msg *m, size_t *len)
{
	m->hdr.len = (uint32_t)*len - 1;
}

static void bad_magic(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.magic = ~HMMU_PROTO_MAGIC;
}

static void reply_flag(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.flags = HMMU_MSG_REPLY;
}

static void unknown_flag(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.flags = 0x100;
}

static void status_set(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.status = -EIO;
}

static void op_none(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.op = HMMU_OP_NONE;
}

static void op_max(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.op = HMMU_OP_MAX_;
}

static void op_ffff(union raw_msg *m, size_t *len)
{
	(void)len;
	m->hdr.op = 0xffff;
}

/* The reserved word follows the first u32 of hello and index payloads. */
static void reserved_word_set(union raw_msg *m, size_t *len)
{
	(void)len;
	((uint32_t *)raw_payload(m))[1] = 1;
}

static void name_empty(union raw_msg *m, size_t *len)
{
	(void)len;
	memset(raw_payload(m), 0, HMMU_NAME_MAX);
}

static void name_unterminated(union raw_msg *m, size_t *len)
{
	(void)len;
	memset(raw_payload(m), 'd', HMMU_NAME_MAX);
}

static void name_garbage_after_nul(union raw_msg *m, size_t *len)
{
	(void)len;
	((char *)raw_payload(m))[HMMU_NAME_MAX - 1] = 'x';
}

static struct hmmu_wire_device_cmd *cmd_of(union raw_msg *m)
{
	return raw_payload(m);
}

static void cmd_zero(union raw_msg *m, size_t *len)
{
	(void)len;
	cmd_of(m)->cmd = 0;
}

static void cmd_max(union raw_msg *m, size_t *len)
{
	(void)len;
	cmd_of(m)->cmd = HMMU_CMD_MAX_;
}

static void cmd_npages_zero(union raw_msg *m, size_t *len)
{
	(void)len;
	cmd_of(m)->npages = 0;
}

static void cmd_npages_absurd(union raw_msg *m, size_t *len)
{
	(void)len;
	cmd_of(m)->npages = HMMU_CMD_MAX_PAGES + 1;
}

static void cmd_npages_huge(union raw_msg *m, size_t *len)
{
	(void)len;
	cmd_of(m)->npages = UINT64_MAX;
}

static void cmd_reserved(union raw_msg *m, size_t *len)
{
	(void)len;
	cmd_of(m)->reserved = 1;
}

/* A valid request of @op (for a mirror that does not exist). */
static size_t valid_request(union raw_msg *m, unsigned op, uint64_t id)
{
	size_t n = raw_build(m, op, id, NULL, hmmu_proto_request_size(op));

	switch (op) {
	case HMMU_OP_HELLO:
		((struct hmmu_wire_hello *)raw_payload(m))->version =
			HMMU_PROTO_VERSION;
		break;
	case HMMU_OP_MIRROR_CREATE:
		strcpy(raw_payload(m), "dmirror0");
		break;
	case HMMU_OP_DEVICE_CMD:
		*cmd_of(m) = (struct hmmu_wire_device_cmd){
			.mirror = 1,
			.cmd = HMMU_CMD_READ,
			.addr = 0x100000,
			.npages = 1,
			.buf = 0x200000,
			.buf_len = 4096,
		};
		break;
	default:
		break;
	}
	return n;
}

enum {
	ECHO_NOTHING = 0, /* op NONE, id 0: the header was not sound */
	ECHO_OP_ID = 1,	  /* the request's op and id */
	ECHO_ID = 2,	  /* op NONE with the request's id: unknown op */
};

static const struct malformed {
	const char *what;
	unsigned op; /* a valid request of this op, then mangled */
	void (*mangle)(union raw_msg *m, size_t *len);
	int err;    /* the reply's status */
	int echoed; /* ECHO_*: what of the request the reply names */
} malformed[] = {
	{ "shorter than the header", HMMU_OP_DEVICE_COUNT, cut_to_10_bytes,
	  -EMSGSIZE, 0 },
	{ "truncated payload", HMMU_OP_DEVICE_INFO, drop_last_payload_byte,
	  -EMSGSIZE, 1 },
	{ "truncated device cmd", HMMU_OP_DEVICE_CMD, drop_last_payload_byte,
	  -EMSGSIZE, 1 },
	{ "oversized payload", HMMU_OP_MIRROR_DESTROY, add_payload_byte,
	  -EMSGSIZE, 1 },
	{ "payload on device count", HMMU_OP_DEVICE_COUNT, add_payload_byte,
	  -EMSGSIZE, 1 },
	{ "len field too big", HMMU_OP_DEVICE_INFO, len_field_one_more,
	  -EMSGSIZE, 1 },
	{ "len field too small", HMMU_OP_STATS, len_field_one_less, -EMSGSIZE,
	  1 },
	{ "bad magic", HMMU_OP_DEVICE_COUNT, bad_magic, -EPROTO, 0 },
	{ "reply flag on a request", HMMU_OP_STATS, reply_flag, -EPROTO, 0 },
	{ "unknown flag", HMMU_OP_STATS, unknown_flag, -EPROTO, 0 },
	{ "nonzero status", HMMU_OP_DEVICE_COUNT, status_set, -EPROTO, 1 },
	{ "op 0", HMMU_OP_DEVICE_COUNT, op_none, -EOPNOTSUPP, ECHO_ID },
	{ "op HMMU_OP_MAX_", HMMU_OP_DEVICE_COUNT, op_max, -EOPNOTSUPP, ECHO_ID },
	{ "op 0xffff", HMMU_OP_DEVICE_INFO, op_ffff, -EOPNOTSUPP, ECHO_ID },
	{ "hello reserved", HMMU_OP_HELLO, reserved_word_set, -EINVAL, 1 },
	{ "device info reserved", HMMU_OP_DEVICE_INFO, reserved_word_set,
	  -EINVAL, 1 },
	{ "device name empty", HMMU_OP_MIRROR_CREATE, name_empty, -EINVAL, 1 },
	{ "device name unterminated", HMMU_OP_MIRROR_CREATE, name_unterminated,
	  -EINVAL, 1 },
	{ "device name with garbage after NUL", HMMU_OP_MIRROR_CREATE,
	  name_garbage_after_nul, -EINVAL, 1 },
	{ "device cmd 0", HMMU_OP_DEVICE_CMD, cmd_zero, -EINVAL, 1 },
	{ "device cmd HMMU_CMD_MAX_", HMMU_OP_DEVICE_CMD, cmd_max, -EINVAL, 1 },
	{ "device cmd npages 0", HMMU_OP_DEVICE_CMD, cmd_npages_zero, -EINVAL,
	  1 },
	{ "device cmd npages past the max", HMMU_OP_DEVICE_CMD,
	  cmd_npages_absurd, -EINVAL, 1 },
	{ "device cmd npages UINT64_MAX", HMMU_OP_DEVICE_CMD, cmd_npages_huge,
	  -EINVAL, 1 },
	{ "device cmd reserved", HMMU_OP_DEVICE_CMD, cmd_reserved, -EINVAL, 1 },
};

Test(bad_input, malformed_request_gets_its_errno_and_daemon_still_serves)
{
	struct fixture f;
	int sock;

	/*
	 * Every case is refused by the same call site and checked to be
	 * logged: more lines at once than the log's rate limit lets through.
	 */
	setenv("HMMUD_LOG_RATELIMIT", "0", 1);
	daemon_restart(NULL);
	f = fixture_open(NULL);
	sock = raw_session();

	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		const struct malformed *c = &malformed[i];
		struct snapshot before = snapshot(f.h);
		uint64_t id = 1000 + i;
		int lines = my_log_lines(), bad;
		char line[160];
		union raw_msg m;
		size_t len = valid_request(&m, c->op, id);

		c->mangle(&m, &len);
		bad_line(line, sizeof(line),
			 len < HDR ? "short" : hmmu_proto_op_name(m.hdr.op), len,
			 c->err);
		bad = daemon_log_count(line);
		call(sock, &m, len, c->echoed == ECHO_OP_ID ? c->op : HMMU_OP_NONE,
		     c->echoed != ECHO_NOTHING ? id : 0, c->err, c->what);
		cr_expect_eq(daemon_log_count(line), bad + 1,
			     "%s: logged \"%s\"", c->what, line);
		cr_expect_eq(my_log_lines(), lines + 1, "%s: one log line",
			     c->what);
		expect_unchanged(f.h, &before, c->what);
		still_serves(f.h, sock);
	}
	close(sock);
	fixture_close(&f);
}

/* ---- the handshake ------------------------------------------------------- */

/* Send a valid request of @op before HELLO: refused, logged. */
static void before_hello(int sock, unsigned op, uint64_t id)
{
	int lines = my_log_lines(), bad;
	char line[160];
	union raw_msg m;
	size_t len = valid_request(&m, op, id);

	bad_line(line, sizeof(line), hmmu_proto_op_name(op), len, -EPROTO);
	bad = daemon_log_count(line);
	call(sock, &m, len, op, id, -EPROTO, hmmu_proto_op_name(op));
	cr_expect_eq(daemon_log_count(line), bad + 1, "logged \"%s\"", line);
	cr_expect_eq(my_log_lines(), lines + 1);
}

Test(bad_input, request_before_hello_is_eproto_and_changes_nothing)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_connect();
	struct snapshot before;

	/* Once it answered, the daemon has accepted: its session counts. */
	before_hello(sock, HMMU_OP_DEVICE_COUNT, 10);
	before = snapshot(f.h);
	before_hello(sock, HMMU_OP_STATS, 11);
	before_hello(sock, HMMU_OP_MIRROR_CREATE, 12);
	before_hello(sock, HMMU_OP_MIRROR_REGISTER, 13);
	expect_unchanged(f.h, &before, "before hello");
	raw_say_hello(sock);
	/* The MIRROR_CREATE before HELLO created nothing. */
	expect_daemon_log("no mirror 1");
	cr_assert_eq(raw_mirror_op(sock, HMMU_OP_MIRROR_DESTROY, 1), -ENOENT,
		     "destroy of the mirror refused before hello");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

Test(bad_input, second_hello_is_eproto_and_logged)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	struct hmmu_wire_hello hello = { .version = HMMU_PROTO_VERSION };
	int lines = my_log_lines();
	union raw_msg m;
	size_t len = raw_build(&m, HMMU_OP_HELLO, 2, &hello, sizeof(hello));

	expect_daemon_log("said hello twice");
	call(sock, &m, len, HMMU_OP_HELLO, 2, -EPROTO, "second hello");
	cr_expect_eq(my_log_lines(), lines + 1,
		     "the daemon logs a second hello like any other "
		     "protocol violation");
	expect_unchanged(f.h, &before, "second hello");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

Test(bad_input, version_mismatch_is_eprotonosupport_then_daemon_hangs_up)
{
	static const uint32_t versions[] = { 0, HMMU_PROTO_VERSION + 1,
					     UINT32_MAX };
	struct fixture f = fixture_open(NULL);
	struct snapshot before = snapshot(f.h);

	for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		struct hmmu_wire_hello hello = { .version = versions[i] };
		int sock = raw_connect();
		char line[96];
		int logged;
		union raw_msg m;
		size_t n = raw_build(&m, HMMU_OP_HELLO, 5, &hello,
				     sizeof(hello));

		snprintf(line, sizeof(line),
			 "speaks protocol version %u, we speak %u", versions[i],
			 HMMU_PROTO_VERSION);
		expect_daemon_log("%s", line);
		logged = daemon_log_count(line);
		n = call(sock, &m, n, HMMU_OP_HELLO, 5, -EPROTONOSUPPORT,
			 "version mismatch");
		/*
		 * Readable by a client of any version: the version first, and
		 * no reason before it.
		 */
		cr_assert_eq(n, HDR + sizeof(struct hmmu_wire_hello_reply),
			     "the daemon's version and release");
		cr_expect_eq(m.hdr.flags, HMMU_MSG_REPLY, "no reason on it");
		cr_expect_eq(
			((struct hmmu_wire_hello *)raw_payload(&m))->version,
			HMMU_PROTO_VERSION);
		cr_expect_str_eq(((struct hmmu_wire_hello_reply *)raw_payload(&m))
					 ->release,
				 hmmu_daemon_version(f.h));
		cr_expect_eq(daemon_log_count(line), logged + 1, "logged \"%s\"",
			     line);
		/* Then it hangs up: EOF, and a request gets no answer. */
		cr_expect_eq(raw_recv(sock, &m, REPLY_WAIT_MS), 0,
			     "hung up after the reply");
		close(sock);
		cr_expect_eq(wait_for_stat(f.h, sessions, before.st.sessions),
			     before.st.sessions, "the session is gone");
		expect_unchanged(f.h, &before, "version mismatch");
	}
	still_serves(f.h, -1);
	fixture_close(&f);
}

/* ---- fds where none belong ----------------------------------------------- */

Test(bad_input, fd_on_non_register_op_is_einval_and_not_kept)
{
	static const unsigned ops[] = { HMMU_OP_DEVICE_COUNT, HMMU_OP_STATS,
					HMMU_OP_MIRROR_UNREGISTER,
					HMMU_OP_HELLO };
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();

	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		struct snapshot before = snapshot(f.h);
		const char *what = hmmu_proto_op_name(ops[i]);
		int lines = my_log_lines(), bad, p[2];
		char line[160];
		union raw_msg m;
		size_t len = valid_request(&m, ops[i], 30 + i);

		pipe_or_die(p);
		bad_line(line, sizeof(line), what, len, -EINVAL);
		bad = daemon_log_count(line);
		send_raw(sock, &m, len, &p[0], 1);
		close(p[0]);
		expect_reply(sock, &m, ops[i], 30 + i, -EINVAL, what);
		cr_expect(readers_gone(p[1]), "%s: the daemon closed the fd",
			  what);
		close(p[1]);
		cr_expect_eq(daemon_log_count(line), bad + 1, "logged \"%s\"",
			     line);
		cr_expect_eq(my_log_lines(), lines + 1);
		expect_unchanged(f.h, &before, what);
	}
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

/*
 * @mirror's refused registration left no per-process state: the daemon
 * still asks for a userfaultfd. Then it destroys the mirror, still serves,
 * and the test's connections close.
 */
static void close_unregistered(struct fixture *f, int sock, uint64_t mirror,
			       const char *what)
{
	cr_assert_eq(raw_register(sock, mirror, -1, 0), HMMU_STATUS_NEED_UFFD,
		     "%s", what);
	cr_assert_eq(raw_mirror_op(sock, HMMU_OP_MIRROR_DESTROY, mirror), 0,
		     "destroy");
	still_serves(f->h, sock);
	close(sock);
	fixture_close(f);
}

/* Send MIRROR_REGISTER of @mirror with @nfds pipe read ends attached. */
static void register_with_pipes(int nfds, int status)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	uint64_t mirror = raw_mirror_create(sock, "dmirror0");
	struct snapshot before;
	struct hmmu_wire_register req = { .mirror = mirror };
	int lines = my_log_lines(), bad, r[RAW_MAX_FDS], w[RAW_MAX_FDS];
	char line[160];
	union raw_msg m;
	size_t len = raw_build(&m, HMMU_OP_MIRROR_REGISTER, 40, &req,
			       sizeof(req));

	cr_assert_neq(mirror, 0, "mirror create");
	before = snapshot(f.h);
	for (int i = 0; i < nfds; i++) {
		int p[2];

		pipe_or_die(p);
		r[i] = p[0];
		w[i] = p[1];
	}
	bad_line(line, sizeof(line), "mirror-register", len, status);
	bad = daemon_log_count(line);
	send_raw(sock, &m, len, r, nfds);
	for (int i = 0; i < nfds; i++)
		close(r[i]);
	expect_reply(sock, &m, HMMU_OP_MIRROR_REGISTER, 40, status,
		     "register with many fds");
	for (int i = 0; i < nfds; i++) {
		cr_expect(readers_gone(w[i]), "fd %d of %d was closed", i + 1,
			  nfds);
		close(w[i]);
	}
	cr_expect_eq(daemon_log_count(line), bad + 1, "logged \"%s\"", line);
	cr_expect_eq(my_log_lines(), lines + 1);
	expect_unchanged(f.h, &before, "register with many fds");
	close_unregistered(&f, sock, mirror, "register without fd");
}

Test(bad_input, two_fds_on_register_are_einval_and_neither_kept)
{
	register_with_pipes(2, -EINVAL);
}

/* More fds than the daemon makes room for: control data is truncated. */
Test(bad_input, six_fds_on_register_are_einval_and_none_kept)
{
	register_with_pipes(6, -EINVAL);
}

Test(bad_input, pipe_as_userfaultfd_is_ebadf_and_creates_no_state)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	uint64_t mirror = raw_mirror_create(sock, "dmirror0");
	struct snapshot before;
	struct hmmu_wire_register req = { .mirror = mirror };
	int lines = my_log_lines(), logged, p[2];
	char line[96];
	union raw_msg m;
	size_t len;

	cr_assert_neq(mirror, 0, "mirror create");
	before = snapshot(f.h);
	cr_assert_eq(before.st.my_state, 0);
	cr_assert_eq(raw_register(sock, mirror, -1, 0), HMMU_STATUS_NEED_UFFD,
		     "register without fd");

	pipe_or_die(p);
	snprintf(line, sizeof(line), "register mirror %llu on dmirror0: %s",
		 (unsigned long long)mirror, strerror(EBADF));
	expect_daemon_log("%s", line);
	logged = daemon_log_count(line);
	len = raw_build(&m, HMMU_OP_MIRROR_REGISTER, 50, &req, sizeof(req));
	send_raw(sock, &m, len, &p[0], 1);
	close(p[0]);
	expect_reply(sock, &m, HMMU_OP_MIRROR_REGISTER, 50, -EBADF,
		     "register with a pipe");
	cr_expect(readers_gone(p[1]), "the daemon closed the pipe");
	close(p[1]);
	cr_expect_eq(daemon_log_count(line), logged + 1, "logged \"%s\"", line);
	cr_expect_eq(my_log_lines(), lines + 1);
	expect_unchanged(f.h, &before, "register with a pipe");
	close_unregistered(&f, sock, mirror, "register without fd, again");
}

/* ---- requests naming what does not exist --------------------------------- */

Test(bad_input, mirror_never_created_is_enoent_for_every_mirror_op)
{
	static const unsigned ops[] = { HMMU_OP_MIRROR_REGISTER,
					HMMU_OP_MIRROR_UNREGISTER,
					HMMU_OP_MIRROR_DESTROY,
					HMMU_OP_DEVICE_CMD };
	const uint64_t ghost = 12345;
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	char line[64];

	snprintf(line, sizeof(line), "no mirror %llu",
		 (unsigned long long)ghost);
	expect_daemon_log("%s", line);
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		const char *what = hmmu_proto_op_name(ops[i]);
		int lines = my_log_lines(), logged = daemon_log_count(line);
		union raw_msg m;
		size_t len = valid_request(&m, ops[i], 60 + i);

		/* The mirror id is the first field of every mirror op. */
		*(uint64_t *)raw_payload(&m) = ghost;
		call(sock, &m, len, ops[i], 60 + i, -ENOENT, what);
		cr_expect_eq(daemon_log_count(line), logged + 1,
			     "%s: logged \"%s\"", what, line);
		cr_expect_eq(my_log_lines(), lines + 1, "%s", what);
	}
	expect_unchanged(f.h, &before, "mirror never created");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

Test(bad_input, register_of_mirror_never_created_with_fd_does_not_keep_it)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	struct hmmu_wire_register req = { .mirror = 999 };
	int p[2];
	union raw_msg m;
	size_t len = raw_build(&m, HMMU_OP_MIRROR_REGISTER, 70, &req,
			       sizeof(req));

	expect_daemon_log("no mirror 999");
	pipe_or_die(p);
	send_raw(sock, &m, len, &p[0], 1);
	close(p[0]);
	expect_reply(sock, &m, HMMU_OP_MIRROR_REGISTER, 70, -ENOENT,
		     "register of a ghost with an fd");
	cr_expect(readers_gone(p[1]), "the daemon closed the fd");
	close(p[1]);
	cr_expect_eq(daemon_log_count("no mirror 999"), 1);
	expect_unchanged(f.h, &before, "register of a ghost with an fd");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

/* ---- RESERVE_IDS (docs/protocol.md §11) ---------------------------------- */

/* RESERVE_IDS of @above: the reply's status. */
static int reserve(int sock, uint64_t above)
{
	struct hmmu_wire_reserve_ids req = { .above = above };

	return raw_call(sock, HMMU_OP_RESERVE_IDS, &req, sizeof(req), -1, NULL,
			0);
}

/* The id a create of @op (a mirror on dmirror0, a buffer, a queue) gets. */
static uint64_t made(int sock, unsigned op, uint64_t mirror)
{
	union {
		struct hmmu_wire_device_name name;
		struct hmmu_wire_buffer_create buffer;
		struct hmmu_wire_queue_create queue;
	} req;
	/* All three replies start with the id. */
	union {
		uint64_t id;
		struct hmmu_wire_queue_reply queue;
	} rep = { 0 };

	memset(&req, 0, sizeof(req));
	if (op == HMMU_OP_MIRROR_CREATE)
		strcpy(req.name.name, "dmirror0");
	else if (op == HMMU_OP_BUFFER_CREATE)
		req.buffer.bytes = page_size();
	else
		req.queue = (struct hmmu_wire_queue_create){ .mirror = mirror,
							     .entries = 1 };
	cr_assert_eq(raw_call(sock, op, &req, hmmu_proto_request_size(op), -1,
			      &rep, sizeof(rep)), 0, "%s",
		     hmmu_proto_op_name(op));
	return rep.id;
}

/*
 * What a reconnecting client asks first: every mirror, buffer and queue
 * made from now on has an id above the floor; a lower floor changes
 * nothing.
 */
Test(bad_input, reserve_ids_raises_the_floors_and_never_lowers_them)
{
	struct fixture f = fixture_open("dmirror0"); /* the process's state */
	int sock = raw_session();
	uint64_t mirror;

	cr_assert_eq(made(sock, HMMU_OP_MIRROR_CREATE, 0), 1);
	cr_assert_eq(made(sock, HMMU_OP_BUFFER_CREATE, 0), 1);
	cr_assert_eq(reserve(sock, 100), 0);
	mirror = made(sock, HMMU_OP_MIRROR_CREATE, 0);
	cr_expect_eq(mirror, 101);
	cr_expect_eq(made(sock, HMMU_OP_BUFFER_CREATE, 0), 101);
	/* Queue ids are the daemon's: above the floor, whatever else. */
	cr_assert_eq(raw_register(sock, mirror, -1, 0), 0);
	cr_expect_gt(made(sock, HMMU_OP_QUEUE_CREATE, mirror), 100);

	cr_assert_eq(reserve(sock, 50), 0);
	cr_expect_eq(made(sock, HMMU_OP_MIRROR_CREATE, 0), 102, "lowered");
	cr_expect_eq(made(sock, HMMU_OP_BUFFER_CREATE, 0), 102, "lowered");
	/* The floor is the connection's: another one's ids start at 1. */
	close(sock);
	sock = raw_session();
	cr_expect_eq(made(sock, HMMU_OP_MIRROR_CREATE, 0), 1);
	/* The largest floor there is, then one more id. */
	cr_assert_eq(reserve(sock, HMMU_RESERVE_IDS_MAX), 0);
	cr_expect_eq(made(sock, HMMU_OP_MIRROR_CREATE, 0),
		     HMMU_RESERVE_IDS_MAX + 1);
	close(sock);
	fixture_close(&f);
}

/*
 * A floor past HMMU_RESERVE_IDS_MAX (past which a counter could wrap) is
 * -EINVAL, a payload of another size -EMSGSIZE: each logged once, and
 * nothing changes, the floors included.
 */
Test(bad_input, reserve_ids_past_the_bound_or_of_another_size_changes_nothing)
{
	static const struct {
		uint64_t above;
		size_t len; /* of the payload */
		int err;
	} cases[] = {
		{ HMMU_RESERVE_IDS_MAX + 1, 8, -EINVAL },
		{ UINT64_MAX, 8, -EINVAL },
		{ 1000, 7, -EMSGSIZE },
		{ 1000, 9, -EMSGSIZE },
		{ 1000, 0, -EMSGSIZE },
	};
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();

	cr_assert_eq(made(sock, HMMU_OP_MIRROR_CREATE, 0), 1);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct snapshot before = snapshot(f.h);
		uint64_t payload[2] = { cases[i].above, 0 }, id = 200 + i;
		int lines = my_log_lines(), bad;
		char line[160], what[64];
		union raw_msg m;
		size_t len = raw_build(&m, HMMU_OP_RESERVE_IDS, id, payload,
				       cases[i].len);

		snprintf(what, sizeof(what), "reserve-ids of %llu, %zu bytes",
			 (unsigned long long)cases[i].above, cases[i].len);
		bad_line(line, sizeof(line), "reserve-ids", len, cases[i].err);
		bad = daemon_log_count(line);
		call(sock, &m, len, HMMU_OP_RESERVE_IDS, id, cases[i].err,
		     what);
		cr_expect_eq(daemon_log_count(line), bad + 1,
			     "%s: logged \"%s\"", what, line);
		cr_expect_eq(my_log_lines(), lines + 1, "%s: one log line",
			     what);
		expect_unchanged(f.h, &before, what);
	}
	cr_expect_eq(made(sock, HMMU_OP_MIRROR_CREATE, 0), 2,
		     "a refused floor was raised");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

/* An index past the last device: -ENODEV, and one log line naming it. */
Test(bad_input, device_info_with_huge_index_is_enodev)
{
	static const uint32_t indexes[] = { 3, 1000, UINT32_MAX };
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);

	cr_assert_eq(hmmu_device_count(f.h), 3, "indexes below assume three");
	for (size_t i = 0; i < sizeof(indexes) / sizeof(indexes[0]); i++) {
		struct hmmu_wire_index req = { .index = indexes[i] };
		union raw_msg m;
		size_t len = raw_build(&m, HMMU_OP_DEVICE_INFO, 80 + i, &req,
				   sizeof(req));
		char line[64];
		int logged;

		snprintf(line, sizeof(line), "no device number %u", indexes[i]);
		expect_daemon_log("%s", line);
		logged = daemon_log_count(line);
		call(sock, &m, len, HMMU_OP_DEVICE_INFO, 80 + i, -ENODEV,
		     "device info past the end");
		cr_expect_eq(daemon_log_count(line), logged + 1,
			     "logged \"%s\"", line);
	}
	expect_unchanged(f.h, &before, "device info past the end");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

/* ---- sizes the decoder never sees ---------------------------------------- */

Test(bad_input, message_larger_than_msg_max_is_emsgsize)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	int lines = my_log_lines(), bad = daemon_log_count("bad ");
	union raw_msg m;

	expect_daemon_log("message (%zu bytes): %s", sizeof(m.buf),
			  strerror(EMSGSIZE));
	expect_daemon_log("message (%u bytes): %s", HMMU_MSG_MAX + 1,
			  strerror(EMSGSIZE));
	/* A sound header: the reply names it. */
	raw_build(&m, HMMU_OP_DEVICE_COUNT, 90, NULL, 0);
	m.hdr.len = sizeof(m.buf);
	call(sock, &m, sizeof(m.buf), HMMU_OP_DEVICE_COUNT, 90, -EMSGSIZE,
	     "4096 bytes");
	/* Zeros: no header to speak of. */
	memset(&m, 0, sizeof(m));
	call(sock, &m, HMMU_MSG_MAX + 1, HMMU_OP_NONE, 0, -EMSGSIZE,
	     "HMMU_MSG_MAX + 1 bytes");
	cr_expect_eq(daemon_log_count("bad "), bad + 2);
	cr_expect_eq(my_log_lines(), lines + 2);
	expect_unchanged(f.h, &before, "oversized messages");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

/*
 * SOCK_SEQPACKET delivers an empty message as a record of its own: it is
 * a message shorter than the header, not a hang-up.
 */
Test(bad_input, zero_length_message_is_emsgsize_and_daemon_still_serves)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	int lines = my_log_lines(), bad;
	char line[160];
	union raw_msg m;

	bad_line(line, sizeof(line), "short", 0, -EMSGSIZE);
	bad = daemon_log_count(line);
	send_raw(sock, "", 0, NULL, 0);
	expect_reply(sock, &m, HMMU_OP_NONE, 0, -EMSGSIZE, "empty message");
	cr_expect_eq(daemon_log_count(line), bad + 1, "logged \"%s\"", line);
	cr_expect_eq(my_log_lines(), lines + 1);
	expect_unchanged(f.h, &before, "empty message");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

/* ---- who is speaking ----------------------------------------------------- */

/*
 * In a forked child: send DEVICE_COUNT on the parent's connection (with
 * the child's own credentials attached explicitly if @explicit_cred, else
 * as the kernel adds them for a receiver with SO_PASSCRED) and read the
 * reply. Exit status 0: refused with -EPERM, as the parent's request.
 */
static void child_speaks_for_parent(int sock, int explicit_cred)
{
	struct ucred cred = { .pid = getpid(), .uid = getuid(),
			      .gid = getgid() };
	union raw_msg m;
	size_t len = raw_build(&m, HMMU_OP_DEVICE_COUNT, 0xc41d, NULL, 0);
	ssize_t n;

	if (raw_sendmsg(sock, &m, len, NULL, 0, explicit_cred ? &cred : NULL))
		_exit(10);
	n = raw_recv(sock, &m, REPLY_WAIT_MS);
	if (n <= 0)
		_exit(11);
	if (hmmu_proto_check(&m, (size_t)n, 1))
		_exit(12);
	if (m.hdr.op != HMMU_OP_DEVICE_COUNT || m.hdr.id != 0xc41d)
		_exit(13);
	_exit(m.hdr.status == -EPERM ? 0 : 14);
}

static void forked_child_is_refused(int explicit_cred)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	int lines = my_log_lines(), bad, status;
	char line[160];
	pid_t pid;

	bad_line(line, sizeof(line), "device-count", HDR, -EPERM);
	bad = daemon_log_count(line);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0)
		child_speaks_for_parent(sock, explicit_cred);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "the child got -EPERM (exit status %d: 10 send failed, "
		  "11 no reply, 12 malformed, 13 wrong op/id, 14 other "
		  "status)",
		  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	cr_expect_eq(daemon_log_count(line), bad + 1, "logged \"%s\"", line);
	cr_expect_eq(my_log_lines(), lines + 1);
	expect_unchanged(f.h, &before, "forked child");
	/* The parent itself is still served on that connection. */
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

Test(bad_input, forked_child_on_parent_connection_is_eperm)
{
	forked_child_is_refused(0);
}

Test(bad_input, forked_child_with_its_own_explicit_credentials_is_eperm)
{
	forked_child_is_refused(1);
}

/* ---- volume -------------------------------------------------------------- */

/* Does the daemon answer a refused message with its op and id? */
/* What the reply to this garbage must name: ECHO_*. */
static int echo_of(const union raw_msg *m, size_t len)
{
	if (len < HDR || m->hdr.magic != HMMU_PROTO_MAGIC || m->hdr.flags)
		return ECHO_NOTHING;
	return hmmu_proto_op_known(m->hdr.op) ? ECHO_OP_ID : ECHO_ID;
}

#define FLOOD_MESSAGES 10000
#define FLOOD_MAX_LEN 600

Test(bad_input, garbage_flood_gets_one_error_reply_each_and_daemon_still_serves)
{
	struct fixture f = fixture_open(NULL);
	int sock = raw_session();
	struct snapshot before = snapshot(f.h);
	int bad = daemon_log_count("bad ");
	struct timespec t0, t1;
	long elapsed_ms, logged;
	union raw_msg m, r;

	/* Garbage of every kind: each is logged, up to the rate limit. */
	expect_daemon_log("bad ");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	srand(0x484d4d55);
	for (int sent = 0; sent < FLOOD_MESSAGES;) {
		size_t len = (size_t)rand() % (FLOOD_MAX_LEN + 1);
		int want, echo;
		ssize_t n;

		for (size_t i = 0; i < len; i++)
			m.buf[i] = (unsigned char)rand();
		/* Often a believable header, so the later checks run too. */
		if (len >= HDR && rand() % 2) {
			m.hdr.magic = HMMU_PROTO_MAGIC;
			m.hdr.len = (uint32_t)len;
			m.hdr.op = (uint16_t)(rand() % (HMMU_OP_MAX_ + 2));
			if (rand() % 2) {
				m.hdr.flags = 0;
				m.hdr.status = 0;
			}
		}
		/* The daemon reads HMMU_MSG_MAX bytes; more is too long. */
		want = len > HMMU_MSG_MAX ? -EMSGSIZE :
					    hmmu_proto_check(&m, len, 0);
		if (want == 0)
			continue; /* a valid request by chance: not garbage */
		send_raw(sock, &m, len, NULL, 0);
		sent++;

		/* Read as we go: the daemon hangs up on a client that doesn't. */
		n = raw_recv(sock, &r, REPLY_WAIT_MS);
		if (n <= 0)
			cr_assert_fail("message %d (%zu bytes): %s", sent, len,
				       n ? strerror((int)-n) :
					   "the daemon hung up");
		if (hmmu_proto_check(&r, (size_t)n, 1) || r.hdr.status != want)
			cr_assert_fail("message %d (%zu bytes): reply status "
				       "%d, want %d",
				       sent, len, r.hdr.status, want);
		echo = echo_of(&m, len);
		if (r.hdr.op != (echo == ECHO_OP_ID ? m.hdr.op : HMMU_OP_NONE) ||
		    r.hdr.id != (echo == ECHO_NOTHING ? 0 : m.hdr.id))
			cr_assert_fail("message %d (%zu bytes): reply names "
				       "op %u id %llu",
				       sent, len, r.hdr.op,
				       (unsigned long long)r.hdr.id);
	}
	/*
	 * The daemon logs before it replies: every line is written. All come
	 * from one call site, so a burst per interval, from the first line.
	 */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	elapsed_ms = (t1.tv_sec - t0.tv_sec) * 1000 +
		     (t1.tv_nsec - t0.tv_nsec) / 1000000;
	logged = daemon_log_count("bad ") - bad;
	cr_expect_geq(logged, LOG_RATELIMIT_BURST, "the flood is logged");
	cr_expect_leq(logged, LOG_RATELIMIT_BURST *
				      (elapsed_ms / LOG_RATELIMIT_INTERVAL_MS + 1),
		      "%ld lines in %ld ms: the log is not rate-limited",
		      logged, elapsed_ms);
	expect_unchanged(f.h, &before, "flood");
	still_serves(f.h, sock);
	close(sock);
	fixture_close(&f);
}

Test(bad_input, silent_connect_and_close_200_times_leaves_no_session_or_fd)
{
	struct fixture f = fixture_open(NULL);
	struct snapshot before = snapshot(f.h);
	int sock;

	for (int i = 0; i < 200; i++)
		close(raw_connect());
	/*
	 * The daemon accepts in order: once this one is past its HELLO, all
	 * 200 have been accepted, and each had a session to tear down.
	 */
	sock = raw_session();
	close(sock);
	cr_expect_eq(wait_for_stat(f.h, sessions, before.st.sessions),
		     before.st.sessions);
	/* Teardown closes the session's fds before it drops the count. */
	expect_unchanged(f.h, &before, "200 silent clients");
	still_serves(f.h, -1);
	fixture_close(&f);
}
