/* SPDX-License-Identifier: MIT */
#include "session.h"
#include "restart.h"
#include "../core/accounts.h"
#include "../core/command.h"
#include "../core/counters.h"
#include "daemon.h"
#include "../core/limits.h"
#include "../lib/log.h"
#include "../core/mirror.h"
#include "registry.h"
#include "queue.h"
#include "requests.h"
#include "../common/proto.h"
#include "../common/kernel_uapi.h"
#include "../common/kfeatures.h"
#include "hmmu_build_info.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_FDS_PER_MSG 4

union message {
	struct hmmu_wire_hdr hdr;
	char buf[HMMU_MSG_MAX];
};

void session_get(struct session *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

/* On a worker: release every mirror the connection still has (rule 5). */
static void session_teardown(struct work *w)
{
	struct session *s = (struct session *)((char *)w -
					       offsetof(struct session, teardown));
	struct hmmu_mirror *m;
	unsigned n = 0;

	while ((m = s->mirrors)) {
		s->mirrors = m->session_next;
		n += (unsigned)registry_release(&s->d->registry, m);
		mirror_put(m);
	}
	if (n)
		log_info("client %d: gone, released %u mirror(s)", s->peer.pid,
			 n);
	buffers_fini(&s->buffers);
	restart_forget_session(s);
	close(s->fd);
	close(s->peer.pidfd);
	account_put(s->acct);
	pthread_mutex_destroy(&s->recv_lock);
	pthread_mutex_destroy(&s->lock);
	counter_sub(&counters.sessions, 1);
	daemon_session_gone(s->d);
	free(s);
}

void session_put(struct session *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	s->teardown.fn = session_teardown;
	workers_queue(s->d->workers, &s->teardown);
}

void session_reply(struct session *s, const struct hmmu_wire_hdr *req,
		   int status, const char *reason, const void *payload,
		   size_t len)
{
	struct hmmu_wire_hdr h = {
		.magic = HMMU_PROTO_MAGIC,
		.op = req ? req->op : HMMU_OP_NONE,
		.flags = HMMU_MSG_REPLY,
		.status = status,
		.id = req ? req->id : 0,
	};
	char text[HMMU_REASON_MAX] = "";
	size_t n = reason && status < 0 ? strlen(reason) : 0;
	struct iovec iov[3] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = text, .iov_len = 0 },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = 3 };

	/* The NUL and the padding come from the zeroed buffer. */
	if (n) {
		if (n >= HMMU_REASON_MAX)
			n = HMMU_REASON_MAX - 1;
		memcpy(text, reason, n);
		iov[1].iov_len = HMMU_REASON_WIRE_SIZE(n);
		h.flags |= HMMU_MSG_REASON;
	}
	h.len = (uint32_t)(sizeof(h) + iov[1].iov_len + len);

	/*
	 * Never block a worker on a client that does not read its replies:
	 * a full socket buffer means it stopped reading, and we hang up.
	 */
	if (sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
		return;
	if (errno == EAGAIN) {
		log_warn("client %d: does not read its replies, hanging up",
			 s->peer.pid);
		shutdown(s->fd, SHUT_RDWR);
	} else if (errno != EPIPE && errno != ECONNRESET) {
		log_warn("client %d: send reply: %s", s->peer.pid,
			 strerror(errno));
	}
}

