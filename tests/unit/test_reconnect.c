/* SPDX-License-Identifier: MIT */
/*
 * libhmmu's side of a daemon restart (docs/protocol.md §11), against a
 * stand-in for hmmud on a socket of the test's own: it announces an
 * incarnation in HELLO, answers what the library asks, hangs up when the
 * test says (with requests in flight, or idle), and announces the same
 * incarnation or another on the connection that follows. It logs every
 * request, so a test can check what the library sent again, and the
 * MIRROR_RESTOREs (ids, devices, flags) that came first.
 *
 * What the caller sees is the proof: with the same incarnation, the calls
 * in flight return the successor's answers, no error; otherwise they fail
 * (-ESHUTDOWN, -ECONNRESET) at once or within the connect timeout, with a
 * detail that says why. No real daemon runs.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hmmu/hmmu.h>

#include "common/failsafe.h"
#include "common/proto.h"
#include "common/qring.h"

#define CONNS 4	   /* connections a test may script */
#define LOG_MAX 256 /* requests the stand-in remembers */
#define INCARNATION 0x1234abcd5678ef01ull

struct request {
	unsigned conn; /* which connection it came on: 0, 1, ... */
	struct hmmu_wire_hdr hdr;
	size_t len; /* of the payload */
	char payload[HMMU_MSG_MAX];
	/* The fd that came with it, if one did: what it was. */
	bool fd;
	ino_t fd_ino;
	off_t fd_size;
	int fd_seals;
};

#define BUFFERS_MAX 8 /* buffers the stand-in holds, all connections */

/* A buffer the stand-in holds: the memfd it made, or was handed back. */
struct held_buffer {
	unsigned conn;
	uint64_t id;
	int fd;
};

struct stand_in {
	char dir[64];
	char path[108];
	int listen_fd;
	pthread_t thread;

	/* The script, set before the client connects. */
	uint64_t incarnation[CONNS]; /* announced on each connection */
	uint64_t devfile[CONNS];     /* FAILSAFE's generation on each */
	pid_t daemon_pid[CONNS];     /* whose pidfd FAILSAFE sends */
	bool silent[CONNS];	     /* accept, read, never answer */
	unsigned hang_op;	     /* on connection 0: hang up once... */
	unsigned hang_count;	     /* ...this many such requests came */
	bool gone_after_hang_up;     /* and stop listening then */
	int restore_status;	     /* MIRROR_RESTORE's answer */
	int prepare_status[CONNS];   /* MIGRATE_PREPARE's, on each */
	unsigned restore_dies;	     /* this connection (not 0) hangs up at
					a MIRROR_RESTORE: dies in turn */
	int buffer_restore_status;   /* BUFFER_RESTORE's answer... */
	uint64_t buffer_refused;     /* ...for this buffer id (0: any) */
	bool buffer_restore_unknown; /* answered as by an older hmmud */
	int reserve_status;	     /* RESERVE_IDS's answer */
	bool reserve_unknown;	     /* answered as by an older hmmud */
	/*
	 * Registration needs the userfaultfd on connection 0, which dies
	 * when it comes with it; the probe sent again is refused on 1.
	 */
	bool probe_touched;

	bool started;
	atomic_bool stopping;

	/* What happened, under lock. */
	pthread_mutex_t lock;
	unsigned conns;	   /* accepted so far */
	int conn_fd;	   /* the one served now, or -1 */
	unsigned held;	   /* hang_op requests read and not answered */
	struct request log[LOG_MAX];
	unsigned nlog;
	uint64_t next_mirror;
	/* The rings of the queue made on each connection, as hmmud maps them. */
	char *ring[CONNS];
	uint64_t ring_size[CONNS];
	uint64_t next_buffer[CONNS]; /* ids are the connection's, as hmmud's */
	struct held_buffer buffers[BUFFERS_MAX];
	unsigned nbuffers;
	ino_t made_ino; /* of the last memfd BUFFER_CREATE made */
};

static struct stand_in s;

static void fill_hdr(struct hmmu_wire_hdr *out, const struct hmmu_wire_hdr *req,
		     int status, size_t len, uint16_t flags)
{
	*out = (struct hmmu_wire_hdr){
		.magic = HMMU_PROTO_MAGIC,
		.op = req->op,
		.flags = HMMU_MSG_REPLY | flags,
		.len = (uint32_t)(sizeof(*out) + len),
		.status = status,
		.id = req->id,
	};
}

