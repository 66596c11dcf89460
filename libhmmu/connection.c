/* SPDX-License-Identifier: MIT */
/* The connection to hmmud: connect, handshake, and the request multiplexer. */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

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
 * Receive one reply and file it under its request. Called by the reading
 * thread without the lock; returns with the lock held.
 */
static void receive_one(struct hmmu *h)
{
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} in;
	struct pending *p;
	ssize_t n;

	do
		n = recv(h->fd, in.buf, sizeof(in.buf), 0);
	while (n < 0 && errno == EINTR);

	pthread_mutex_lock(&h->lock);
	if (n <= 0) {
		h->broken = n == 0 ? -ECONNRESET : -errno;
		return;
	}
	if (hmmu_proto_check(in.buf, (size_t)n, 1) < 0) {
		h->broken = -EPROTO;
		return;
	}
	p = find_pending(h, in.hdr.id);
	if (!p)
		return; /* nobody waits for it (an answer to a broken message) */
	/* Op NONE: the daemon did not know the op (an older daemon). */
	if (in.hdr.op != p->op && in.hdr.op != HMMU_OP_NONE) {
		h->broken = -EPROTO;
		return;
	}
	p->len = (size_t)n - sizeof(in.hdr);
	if (p->len > p->cap)
		p->len = p->cap;
	if (p->len)
		memcpy(p->out, &in.hdr + 1, p->len);
	p->status = in.hdr.status;
	p->done = true;
}

/* The daemon's answers whose errno alone does not say what happened. */
static void explain_status(int status)
{
	switch (status) {
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
	struct pending p = { .op = op, .out = out, .cap = cap };
	int err;

	if (getpid() != h->pid)
		return -ECHILD;

	pthread_mutex_lock(&h->lock);
	if (h->broken) {
		err = h->broken;
		pthread_mutex_unlock(&h->lock);
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
	unlink_pending(h, &p);
	pthread_mutex_unlock(&h->lock);
	if (!err)
		explain_status(p.status);
	if (len)
		*len = err ? 0 : p.len;
	return err ? err : p.status;
}

int hmmu_call(struct hmmu *h, unsigned op, const void *req, size_t req_len,
	      int fd, void *out, size_t cap)
{
	return hmmu_call_len(h, op, req, req_len, fd, out, cap, NULL);
}

static int open_socket(const char *path, int *out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	while (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = -errno;

		if (err == -EINTR)
			continue;
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}

HMMU_EXPORT int hmmu_connect(const char *socket_path, struct hmmu **out)
{
	struct hmmu_wire_hello hello = { .version = HMMU_PROTO_VERSION };
	struct hmmu_wire_hello rep = { 0, 0 };
	struct hmmu *h;
	int err;

	hmmu_clear_detail();
	if (!out)
		return -EINVAL;
	if (!socket_path)
		socket_path = getenv("HMMU_SOCKET");
	if (!socket_path || !*socket_path)
		socket_path = HMMU_DEFAULT_SOCKET;

	/*
	 * A mapping of its own, not the heap: every call writes the handle,
	 * and a migration must never hold that write (libhmmu/migrate.c).
	 */
	h = mmap(NULL, hmmu_handle_bytes(), PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (h == MAP_FAILED)
		return -ENOMEM;
	err = open_socket(socket_path, &h->fd);
	if (err) {
		hmmu_set_detail("cannot connect to hmmud at %s", socket_path);
		munmap(h, hmmu_handle_bytes());
		return err;
	}
	h->pid = getpid();
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);

	err = hmmu_call(h, HMMU_OP_HELLO, &hello, sizeof(hello), -1, &rep,
			sizeof(rep));
	if (err) {
		if (err == -EPROTONOSUPPORT)
			hmmu_set_detail("hmmud speaks protocol version %u, "
					"this libhmmu speaks %u",
					rep.version, HMMU_PROTO_VERSION);
		hmmu_disconnect(h);
		return err < 0 ? err : -EPROTO;
	}
	*out = h;
	return 0;
}

HMMU_EXPORT void hmmu_disconnect(struct hmmu *h)
{
	struct hmmu_mirror *m;

	if (!h)
		return;
	/* Closing the socket is enough: the daemon releases what was ours. */
	close(h->fd);
	while ((m = h->mirrors)) {
		h->mirrors = m->next;
		free(m);
	}
	pthread_cond_destroy(&h->cond);
	pthread_mutex_destroy(&h->lock);
	munmap(h, hmmu_handle_bytes());
}

size_t hmmu_handle_bytes(void)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);

	return (sizeof(struct hmmu) + page - 1) / page * page;
}