int session_reply_fds(struct session *s, const struct hmmu_wire_hdr *req,
		      const void *payload, size_t len, const int *fds,
		      unsigned nfds)
{
	struct hmmu_wire_hdr h = {
		.magic = HMMU_PROTO_MAGIC,
		.op = req->op,
		.flags = HMMU_MSG_REPLY,
		.len = (uint32_t)(sizeof(h) + len),
		.id = req->id,
	};
	struct iovec iov[2] = {
		{ .iov_base = &h, .iov_len = sizeof(h) },
		{ .iov_base = (void *)payload, .iov_len = len },
	};
	union {
		char buf[CMSG_SPACE(MAX_FDS_PER_MSG * sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = {
		.msg_iov = iov,
		.msg_iovlen = 2,
		.msg_control = control.buf,
		.msg_controllen = CMSG_SPACE(nfds * sizeof(int)),
	};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	if (nfds == 0 || nfds > MAX_FDS_PER_MSG)
		return -EINVAL;
	memset(&control, 0, sizeof(control));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	/* As session_reply(): never block on a client that does not read. */
	if (sendmsg(s->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
		return 0;
	if (errno == EAGAIN) {
		log_warn("client %d: does not read its replies, hanging up",
			 s->peer.pid);
		shutdown(s->fd, SHUT_RDWR);
		return -EAGAIN;
	}
	return -errno;
}

static void watch_gone(struct session *s)
{
	if (--s->watches)
		return;
	if (s->pprev) {
		*s->pprev = s->next;
		if (s->next)
			s->next->pprev = s->pprev;
		s->pprev = NULL;
	}
	session_put(s); /* the loop's */
}

static void pidfd_gone(struct loop_watch *w)
{
	watch_gone((struct session *)((char *)w -
				      offsetof(struct session, pidfd_watch)));
}

void session_close(struct session *s)
{
	int why = atomic_load(&s->d->stopping) ? -ESHUTDOWN : -ECANCELED;

	if (atomic_exchange(&s->closing, true))
		return;
	/*
	 * The connection no longer counts against its user's limit now, not
	 * when its teardown ends: a client that reconnects at once must not
	 * find its old connection still counted.
	 */
	if (!s->refused)
		account_disconnect(s->acct);
	/* Nobody will read the replies: stop what runs for this client. */
	pthread_mutex_lock(&s->lock);
	for (struct hmmu_mirror *m = s->mirrors; m; m = m->session_next)
		mirror_cancel(m, why);
	pthread_mutex_unlock(&s->lock);
	/* Its queues stop taking submissions; they hold the session till gone. */
	queue_session_closed(s);
	/*
	 * The client sees EOF; the socket turns readable, which brings its
	 * token, if it is armed, to a receiver that sees closing and ends it.
	 * A token held elsewhere ends with its holder (token_pass()).
	 */
	shutdown(s->fd, SHUT_RDWR);
	loop_watch_remove(s->d->loop, &s->pidfd_watch);
}

static void end_on_loop(void *arg)
{
	struct session *s = arg;

	session_close(s);
	session_put(s);
}

void session_end(struct session *s)
{
	/*
	 * Once the loop has stopped, main() closes every session itself, on
	 * its thread: the list of sessions is that thread's then.
	 */
	if (atomic_load(&s->d->loop_done)) {
		shutdown(s->fd, SHUT_RDWR);
		return;
	}
	session_get(s);
	if (loop_defer(s->d->loop, end_on_loop, s) < 0) {
		/*
		 * No memory to defer with: end the connection at least; the
		 * hang-up brings the loop to close the session itself.
		 */
		shutdown(s->fd, SHUT_RDWR);
		session_put(s);
	}
}

static void pidfd_ready(struct loop_watch *w, unsigned revents)
{
	struct session *s = (struct session *)((char *)w -
					       offsetof(struct session, pidfd_watch));

	(void)revents;
	log_debug("client %d: process exited", s->peer.pid);
	session_close(s);
}

/* 0, or -EPIPE: hang up. */
static int handle_hello(struct session *s, const struct hmmu_wire_hdr *h)
{
	const struct hmmu_wire_hello *req = (const void *)(h + 1);
	struct hmmu_wire_hello_reply rep = {
		.version = HMMU_PROTO_VERSION,
		.incarnation = restart_incarnation(),
	};

	snprintf(rep.release, sizeof(rep.release), "%s (git %s)",
		 HMMU_BUILD_VERSION, HMMU_BUILD_COMMIT);

	if (s->hello_done) {
		log_warn("client %d: bad hello message: said hello twice",
			 s->peer.pid);
		session_reply(s, h, -EPROTO, "HELLO was said already on this "
			      "connection", NULL, 0);
		return 0;
	}
	/*
	 * No reason on this reply: a client of any version reads the version
	 * at its start, and libhmmu says what to do itself.
	 */
	if (req->version != HMMU_PROTO_VERSION) {
		log_warn("client %d: speaks protocol version %u, we speak %u",
			 s->peer.pid, req->version, HMMU_PROTO_VERSION);
		session_reply(s, h, -EPROTONOSUPPORT, NULL, &rep, sizeof(rep));
		return -EPIPE;
	}
	s->hello_done = true;
	session_reply(s, h, 0, NULL, &rep, sizeof(rep));
	return 0;
}

/*
 * Why a connection past a limit is refused: for a HELLO of our version
 * only, the one message before the handshake whose sender reads reasons.
 */
static const char *refused_reason(struct session *s,
				  const struct hmmu_wire_hdr *h)
{
	const struct hmmu_wire_hello *hello = (const void *)(h + 1);

	if (h->op != HMMU_OP_HELLO || hello->version != HMMU_PROTO_VERSION)
		return NULL;
	if (s->refused == -EDQUOT)
		return "this user has as many connections to hmmud as it "
		       "allows (--limit connections-per-user): close some";
	return "hmmud has as many connections open as it allows "
	       "(--limit connections): try again later";
}

/* Pull the fds and the sender's credentials out of the control data. */
static int read_cmsgs(struct session *s, struct msghdr *msg, int *fd)
{
	int err = 0;

	*fd = -1;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c;
	     c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_RIGHTS) {
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			for (size_t i = 0; i < n; i++) {
				int one;

				memcpy(&one, CMSG_DATA(c) + i * sizeof(int),
				       sizeof(int));
				if (*fd < 0 && i == 0) {
					*fd = one;
				} else {
					close(one);
					/* One fd at most; -EPERM says more. */
					if (err != -EPERM)
						err = -EINVAL;
				}
			}
		} else if (c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred cred;

			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
			/*
			 * The kernel says who sent this message. A process
			 * that inherited the connection (a forked child) may
			 * not speak for the one that opened it.
			 */
			if (cred.pid != s->peer.pid)
				err = -EPERM;
		}
	}
	if ((msg->msg_flags & MSG_CTRUNC) && err != -EPERM)
		err = -EINVAL;
	return err;
}

/*
 * Receive and check one message, with recv_lock held, and answer what is
 * answered at once: a bad message, HELLO, a connection refused. Returns 1
 * with a request to run in @in (*@len bytes, *@fd to go with it, taken),
 * 0 when that was all, -EAGAIN when nothing came, -EPIPE to hang up.
 */
static int receive_one(struct session *s, union message *in, size_t *len,
		       int *fdp)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS_PER_MSG * sizeof(int)) +
			 CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = in->buf, .iov_len = sizeof(in->buf) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	const struct hmmu_wire_hdr *h = NULL;
	char why[160] = "";
	ssize_t n;
	int fd, err;

	/* MSG_TRUNC: n is the real length, even when it did not fit. */
	n = recvmsg(s->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? -errno : -EPIPE;
	/*
	 * An empty record and end-of-file both read 0 bytes; only a record
	 * comes with control data (our SO_PASSCRED credentials).
	 */
	if (n == 0 && msg.msg_controllen == 0) {
		log_debug("client %d: hung up", s->peer.pid);
		return -EPIPE;
	}

	err = read_cmsgs(s, &msg, &fd);
	if ((size_t)n >= sizeof(in->hdr))
		h = &in->hdr;
	if (err == -EPERM)
		snprintf(why, sizeof(why), "it came from another process than "
			 "the one that connected (a forked child?), which must "
			 "connect anew");
	else if (err)
		snprintf(why, sizeof(why), "at most one fd may come with a "
			 "message");
	if (!err && (msg.msg_flags & MSG_TRUNC)) {
		err = -EMSGSIZE;
		snprintf(why, sizeof(why), "%zd bytes, longer than %u", n,
			 HMMU_MSG_MAX);
	}
	if (!err)
		err = hmmu_proto_check_why(in->buf, (size_t)n, 0, why,
					   sizeof(why));
	if (!err && fd >= 0 && h->op != HMMU_OP_MIRROR_REGISTER &&
	    h->op != HMMU_OP_BUFFER_RESTORE) {
		err = -EINVAL;
		snprintf(why, sizeof(why), "an fd may come only with "
			 "mirror-register or buffer-restore");
	}
	if (!err && !s->hello_done && h->op != HMMU_OP_HELLO) {
		err = -EPROTO;
		snprintf(why, sizeof(why), "the first request must be HELLO");
	}
	if (err) {
		log_warn("client %d: bad %s message (%zd bytes): %s: %s",
			 s->peer.pid, h ? hmmu_proto_op_name(h->op) : "short",
			 n, strerror(-err), why);
		/* Reasons go only to a client that said it reads them. */
		if (!s->hello_done)
			why[0] = '\0';
		if (fd >= 0)
			close(fd);
		/*
		 * Name the op and id only if the header was sound: an
		 * unknown op is answered as op NONE but with its id, so
		 * that a newer client learns -EOPNOTSUPP instead of waiting.
		 */
		if (h && (h->magic != HMMU_PROTO_MAGIC || h->flags))
			h = NULL;
		if (h && !hmmu_proto_op_known(h->op)) {
			struct hmmu_wire_hdr none = *h;

			none.op = HMMU_OP_NONE;
			session_reply(s, &none, err, why, NULL, 0);
			return 0;
		}
		session_reply(s, h, err, why, NULL, 0);
		return 0;
	}

	if (s->refused) {
		/* Whatever it asks first, it learns why it cannot stay. */
		session_reply(s, h, s->refused, refused_reason(s, h), NULL, 0);
		if (fd >= 0)
			close(fd);
		return -EPIPE;
	}
	if (h->op == HMMU_OP_HELLO)
		return handle_hello(s, h);
	*len = (size_t)n;
	*fdp = fd;
	return 1;
}

static void token_drop(struct session *s)
{
	receivers_remove(s->d->receivers, &s->recv);
	session_put(s); /* the token's */
}

/*
 * The token's holder is done with it: the socket is watched again, or, if
 * the session is closing, never again. A session_close() after the check
 * shuts the socket down, which makes it readable: the receiver that then
 * gets the token sees closing and ends it.
 */
static void token_pass(struct session *s)
{
	int err;

	if (atomic_load(&s->closing)) {
		token_drop(s);
		return;
	}
	err = receivers_arm(s->d->receivers, &s->recv);
	if (err) {
		log_err("client %d: cannot watch its connection: %s",
			s->peer.pid, strerror(-err));
		session_end(s);
		token_drop(s);
	}
}

/*
 * The holder that finds the connection at its share parks the token: nobody
 * reads the socket till a request ends. Requests from submission queues
 * (queue.c) count in the share too but never hold the token, so the count
 * alone cannot say whether the token is parked; the flag does. A request
 * that ends between the holder's count and its flag is caught by the
 * recheck: the two are sequentially consistent, so at least one side sees
 * the other, and the exchange lets exactly one of them pass the token on.
 */
static void token_unpark(struct session *s)
{
	if (atomic_load(&s->token_parked) &&
	    atomic_exchange(&s->token_parked, false))
		token_pass(s);
}

static void token_park(struct session *s)
{
	atomic_store(&s->token_parked, true);
	if (atomic_load(&s->inflight) < limits.requests_per_connection)
		token_unpark(s);
}

/*
 * On a receiver, with the socket's token: one message, then the token goes
 * back before the request runs, so that the connection's next message can
 * go to another receiver meanwhile, after the other connections' turns.
 */
static void sock_ready(struct recv_source *src, unsigned events)
{
	struct session *s = (struct session *)((char *)src -
					       offsetof(struct session, recv));
	union message in;
	size_t len = 0;
	int fd = -1, err;
	bool now;

	(void)events;
	if (atomic_load(&s->closing)) {
		token_drop(s);
		return;
	}
	pthread_mutex_lock(&s->recv_lock);
	err = receive_one(s, &in, &len, &fd);
	pthread_mutex_unlock(&s->recv_lock);
	if (err == -EPIPE) {
		session_end(s);
		token_drop(s);
		return;
	}
	if (err != 1) {
		token_pass(s);
		return;
	}

	/*
	 * Counted before the token goes on. The message that fills the
	 * connection's share parks the token; the request whose end brings
	 * the count back under it passes it on (token_park()).
	 */
	session_get(s); /* the request's */
	now = request_is_short(&in.hdr);
	if (atomic_fetch_add(&s->inflight, 1) + 1 < limits.requests_per_connection)
		token_pass(s);
	else
		token_park(s);
	if (now) {
		request_run_now(s, &in.hdr, len, fd);
		return;
	}
	err = request_queue(s, &in.hdr, len, fd);
	if (err) {
		log_err("client %d: %s: %s", s->peer.pid,
			hmmu_proto_op_name(in.hdr.op), strerror(-err));
		if (fd >= 0)
			close(fd);
		session_reply(s, &in.hdr, err, "hmmud ran out of memory: see "
			      "its log", NULL, 0);
		session_request_done(s);
		session_put(s);
	}
}

void session_request_done(struct session *s)
{
	if (atomic_fetch_sub(&s->inflight, 1) - 1 < limits.requests_per_connection)
		token_unpark(s);
}

static int peer_identify(int fd, struct peer *peer)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct stat st;
	int pidfd;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -errno;
	/* A peer in a pid namespace we cannot see has no pid for us. */
	if (cred.pid <= 0)
		return -ESRCH;
	len = sizeof(pidfd);
	if (!kfeatures()->peer_pidfd ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) < 0) {
		/*
		 * Without SO_PEERPIDFD (6.5): open a pidfd by pid. The peer
		 * is connected, so unless it already exited this is the same
		 * process; if it exited, the pidfd reports that at once and
		 * we hang up.
		 */
		pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
		if (pidfd < 0)
			return -errno;
	}
	if (fstat(pidfd, &st) < 0) {
		int err = -errno;

		close(pidfd);
		return err;
	}
	peer->pid = cred.pid;
	peer->uid = cred.uid;
	peer->gid = cred.gid;
	peer->pidfd = pidfd;
	peer->pid_ino = (uint64_t)st.st_ino;
	return 0;
}