static void reply_fds(int fd, const struct hmmu_wire_hdr *req, int status,
		      const void *payload, size_t len, const int *fds,
		      unsigned nfds)
{
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} out;
	union {
		char buf[CMSG_SPACE(3 * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = out.buf,
			     .iov_len = sizeof(out.hdr) + len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	memset(&out, 0, sizeof(out));
	fill_hdr(&out.hdr, req, status, len, 0);
	if (len)
		memcpy(&out.hdr + 1, payload, len);
	if (nfds) {
		struct cmsghdr *c;

		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	(void)!sendmsg(fd, &msg, MSG_NOSIGNAL);
}

static void reply(int fd, const struct hmmu_wire_hdr *req, int status,
		  const void *payload, size_t len)
{
	reply_fds(fd, req, status, payload, len, NULL, 0);
}

/* An error reply with a reason, as hmmud sends them. */
static void reply_reason(int fd, const struct hmmu_wire_hdr *req, int status,
			 const char *reason)
{
	char payload[HMMU_REASON_MAX];
	size_t len = HMMU_REASON_WIRE_SIZE(strlen(reason));
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} out;

	memset(payload, 0, sizeof(payload));
	memcpy(payload, reason, strlen(reason));
	memset(&out, 0, sizeof(out));
	fill_hdr(&out.hdr, req, status, len, HMMU_MSG_REASON);
	memcpy(&out.hdr + 1, payload, len);
	(void)!send(fd, out.buf, sizeof(out.hdr) + len, MSG_NOSIGNAL);
}

/* The answer of an hmmud that does not know the op (protocol.md §6). */
static void reply_unknown_op(int fd, const struct hmmu_wire_hdr *req)
{
	struct hmmu_wire_hdr out;

	fill_hdr(&out, req, -EOPNOTSUPP, 0, 0);
	out.op = HMMU_OP_NONE;
	(void)!send(fd, &out, sizeof(out), MSG_NOSIGNAL);
}

/* A memfd of @bytes, with @init written at its start. */
static int memfd_of(size_t bytes, const void *init, size_t len)
{
	int fd = memfd_create("stand-in", MFD_CLOEXEC);

	if (fd < 0 || ftruncate(fd, (off_t)bytes) < 0 ||
	    (len && pwrite(fd, init, len, 0) != (ssize_t)len))
		abort();
	return fd;
}

static void answer_failsafe(int fd, const struct hmmu_wire_hdr *req,
			    unsigned conn)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct hmmu_failsafe_header hdr = {
		.magic = HMMU_FAILSAFE_MAGIC,
		.version = HMMU_FAILSAFE_VERSION,
		.page_size = (uint32_t)page,
		.slot_size = sizeof(struct hmmu_failsafe_slot),
		.nslots = 0,
		.slots_off = sizeof(hdr),
		.data_off = page,
		.bytes = page,
	};
	struct hmmu_wire_failsafe rep = { .generation = s.devfile[conn],
					  .bytes = page };
	int fds[3];

	/* No page is ever held: any fd stands in for the userfaultfd. */
	fds[0] = memfd_of(page, &hdr, sizeof(hdr));
	fds[1] = eventfd(0, EFD_CLOEXEC);
	fds[2] = (int)syscall(SYS_pidfd_open, s.daemon_pid[conn], 0);
	if (fds[1] < 0 || fds[2] < 0)
		abort();
	reply_fds(fd, req, 0, &rep, sizeof(rep), fds, 3);
	for (int i = 0; i < 3; i++)
		close(fds[i]);
}

static void answer_queue(int fd, unsigned conn, const struct hmmu_wire_hdr *req,
			 const void *payload)
{
	const struct hmmu_wire_queue_create *q = payload;
	struct hmmu_wire_queue_reply rep = { .queue = 77 + conn };
	int fds[2];

	rep.entries = 1;
	while (rep.entries < q->entries)
		rep.entries *= 2;
	qring_layout(rep.entries, &rep.sqes_off, &rep.cqes_off, &rep.size);
	fds[0] = memfd_of(rep.size, NULL, 0);
	fds[1] = eventfd(0, EFD_CLOEXEC);
	/* Kept, so that a test can play the daemon's side of the rings. */
	if (conn < CONNS && !s.ring[conn]) {
		s.ring[conn] = mmap(NULL, rep.size, PROT_READ | PROT_WRITE,
				    MAP_SHARED, fds[0], 0);
		s.ring_size[conn] = rep.size;
		if (s.ring[conn] == MAP_FAILED)
			s.ring[conn] = NULL;
	}
	reply_fds(fd, req, 0, &rep, sizeof(rep), fds, 2);
	close(fds[0]);
	close(fds[1]);
}

/* Lock held: buffer @id of connection @conn, or NULL. */
static struct held_buffer *held(unsigned conn, uint64_t id)
{
	for (unsigned i = 0; i < s.nbuffers; i++)
		if (s.buffers[i].conn == conn && s.buffers[i].id == id &&
		    s.buffers[i].fd >= 0)
			return &s.buffers[i];
	return NULL;
}

/* Lock held: hold @fd as buffer @id of connection @conn. */
static void hold(unsigned conn, uint64_t id, int fd)
{
	if (s.nbuffers == BUFFERS_MAX)
		abort();
	s.buffers[s.nbuffers++] = (struct held_buffer){ conn, id, fd };
}

/* As hmmud makes one: a sealed memfd, which it holds. */
static void answer_buffer_create(int fd, unsigned conn,
				 const struct hmmu_wire_hdr *req,
				 const void *payload)
{
	const struct hmmu_wire_buffer_create *b = payload;
	struct hmmu_wire_buffer r = { .bytes = b->bytes };
	int mfd = memfd_create("hmmu-buffer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	struct stat st;

	if (mfd < 0 || ftruncate(mfd, (off_t)b->bytes) < 0 ||
	    fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
					    F_SEAL_SEAL) < 0 ||
	    fstat(mfd, &st) < 0)
		abort();
	pthread_mutex_lock(&s.lock);
	r.buffer = 50 + ++s.next_buffer[conn];
	s.made_ino = st.st_ino;
	hold(conn, r.buffer, dup(mfd));
	pthread_mutex_unlock(&s.lock);
	reply_fds(fd, req, 0, &r, sizeof(r), &mfd, 1);
	close(mfd);
}

/* The memfd that came with it (@mfd, now ours), held under its id. */
static void answer_buffer_restore(int fd, unsigned conn,
				  const struct hmmu_wire_hdr *req,
				  const void *payload, int mfd)
{
	const struct hmmu_wire_buffer *b = payload;

	if (s.buffer_restore_unknown) {
		reply_unknown_op(fd, req);
	} else if (s.buffer_restore_status &&
		   (!s.buffer_refused || s.buffer_refused == b->buffer)) {
		reply_reason(fd, req, s.buffer_restore_status,
			     "past this user's shared buffers");
	} else if (mfd < 0) {
		reply(fd, req, -EBADF, NULL, 0);
	} else {
		pthread_mutex_lock(&s.lock);
		hold(conn, b->buffer, mfd);
		pthread_mutex_unlock(&s.lock);
		reply(fd, req, 0, NULL, 0);
		return;
	}
	if (mfd >= 0)
		close(mfd);
}

/*
 * A read into a buffer the connection holds: the device's bytes are 'A'
 * plus the connection's number, written through the stand-in's own fd,
 * so that the client sees them only if its mapping is of that file.
 */
static void answer_cmd_buffer(int fd, unsigned conn,
			      const struct hmmu_wire_hdr *req,
			      const void *payload)
{
	const struct hmmu_wire_device_cmd_buffer *c = payload;
	struct hmmu_wire_cmd_result r = { .cpages = c->cmd.npages };
	struct held_buffer *b;
	char byte = (char)('A' + conn);
	int bfd = -1;

	pthread_mutex_lock(&s.lock);
	b = held(conn, c->buffer);
	if (b)
		bfd = b->fd;
	pthread_mutex_unlock(&s.lock);
	if (bfd < 0) {
		reply_reason(fd, req, -ENOENT, "no such buffer on this "
			     "connection");
		return;
	}
	for (uint64_t i = 0; i < c->cmd.buf_len; i++)
		if (pwrite(bfd, &byte, 1, (off_t)(c->offset + i)) != 1)
			abort();
	reply(fd, req, 0, &r, sizeof(r));
}

/* The answer of a daemon that holds whatever the request names. */
static void answer(int fd, unsigned conn, const struct hmmu_wire_hdr *req,
		   const void *payload, int rfd)
{
	char out[HMMU_MSG_MAX];

	if (req->op == HMMU_OP_BUFFER_RESTORE) {
		answer_buffer_restore(fd, conn, req, payload, rfd);
		return;
	}
	if (rfd >= 0)
		close(rfd); /* a userfaultfd: a stand-in needs none */
	memset(out, 0, sizeof(out));
	switch (req->op) {
	case HMMU_OP_HELLO: {
		struct hmmu_wire_hello_reply *r = (void *)out;

		r->version = HMMU_PROTO_VERSION;
		snprintf(r->release, sizeof(r->release), "stand-in %u", conn);
		r->incarnation = s.incarnation[conn];
		reply(fd, req, 0, r, sizeof(*r));
		return;
	}
	case HMMU_OP_MIRROR_CREATE: {
		struct hmmu_wire_mirror *r = (void *)out;

		pthread_mutex_lock(&s.lock);
		r->mirror = ++s.next_mirror;
		pthread_mutex_unlock(&s.lock);
		reply(fd, req, 0, r, sizeof(*r));
		return;
	}
	case HMMU_OP_RESERVE_IDS:
		if (s.reserve_unknown)
			reply_unknown_op(fd, req);
		else if (s.reserve_status)
			reply_reason(fd, req, s.reserve_status,
				     "no ids for you");
		else
			reply(fd, req, 0, NULL, 0);
		return;
	case HMMU_OP_MIRROR_RESTORE:
		if (s.restore_status)
			reply_reason(fd, req, s.restore_status,
				     "no state for this process");
		else
			reply(fd, req, 0, NULL, 0);
		return;
	case HMMU_OP_MIRROR_REGISTER: {
		const struct hmmu_wire_register *r = payload;

		if (s.probe_touched && !r->probe && conn == 0)
			reply(fd, req, HMMU_STATUS_NEED_UFFD, NULL, 0);
		else if (s.probe_touched && r->probe)
			reply_reason(fd, req, -EFAULT, "the probe pages were "
				     "touched");
		else
			reply(fd, req, 0, NULL, 0);
		return;
	}
	case HMMU_OP_DEVICE_COUNT: {
		struct hmmu_wire_count *r = (void *)out;

		r->count = 7 + 100 * conn; /* says who answered */
		reply(fd, req, 0, r, sizeof(*r));
		return;
	}
	case HMMU_OP_DEVICE_INFO: {
		const struct hmmu_wire_index *i = payload;
		struct hmmu_wire_device_info *r = (void *)out;

		snprintf(r->name, sizeof(r->name), "dev%u", i->index);
		snprintf(r->model, sizeof(r->model), "conn%u", conn);
		reply(fd, req, 0, r, sizeof(*r));
		return;
	}
	case HMMU_OP_DEVICE_CMD: {
		const struct hmmu_wire_device_cmd *c = payload;
		struct hmmu_wire_prepare_result *r = (void *)out;

		if (c->cmd == HMMU_CMD_MIGRATE_PREPARE &&
		    s.prepare_status[conn]) {
			reply(fd, req, s.prepare_status[conn], NULL, 0);
			return;
		}
		/* Nothing to discard: no page ever leaves the client. */
		r->devfile = s.devfile[conn];
		reply(fd, req, 0, r,
		      c->cmd == HMMU_CMD_MIGRATE_PREPARE ?
			      sizeof(*r) : sizeof(struct hmmu_wire_cmd_result));
		return;
	}
	case HMMU_OP_FAILSAFE:
		answer_failsafe(fd, req, conn);
		return;
	case HMMU_OP_BUFFER_CREATE:
		answer_buffer_create(fd, conn, req, payload);
		return;
	case HMMU_OP_BUFFER_DESTROY: {
		const struct hmmu_wire_buffer *b = payload;
		struct held_buffer *h;

		pthread_mutex_lock(&s.lock);
		h = held(conn, b->buffer);
		if (h) {
			close(h->fd);
			h->fd = -1;
		}
		pthread_mutex_unlock(&s.lock);
		reply(fd, req, h ? 0 : -ENOENT, NULL, 0);
		return;
	}
	case HMMU_OP_DEVICE_CMD_BUFFER:
		answer_cmd_buffer(fd, conn, req, payload);
		return;
	case HMMU_OP_QUEUE_CREATE:
		answer_queue(fd, conn, req, payload);
		return;
	default:
		reply(fd, req, 0, out, hmmu_proto_reply_min_size(req->op));
		return;
	}
}

/*
 * One message from @fd into @in, and the fd that came with it into *@rfd
 * (-1 if none): its length.
 */
static ssize_t receive(int fd, void *in, size_t size, int *rfd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = in, .iov_len = size };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *c;
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

	*rfd = -1;
	c = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
		memcpy(rfd, CMSG_DATA(c), sizeof(int));
	return n;
}

