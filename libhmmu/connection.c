/* SPDX-License-Identifier: MIT */
/* The connection to hmmud: connect, handshake, and the request multiplexer. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FIX_GONE                                                               \
	"restart it or check its log (journalctl -u hmmud)"

static void owner_init(struct hmmu *h);

int64_t hmmu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct pending *find_pending(struct hmmu *h, uint64_t id)
{
	for (struct pending *p = h->pending; p; p = p->next)
		if (p->id == id)
			return p;
	return NULL;
}

static void unlink_pending(struct hmmu *h, struct pending *p)
{
	for (struct pending **pp = &h->pending; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

/*
 * Wait until @sock shows @events or @deadline_ms (CLOCK_MONOTONIC) passes;
 * no deadline (0): at once. 0, -ETIMEDOUT, or -errno.
 */
static int wait_ready(int sock, short events, int64_t deadline_ms)
{
	struct pollfd pfd = { .fd = sock, .events = events };
	int64_t left;
	int n;

	if (!deadline_ms)
		return 0;
	do {
		left = deadline_ms - hmmu_now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

/*
 * Send a request on @sock, by @deadline_ms if the socket does not block
 * (a reconnection's). 0, -ECONNRESET if the daemon hung up, or -errno.
 */
static int send_request(int sock, int64_t deadline_ms, unsigned op,
			uint64_t id, const void *req, size_t req_len, int fd)
{
	struct hmmu_wire_hdr hdr = {
		.magic = HMMU_PROTO_MAGIC,
		.op = (uint16_t)op,
		.len = (uint32_t)(sizeof(hdr) + req_len),
		.id = id,
	};
	struct iovec iov[2] = {
		{ .iov_base = &hdr, .iov_len = sizeof(hdr) },
		{ .iov_base = (void *)req, .iov_len = req_len },
	};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = req_len ? 2 : 1 };
	int err;

	if (fd >= 0) {
		struct cmsghdr *c;

		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	while (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) {
		err = -errno;
		/* How kernels tell a sender that its peer closed. */
		if (err == -EPIPE || err == -ECONNREFUSED || err == -ENOTCONN)
			err = -ECONNRESET;
		if (err == -EINTR)
			continue;
		if (err != -EAGAIN || !deadline_ms)
			return err;
		err = wait_ready(sock, POLLOUT, deadline_ms);
		if (err)
			return err;
	}
	return 0;
}

/* One message as it came off the socket. */
struct message {
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} in;
	size_t len;
	bool valid; /* the decoder took it (hmmu_proto_check()) */
	bool ctrunc;
	unsigned nfds;
	int fds[HMMU_REPLY_MAX_FDS];
};

/*
 * One message from @sock, by @deadline_ms (0: none). 0, -ECONNRESET if
 * the daemon hung up, -ETIMEDOUT, or -errno.
 */
static int recv_message(int sock, int64_t deadline_ms, struct message *m)
{
	union {
		char buf[CMSG_SPACE(HMMU_REPLY_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = m->in.buf,
			     .iov_len = sizeof(m->in.buf) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	ssize_t n;
	int err = wait_ready(sock, POLLIN, deadline_ms);

	if (err)
		return err;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n == 0 || errno == ECONNRESET ? -ECONNRESET : -errno;
	m->nfds = 0;
	/* Only the replies of QUEUE_CREATE and BUFFER_CREATE bring fds (protocol.md). */
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		     i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (m->nfds < HMMU_REPLY_MAX_FDS)
				m->fds[m->nfds++] = fd;
			else
				close(fd);
		}
	}
	m->len = (size_t)n;
	m->valid = hmmu_proto_check(m->in.buf, m->len, 1) == 0;
	m->ctrunc = msg.msg_flags & MSG_CTRUNC;
	return 0;
}

/*
 * File reply @m under @p, the request of its id (NULL: nobody waits for
 * it). 0, or -EPROTO: the connection is unusable.
 */
static int file_reply(struct pending *p, struct message *m)
{
	const char *reason;
	size_t off;

	if (!m->valid)
		p = NULL;
	/* Fds go only to a request that asked for them, all or none. */
	if (p && p->fds && m->nfds == p->nfds && !m->ctrunc &&
	    m->in.hdr.status == 0 && m->in.hdr.op == p->op) {
		memcpy(p->fds, m->fds, m->nfds * sizeof(int));
		p->got_fds = true;
	} else {
		while (m->nfds)
			close(m->fds[--m->nfds]);
	}
	if (!m->valid)
		return -EPROTO;
	if (!p)
		return 0; /* an answer to a broken message */
	/* Op NONE: the daemon did not know the op (an older daemon). */
	if (m->in.hdr.op != p->op && m->in.hdr.op != HMMU_OP_NONE)
		return -EPROTO;
	/*
	 * A reason comes first (the decoder checked its NUL); the op's
	 * payload follows it. hmmu_set_detail() makes it safe to show.
	 */
	reason = hmmu_proto_reason(m->in.buf);
	if (reason)
		snprintf(p->reason, sizeof(p->reason), "%s", reason);
	off = hmmu_proto_payload_offset(m->in.buf);
	p->len = m->len - off;
	if (p->len > p->cap)
		p->len = p->cap;
	if (p->len)
		memcpy(p->out, m->in.buf + off, p->len);
	p->status = m->in.hdr.status;
	p->done = true;
	return 0;
}

/*
 * Lock held: @p, a successful MIRROR_(UN)REGISTER, changed what a
 * reconnection must make again. Noted here, where the reply is filed, so
 * that no reconnection can come between the reply and the note.
 */
static void note_registration(struct hmmu *h, const struct pending *p)
{
	struct hmmu_wire_register_ext r;

	if (p->status != 0 || (p->op != HMMU_OP_MIRROR_REGISTER &&
			       p->op != HMMU_OP_MIRROR_UNREGISTER))
		return;
	/* UNREGISTER's request is the mirror id alone: the rest reads 0. */
	memset(&r, 0, sizeof(r));
	memcpy(&r, p->req, p->req_len < sizeof(r) ? p->req_len : sizeof(r));
	for (struct hmmu_mirror *m = h->mirrors; m; m = m->next) {
		if (m->id != r.base.mirror)
			continue;
		m->registered = p->op == HMMU_OP_MIRROR_REGISTER;
		m->coarse = m->registered && (r.flags & HMMU_REGISTER_COARSE);
	}
}

/*
 * Lock held: if @p made a mirror, buffer or queue, its id may be named
 * after a restart, by a request sent again or a buffer the successor lost:
 * noted in h->max_id, which the reconnection keeps the successor from
 * giving out again. The three replies start with the id.
 */
static void note_id(struct hmmu *h, const struct pending *p)
{
	uint64_t id;

	if (p->status != 0 || p->len < sizeof(id) ||
	    (p->op != HMMU_OP_MIRROR_CREATE && p->op != HMMU_OP_BUFFER_CREATE &&
	     p->op != HMMU_OP_QUEUE_CREATE))
		return;
	memcpy(&id, p->out, sizeof(id));
	if (h->max_id < id)
		h->max_id = id;
}

/*
 * Receive one reply on @sock and file it under its request. Called by the
 * reading thread without the lock; returns with the lock held: 0, or
 * -ECONNRESET if the daemon hung up (for the caller to see to). Any other
 * failure breaks the connection (h->broken).
 */
static int receive_one(struct hmmu *h, int sock)
{
	struct message m;
	struct pending *p;
	int err = recv_message(sock, h->deadline_ms, &m);

	pthread_mutex_lock(&h->lock);
	if (err == -ECONNRESET)
		return err;
	if (!err) {
		p = m.valid ? find_pending(h, m.in.hdr.id) : NULL;
		err = file_reply(p, &m);
		if (!err && p) {
			p->restarts = h->restarts;
			note_registration(h, p);
			note_id(h, p);
		}
	}
	/* The failsafe watcher's -ESHUTDOWN, if it came first, stays. */
	if (err && !h->broken)
		h->broken = err;
	return 0;
}

int hmmu_send_pending(int sock, int64_t deadline_ms, const struct pending *p)
{
	return send_request(sock, deadline_ms, p->op, p->id, p->req,
			    p->req_len, p->fd);
}

int hmmu_call_direct(int sock, int64_t deadline_ms, struct pending *p)
{
	struct message m;
	int err = send_request(sock, deadline_ms, p->op, p->id, p->req,
			       p->req_len, p->fd);

	if (!err)
		err = recv_message(sock, deadline_ms, &m);
	if (err)
		return err;
	/* Nothing else is in flight: a reply of another id is wrong too. */
	err = file_reply(m.valid && m.in.hdr.id == p->id ? p : NULL, &m);
	return err ? err : p->done ? 0 : -EPROTO;
}

/*
 * An error of the connection itself, or the daemon's answer when it gave no
 * reason: what the errno alone does not say.
 */
static void explain_status(int status)
{
	switch (status) {
	case -ECHILD:
		hmmu_set_detail("this handle belongs to the parent process; "
				"after fork(), call hmmu_connect() again in the "
				"child");
		break;
	case -ECONNRESET:
	case -EPIPE:
	case -ESHUTDOWN:
		hmmu_set_detail("hmmud went away (connection reset): " FIX_GONE);
		break;
	case -EPROTO:
		hmmu_set_detail("hmmud's reply made no sense (protocol error), "
				"so this connection is unusable: connect again; "
				"are hmmud and libhmmu of one release?");
		break;
	case -EDQUOT:
		hmmu_set_detail("hmmud refused: this user reached one of its "
				"limits (connections, mirrors, page copies or "
				"device memory; see hmmud --limit and its log)");
		break;
	case -EUSERS:
		hmmu_set_detail("hmmud refused: it has as many connections "
				"open as it allows (hmmud --limit connections)");
		break;
	case -EBUSY:
		hmmu_set_detail("a page of the range is in the middle of a "
				"migration, or the mirror is already registered");
		break;
	case -ETIMEDOUT:
		hmmu_set_detail("the command ran past hmmud's limit "
				"(hmmud --limit job-seconds)");
		break;
	case -ESRCH:
		hmmu_set_detail("hmmud no longer serves this connection: the "
				"process exited or exec'd since it registered");
		break;
	default:
		break;
	}
}

int hmmu_call_len(struct hmmu *h, unsigned op, const void *req,
		  size_t req_len, int fd, void *out, size_t cap, size_t *len)
{
	return hmmu_call_fds(h, op, req, req_len, fd, out, cap, len, NULL, 0);
}

int hmmu_call_fds(struct hmmu *h, unsigned op, const void *req,
		  size_t req_len, int fd, void *out, size_t cap, size_t *len,
		  int *fds, unsigned nfds)
{
	struct pending p = { .op = op, .req = req, .req_len = req_len,
			     .fd = fd, .out = out, .cap = cap, .fds = fds,
			     .nfds = nfds };
	int err = hmmu_request(h, &p);

	if (len)
		*len = p.len;
	return err;
}

/*
 * Lock held: a call fails with @err. Pages in device memory are home before
 * this says so; what to say instead of explain_status()'s sentence goes to
 * @gone ("" if nothing).
 */
static int call_failed(struct hmmu *h, int err, char *gone, size_t size)
{
	err = hmmu_failsafe_wait(h, err);
	if (err == -ESHUTDOWN && h->fs.done)
		snprintf(gone, size, "%s", h->fs.detail);
	else if (err == h->broken && h->why[0])
		snprintf(gone, size, "%s; %s", h->why,
			 err == -ECONNRESET ? FIX_GONE :
					      "this connection has no device "
					      "any more: connect again");
	return err;
}

void hmmu_lock_settled(struct hmmu *h)
{
	pthread_mutex_lock(&h->lock);
	/* In a child forked during one, no thread of ours is at it. */
	while (h->reconnecting && hmmu_is_owner(h))
		pthread_cond_wait(&h->cond, &h->lock);
}

/* Lock held, h->broken set: drop the lock; the call fails, saying why. */
static int fail_broken(struct hmmu *h)
{
	char gone[HMMU_DETAIL_MAX] = "";
	int err = call_failed(h, h->broken, gone, sizeof(gone));

	pthread_mutex_unlock(&h->lock);
	explain_status(err);
	if (gone[0])
		hmmu_set_detail("%s", gone);
	return err;
}

int hmmu_connection_check(struct hmmu *h)
{
	struct pollfd p;

	hmmu_lock_settled(h);
	p = (struct pollfd){ .fd = h->fd, .events = POLLRDHUP };
	if (!h->broken && poll(&p, 1, 0) == 1 &&
	    (p.revents & (POLLHUP | POLLRDHUP | POLLERR)))
		hmmu_connection_lost(h, h->restarts, -ECONNRESET, false);
	if (h->broken)
		return fail_broken(h);
	pthread_mutex_unlock(&h->lock);
	return 0;
}

int hmmu_request(struct hmmu *h, struct pending *p)
{
	char gone[HMMU_DETAIL_MAX] = "";
	unsigned seen;
	int err, sock;

	if (!hmmu_is_owner(h)) {
		explain_status(-ECHILD);
		return -ECHILD;
	}

	hmmu_lock_settled(h);
	if (h->broken)
		return fail_broken(h);
	p->id = ++h->next_id;
	p->next = h->pending;
	h->pending = p;
	sock = h->fd;
	seen = h->restarts;
	h->senders++;
	pthread_mutex_unlock(&h->lock);

	err = send_request(sock, 0, p->op, p->id, p->req, p->req_len, p->fd);

	pthread_mutex_lock(&h->lock);
	h->senders--;
	pthread_cond_broadcast(&h->cond); /* a reconnection may wait for it */
	/* Sent or not, the request is listed: a reconnection sends it. */
	if (err == -ECONNRESET)
		err = hmmu_connection_lost(h, seen, err, false);
	/*
	 * Until the reply comes: one thread reads for all. A reconnection
	 * may come in between; then the request went again on the new
	 * connection, and its reply comes there. Nobody leaves (and unlinks
	 * its entry) while one is under way: it walks the list unlocked.
	 */
	for (;;) {
		if (h->reconnecting) {
			pthread_cond_wait(&h->cond, &h->lock);
		} else if (err || p->done) {
			break;
		} else if (h->broken) {
			err = h->broken;
		} else if (!h->reading) {
			h->reading = true;
			sock = h->fd;
			seen = h->restarts;
			pthread_mutex_unlock(&h->lock);
			err = receive_one(h, sock); /* returns locked */
			h->reading = false;
			pthread_cond_broadcast(&h->cond);
			if (err)
				err = hmmu_connection_lost(h, seen, err, false);
		} else {
			pthread_cond_wait(&h->cond, &h->lock);
		}
	}
	if (err)
		err = call_failed(h, err, gone, sizeof(gone));
	unlink_pending(h, p);
	pthread_mutex_unlock(&h->lock);
	if (!err && p->reason[0])
		hmmu_set_detail("%s", p->reason);
	else
		explain_status(err ? err : p->status);
	if (gone[0])
		hmmu_set_detail("%s", gone);
	if (err)
		p->len = 0;
	err = err ? err : p->status;
	/* Fds that came with a reply we do not take are not leaked. */
	if (p->got_fds && err) {
		for (unsigned i = 0; i < p->nfds; i++) {
			close(p->fds[i]);
			p->fds[i] = -1;
		}
	} else if (p->fds && !err && !p->got_fds) {
		err = -EPROTO;
	}
	return err;
}

int hmmu_call(struct hmmu *h, unsigned op, const void *req, size_t req_len,
	      int fd, void *out, size_t cap)
{
	return hmmu_call_len(h, op, req, req_len, fd, out, cap, NULL);
}

/*
 * $HMMU_CONNECT_TIMEOUT_MS: unset or empty for the default, else decimal
 * digits, 0 (wait as long as it takes) to INT_MAX ms; -EINVAL for anything
 * else.
 */
static int connect_timeout(int *ms)
{
	const char *env = getenv("HMMU_CONNECT_TIMEOUT_MS");
	char *end;
	long v;

	*ms = HMMU_CONNECT_TIMEOUT_MS;
	if (!env || !*env)
		return 0;
	errno = 0;
	v = strtol(env, &end, 10);
	if (*env < '0' || *env > '9' || *end || errno || v > INT_MAX) {
		hmmu_set_detail("HMMU_CONNECT_TIMEOUT_MS='%.32s' is not a "
				"number of milliseconds (0 to wait forever)",
				env);
		return -EINVAL;
	}
	*ms = (int)v;
	return 0;
}

/* The connect(2) errors, for a person. */
static void explain_connect(int err, const char *path, int timeout_ms)
{
	switch (err) {
	case -ENOENT:
		hmmu_set_detail("no socket at %s: is hmmud running (systemctl "
				"start hmmud.socket)? Or set $HMMU_SOCKET", path);
		break;
	case -ECONNREFUSED:
		hmmu_set_detail("nobody listens on %s: hmmud is not running "
				"(systemctl start hmmud)", path);
		break;
	case -EACCES:
	case -EPERM:
		hmmu_set_detail("this user may not connect to %s: the socket is "
				"open to group hmmu (docs/operations.md)", path);
		break;
	case -ENAMETOOLONG:
		hmmu_set_detail("the socket path %.64s... is longer than a Unix "
				"socket address holds (%zu bytes)", path,
				sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
		break;
	case -ETIMEDOUT: /* its backlog stayed full */
		hmmu_set_detail("hmmud at %s did not answer within %d ms", path,
				timeout_ms);
		break;
	default:
		hmmu_set_detail("cannot connect to hmmud at %s: %s", path,
				strerror(-err));
		break;
	}
}

int hmmu_socket_block(int sock)
{
	int flags = fcntl(sock, F_GETFL);

	if (flags < 0 || fcntl(sock, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/*
 * Connect, by @deadline_ms (0: no deadline). A listener whose backlog is
 * full makes a non-blocking connect fail with EAGAIN: try again a little
 * later. The rest of the library expects a blocking socket: @block, or
 * hmmu_socket_block() once done with it (a reconnection).
 */
int hmmu_open_socket(const char *path, int64_t deadline_ms, bool block,
		     int *out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, err = 0;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		err = -errno;
		if (err == -EINTR)
			continue;
		if (err != -EAGAIN)
			break;
		if (deadline_ms && hmmu_now_ms() >= deadline_ms) {
			err = -ETIMEDOUT;
			break;
		}
		poll(NULL, 0, 10);
		err = 0;
	}
	if (!err && block)
		err = hmmu_socket_block(fd);
	if (err) {
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

/* HELLO, and what its reply says: 0 or -errno, with the detail set. */
static int hello(struct hmmu *h, const char *path, int timeout_ms)
{
	struct hmmu_wire_hello req = { .version = HMMU_PROTO_VERSION };
	struct hmmu_wire_hello_reply rep;
	size_t got = 0;
	int err;

	memset(&rep, 0, sizeof(rep));
	err = hmmu_call_len(h, HMMU_OP_HELLO, &req, sizeof(req), -1, &rep,
			    sizeof(rep), &got);
	rep.release[sizeof(rep.release) - 1] = '\0';
	if (err == -ETIMEDOUT)
		hmmu_set_detail("hmmud at %s did not answer within %d ms",
				path, timeout_ms);
	else if (err == -EPROTONOSUPPORT)
		hmmu_set_detail("hmmud at %s speaks protocol version %u%s%s%s, "
				"this libhmmu %s speaks %u: use a libhmmu of "
				"hmmud's release", path, rep.version,
				rep.release[0] ? " (hmmud " : "", rep.release,
				rep.release[0] ? ")" : "", HMMU_VERSION,
				HMMU_PROTO_VERSION);
	else if (err == -ECONNRESET)
		hmmu_set_detail("hmmud at %s hung up during the handshake: "
				"check its log (out of file descriptors?)", path);
	if (err)
		return err < 0 ? err : -EPROTO;
	if (got > offsetof(struct hmmu_wire_hello_reply, release))
		memcpy(h->release, rep.release, sizeof(h->release));
	/* An older daemon's reply ends before it: it keeps no state. */
	if (got == sizeof(rep))
		h->incarnation = rep.incarnation;
	return 0;
}

HMMU_EXPORT int hmmu_connect(const char *socket_path, struct hmmu **out)
{
	int64_t deadline = 0;
	struct hmmu *h;
	int err, timeout;

	hmmu_clear_detail();
	if (!out)
		return -EINVAL;
	if (!socket_path)
		socket_path = getenv("HMMU_SOCKET");
	if (!socket_path || !*socket_path)
		socket_path = HMMU_DEFAULT_SOCKET;
	err = connect_timeout(&timeout);
	if (err)
		return err;
	if (timeout)
		deadline = hmmu_now_ms() + timeout;

	/*
	 * A mapping of its own, not the heap: every call writes the handle,
	 * and a migration must never hold that write (libhmmu/migrate.c).
	 */
	h = mmap(NULL, hmmu_handle_bytes(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED)
		return -ENOMEM;
	err = hmmu_open_socket(socket_path, deadline, true, &h->fd);
	if (err) {
		explain_connect(err, socket_path, timeout);
		munmap(h, hmmu_handle_bytes());
		return err;
	}
	owner_init(h);
	hmmu_failsafe_init(h);
	h->deadline_ms = deadline;
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);

	err = hello(h, socket_path, timeout);
	if (err) {
		hmmu_disconnect(h);
		return err;
	}
	h->deadline_ms = 0;
	/* Fits: hmmu_open_socket() checked. */
	strcpy(h->path, socket_path);
	h->timeout_ms = timeout;
	*out = h;
	return 0;
}

HMMU_EXPORT const char *hmmu_daemon_version(struct hmmu *h)
{
	return h ? h->release : "";
}

HMMU_EXPORT void hmmu_disconnect(struct hmmu *h)
{
	struct hmmu_mirror *m;
	bool owner;

	if (!h)
		return;
	/*
	 * The failsafe watcher first (it polls the socket); then closing
	 * the socket is enough: the daemon releases what was ours. In a
	 * forked child, only the child's copies go: the watcher is the
	 * parent's thread, and its stop eventfd is shared with the parent,
	 * whose watcher a write would stop. Nor is h->lock taken there: a
	 * thread of the parent may have held it at the fork.
	 */
	owner = hmmu_is_owner(h);
	if (owner)
		hmmu_failsafe_stop(h);
	else
		hmmu_failsafe_forget(h);
	close(h->fd);
	hmmu_buffers_free(h);
	while ((m = h->mirrors)) {
		h->mirrors = m->next;
		free(m);
	}
	if (owner) {
		pthread_cond_destroy(&h->cond);
		pthread_mutex_destroy(&h->lock);
	}
	munmap(h, hmmu_handle_bytes());
}

static size_t handle_own_bytes(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct hmmu) + page - 1) / page * page;
}

size_t hmmu_handle_bytes(void)
{
	return handle_own_bytes() + (size_t)sysconf(_SC_PAGESIZE);
}

bool hmmu_is_owner(const struct hmmu *h)
{
	return h->owner ? *h->owner != 0 : getpid() == h->pid;
}

/* The owner page, last in the handle's mapping: see struct hmmu. */
static void owner_init(struct hmmu *h)
{
	uint32_t *word = (uint32_t *)((char *)h + handle_own_bytes());

	h->pid = getpid();
	h->owner = NULL;
	if (madvise(word, (size_t)sysconf(_SC_PAGESIZE), MADV_WIPEONFORK) == 0) {
		*word = 1;
		h->owner = word;
	}
}
