/* SPDX-License-Identifier: MIT */
/*
 * hmmu_connect() and the errors of a connection, against stand-ins for
 * hmmud on a socket of the test's own: a listener that never answers, one
 * of another protocol version, one that answers with a reason. What the
 * caller learns is the errno and hmmu_error_detail(); no real daemon runs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hmmu/hmmu.h>

#include "common/proto.h"

/* What the stand-in does with the requests it reads. */
enum act {
	NEVER_ACCEPT, /* connections wait in the backlog */
	SILENT,	      /* accept, read, never answer */
	OLD_VERSION,  /* answer HELLO as a protocol-2 daemon does */
	RELEASE,      /* answer HELLO with a release; error replies with a reason */
	SHORT_HELLO,  /* answer HELLO with the 8-byte hello alone */
};

struct stand_in {
	char dir[64];
	char path[108];
	int listen_fd;
	enum act act;
	pthread_t thread;
	int running;
};

union msg {
	struct hmmu_wire_hdr hdr;
	char buf[HMMU_MSG_MAX];
};

#define REASON "the stand-in refuses:\x01 a control character"

static void answer(int fd, const struct hmmu_wire_hdr *req, enum act act)
{
	union msg out;
	char *p = (char *)(&out.hdr + 1);
	size_t len = 0;
	int status = 0;
	uint16_t flags = HMMU_MSG_REPLY;

	memset(&out, 0, sizeof(out));
	if (req->op == HMMU_OP_HELLO && act == OLD_VERSION) {
		struct hmmu_wire_hello hello = { .version = 2 };

		memcpy(p, &hello, sizeof(hello));
		len = sizeof(hello);
		status = -EPROTONOSUPPORT;
	} else if (req->op == HMMU_OP_HELLO) {
		struct hmmu_wire_hello_reply rep = {
			.version = HMMU_PROTO_VERSION,
			.release = "9.8.7 (git stand-in)",
		};

		len = act == SHORT_HELLO ? sizeof(struct hmmu_wire_hello) :
					    sizeof(rep);
		memcpy(p, &rep, len);
	} else {
		/* Every other request fails, and says why. */
		len = HMMU_REASON_WIRE_SIZE(strlen(REASON));
		memcpy(p, REASON, strlen(REASON));
		flags |= HMMU_MSG_REASON;
		status = -EIO;
	}
	out.hdr = (struct hmmu_wire_hdr){
		.magic = HMMU_PROTO_MAGIC,
		.op = req->op,
		.flags = flags,
		.len = (uint32_t)(sizeof(out.hdr) + len),
		.status = status,
		.id = req->id,
	};
	(void)!send(fd, out.buf, sizeof(out.hdr) + len, MSG_NOSIGNAL);
}

static void *serve(void *arg)
{
	struct stand_in *s = arg;
	union msg in;
	ssize_t n;
	int fd = accept(s->listen_fd, NULL, NULL);

	if (fd < 0)
		return NULL;
	while ((n = recv(fd, in.buf, sizeof(in.buf), 0)) >=
	       (ssize_t)sizeof(in.hdr)) {
		if (s->act != SILENT)
			answer(fd, &in.hdr, s->act);
	}
	close(fd);
	return NULL;
}

static void stand_in_start(struct stand_in *s, enum act act)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	memset(s, 0, sizeof(*s));
	strcpy(s->dir, "/tmp/hmmu-connect-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir));
	snprintf(s->path, sizeof(s->path), "%s/hmmud.sock", s->dir);
	strcpy(addr.sun_path, s->path);
	s->act = act;
	s->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(s->listen_fd, 0);
	cr_assert_eq(bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)),
		     0);
	cr_assert_eq(listen(s->listen_fd, 4), 0);
	if (act != NEVER_ACCEPT) {
		cr_assert_eq(pthread_create(&s->thread, NULL, serve, s), 0);
		s->running = 1;
	}
}

/* After the client closed its end: the thread then sees EOF. */
static void stand_in_stop(struct stand_in *s)
{
	if (s->running)
		pthread_join(s->thread, NULL);
	close(s->listen_fd);
	unlink(s->path);
	rmdir(s->dir);
}

TestSuite(connect, .timeout = 30);