/* Serve one connection until it ends; false to stop serving. */
static bool serve_one(int fd, unsigned conn)
{
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} in;
	ssize_t n;
	int rfd;

	while ((n = receive(fd, in.buf, sizeof(in.buf), &rfd)) >=
	       (ssize_t)sizeof(in.hdr)) {
		const void *payload = &in.hdr + 1;
		bool hang = false;

		pthread_mutex_lock(&s.lock);
		if (s.nlog < LOG_MAX) {
			struct request *r = &s.log[s.nlog++];
			struct stat st;

			r->conn = conn;
			r->hdr = in.hdr;
			r->len = (size_t)n - sizeof(in.hdr);
			memcpy(r->payload, payload, r->len);
			r->fd = rfd >= 0 && fstat(rfd, &st) == 0;
			if (r->fd) {
				r->fd_ino = st.st_ino;
				r->fd_size = st.st_size;
				r->fd_seals = fcntl(rfd, F_GET_SEALS);
			}
		}
		if (conn == 0 && s.hang_op && in.hdr.op == s.hang_op)
			hang = ++s.held == s.hang_count;
		if (conn && conn == s.restore_dies &&
		    in.hdr.op == HMMU_OP_MIRROR_RESTORE)
			hang = true;
		if (conn == 0 && s.probe_touched &&
		    in.hdr.op == HMMU_OP_MIRROR_REGISTER &&
		    ((const struct hmmu_wire_register *)payload)->probe)
			hang = true;
		pthread_mutex_unlock(&s.lock);
		if (hang || (conn == 0 && in.hdr.op == s.hang_op) ||
		    s.silent[conn]) {
			if (rfd >= 0)
				close(rfd);
			if (hang)
				return conn || !s.gone_after_hang_up;
			continue; /* held, or silent: never answered */
		}
		answer(fd, conn, &in.hdr, payload, rfd);
	}
	return true;
}

static void *serve(void *arg)
{
	(void)arg;
	for (;;) {
		int fd = accept4(s.listen_fd, NULL, NULL, SOCK_CLOEXEC);
		unsigned conn;
		bool more;

		if (fd < 0 || atomic_load(&s.stopping)) {
			if (fd >= 0)
				close(fd);
			return NULL;
		}
		pthread_mutex_lock(&s.lock);
		conn = s.conns++;
		s.conn_fd = fd;
		pthread_mutex_unlock(&s.lock);
		/* The script covers CONNS; later ones are as the last. */
		if (conn >= CONNS)
			conn = CONNS - 1;
		more = serve_one(fd, conn);
		pthread_mutex_lock(&s.lock);
		s.conn_fd = -1;
		pthread_mutex_unlock(&s.lock);
		close(fd); /* the hang-up */
		if (!more) {
			/* hmmud is gone: nobody listens any more. */
			close(s.listen_fd);
			unlink(s.path);
			s.listen_fd = -1;
			return NULL;
		}
	}
}

static void stand_in_start(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	strcpy(s.dir, "/tmp/hmmu-reconnect-XXXXXX");
	cr_assert_not_null(mkdtemp(s.dir));
	snprintf(s.path, sizeof(s.path), "%s/hmmud.sock", s.dir);
	strcpy(addr.sun_path, s.path);
	s.listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(s.listen_fd, 0);
	cr_assert_eq(bind(s.listen_fd, (struct sockaddr *)&addr, sizeof(addr)),
		     0);
	cr_assert_eq(listen(s.listen_fd, 4), 0);
	s.conn_fd = -1;
	pthread_mutex_init(&s.lock, NULL);
	cr_assert_eq(pthread_create(&s.thread, NULL, serve, NULL), 0);
	s.started = true;
}

/* The script's defaults: the same incarnation on every connection. */
static void setup(void)
{
	memset(&s, 0, sizeof(s));
	for (unsigned i = 0; i < CONNS; i++)
		s.incarnation[i] = INCARNATION;
	s.hang_count = 1;
	unsetenv("HMMU_CONNECT_TIMEOUT_MS");
}

/* After the client's last disconnect. */
static void teardown(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd;

	if (s.started) {
		/* Out of a connection, then out of accept(): a last one. */
		atomic_store(&s.stopping, true);
		pthread_mutex_lock(&s.lock);
		if (s.conn_fd >= 0)
			shutdown(s.conn_fd, SHUT_RDWR);
		pthread_mutex_unlock(&s.lock);
		strcpy(addr.sun_path, s.path);
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		(void)!connect(fd, (struct sockaddr *)&addr, sizeof(addr));
		pthread_join(s.thread, NULL);
		close(fd);
		if (s.listen_fd >= 0) {
			close(s.listen_fd);
			unlink(s.path);
		}
		rmdir(s.dir);
	}
	for (unsigned i = 0; i < s.nbuffers; i++)
		if (s.buffers[i].fd >= 0)
			close(s.buffers[i].fd);
	for (unsigned i = 0; i < CONNS; i++) {
		if (s.daemon_pid[i] > 0) {
			kill(s.daemon_pid[i], SIGKILL);
			waitpid(s.daemon_pid[i], NULL, 0);
		}
		if (s.ring[i])
			munmap(s.ring[i], s.ring_size[i]);
	}
}

TestSuite(reconnect, .init = setup, .fini = teardown, .timeout = 60);

/* The stand-in hangs up on connection @conn, idle, as a dying daemon. */
static void hang_up_now(void)
{
	pthread_mutex_lock(&s.lock);
	if (s.conn_fd >= 0)
		shutdown(s.conn_fd, SHUT_RDWR);
	pthread_mutex_unlock(&s.lock);
}