void log_out_of_fds(void)
{
	log_err("out of file descriptors: refused a connection "
		"(raise LimitNOFILE=, or lower --limit connections)");
}

/*
 * Logged before the connection is closed: a client that sees it end may
 * look for the reason in the log at once.
 */
static int refuse(int fd, int err)
{
	if (err == -EMFILE || err == -ENFILE)
		log_out_of_fds(); /* the session's own fds (its pidfd) lacked */
	else
		log_warn("refused a connection: %s", strerror(-err));
	close(fd);
	return err;
}

int session_accept(struct daemon *d, int fd)
{
	struct session *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return refuse(fd, -ENOMEM);
	err = peer_identify(fd, &s->peer);
	if (err) {
		free(s);
		return refuse(fd, err);
	}
	s->acct = account_get(s->peer.uid);
	if (!s->acct) {
		close(s->peer.pidfd);
		free(s);
		return refuse(fd, -ENOMEM);
	}
	s->refused = account_connect(s->acct);
	if (s->refused)
		log_warn("client %d (uid %u): refused: %s (--limit %s)",
			 s->peer.pid, s->peer.uid,
			 s->refused == -EDQUOT ? "its user has as many connections as allowed" :
						 "as many connections as allowed are open",
			 s->refused == -EDQUOT ? "connections-per-user" : "connections");
	s->d = d;
	s->fd = fd;
	atomic_init(&s->refs, 1); /* the loop's */
	pthread_mutex_init(&s->lock, NULL);
	buffers_init(&s->buffers);
	counter_add(&counters.sessions, 1);

	pthread_mutex_init(&s->recv_lock, NULL);
	s->recv.fd = fd;
	s->recv.ready = sock_ready;
	s->pidfd_watch.fd = s->peer.pidfd;
	s->pidfd_watch.ready = pidfd_ready;
	s->pidfd_watch.gone = pidfd_gone;

	err = loop_watch_add(d->loop, &s->pidfd_watch);
	if (err) {
		/* Nothing watches it yet: undo by hand, the teardown closes. */
		log_err("client %d: cannot watch its process: %s",
			s->peer.pid, strerror(-err));
		if (!s->refused)
			account_disconnect(s->acct);
		session_put(s);
		return err;
	}
	s->watches = 1;
	s->next = d->sessions;
	if (s->next)
		s->next->pprev = &s->next;
	s->pprev = &d->sessions;
	d->sessions = s;

	session_get(s); /* the token's */
	err = receivers_add(d->receivers, &s->recv);
	if (err) {
		log_err("client %d: cannot watch its connection: %s",
			s->peer.pid, strerror(-err));
		session_put(s);
		session_close(s);
		return err;
	}
	restart_store_session(s);
	log_debug("client %d (uid %u): connected", s->peer.pid, s->peer.uid);
	return 0;
}

