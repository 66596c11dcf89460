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

/* How long hmmu_connect() waits for the daemon, unless told otherwise. */
#define CONNECT_TIMEOUT_MS 5000

#define FIX_GONE                                                               \
	"restart it or check its log (journalctl -u hmmud)"

static void owner_init(struct hmmu *h);

static int64_t now_ms(void)
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

static int send_request(struct hmmu *h, unsigned op, uint64_t id,
			const void *req, size_t req_len, int fd)
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
	while (sendmsg(h->fd, &msg, MSG_NOSIGNAL) < 0) {
		if (errno != EINTR)
			return errno == EPIPE ? -ECONNRESET : -errno;
	}
	return 0;
}

/*
 * During hmmu_connect(): wait for the reply until the deadline. 0 once
 * something came, -ETIMEDOUT, or -errno.
 */
static int wait_readable(struct hmmu *h)
{
	struct pollfd pfd = { .fd = h->fd, .events = POLLIN };
	int64_t left;
	int n;

	if (!h->deadline_ms)
		return 0;
	do {
		left = h->deadline_ms - now_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n ? 0 : -ETIMEDOUT;
}

/*
 * Receive one reply and file it under its request. Called by the reading
 * thread without the lock; returns with the lock held.
 */
static void receive_one(struct hmmu *h)
{
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} in;
	union {
		char buf[CMSG_SPACE(HMMU_REPLY_MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = in.buf, .iov_len = sizeof(in.buf) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	int fds[HMMU_REPLY_MAX_FDS];
	unsigned nfds = 0;
	const char *reason;
	struct pending *p;
	size_t off;
	ssize_t n;
	int err = wait_readable(h);

	do
		n = err ? -1 : recvmsg(h->fd, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && !err && errno == EINTR);
	/* Only the replies of QUEUE_CREATE and BUFFER_CREATE bring fds (protocol.md). */
	for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c;
	     c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		     i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
			if (nfds < HMMU_REPLY_MAX_FDS)
				fds[nfds++] = fd;
			else
				close(fd);
		}
	}

	pthread_mutex_lock(&h->lock);
	if (n <= 0) {
		/* The failsafe watcher's -ESHUTDOWN, if it came first, stays. */
		if (!h->broken)
			h->broken = err ? err : n == 0 ? -ECONNRESET : -errno;
		return;
	}
	p = hmmu_proto_check(in.buf, (size_t)n, 1) < 0 ? NULL :
		find_pending(h, in.hdr.id);
	/* Fds go only to a request that asked for them, all or none. */
	if (p && p->fds && nfds == p->nfds && !(msg.msg_flags & MSG_CTRUNC) &&
	    in.hdr.status == 0 && in.hdr.op == p->op) {
		memcpy(p->fds, fds, nfds * sizeof(int));
		p->got_fds = true;
	} else {
		while (nfds)
			close(fds[--nfds]);
	}
	if (hmmu_proto_check(in.buf, (size_t)n, 1) < 0) {
		h->broken = -EPROTO;
		return;
	}
	if (!p)
		return; /* nobody waits for it (an answer to a broken message) */
	/* Op NONE: the daemon did not know the op (an older daemon). */
	if (in.hdr.op != p->op && in.hdr.op != HMMU_OP_NONE) {
		h->broken = -EPROTO;
		return;
	}
	/*
	 * A reason comes first (the decoder checked its NUL); the op's
	 * payload follows it. hmmu_set_detail() makes it safe to show.
	 */
	reason = hmmu_proto_reason(in.buf);
	if (reason)
		snprintf(p->reason, sizeof(p->reason), "%s", reason);
	off = hmmu_proto_payload_offset(in.buf);
	p->len = (size_t)n - off;
	if (p->len > p->cap)
		p->len = p->cap;
	if (p->len)
		memcpy(p->out, in.buf + off, p->len);
	p->status = in.hdr.status;
	p->done = true;
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
	struct pending p = { .op = op, .out = out, .cap = cap, .fds = fds,
			     .nfds = nfds };
	char gone[sizeof(h->fs.detail)] = "";
	int err;

	if (!hmmu_is_owner(h)) {
		explain_status(-ECHILD);
		return -ECHILD;
	}

	pthread_mutex_lock(&h->lock);
	if (h->broken) {
		/* Pages in device memory are home before this says so. */
		err = hmmu_failsafe_wait(h, h->broken);
		if (err == -ESHUTDOWN && h->fs.done)
			snprintf(gone, sizeof(gone), "%s", h->fs.detail);
		pthread_mutex_unlock(&h->lock);
		explain_status(err);
		if (gone[0])
			hmmu_set_detail("%s", gone);
		return err;
	}
	p.id = ++h->next_id;
	p.next = h->pending;
	h->pending = &p;
	pthread_mutex_unlock(&h->lock);

	err = send_request(h, op, p.id, req, req_len, fd);

	pthread_mutex_lock(&h->lock);
	while (!err && !p.done) {
		if (h->broken) {
			err = h->broken;
		} else if (!h->reading) {
			h->reading = true;
			pthread_mutex_unlock(&h->lock);
			receive_one(h); /* returns locked */
			h->reading = false;
			pthread_cond_broadcast(&h->cond);
		} else {
			pthread_cond_wait(&h->cond, &h->lock);
		}
	}
	if (err) {
		err = hmmu_failsafe_wait(h, err);
		if (err == -ESHUTDOWN && h->fs.done)
			snprintf(gone, sizeof(gone), "%s", h->fs.detail);
	}
	unlink_pending(h, &p);
	pthread_mutex_unlock(&h->lock);
	if (!err && p.reason[0])
		hmmu_set_detail("%s", p.reason);
	else
		explain_status(err ? err : p.status);
	if (gone[0])
		hmmu_set_detail("%s", gone);
	if (len)
		*len = err ? 0 : p.len;
	err = err ? err : p.status;
	/* Fds that came with a reply we do not take are not leaked. */
	if (p.got_fds && err) {
		for (unsigned i = 0; i < p.nfds; i++)
			close(fds[i]);
	} else if (fds && !err && !p.got_fds) {
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

	*ms = CONNECT_TIMEOUT_MS;
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

/*
 * Connect, by @deadline_ms (0: no deadline). A listener whose backlog is
 * full makes a non-blocking connect fail with EAGAIN: try again a little
 * later. The socket goes back to blocking mode, which the rest of the
 * library expects.
 */
static int open_socket(const char *path, int64_t deadline_ms, int *out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, flags, err = 0;

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
		if (deadline_ms && now_ms() >= deadline_ms) {
			err = -ETIMEDOUT;
			break;
		}
		poll(NULL, 0, 10);
		err = 0;
	}
	if (!err && ((flags = fcntl(fd, F_GETFL)) < 0 ||
		     fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0))
		err = -errno;
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
		deadline = now_ms() + timeout;

	/*
	 * A mapping of its own, not the heap: every call writes the handle,
	 * and a migration must never hold that write (libhmmu/migrate.c).
	 */
	h = mmap(NULL, hmmu_handle_bytes(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED)
		return -ENOMEM;
	err = open_socket(socket_path, deadline, &h->fd);
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

	if (!h)
		return;
	/*
	 * The failsafe watcher first (it polls the socket); then closing
	 * the socket is enough: the daemon releases what was ours.
	 */
	hmmu_failsafe_stop(h);
	close(h->fd);
	hmmu_buffers_free(h);
	while ((m = h->mirrors)) {
		h->mirrors = m->next;
		free(m);
	}
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
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