/* The requests of @op the stand-in read, in order, into @out. */
static unsigned logged(unsigned op, const struct request **out, unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&s.lock);
	for (unsigned i = 0; i < s.nlog; i++)
		if (s.log[i].hdr.op == op && n < max)
			out[n++] = &s.log[i];
	pthread_mutex_unlock(&s.lock);
	return n;
}

/* The ops of the requests connection @conn read, in order, into @ops. */
static unsigned ops_on(unsigned conn, unsigned *ops, unsigned max)
{
	unsigned n = 0;

	pthread_mutex_lock(&s.lock);
	for (unsigned i = 0; i < s.nlog && n < max; i++)
		if (s.log[i].conn == conn)
			ops[n++] = s.log[i].hdr.op;
	pthread_mutex_unlock(&s.lock);
	return n;
}

/* Connection 1 read at least @n requests, of the ops @want, in order. */
static void expect_ops_on_1(const unsigned *want, unsigned n)
{
	unsigned ops[LOG_MAX], got = ops_on(1, ops, LOG_MAX);

	cr_expect_geq(got, n, "%u requests on connection 1, want %u", got, n);
	for (unsigned i = 0; i < n && i < got; i++)
		cr_expect_eq(ops[i], want[i], "request %u on connection 1: %s, "
			     "want %s", i, hmmu_proto_op_name(ops[i]),
			     hmmu_proto_op_name(want[i]));
}

/* The floor the one RESERVE_IDS of the reconnection asked for. */
static uint64_t reserved_above(void)
{
	const struct request *r[4];
	const struct hmmu_wire_reserve_ids *p;

	cr_assert_eq(logged(HMMU_OP_RESERVE_IDS, r, 4), 1u,
		     "one RESERVE_IDS, on the reconnection");
	p = (const void *)r[0]->payload;
	cr_expect_eq(r[0]->conn, 1u);
	cr_expect_eq(r[0]->len, sizeof(*p));
	return p->above;
}

static const struct request *restore_of(uint64_t mirror)
{
	const struct request *r[16];
	unsigned n = logged(HMMU_OP_MIRROR_RESTORE, r, 16);

	for (unsigned i = 0; i < n; i++) {
		const struct hmmu_wire_mirror_restore *p =
			(const void *)r[i]->payload;

		if (p->mirror == mirror)
			return r[i];
	}
	return NULL;
}

static void expect_restore(uint64_t mirror, const char *device,
			   uint32_t flags)
{
	const struct request *r = restore_of(mirror);
	const struct hmmu_wire_mirror_restore *p;

	cr_assert_not_null(r, "no MIRROR_RESTORE of mirror %llu",
			   (unsigned long long)mirror);
	p = (const void *)r->payload;
	cr_expect_eq(r->conn, 1u);
	cr_expect_eq(r->len, sizeof(*p));
	cr_expect_str_eq(p->device, device, "mirror %llu",
			 (unsigned long long)mirror);
	cr_expect_eq(p->flags, flags, "mirror %llu: flags %#x, want %#x",
		     (unsigned long long)mirror, p->flags, flags);
	cr_expect_eq(p->reserved, 0u);
}

static unsigned conns_accepted(void)
{
	unsigned n;

	pthread_mutex_lock(&s.lock);
	n = s.conns;
	pthread_mutex_unlock(&s.lock);
	return n;
}

Test(reconnect, same_incarnation_restores_mirrors_and_answers_the_call)
{
	struct hmmu_mirror *fine, *coarse, *idle;
	struct hmmu_device_info info;
	const struct request *r[8];
	struct hmmu *h;
	unsigned n;
	int err;

	s.hang_op = HMMU_OP_DEVICE_INFO;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &fine), 0);
	cr_assert_eq(hmmu_mirror_register(fine), 0);
	cr_assert_eq(hmmu_mirror_create(h, "acc0", &coarse), 0);
	cr_assert_eq(hmmu_mirror_set_coherence(coarse, HMMU_COHERENCE_COARSE),
		     0);
	cr_assert_eq(hmmu_mirror_register(coarse), 0);
	cr_assert_eq(hmmu_mirror_create(h, "dmirror1", &idle), 0);
	cr_expect_str_eq(hmmu_daemon_version(h), "stand-in 0");

	/* Connection 0 reads it and hangs up; connection 1 answers it. */
	err = hmmu_device_info(h, 5, &info);
	cr_assert_eq(err, 0, "%s (%s)", strerror(-err), hmmu_error_detail());
	cr_expect_str_eq(info.name, "dev5");
	cr_expect_str_eq(info.model, "conn1", "answered by %s", info.model);
	cr_expect_str_eq(hmmu_error_detail(), "");
	cr_expect_eq(conns_accepted(), 2u);
	cr_expect_str_eq(hmmu_daemon_version(h), "stand-in 1",
			 "the successor's release");

	expect_restore(1, "dmirror0", HMMU_RESTORE_REGISTERED);
	expect_restore(2, "acc0",
		       HMMU_RESTORE_REGISTERED | HMMU_RESTORE_COARSE);
	expect_restore(3, "dmirror1", 0);

	/* The same request, sent again: op, id, payload. */
	n = logged(HMMU_OP_DEVICE_INFO, r, 8);
	cr_assert_eq(n, 2u);
	cr_expect_eq(r[0]->conn, 0u);
	cr_expect_eq(r[1]->conn, 1u);
	cr_expect_eq(r[1]->hdr.id, r[0]->hdr.id);
	cr_expect_eq(r[1]->len, r[0]->len);
	cr_expect_eq(memcmp(r[1]->payload, r[0]->payload, r[0]->len), 0);

	/*
	 * On connection 1: HELLO, the floor of the ids (the mirrors' ids are
	 * 1 to 3), the three restores, then the request.
	 */
	expect_ops_on_1((const unsigned[]){ HMMU_OP_HELLO, HMMU_OP_RESERVE_IDS,
					    HMMU_OP_MIRROR_RESTORE,
					    HMMU_OP_MIRROR_RESTORE,
					    HMMU_OP_MIRROR_RESTORE,
					    HMMU_OP_DEVICE_INFO }, 6);
	cr_expect_eq(reserved_above(), 3u);

	/* The mirrors work on; new calls go to connection 1. */
	cr_expect_eq(hmmu_device_count(h), 107);
	cr_expect_eq(hmmu_mirror_unregister(fine), 0);
	hmmu_mirror_destroy(fine);
	hmmu_mirror_destroy(coarse);
	hmmu_mirror_destroy(idle);
	hmmu_disconnect(h);
}

struct info_call {
	struct hmmu *h;
	unsigned index;
	int err;
	struct hmmu_device_info info;
};

static void *info_thread(void *arg)
{
	struct info_call *c = arg;

	c->err = hmmu_device_info(c->h, c->index, &c->info);
	return NULL;
}

Test(reconnect, every_call_in_flight_is_sent_again_and_answered)
{
	struct info_call c[4];
	pthread_t t[4];
	struct hmmu_mirror *m;
	struct hmmu *h;

	/* Hang up once all four are in: each waits for its reply. */
	s.hang_op = HMMU_OP_DEVICE_INFO;
	s.hang_count = 4;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0);
	for (unsigned i = 0; i < 4; i++) {
		c[i] = (struct info_call){ .h = h, .index = 10 + i };
		cr_assert_eq(pthread_create(&t[i], NULL, info_thread, &c[i]),
			     0);
	}
	for (unsigned i = 0; i < 4; i++) {
		char want[16];

		pthread_join(t[i], NULL);
		snprintf(want, sizeof(want), "dev%u", 10 + i);
		cr_expect_eq(c[i].err, 0, "call %u: %s", i,
			     strerror(-c[i].err));
		cr_expect_str_eq(c[i].info.name, want);
		cr_expect_str_eq(c[i].info.model, "conn1");
	}
	cr_expect_eq(conns_accepted(), 2u);
	expect_restore(1, "dmirror0", HMMU_RESTORE_REGISTERED);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