Test(connect, a_listener_that_never_accepts_times_out_naming_the_socket)
{
	struct stand_in s;
	struct hmmu *h = NULL;
	int err;

	stand_in_start(&s, NEVER_ACCEPT);
	setenv("HMMU_CONNECT_TIMEOUT_MS", "200", 1);
	err = hmmu_connect(s.path, &h);
	cr_expect_eq(err, -ETIMEDOUT, "%d (%s)", err, strerror(-err));
	cr_expect_null(h);
	cr_expect(strstr(hmmu_error_detail(), s.path) &&
			  strstr(hmmu_error_detail(), "did not answer within 200 ms"),
		  "the detail names the socket and the wait: '%s'",
		  hmmu_error_detail());
	stand_in_stop(&s);
}

Test(connect, a_peer_that_accepts_and_never_answers_times_out)
{
	struct stand_in s;
	struct hmmu *h = NULL;
	int err;

	stand_in_start(&s, SILENT);
	setenv("HMMU_CONNECT_TIMEOUT_MS", "200", 1);
	err = hmmu_connect(s.path, &h);
	cr_expect_eq(err, -ETIMEDOUT, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), s.path) &&
			  strstr(hmmu_error_detail(), "200 ms"),
		  "'%s'", hmmu_error_detail());
	stand_in_stop(&s);
}

Test(connect, a_timeout_that_is_not_a_number_is_einval_naming_the_variable)
{
	static const char *const bad[] = { "abc", "-1", "200ms", " 5",
					   "99999999999" };
	struct hmmu *h = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int err;

		setenv("HMMU_CONNECT_TIMEOUT_MS", bad[i], 1);
		err = hmmu_connect("/nonexistent/hmmud.sock", &h);
		cr_expect_eq(err, -EINVAL, "'%s': %d", bad[i], err);
		cr_expect(strstr(hmmu_error_detail(), "HMMU_CONNECT_TIMEOUT_MS"),
			  "'%s': '%s'", bad[i], hmmu_error_detail());
	}
	cr_expect_null(h);
}

Test(connect, no_socket_says_how_to_start_hmmud)
{
	struct hmmu *h = NULL;
	int err = hmmu_connect("/nonexistent/hmmud.sock", &h);

	cr_expect_eq(err, -ENOENT);
	cr_expect(strstr(hmmu_error_detail(), "/nonexistent/hmmud.sock") &&
			  strstr(hmmu_error_detail(), "systemctl"),
		  "'%s'", hmmu_error_detail());
}

Test(connect, a_daemon_of_another_protocol_version_is_named)
{
	struct stand_in s;
	struct hmmu *h = NULL;
	char want[64];
	int err;

	stand_in_start(&s, OLD_VERSION);
	err = hmmu_connect(s.path, &h);
	cr_expect_eq(err, -EPROTONOSUPPORT, "%d (%s)", err, strerror(-err));
	snprintf(want, sizeof(want), "speaks %u", HMMU_PROTO_VERSION);
	cr_expect(strstr(hmmu_error_detail(), "protocol version 2") &&
			  strstr(hmmu_error_detail(), want),
		  "both versions: '%s'", hmmu_error_detail());
	stand_in_stop(&s);
}

Test(connect, the_daemon_names_its_release_in_the_handshake)
{
	struct stand_in s;
	struct hmmu *h;

	stand_in_start(&s, RELEASE);
	cr_assert_eq(hmmu_connect(s.path, &h), 0);
	cr_expect_str_eq(hmmu_daemon_version(h), "9.8.7 (git stand-in)");
	cr_expect_str_eq(hmmu_error_detail(), "", "a success leaves no detail");
	hmmu_disconnect(h);
	stand_in_stop(&s);

	/* A daemon that sends no release: "", not garbage. */
	stand_in_start(&s, SHORT_HELLO);
	cr_assert_eq(hmmu_connect(s.path, &h), 0);
	cr_expect_str_eq(hmmu_daemon_version(h), "");
	hmmu_disconnect(h);
	stand_in_stop(&s);
	cr_expect_str_eq(hmmu_daemon_version(NULL), "");
}

Test(connect, a_reason_becomes_the_detail_without_its_control_characters)
{
	struct hmmu_stats st;
	struct stand_in s;
	struct hmmu *h;
	int err;

	stand_in_start(&s, RELEASE);
	cr_assert_eq(hmmu_connect(s.path, &h), 0);
	err = hmmu_stats(h, &st, sizeof(st));
	cr_expect_eq(err, -EIO);
	cr_expect_str_eq(hmmu_error_detail(),
			 "the stand-in refuses:? a control character");
	/* The next call clears it first; a failure of its own sets it anew. */
	cr_expect_eq(hmmu_device_count(NULL), -EINVAL);
	cr_expect_str_eq(hmmu_error_detail(), "");
	hmmu_disconnect(h);
	stand_in_stop(&s);
}
