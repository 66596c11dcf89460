/* SPDX-License-Identifier: MIT */
/*
 * After hmmud restarts (docs/protocol.md §11). A daemon under a service
 * manager with an fd store keeps each client process's state across a
 * crash, and says so by announcing, in HELLO, the incarnation it had
 * before. When the connection hangs up, one thread connects again: if the
 * same incarnation answers, it keeps the successor from giving out again
 * an id we were given (RESERVE_IDS), makes the connection's mirrors again
 * (MIRROR_RESTORE), asks for the new daemon's pidfd if the failsafe is
 * armed, makes the shared buffers again from the memfds we kept
 * (BUFFER_RESTORE), sends again every request that had no reply, and
 * swaps the new socket in. The callers see a delay, no error. Anything
 * else (nobody listens, no answer in time, another incarnation, a refusal)
 * is the verdict "dead": every call fails (-ESHUTDOWN if a daemon answered
 * without our state, -ECONNRESET if none answered, as before), and the
 * failsafe watcher, if armed, brings the pages in device memory home as
 * before. Unless the daemon that answered holds our state (the same
 * incarnation; no -ESTALE, which says it could not adopt this process, or
 * holds another device memory file) and only what came after failed (a
 * refused restore, a request it died on time and again): then it brings
 * the pages home itself, once our connection is gone (--adopt-grace), and
 * a rescue of ours would pull the ranges from under a live daemon
 * (h->kept: the watcher stands down).
 *
 * Who reconnects. A caller that finds the connection hung up (recv(2)
 * reads 0, send(2) fails with EPIPE), unless the failsafe watcher watches
 * the socket: then the watcher, which sees the hang-up too, and the callers
 * wait for it. Until the new daemon has said it holds this process's state,
 * a page of the process in device memory is a missing page that nobody
 * serves but the watcher's rescue; a thread that touched one would wait
 * for ever, and the rescue would wait for its verdict. The watcher's stack
 * was touched while hmmud served (failsafe.c), and until that answer the
 * reconnection touches only it, the handle and the kernel: no malloc, no
 * stdio, no strerror(). A caller reconnects only without a watcher, when
 * the process holds no dup of its userfaultfd that keeps such faults
 * waiting.
 *
 * Locking (h->lock; reconnecting, senders and reading are under it):
 * reconnecting set keeps every other thread from starting to read or send,
 * and from changing the lists of pending requests, mirrors and buffers
 * (hmmu_lock_settled()). The reconnecting thread shuts the old socket down,
 * so that its readers and senders leave it; once the same incarnation
 * answered, it waits for them to be out (a reader may still file a reply
 * that came before the hang-up), then works with the lock dropped, on a
 * socket nobody else knows, and swaps it in under the lock, clearing
 * reconnecting in the same breath. The old socket is closed only then: no
 * thread is left in it. The pending entries it sends again live in their
 * callers' frames, which wait for the verdict before they unlink them.
 */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * A request sent again this many times, whose connection hangs up once
 * more, is taken for the reason of the crashes: the handle gives up. Not
 * fewer: a daemon killed every few milliseconds by something else (the
 * crash loop's test) hits one long request several times in a row, and
 * systemd's start limit (5 in 10 s by default) ends a real crash loop
 * first anyway.
 */
#define RESEND_MAX 16

#define GONE "hmmud went away"

/*
 * The name of an errno: strerror() may translate, and so allocate
 * (see the top of the file).
 */
static const char *errname(int err)
{
	const char *s = strerrorname_np(err < 0 ? -err : err);

	return s ? s : "?";
}

static uint64_t new_id(struct hmmu *h)
{
	uint64_t id;

	pthread_mutex_lock(&h->lock);
	id = ++h->next_id;
	pthread_mutex_unlock(&h->lock);
	return id;
}

/*
 * Connect and HELLO: 0 if the daemon holds our state, else why not;
 * *@answered if a daemon answered at all, and its release in @release
 * (HMMU_RELEASE_MAX bytes: a successor may be a newer hmmud).
 */
static int hello_again(struct hmmu *h, int64_t deadline, int budget_ms,
		       int *sock, bool *answered, char *release, char *why,
		       size_t size)
{
	struct hmmu_wire_hello req = { .version = HMMU_PROTO_VERSION };
	struct hmmu_wire_hello_reply rep;
	struct pending p = { .op = HMMU_OP_HELLO, .req = &req,
			     .req_len = sizeof(req), .fd = -1, .out = &rep,
			     .cap = sizeof(rep) };
	uint64_t now = 0;
	int err;

	err = hmmu_open_socket(h->path, deadline, false, sock);
	if (err == -ECONNREFUSED)
		snprintf(why, size, GONE ": nothing listens on %.80s any more "
			 "(connection refused)", h->path);
	else if (err == -ENOENT)
		snprintf(why, size, GONE ": its socket %.80s is gone", h->path);
	else if (err == -ETIMEDOUT)
		snprintf(why, size, GONE ": %.80s did not take a connection "
			 "within %d ms", h->path, budget_ms);
	else if (err)
		snprintf(why, size, GONE ": cannot connect to %.80s again (%s)",
			 h->path, errname(err));
	if (err)
		return err;

	memset(&rep, 0, sizeof(rep));
	p.id = new_id(h);
	err = hmmu_call_direct(*sock, deadline, &p);
	if (err == -ETIMEDOUT)
		snprintf(why, size, GONE ": %.80s did not answer within %d ms "
			 "after it hung up", h->path, budget_ms);
	else if (err)
		snprintf(why, size, GONE ": %.80s hung up again during the "
			 "handshake (%s)", h->path, errname(err));
	else if (p.status)
		snprintf(why, size, GONE ": its successor at %.80s refused the "
			 "handshake (%s)", h->path, errname(p.status));
	if (err)
		return err;
	*answered = true;
	if (p.status)
		return p.status < 0 ? p.status : -EPROTO;

	memcpy(release, rep.release, HMMU_RELEASE_MAX);
	release[HMMU_RELEASE_MAX - 1] = '\0';
	if (p.len == sizeof(rep))
		now = rep.incarnation;
	if (now == h->incarnation)
		return 0;
	if (now)
		snprintf(why, size, "hmmud restarted without this process's "
			 "state (incarnation %016" PRIx64 ", now %016" PRIx64
			 ")", h->incarnation, now);
	else
		snprintf(why, size, "hmmud restarted without this process's "
			 "state (incarnation %016" PRIx64 ", now none: it keeps "
			 "no state across restarts)", h->incarnation);
	return -ESTALE;
}

/*
 * RESERVE_IDS: the successor gives no id up to @above (the largest we were
 * ever given) to anything new on this connection. Its counters start
 * afresh, raised only by the ids we restore; without this, an id we may
 * still name could go to a mirror, buffer or queue made on it: a DESTROY
 * whose reply the crash lost (the object unlisted, so not restored), sent
 * again below, would destroy another thread's new mirror of that id, and
 * a request sent again naming a buffer the successor refused would write
 * into a new one. So it comes first, before anything that makes one.
 *
 * A successor older than the op answers -EOPNOTSUPP: we go on without
 * it, and ids may then collide as they did before it. Any other refusal
 * is the verdict "dead", as a refused MIRROR_RESTORE is: the requests sent
 * again would not be safe.
 */
static int reserve_ids(struct hmmu *h, int sock, int64_t deadline,
		       uint64_t above, char *why, size_t size)
{
	struct hmmu_wire_reserve_ids req = { .above = above };
	struct pending p = { .op = HMMU_OP_RESERVE_IDS, .req = &req,
			     .req_len = sizeof(req), .fd = -1 };
	int err;

	p.id = new_id(h);
	err = hmmu_call_direct(sock, deadline, &p);
	if (err) {
		snprintf(why, size, "hmmud restarted, but the exchange to keep "
			 "ids up to %" PRIu64 " failed (%s)", above,
			 errname(err));
		return err;
	}
	if (!p.status || p.status == -EOPNOTSUPP)
		return 0;
	err = p.status < 0 ? p.status : -EPROTO;
	snprintf(why, size, "hmmud restarted, but refused to keep ids up to "
		 "%" PRIu64 " for what was ours (%s%s%.60s)", above,
		 errname(err), p.reason[0] ? ": " : "", p.reason);
	return err;
}

/* MIRROR_RESTORE for each mirror of @h, under the same id. */
static int restore_mirrors(struct hmmu *h, int sock, int64_t deadline,
			   char *why, size_t size)
{
	int err = 0;

	pthread_mutex_lock(&h->lock);
	for (struct hmmu_mirror *m = h->mirrors; m && !err; m = m->next) {
		struct hmmu_wire_mirror_restore req = {
			.mirror = m->id,
			.flags = (m->registered ? HMMU_RESTORE_REGISTERED : 0) |
				 (m->coarse ? HMMU_RESTORE_COARSE : 0),
		};
		struct pending p = { .id = ++h->next_id,
				     .op = HMMU_OP_MIRROR_RESTORE, .req = &req,
				     .req_len = sizeof(req), .fd = -1 };

		memcpy(req.device, m->device, sizeof(req.device));
		/* m stays listed: hmmu_mirror_destroy() waits for us. */
		pthread_mutex_unlock(&h->lock);
		err = hmmu_call_direct(sock, deadline, &p);
		if (!err && p.status)
			err = p.status < 0 ? p.status : -EPROTO;
		if (err)
			snprintf(why, size, "hmmud restarted, but did not make "
				 "mirror %" PRIu64 " on %s again (%s%s%.60s)",
				 req.mirror, req.device, errname(err),
				 p.reason[0] ? ": " : "", p.reason);
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return err;
}

/*
 * BUFFER_RESTORE for each buffer of @h, under the same id, with the memfd
 * it kept: the successor maps the same pages, so the buffer keeps its
 * address and what it held. A successor older than the op answers
 * -EOPNOTSUPP, and has none of them: *@lost, and the buffers die with the
 * restart, as before the op (buffer.c). One that refuses a buffer (its
 * limits, say) costs that buffer alone, its reason in b->refused: not the
 * connection, whose end would punch out the pages of the buffers made
 * again before it. Only a failed exchange is an error.
 */
static int restore_buffers(struct hmmu *h, int sock, int64_t deadline,
			   bool *lost, char *why, size_t size)
{
	int err = 0;

	*lost = false;
	pthread_mutex_lock(&h->lock);
	/* An earlier try's refusals: this successor answers for itself. */
	for (struct hmmu_buffer *b = h->buffers; b; b = b->next)
		if (!atomic_load(&b->lost))
			b->refused[0] = '\0';
	for (struct hmmu_buffer *b = h->buffers; b && !err && !*lost;
	     b = b->next) {
		struct hmmu_wire_buffer req = { .buffer = b->id,
						.bytes = b->bytes };
		struct pending p = { .op = HMMU_OP_BUFFER_RESTORE, .req = &req,
				     .req_len = sizeof(req), .fd = b->fd };

		/*
		 * Lost at an earlier restart: no longer ours to make again
		 * (and where that successor was older than RESERVE_IDS, its
		 * id may be another buffer's now).
		 */
		if (atomic_load(&b->lost))
			continue;
		p.id = ++h->next_id;
		/* b stays listed: hmmu_buffer_destroy() waits for us. */
		pthread_mutex_unlock(&h->lock);
		err = hmmu_call_direct(sock, deadline, &p);
		if (err)
			snprintf(why, size, "hmmud restarted, but the exchange "
				 "to make buffer %" PRIu64 " again failed (%s)",
				 req.buffer, errname(err));
		pthread_mutex_lock(&h->lock);
		if (!err && p.status == -EOPNOTSUPP)
			*lost = true;
		else if (!err && p.status)
			snprintf(b->refused, sizeof(b->refused),
				 "hmmud restarted, but did not make buffer "
				 "%" PRIu64 " of %" PRIu64 " bytes again "
				 "(%s%s%.60s)", req.buffer, req.bytes,
				 errname(p.status < 0 ? p.status : -EPROTO),
				 p.reason[0] ? ": " : "", p.reason);
	}
	pthread_mutex_unlock(&h->lock);
	return err;
}

/* A registered mirror of @h, for FAILSAFE: its id, or 0 if none. */
static uint64_t registered_mirror(struct hmmu *h)
{
	uint64_t id = 0;

	pthread_mutex_lock(&h->lock);
	for (struct hmmu_mirror *m = h->mirrors; m && !id; m = m->next)
		if (m->registered)
			id = m->id;
	pthread_mutex_unlock(&h->lock);
	return id;
}

/* Every request that had no reply, again, in the order they were listed. */
static int resend(struct hmmu *h, int sock, int64_t deadline, char *why,
		  size_t size)
{
	int err = 0;

	pthread_mutex_lock(&h->lock);
	for (struct pending *p = h->pending; p && !err; p = p->next) {
		if (p->done)
			continue;
		p->resent++;
		/* Its caller waits for our verdict: p stays, and its frame. */
		pthread_mutex_unlock(&h->lock);
		err = hmmu_send_pending(sock, deadline, p);
		if (err)
			snprintf(why, size, "hmmud restarted, but hung up again "
				 "as requests were sent again (%s)",
				 errname(err));
		pthread_mutex_lock(&h->lock);
	}
	pthread_mutex_unlock(&h->lock);
	return err;
}

/* Lock held: a request the daemon has died on RESEND_MAX times already? */
static bool poisoned(struct hmmu *h, char *why, size_t size)
{
	for (struct pending *p = h->pending; p; p = p->next) {
		if (p->done || p->resent < RESEND_MAX)
			continue;
		snprintf(why, size, GONE ": it hung up %u times while request "
			 "%u (%s) was in flight", p->resent + 1, p->op,
			 hmmu_proto_op_name(p->op));
		return true;
	}
	return false;
}

/* Lock held: wait for the readers and senders of the old socket to leave. */
static int old_socket_left(struct hmmu *h, int64_t deadline, char *why,
			   size_t size)
{
	while (h->reading || h->senders) {
		int64_t left = deadline - hmmu_now_ms();
		struct timespec until;

		if (left <= 0) {
			snprintf(why, size, "hmmud restarted, but a thread did "
				 "not leave the old connection in time");
			return -ETIMEDOUT;
		}
		/* cond waits on CLOCK_REALTIME, as wait_watcher_started(). */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += left / 1000;
		until.tv_nsec += (left % 1000) * 1000000;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&h->cond, &h->lock, &until);
	}
	return 0;
}

/*
 * One try: connect, HELLO, and if the same incarnation answers, make ours
 * again on @sock. 0, or -ECONNRESET if the new daemon hung up in turn
 * (it died too: try again), or the verdict "dead" with @why; *@kept if
 * the daemon that answered holds our state, *@lost if it could not make
 * the buffers again.
 */
static int try_once(struct hmmu *h, int64_t deadline, int budget, int *sock,
		    bool *answered, bool *kept, bool *lost, char *release,
		    char *why, size_t size)
{
	int err = hello_again(h, deadline, budget, sock, answered, release,
			      why, size);
	uint64_t above;

	*kept = !err;
	/*
	 * The daemon holds our state from here on, and serves our faults.
	 * Not before: a reader of the old socket may wait in one (on a new
	 * page of its stack), which only the watcher's rescue would end, and
	 * the rescue waits for our verdict. Once the readers are out, no
	 * reply is filed, and no registration noted, behind our back.
	 */
	pthread_mutex_lock(&h->lock);
	if (!err)
		err = old_socket_left(h, deadline, why, size);
	if (!err && poisoned(h, why, size))
		err = -ESHUTDOWN;
	/* Every reply of the old socket is filed: its ids are in. */
	above = h->max_id;
	pthread_mutex_unlock(&h->lock);
	if (!err)
		err = reserve_ids(h, *sock, deadline, above, why, size);
	if (!err)
		err = restore_mirrors(h, *sock, deadline, why, size);
	if (!err)
		err = hmmu_failsafe_rearm(h, *sock, deadline, new_id(h),
					  registered_mirror(h), why, size);
	/*
	 * Before the requests sent again, which may name a buffer; and as
	 * late as that: a buffer's connection that ends takes its pages
	 * with it (the daemon punches them out), so the less that can fail
	 * after, the less a verdict "dead" costs the buffers' contents.
	 */
	if (!err)
		err = restore_buffers(h, *sock, deadline, lost, why, size);
	if (!err)
		err = resend(h, *sock, deadline, why, size);
	if (!err)
		err = hmmu_socket_block(*sock);
	/* ESTALE: it could not adopt this process, or has another file. */
	if (err == -ESTALE)
		*kept = false;
	return err;
}

/*
 * Lock held, h->fd hung up, h->incarnation known: connect again and make
 * what the daemon kept ours again, or give the verdict "dead" (h->broken,
 * h->why). The lock is dropped meanwhile (see the top of the file).
 */
static void reconnect(struct hmmu *h)
{
	int budget = h->timeout_ms > 0 ? h->timeout_ms :
					  HMMU_CONNECT_TIMEOUT_MS;
	int64_t deadline = hmmu_now_ms() + budget;
	char why[HMMU_WHY_MAX] = "", release[HMMU_RELEASE_MAX] = "";
	int old = h->fd, sock = -1, err;
	bool answered = false, kept = false, lost = false;

	h->reconnecting = true;
	/*
	 * Whoever reads or sends on the old socket returns at once (it hung
	 * up anyway), then waits for our verdict.
	 */
	shutdown(old, SHUT_RDWR);
	pthread_mutex_unlock(&h->lock);

	/*
	 * The whole takes at most one budget: nothing here may hang. A
	 * successor that dies in turn (its socket hangs up) is one more
	 * restart: try its successor, within the same budget.
	 */
	for (int tries = 0;; tries++) {
		if (sock >= 0)
			close(sock);
		sock = -1;
		why[0] = '\0';
		/* One that accepts and hangs up at once must not spin us. */
		if (tries)
			poll(NULL, 0, 10);
		err = try_once(h, deadline, budget, &sock, &answered, &kept,
			       &lost, release, why, sizeof(why));
		if (err != -ECONNRESET || hmmu_now_ms() >= deadline)
			break;
	}

	pthread_mutex_lock(&h->lock);
	if (err) {
		if (sock >= 0)
			close(sock);
		snprintf(h->why, sizeof(h->why), "%s",
			 why[0] ? why : GONE ": its successor failed");
		/*
		 * Nobody answered: hmmud is gone, as before §11. Else one
		 * did, without what was ours: -ESHUTDOWN, pages or none.
		 */
		h->verdict = answered ? -ESHUTDOWN : -ECONNRESET;
		h->broken = h->verdict;
		h->kept = kept;
	} else {
		close(old);
		h->fd = sock;
		h->restarts++;
		/*
		 * Before reconnecting is cleared: a call that found one not
		 * lost a moment ago waits for us, goes to the successor and
		 * gets -ENOENT, which it reads as the loss (buffer.c).
		 */
		for (struct hmmu_buffer *b = h->buffers; b; b = b->next)
			if (lost || b->refused[0])
				atomic_store(&b->lost, true);
		/* hmmu_daemon_version(): the successor's, which may be newer. */
		memcpy(h->release, release, sizeof(h->release));
	}
	h->reconnecting = false;
	pthread_cond_broadcast(&h->cond);
}

int hmmu_connection_lost(struct hmmu *h, unsigned seen, int err, bool watcher)
{
	for (;;) {
		if (h->reconnecting) {
			pthread_cond_wait(&h->cond, &h->lock);
		} else if (h->broken) {
			return h->broken;
		} else if (h->restarts != seen) {
			return 0; /* another thread reconnected */
		} else if (!h->incarnation) {
			/* A daemon that keeps no state: as before §11. */
			h->broken = err;
		} else if (watcher || !h->fs.watching) {
			reconnect(h);
		} else {
			/* The watcher saw the hang-up too: its verdict. */
			pthread_cond_wait(&h->cond, &h->lock);
		}
	}
}