Test(reconnect, a_hang_up_while_idle_is_met_by_the_next_call)
{
	struct hmmu_mirror *m;
	struct hmmu *h;

	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	cr_assert_eq(hmmu_device_count(h), 7);
	hang_up_now();
	/* Its send fails, or its reply never comes: either way, again. */
	for (int i = 0; i < 3; i++)
		cr_expect_eq(hmmu_device_count(h), 107, "%s",
			     hmmu_error_detail());
	expect_restore(1, "dmirror0", 0);
	/* A mirror made now is not made again by mistake, nor lost. */
	hmmu_mirror_destroy(m);
	cr_assert_eq(hmmu_mirror_create(h, "dmirror1", &m), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

Test(reconnect, another_incarnation_is_eshutdown_naming_the_restart)
{
	struct hmmu_mirror *m;
	struct hmmu *h;
	char want[64];
	int err;

	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.incarnation[1] = 0x99;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0);
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, strerror(-err));
	snprintf(want, sizeof(want), "incarnation %016llx, now %016llx",
		 INCARNATION, 0x99ull);
	cr_expect(strstr(hmmu_error_detail(), "hmmud restarted without this "
			 "process's state") &&
			  strstr(hmmu_error_detail(), want),
		  "'%s'", hmmu_error_detail());
	/* Every later call, a mirror's too, and nothing made again. */
	cr_expect_eq(hmmu_mirror_unregister(m), -ESHUTDOWN);
	cr_expect(strstr(hmmu_error_detail(), "hmmud restarted"), "'%s'",
		  hmmu_error_detail());
	cr_expect_eq(hmmu_device_count(h), -ESHUTDOWN);
	cr_expect_null(restore_of(1));
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

Test(reconnect, a_daemon_without_incarnations_is_econnreset_as_before)
{
	struct hmmu *h;
	int err;

	/* Incarnation 0: an hmmud before §11. No reconnection is tried. */
	s.incarnation[0] = 0;
	s.hang_op = HMMU_OP_DEVICE_COUNT;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ECONNRESET, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "hmmud went away"), "'%s'",
		  hmmu_error_detail());
	cr_expect_eq(conns_accepted(), 1u);
	hmmu_disconnect(h);
}

Test(reconnect, nobody_listening_after_the_hang_up_fails_at_once)
{
	struct hmmu *h;
	int err;

	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.gone_after_hang_up = true;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ECONNRESET, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "hmmud went away") &&
			  strstr(hmmu_error_detail(), s.path),
		  "'%s'", hmmu_error_detail());
	cr_expect_eq(hmmu_device_count(h), -ECONNRESET);
	hmmu_disconnect(h);
}

Test(reconnect, a_successor_that_never_answers_is_dead_after_the_timeout)
{
	struct hmmu *h;
	int err;

	setenv("HMMU_CONNECT_TIMEOUT_MS", "300", 1);
	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.silent[1] = true;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ECONNRESET, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "did not answer within 300 ms"),
		  "'%s'", hmmu_error_detail());
	hmmu_disconnect(h);
}

/*
 * The stand-in started, to hang up on the first DEVICE_COUNT; connected,
 * with mirror 1 on dmirror0 registered, in *@m.
 */
static struct hmmu *with_mirror_1(struct hmmu_mirror **m)
{
	struct hmmu *h;

	s.hang_op = HMMU_OP_DEVICE_COUNT;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", m), 0);
	cr_assert_eq(hmmu_mirror_register(*m), 0);
	return h;
}

/*
 * With mirror 1 registered, the call the stand-in hangs up on meets a
 * successor that refuses what the reconnection asks (the script says
 * what): -ESHUTDOWN, with a detail that names each of @want (NULL-ended).
 * Then the mirror and the handle go.
 */
static void expect_refused(const char *const *want)
{
	struct hmmu_mirror *m;
	struct hmmu *h = with_mirror_1(&m);
	int err;

	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, strerror(-err));
	for (; *want; want++)
		cr_expect(strstr(hmmu_error_detail(), *want), "no '%s' in '%s'",
			  *want, hmmu_error_detail());
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

Test(reconnect, a_refused_restore_is_eshutdown_with_its_reason)
{
	s.restore_status = -ESTALE;
	expect_refused((const char *[]){ "mirror 1 on dmirror0", "ESTALE",
					 "no state for this process", NULL });
}

/* The daemon's side of connection @conn's rings: take a submission. */
static struct hmmu_wire_sqe take(unsigned conn, unsigned entries)
{
	char *ring = s.ring[conn];
	_Atomic uint32_t *head = qring_word(ring, HMMU_RING_SQ_HEAD);
	uint32_t sqes_off, cqes_off, h = atomic_load(head);
	uint64_t size;
	struct hmmu_wire_sqe sqe;

	qring_layout(entries, &sqes_off, &cqes_off, &size);
	cr_assert_neq(atomic_load(qring_word(ring, HMMU_RING_SQ_TAIL)), h,
		      "nothing submitted on connection %u", conn);
	sqe = ((struct hmmu_wire_sqe *)(ring + sqes_off))[h & (entries - 1)];
	atomic_store(head, h + 1);
	return sqe;
}

/* ...and complete one, as hmmud would: CQE, tail, wake-up. */
static void complete(unsigned conn, unsigned entries,
		     const struct hmmu_wire_sqe *sqe)
{
	char *ring = s.ring[conn];
	_Atomic uint32_t *tail = qring_word(ring, HMMU_RING_CQ_TAIL);
	uint32_t sqes_off, cqes_off, t = atomic_load(tail);
	uint64_t size;

	qring_layout(entries, &sqes_off, &cqes_off, &size);
	((struct hmmu_wire_cqe *)(ring + cqes_off))[t & (entries - 1)] =
		(struct hmmu_wire_cqe){ .user_data = sqe->user_data,
					.op = sqe->op };
	atomic_store(tail, t + 1);
	qring_futex_wake(tail);
}

/*
 * A queue outlives a restart: what the old rings completed is delivered,
 * what they took and never completed, or never took, goes again on rings
 * the successor makes, in its order, and completes there.
 */
Test(reconnect, a_queue_is_made_again_with_what_it_had_in_flight)
{
	struct hmmu_wire_sqe first, second, again[3];
	const struct request *r[8];
	struct hmmu_mirror *m;
	struct hmmu_queue *q;
	struct hmmu_cqe cqe[4];
	struct hmmu *h;

	s.hang_op = HMMU_OP_DEVICE_COUNT;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0);
	cr_assert_eq(hmmu_queue_create(m, 4, &q), 0, "%s",
		     hmmu_error_detail());
	for (uint64_t u = 100; u < 103; u++)
		cr_assert_eq(hmmu_queue_nop(q, u), 0);
	cr_assert_eq(hmmu_queue_submit(q), 3);
	/*
	 * The first daemon takes two and completes the first; one more is
	 * prepared, not submitted; then the daemon dies (the next call
	 * finds it gone and reconnects).
	 */
	first = take(0, 4);
	second = take(0, 4);
	complete(0, 4, &first);
	cr_assert_eq(hmmu_queue_nop(q, 103), 0);
	cr_assert_eq(hmmu_device_count(h), 107, "%s", hmmu_error_detail());
	/* The queue's id (77) is the largest the handle was given. */
	cr_expect_eq(reserved_above(), 77u);

	/* The next call on the queue makes it again, on connection 1. */
	cr_assert_eq(hmmu_queue_submit(q), 1, "%s", hmmu_error_detail());
	cr_assert_eq(logged(HMMU_OP_QUEUE_CREATE, r, 8), 2u);
	cr_expect_eq(r[1]->conn, 1u);
	cr_assert_not_null(s.ring[1]);
	/* Taken-not-completed, never-taken, then the prepared one. */
	cr_expect_eq(atomic_load(qring_word(s.ring[1], HMMU_RING_SQ_TAIL)), 3u);
	for (int i = 0; i < 3; i++)
		again[i] = take(1, 4);
	cr_expect_eq(again[0].user_data, second.user_data);
	cr_expect_eq(again[0].op, HMMU_SQE_NOP);
	complete(1, 4, &again[2]);
	complete(1, 4, &again[0]);
	complete(1, 4, &again[1]);
	/* The old rings' completion first, then the new ones', as they came. */
	cr_assert_eq(hmmu_queue_wait(q, cqe, 4, 4, -1), 4, "%s",
		     hmmu_error_detail());
	cr_expect_eq(cqe[0].user_data, 100u, "the caller's, not the tag");
	cr_expect_eq(cqe[1].user_data, 103u);
	cr_expect_eq(cqe[2].user_data, 101u);
	cr_expect_eq(cqe[3].user_data, 102u);
	hmmu_queue_destroy(q);
	/* Destroyed where it lives now: the successor's queue. */
	cr_assert_eq(logged(HMMU_OP_QUEUE_DESTROY, r, 8), 1u);
	cr_expect_eq(r[0]->conn, 1u);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