struct hmmu_mirror *session_find_mirror(struct session *s, uint64_t id)
{
	struct hmmu_mirror *m;

	pthread_mutex_lock(&s->lock);
	for (m = s->mirrors; m; m = m->session_next)
		if (m->id == id)
			break;
	if (m)
		mirror_get(m);
	pthread_mutex_unlock(&s->lock);
	return m;
}

int session_add_mirror(struct session *s, struct hmmu_mirror *m, uint64_t *id)
{
	int err = 0;

	pthread_mutex_lock(&s->lock);
	if (s->nmirrors >= SESSION_MAX_MIRRORS) {
		err = -ENOSPC;
	} else {
		m->id = *id = ++s->next_id;
		m->session_next = s->mirrors;
		s->mirrors = m;
		s->nmirrors++;
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

int session_add_mirror_id(struct session *s, struct hmmu_mirror *m,
			  uint64_t id)
{
	int err = 0;

	pthread_mutex_lock(&s->lock);
	for (struct hmmu_mirror *x = s->mirrors; x && !err; x = x->session_next)
		if (x->id == id)
			err = -EEXIST;
	if (!err && s->nmirrors >= SESSION_MAX_MIRRORS)
		err = -ENOSPC;
	if (!err) {
		m->id = id;
		if (s->next_id < id)
			s->next_id = id;
		m->session_next = s->mirrors;
		s->mirrors = m;
		s->nmirrors++;
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

void session_reserve_ids(struct session *s, uint64_t above)
{
	pthread_mutex_lock(&s->lock);
	if (s->next_id < above)
		s->next_id = above;
	pthread_mutex_unlock(&s->lock);
}

struct hmmu_mirror *session_take_mirror(struct session *s, uint64_t id)
{
	struct hmmu_mirror *m = NULL;

	pthread_mutex_lock(&s->lock);
	for (struct hmmu_mirror **pp = &s->mirrors; *pp; pp = &(*pp)->session_next) {
		if ((*pp)->id == id) {
			m = *pp;
			*pp = m->session_next;
			s->nmirrors--;
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return m;
}