/* A registered mirror on dmirror0, and a buffer of @npages on @h. */
static struct hmmu_mirror *with_buffer(struct hmmu *h, size_t npages,
				       char **addr, struct hmmu_buffer **b)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct hmmu_mirror *m;

	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0);
	cr_assert_eq(hmmu_buffer_create(h, npages * page, (void **)addr, b),
		     0, "%s", hmmu_error_detail());
	return m;
}

/* A device read of page @i of @mem into page @i of @b: its result. */
static int read_page(struct hmmu_mirror *m, struct hmmu_buffer *b,
		     const char *mem, size_t i)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	struct hmmu_cmd c = { .addr = (uintptr_t)(mem + i * page),
			      .npages = 1 };

	return hmmu_device_read_buffer(m, &c, b, i * page);
}

Test(reconnect, a_buffer_is_made_again_from_its_memfd_before_the_requests)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	const struct request *r[8], *restore;
	const struct hmmu_wire_buffer *w;
	struct hmmu_buffer *b;
	struct hmmu_mirror *m;
	struct hmmu *h;
	uint64_t id;
	char *addr, *mem;
	ino_t ino;
	int err;

	/* Connection 0 reads the device read into the buffer, hangs up. */
	s.hang_op = HMMU_OP_DEVICE_CMD_BUFFER;
	stand_in_start();
	mem = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	m = with_buffer(h, 4, &addr, &b);
	cr_assert_eq(logged(HMMU_OP_BUFFER_CREATE, r, 8), 1u);
	id = 50 + 1; /* the stand-in's first */
	pthread_mutex_lock(&s.lock);
	ino = s.made_ino;
	pthread_mutex_unlock(&s.lock);
	memset(addr, 'x', 4 * page);

	/* Answered by connection 1, into the same pages, no error. */
	err = read_page(m, b, mem, 1);
	cr_assert_eq(err, 0, "%d (%s)", err, hmmu_error_detail());
	cr_expect_eq(conns_accepted(), 2u);
	cr_expect_eq(addr[page], 'B', "the successor's bytes are not there");
	cr_expect_eq(addr[2 * page - 1], 'B');
	cr_expect_eq(addr[0], 'x', "what the buffer held is gone");
	cr_expect_eq(addr[2 * page], 'x');

	/* BUFFER_RESTORE: the same id and size, with the same memfd. */
	cr_assert_eq(logged(HMMU_OP_BUFFER_RESTORE, r, 8), 1u);
	restore = r[0];
	w = (const void *)restore->payload;
	cr_expect_eq(restore->conn, 1u);
	cr_expect_eq(restore->len, sizeof(*w));
	cr_expect_eq(w->buffer, id);
	cr_expect_eq(w->bytes, 4 * page);
	cr_expect(restore->fd, "no fd came with it");
	cr_expect_eq(restore->fd_ino, ino, "not the memfd hmmud made");
	cr_expect_eq(restore->fd_size, (off_t)(4 * page));
	cr_expect_eq(restore->fd_seals & (F_SEAL_SHRINK | F_SEAL_GROW |
					  F_SEAL_SEAL),
		     F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);

	/* On connection 1: HELLO, ids, the mirror, the buffer, the read. */
	expect_ops_on_1((const unsigned[]){ HMMU_OP_HELLO, HMMU_OP_RESERVE_IDS,
					    HMMU_OP_MIRROR_RESTORE,
					    HMMU_OP_BUFFER_RESTORE,
					    HMMU_OP_DEVICE_CMD_BUFFER }, 5);

	/* The same handle goes on, and is destroyed on the successor. */
	err = read_page(m, b, mem, 3);
	cr_expect_eq(err, 0, "%d (%s)", err, hmmu_error_detail());
	cr_expect_eq(addr[3 * page], 'B');
	hmmu_buffer_destroy(b);
	cr_assert_eq(logged(HMMU_OP_BUFFER_DESTROY, r, 8), 1u);
	cr_expect_eq(r[0]->conn, 1u);
	cr_expect_eq(((const struct hmmu_wire_buffer *)r[0]->payload)->buffer,
		     id);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(mem, 4 * page);
}

Test(reconnect, buffers_die_with_a_restart_to_an_hmmud_without_buffer_restore)
{
	const struct request *r[8];
	struct hmmu_buffer *b, *b2;
	struct hmmu_mirror *m;
	struct hmmu *h;
	char *addr, *addr2, *mem;
	int err;

	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.buffer_restore_unknown = true;
	stand_in_start();
	mem = mmap(NULL, 2 * (size_t)sysconf(_SC_PAGESIZE),
		   PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	m = with_buffer(h, 2, &addr, &b);
	cr_assert_eq(read_page(m, b, mem, 0), 0);

	/* The handle goes on: only the buffer is lost, as before the op. */
	cr_assert_eq(hmmu_device_count(h), 107, "%s", hmmu_error_detail());
	err = read_page(m, b, mem, 0);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, hmmu_error_detail());
	cr_expect(strstr(hmmu_error_detail(), "hmmud restarted") &&
			  strstr(hmmu_error_detail(), "could not make the "
				 "shared buffer again"),
		  "'%s'", hmmu_error_detail());
	cr_expect_eq(addr[0], 'A', "our mapping of it stays");
	/*
	 * A new one takes the id the lost one had (51, each connection's
	 * first): each keeps to its own.
	 */
	cr_assert_eq(hmmu_buffer_create(h, 4096, (void **)&addr2, &b2), 0);
	cr_assert_eq(logged(HMMU_OP_BUFFER_CREATE, r, 8), 2u);
	cr_assert_eq(r[1]->conn, 1u);
	hmmu_buffer_destroy(b);
	cr_expect_eq(logged(HMMU_OP_BUFFER_DESTROY, r, 8), 0u,
		     "destroyed on the successor, which never made it");
	err = read_page(m, b2, mem, 0);
	cr_expect_eq(err, 0, "%d (%s)", err, hmmu_error_detail());
	cr_expect_eq(addr2[0], 'B');
	hmmu_buffer_destroy(b2);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(mem, 2 * (size_t)sysconf(_SC_PAGESIZE));
}

/*
 * A successor that refuses one buffer costs that buffer alone: the handle,
 * its mirrors and its other buffers go on, and the refused buffer's bytes
 * stay in our mapping (a verdict "dead" would end the connection, and the
 * successor would punch out the pages of the buffers it had made again).
 */
Test(reconnect, a_refused_buffer_restore_costs_that_buffer_alone)
{
	const struct request *r[8];
	struct hmmu_buffer *b, *b2;
	struct hmmu_mirror *m;
	char want[64], *addr, *addr2, *mem;
	struct hmmu *h;
	int err;

	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.buffer_restore_status = -EDQUOT;
	s.buffer_refused = 51; /* the connection's first */
	stand_in_start();
	mem = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(mem, MAP_FAILED);
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	m = with_buffer(h, 1, &addr, &b);
	cr_assert_eq(hmmu_buffer_create(h, 4096, (void **)&addr2, &b2), 0);
	cr_assert_eq(read_page(m, b, mem, 0), 0);
	cr_assert_eq(read_page(m, b2, mem, 0), 0);

	err = hmmu_device_count(h);
	cr_expect_eq(err, 107, "%d (%s)", err, hmmu_error_detail());
	err = read_page(m, b, mem, 0);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, hmmu_error_detail());
	snprintf(want, sizeof(want), "buffer 51 of %ld bytes",
		 sysconf(_SC_PAGESIZE));
	cr_expect(strstr(hmmu_error_detail(), want) &&
			  strstr(hmmu_error_detail(), "EDQUOT") &&
			  strstr(hmmu_error_detail(),
				 "past this user's shared buffers") &&
			  strstr(hmmu_error_detail(), "make it anew"),
		  "'%s'", hmmu_error_detail());
	cr_expect_eq(addr[0], 'A', "the refused buffer's bytes stay ours");
	err = read_page(m, b2, mem, 0);
	cr_expect_eq(err, 0, "%d (%s)", err, hmmu_error_detail());
	cr_expect_eq(addr2[0], 'B', "the other buffer is the successor's");
	hmmu_buffer_destroy(b);
	hmmu_buffer_destroy(b2);
	cr_expect_eq(logged(HMMU_OP_BUFFER_DESTROY, r, 8), 1u,
		     "only the buffer the successor made is destroyed there");
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(mem, (size_t)sysconf(_SC_PAGESIZE));
}

/* ---- the ids a successor must not give again ---------------------------- */

/*
 * Right after HELLO, before anything that makes or names a mirror or a
 * buffer, the successor is asked to give out no id the handle was given:
 * the largest of them all, that of a buffer whose DESTROY is in flight (it
 * is unlisted, so nothing restores it, and the DESTROY sent again must
 * find no new buffer of its id).
 */
Test(reconnect, the_successor_is_first_asked_to_keep_every_id_it_gave)
{
	struct hmmu_mirror *m, *m2;
	struct hmmu_buffer *b, *gone;
	const struct request *r[8];
	char *addr, *addr2;
	struct hmmu *h;

	/* Connection 0 reads the DESTROY of the second buffer, hangs up. */
	s.hang_op = HMMU_OP_BUFFER_DESTROY;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	m = with_buffer(h, 1, &addr, &b);
	cr_assert_eq(hmmu_mirror_create(h, "dmirror1", &m2), 0);
	cr_assert_eq(hmmu_buffer_create(h, 4096, (void **)&addr2, &gone), 0);
	/* Mirrors 1 and 2, buffers 51 and 52 (the stand-in's numbers). */
	hmmu_buffer_destroy(gone);
	cr_expect_eq(conns_accepted(), 2u);

	expect_ops_on_1((const unsigned[]){ HMMU_OP_HELLO, HMMU_OP_RESERVE_IDS,
					    HMMU_OP_MIRROR_RESTORE,
					    HMMU_OP_MIRROR_RESTORE,
					    HMMU_OP_BUFFER_RESTORE,
					    HMMU_OP_BUFFER_DESTROY }, 6);
	cr_expect_eq(reserved_above(), 52u, "not the largest id given");
	cr_assert_eq(logged(HMMU_OP_BUFFER_RESTORE, r, 8), 1u);
	cr_expect_eq(((const struct hmmu_wire_buffer *)r[0]->payload)->buffer,
		     51u);

	/* The handle goes on. */
	cr_expect_eq(hmmu_device_count(h), 107, "%s", hmmu_error_detail());
	hmmu_buffer_destroy(b);
	hmmu_mirror_destroy(m2);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

/*
 * A successor older than RESERVE_IDS answers -EOPNOTSUPP: the handle goes
 * on as before the op (whose ids may then collide, as they did).
 */
Test(reconnect, an_hmmud_without_reserve_ids_is_reconnected_to_as_before)
{
	struct hmmu_mirror *m, *m2;
	struct hmmu *h;
	int err;

	s.reserve_unknown = true;
	h = with_mirror_1(&m);
	err = hmmu_device_count(h);
	cr_expect_eq(err, 107, "%d (%s)", err, hmmu_error_detail());
	cr_expect_str_eq(hmmu_error_detail(), "");
	cr_expect_eq(reserved_above(), 1u, "it was asked all the same");
	expect_restore(1, "dmirror0", HMMU_RESTORE_REGISTERED);
	cr_assert_eq(hmmu_mirror_create(h, "dmirror1", &m2), 0);
	cr_expect_eq(hmmu_mirror_register(m2), 0, "%s", hmmu_error_detail());
	hmmu_mirror_destroy(m2);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

/*
 * One that refuses it for another reason is the verdict "dead", as a
 * refused MIRROR_RESTORE is: sending the requests again would not be safe.
 * Nothing is made again on it.
 */
Test(reconnect, a_refused_reserve_ids_is_eshutdown_with_its_reason)
{
	const struct request *r[8];

	s.reserve_status = -EINVAL;
	expect_refused((const char *[]){ "keep ids up to 1", "EINVAL",
					 "no ids for you", NULL });
	cr_expect_eq(logged(HMMU_OP_MIRROR_RESTORE, r, 8), 0u);
}

/* ---- with the failsafe armed ------------------------------------------- */

/* A process to stand for hmmud's pid: FAILSAFE sends a pidfd of it. */
static pid_t fake_daemon(void)
{
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		/*
		 * Gone with the test, whatever becomes of it, and off its
		 * output, which ctest reads to the end.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 1);
		dup2(null, 2);
		for (;;)
			pause();
	}
	return pid;
}

/* How many of our fds are pidfds of @pid. */
static int pidfds_of(pid_t pid)
{
	DIR *d = opendir("/proc/self/fdinfo");
	struct dirent *e;
	char want[32];
	int n = 0;

	cr_assert_not_null(d);
	snprintf(want, sizeof(want), "\nPid:\t%d\n", pid);
	while ((e = readdir(d))) {
		char path[300], buf[1024];
		ssize_t len;
		int fd;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/fdinfo/%s", e->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		len = read(fd, buf + 1, sizeof(buf) - 2);
		close(fd);
		buf[0] = '\n';
		buf[len > 0 ? len + 1 : 1] = '\0';
		n += strstr(buf, want) != NULL;
	}
	closedir(d);
	return n;
}

static int threads_running(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Connected, with a registered mirror and one page of memory at *mem. */
static struct hmmu *registered(struct hmmu_mirror **m, char **mem)
{
	struct hmmu *h;

	*mem = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE),
		    PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(*mem, MAP_FAILED);
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", m), 0);
	cr_assert_eq(hmmu_mirror_register(*m), 0);
	return h;
}

/* Armed: registered, and the fail-safe set up by a migration. */
static struct hmmu *armed(struct hmmu_mirror **m, char **mem)
{
	struct hmmu *h = registered(m, mem);
	struct hmmu_cmd c = { .addr = (uintptr_t)*mem, .npages = 1 };

	cr_assert_eq(hmmu_migrate_to_device(*m, &c), 0, "%s",
		     hmmu_error_detail());
	return h;
}

static void let_go(struct hmmu *h, struct hmmu_mirror *m, char *mem)
{
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	munmap(mem, (size_t)sysconf(_SC_PAGESIZE));
}

Test(reconnect, the_failsafe_watcher_reconnects_and_then_watches_the_successor)
{
	struct hmmu_mirror *m;
	struct hmmu *h;
	int threads, err;
	char *mem;

	s.daemon_pid[0] = fake_daemon();
	s.daemon_pid[1] = fake_daemon();
	s.daemon_pid[2] = fake_daemon();
	s.devfile[0] = s.devfile[1] = 5;
	s.incarnation[2] = 0x77; /* the third start kept nothing */
	stand_in_start();
	threads = threads_running();
	/* Armed: the file, a watcher, and the first daemon's pidfd. */
	h = armed(&m, &mem);
	cr_assert_eq(threads_running(), threads + 1);
	cr_assert_eq(pidfds_of(s.daemon_pid[0]), 1);

	/* The first dies: the watcher reconnects, with no call in flight. */
	kill(s.daemon_pid[0], SIGKILL);
	hang_up_now();
	/* The new pidfd arrives a moment before the old one is closed. */
	for (int i = 0; i < 500 && (pidfds_of(s.daemon_pid[1]) == 0 ||
				    pidfds_of(s.daemon_pid[0]) != 0); i++)
		usleep(10 * 1000);
	cr_expect_eq(pidfds_of(s.daemon_pid[1]), 1, "the successor's pidfd");
	cr_expect_eq(pidfds_of(s.daemon_pid[0]), 0, "the old pidfd is let go");
	cr_expect_eq(conns_accepted(), 2u);
	expect_restore(1, "dmirror0", HMMU_RESTORE_REGISTERED);
	cr_expect_eq(hmmu_device_count(h), 107, "%s", hmmu_error_detail());
	cr_expect_eq(threads_running(), threads + 1);

	/*
	 * The successor dies too, and the next start has nothing: dead. The
	 * watcher waits for the successor's exit, not the first's, then
	 * brings home what is held (nothing).
	 */
	kill(s.daemon_pid[1], SIGKILL);
	hang_up_now();
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "hmmud restarted without this "
			 "process's state") &&
			  strstr(hmmu_error_detail(), "brought home"),
		  "'%s'", hmmu_error_detail());
	let_go(h, m, mem);
	cr_expect_eq(threads_running(), threads);
	cr_expect_eq(pidfds_of(s.daemon_pid[1]), 0);
}

Test(reconnect, a_refused_restore_leaves_the_pages_to_the_daemon_that_kept_them)
{
	struct hmmu_mirror *m;
	struct hmmu *h;
	char *mem;
	int err;

	/*
	 * The same incarnation: the successor holds the state, and brings
	 * the pages home itself once the connection is gone. The watcher
	 * must not race it: no rescue, no wait for a daemon's exit.
	 */
	s.daemon_pid[0] = fake_daemon();
	s.devfile[0] = 5;
	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.restore_status = -EDQUOT;
	stand_in_start();
	h = armed(&m, &mem);
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "EDQUOT") &&
			  strstr(hmmu_error_detail(), "hmmud kept the pages") &&
			  !strstr(hmmu_error_detail(), "brought home"),
		  "'%s'", hmmu_error_detail());
	let_go(h, m, mem);
}

Test(reconnect, a_successor_that_could_not_adopt_us_leaves_the_rescue_to_us)
{
	struct hmmu_mirror *m;
	struct hmmu *h;
	char *mem;
	int err;

	/* -ESTALE: the same incarnation, but our process was not adopted. */
	s.daemon_pid[0] = fake_daemon();
	s.devfile[0] = 5;
	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.restore_status = -ESTALE;
	stand_in_start();
	h = armed(&m, &mem);
	kill(s.daemon_pid[0], SIGKILL); /* the first daemon is dead */
	err = hmmu_device_count(h);
	cr_expect_eq(err, -ESHUTDOWN, "%d (%s)", err, strerror(-err));
	cr_expect(strstr(hmmu_error_detail(), "ESTALE") &&
			  strstr(hmmu_error_detail(), "brought home"),
		  "'%s'", hmmu_error_detail());
	let_go(h, m, mem);
}

Test(reconnect, a_prepare_sent_again_and_refused_is_finished_all_the_same)
{
	struct hmmu_cmd c = { .npages = 1 };
	const struct request *r[16];
	struct hmmu_mirror *m;
	struct hmmu *h;
	bool finished = false;
	unsigned n;
	char *mem;
	int err;

	/*
	 * The first daemon dies with the PREPARE in flight: it may have
	 * prepared, and its successor adopted those pages as being migrated.
	 * Sent again, the PREPARE is refused; only a FINISH lets them go.
	 */
	s.daemon_pid[0] = fake_daemon();
	s.daemon_pid[1] = fake_daemon();
	s.devfile[0] = s.devfile[1] = 5;
	s.hang_op = HMMU_OP_DEVICE_CMD;
	s.prepare_status[1] = -EBUSY;
	stand_in_start();
	h = registered(&m, &mem);
	c.addr = (uintptr_t)mem;
	err = hmmu_migrate_to_device(m, &c);
	cr_expect_eq(err, -EBUSY, "%d (%s)", err, strerror(-err));
	n = logged(HMMU_OP_DEVICE_CMD, r, 16);
	for (unsigned i = 0; i < n; i++) {
		const struct hmmu_wire_device_cmd *d = (const void *)r[i]->payload;

		if (r[i]->conn == 1 && d->cmd == HMMU_CMD_MIGRATE_FINISH)
			finished = d->addr == c.addr && d->npages == 1;
	}
	cr_expect(finished, "no FINISH of the range after the PREPARE refused");
	let_go(h, m, mem);
}

Test(reconnect, a_successor_that_dies_in_turn_is_followed_by_the_next)
{
	struct hmmu_mirror *m;
	struct hmmu *h;
	int err;

	/* Connection 1 dies at the restore; connection 2 serves. */
	s.hang_op = HMMU_OP_DEVICE_COUNT;
	s.restore_dies = 1;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	cr_assert_eq(hmmu_mirror_register(m), 0);
	err = hmmu_device_count(h);
	cr_expect_eq(err, 207, "%d (%s)", err, hmmu_error_detail());
	cr_expect_eq(conns_accepted(), 3u);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}

Test(reconnect, a_registration_whose_probe_was_touched_is_made_again)
{
	const struct request *r[8];
	struct hmmu_mirror *m;
	struct hmmu *h;
	unsigned n;
	int err;

	/*
	 * The daemon that died may have read the probe pages; its successor
	 * refuses them (-EFAULT). Registered anew, the mirror joins the
	 * state the successor holds.
	 */
	int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	/* The library makes one to send: the test needs the kernel's leave. */
	if (uffd < 0)
		cr_skip_test("no userfaultfd for this user: %s", strerror(errno));
	close(uffd);
	s.probe_touched = true;
	stand_in_start();
	cr_assert_eq(hmmu_connect(s.path, &h), 0, "%s", hmmu_error_detail());
	cr_assert_eq(hmmu_mirror_create(h, "dmirror0", &m), 0);
	err = hmmu_mirror_register(m);
	cr_expect_eq(err, 0, "%d (%s)", err, hmmu_error_detail());
	n = logged(HMMU_OP_MIRROR_REGISTER, r, 8);
	cr_assert_eq(n, 4u, "%u registrations", n);
	cr_expect(r[2]->conn == 1 &&
			  ((const struct hmmu_wire_register *)r[2]->payload)->probe,
		  "the one with the probe, sent again");
	cr_expect(r[3]->conn == 1 &&
			  !((const struct hmmu_wire_register *)r[3]->payload)->probe,
		  "then made again from the start");
	/* Registered, as the daemon said last: a restart makes it so. */
	cr_expect_eq(hmmu_mirror_unregister(m), 0);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
}
