/* SPDX-License-Identifier: MIT */
/*
 * Queues: submission and completion rings shared with a client.
 *
 * Everything in the shared memory is the client's to scribble on at any
 * moment. The daemon keeps its own copy of every index it relies on
 * (sq_head, cq_tail), reads the client's (sq_tail, cq_head, cq_flags) once
 * per use and bounds them by the ring size, copies each SQE once into its
 * own memory before looking at it (no double fetch), and computes every
 * slot it touches from its own indices modulo the ring size. The memfd is
 * sealed against shrinking and growing, so no mapping of it can SIGBUS.
 *
 * Locks, in this order: queues.lock (the lists: all queues, the ready list,
 * the servicers' state), then q->lock (q's scheduling state, its in-flight
 * count, and posting its CQEs). Neither is held while running anything.
 *
 * References to a queue: the list of all queues (until killed), the loop's
 * eventfd watch (until gone), the ready list or the servicer serving it
 * (while scheduled), and each submission running on a worker. The queue
 * holds a reference to its session, so the session's teardown comes after
 * the last of its queues.
 */
#include "queue.h"
#include "daemon.h"
#include "requests.h"
#include "session.h"
#include "../common/qring.h"
#include "../core/limits.h"
#include "../core/reason.h"
#include "../lib/log.h"
#include "../lib/loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

/*
 * How long a servicer stays with a queue that has nothing to do: it spins
 * for SPIN_NS (a client that submits right after reaping a completion is
 * caught without any sleep), then sleeps on the ring's tail, for at most
 * LINGER_NS since the last work, and only while no other queue waits for a
 * servicer. Then the queue parks and its doorbell is the eventfd.
 */
#define SPIN_NS 0
#define LINGER_NS 2000000

struct queue {
	atomic_uint refs;
	struct session *s;
	uint64_t id, mirror;
	uint32_t entries, mask;
	char *ring;
	size_t size;
	struct hmmu_wire_sqe *sqes;
	struct hmmu_wire_cqe *cqes;
	struct loop_watch watch; /* the eventfd doorbell */
	bool watched;		 /* loop thread only: the watch is on */
	struct queue *next;	 /* queues.all */
	struct queue *ready_next;

	/* The servicer's alone, while it serves the queue. */
	uint32_t sq_head;

	pthread_mutex_t lock; /* protects what follows */
	bool scheduled;	      /* on the ready list, or being served */
	bool stalled;	      /* waits for room: a completion goes on */
	atomic_bool dead; /* also read without q->lock (schedule_locked()) */
	uint32_t running; /* taken, completion not posted */
	uint32_t cq_tail;
};

struct servicer {
	pthread_t thread;
	struct queue *sleeping_on; /* under queues.lock */
};

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct queue *all;
	struct queue *ready, **ready_tail;
	struct servicer *sv;
	unsigned nsv;
	unsigned idle; /* servicers waiting for a ready queue */
	bool stop;
	uint64_t next_id;
	atomic_uint nstalled;
} queues = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.cond = PTHREAD_COND_INITIALIZER,
	.ready_tail = &queues.ready,
};

static _Atomic uint32_t *word(struct queue *q, enum hmmu_ring_word w)
{
	return qring_word(q->ring, w);
}

static void queue_get(struct queue *q)
{
	atomic_fetch_add_explicit(&q->refs, 1, memory_order_relaxed);
}

static void queue_put(struct queue *q)
{
	if (atomic_fetch_sub_explicit(&q->refs, 1, memory_order_acq_rel) != 1)
		return;
	munmap(q->ring, q->size);
	close(q->watch.fd);
	pthread_mutex_destroy(&q->lock);
	session_put(q->s); /* the queue's */
	free(q);
}

/*
 * Put @q on the ready list unless it is there, being served or dead. If no
 * servicer is free, wake those sleeping on a queue of their own: one of them
 * parks it and comes. queues.lock held.
 */
static void schedule_locked(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	if (q->scheduled || q->dead) {
		pthread_mutex_unlock(&q->lock);
		return;
	}
	q->scheduled = true;
	if (q->stalled) {
		q->stalled = false;
		atomic_fetch_sub(&queues.nstalled, 1);
	}
	pthread_mutex_unlock(&q->lock);
	queue_get(q); /* the ready list's, then the servicer's */
	q->ready_next = NULL;
	*queues.ready_tail = q;
	queues.ready_tail = &q->ready_next;
	if (queues.idle) {
		pthread_cond_signal(&queues.cond);
		return;
	}
	for (unsigned i = 0; i < queues.nsv; i++) {
		struct queue *other = queues.sv[i].sleeping_on;

		if (other)
			qring_futex_wake(word(other, HMMU_RING_SQ_TAIL));
	}
}

static void schedule(struct queue *q)
{
	pthread_mutex_lock(&queues.lock);
	schedule_locked(q);
	pthread_mutex_unlock(&queues.lock);
}

static bool others_ready(void)
{
	bool ready;

	pthread_mutex_lock(&queues.lock);
	ready = queues.ready != NULL;
	pthread_mutex_unlock(&queues.lock);
	return ready;
}

/* Post a completion; wake the client if it said it sleeps. Any thread. */
static void post(struct queue *q, const struct hmmu_wire_cqe *cqe)
{
	bool resume;

	pthread_mutex_lock(&q->lock);
	q->cqes[q->cq_tail & q->mask] = *cqe;
	q->cq_tail++;
	atomic_store_explicit(word(q, HMMU_RING_CQ_TAIL), q->cq_tail,
			      memory_order_release);
	q->running--;
	resume = q->stalled;
	pthread_mutex_unlock(&q->lock);
	/* Against the client's "set WAITING, then read the tail". */
	qring_full_barrier();
	if (atomic_load_explicit(word(q, HMMU_RING_CQ_FLAGS),
				 memory_order_relaxed) & HMMU_CQ_WAITING)
		qring_futex_wake(word(q, HMMU_RING_CQ_TAIL));
	if (resume)
		schedule(q);
}

struct inflight {
	struct queue *q;
	uint64_t user_data;
	uint32_t op;
};

/* requests.c's reply of a submission: its completion. On a worker. */
static void submission_done(void *arg, int status, const void *payload,
			    size_t len)
{
	struct inflight *f = arg;
	struct hmmu_wire_cqe cqe = {
		.user_data = f->user_data,
		.status = status,
		.op = f->op,
	};

	if (f->op == HMMU_SQE_CMD &&
	    len >= sizeof(struct hmmu_wire_cmd_result)) {
		const struct hmmu_wire_cmd_result *r = payload;

		cqe.cpages = r->cpages;
		cqe.faults = r->faults;
	} else if (f->op == HMMU_SQE_JOB &&
		   len >= sizeof(struct hmmu_wire_job_result)) {
		const struct hmmu_wire_job_result *r = payload;

		cqe.result = r->result;
		cqe.faults = r->faults;
		cqe.elapsed_ns = r->elapsed_ns;
	}
	post(f->q, &cqe);
	queue_put(f->q);
	free(f);
}

/*
 * The request an SQE (our own copy) stands for, checked by the decoder of
 * the socket's requests. 0, or -errno with the completion's status.
 */
static int sqe_to_request(struct queue *q, const struct hmmu_wire_sqe *sqe,
			  void *msg, size_t *len)
{
	struct hmmu_wire_hdr *h = msg;
	char why[160];
	size_t n;
	int err;

	if (sqe->reserved || sqe->reserved2)
		return -EINVAL;
	if (sqe->op == HMMU_SQE_CMD) {
		struct hmmu_wire_device_cmd c = sqe->u.cmd;

		/* Only what needs no help from the client in between. */
		if (c.mirror || (c.cmd != HMMU_CMD_READ && c.cmd != HMMU_CMD_WRITE &&
				 c.cmd != HMMU_CMD_SNAPSHOT))
			return -EINVAL;
		c.mirror = q->mirror;
		n = sizeof(c);
		memcpy(h + 1, &c, n);
		h->op = HMMU_OP_DEVICE_CMD;
	} else if (sqe->op == HMMU_SQE_JOB) {
		struct hmmu_wire_job j = sqe->u.job;

		if (j.mirror)
			return -EINVAL;
		j.mirror = q->mirror;
		n = sizeof(j);
		memcpy(h + 1, &j, n);
		h->op = HMMU_OP_JOB;
	} else {
		return -EINVAL;
	}
	h->magic = HMMU_PROTO_MAGIC;
	h->flags = 0;
	h->status = 0;
	h->id = sqe->user_data;
	h->len = (uint32_t)(sizeof(*h) + n);
	err = hmmu_proto_check_why(msg, h->len, 0, why, sizeof(why));
	if (err)
		log_debug("client %d: queue %llu: bad submission: %s",
			  q->s->peer.pid, (unsigned long long)q->id, why);
	*len = h->len;
	return err;
}

/* Run one SQE we copied: a NOP here, the rest on the request path. */
static void submit_one(struct queue *q, const struct hmmu_wire_sqe *sqe)
{
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} msg;
	struct hmmu_wire_cqe cqe = { .user_data = sqe->user_data };
	struct inflight *f;
	size_t len;
	int err;

	if (sqe->op == HMMU_SQE_NOP) {
		cqe.op = HMMU_SQE_NOP;
		cqe.status = sqe->reserved || sqe->reserved2 ? -EINVAL : 0;
		post(q, &cqe);
		return;
	}
	err = sqe_to_request(q, sqe, &msg, &len);
	if (!err) {
		cqe.op = sqe->op;
		f = malloc(sizeof(*f));
		err = -ENOMEM;
		if (f) {
			*f = (struct inflight){ q, sqe->user_data, sqe->op };
			queue_get(q); /* the submission's */
			err = request_dispatch_queued(q->s, &msg.hdr, len,
						      submission_done, f);
			if (err) {
				queue_put(q);
				free(f);
			}
		}
	}
	if (err) {
		cqe.status = err;
		post(q, &cqe);
	}
}

/*
 * Whether another submission may start: room for its completion in the
 * ring (counting those running), and the connection under its share of
 * requests in flight. If not, the queue is marked stalled (q->lock held).
 */
static bool room_locked(struct queue *q)
{
	uint32_t head = atomic_load_explicit(word(q, HMMU_RING_CQ_HEAD),
					     memory_order_acquire);
	uint32_t used = q->cq_tail - head;

	/* A head the client moved past our tail, or far back: no room. */
	if (used > q->entries || used + q->running >= q->entries ||
	    atomic_load(&q->s->inflight) >= limits.requests_per_connection)
		return false;
	return true;
}

/*
 * Copy an SQE out of the ring, each word read exactly once (volatile: the
 * compiler may not read the shared copy again where it uses ours), so that
 * what the client writes there meanwhile is never seen half-checked.
 */
static void read_once(struct hmmu_wire_sqe *out, const struct hmmu_wire_sqe *in)
{
	const volatile uint64_t *src = (const volatile uint64_t *)in;
	uint64_t w[sizeof(*out) / sizeof(uint64_t)];

	_Static_assert(sizeof(*out) % sizeof(uint64_t) == 0, "SQE in words");
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		w[i] = src[i];
	memcpy(out, w, sizeof(*out));
}

/*
 * Take what the client submitted, up to what there is room for. Returns
 * how many were taken, or -EAGAIN if the queue must wait for room.
 */
static int drain(struct queue *q)
{
	uint32_t tail = atomic_load_explicit(word(q, HMMU_RING_SQ_TAIL),
					     memory_order_acquire);
	uint32_t avail = tail - q->sq_head;
	int n = 0;

	/* A tail out of range means at most a ringful, as io_uring reads it. */
	if (avail > q->entries)
		avail = q->entries;
	while ((uint32_t)n < avail) {
		struct hmmu_wire_sqe sqe;
		bool ok, dead;

		pthread_mutex_lock(&q->lock);
		dead = q->dead;
		ok = !dead && room_locked(q);
		if (ok)
			q->running++;
		pthread_mutex_unlock(&q->lock);
		if (!ok)
			return dead ? n : -EAGAIN;
		read_once(&sqe, &q->sqes[q->sq_head & q->mask]);
		q->sq_head++;
		atomic_store_explicit(word(q, HMMU_RING_SQ_HEAD), q->sq_head,
				      memory_order_release);
		submit_one(q, &sqe);
		n++;
	}
	return n;
}

/*
 * Stop serving @q, with @flags telling the client how to ring. False if it
 * turned out to have work after all (we serve on).
 */
static bool unschedule(struct queue *q, bool stalled)
{
	_Atomic uint32_t *tail = word(q, HMMU_RING_SQ_TAIL);
	uint32_t head = q->sq_head;

	atomic_store(word(q, HMMU_RING_SQ_FLAGS), HMMU_SQ_NEED_EVENT);
	/* Against the client's "publish the tail, then read the flags". */
	qring_full_barrier();
	if (!stalled && atomic_load(tail) != head) {
		atomic_store(word(q, HMMU_RING_SQ_FLAGS), 0);
		return false;
	}
	pthread_mutex_lock(&q->lock);
	if (stalled && !q->dead && room_locked(q)) {
		pthread_mutex_unlock(&q->lock);
		atomic_store(word(q, HMMU_RING_SQ_FLAGS), 0);
		return false;
	}
	q->scheduled = false;
	if (stalled && !q->dead) {
		q->stalled = true;
		atomic_fetch_add(&queues.nstalled, 1);
	}
	pthread_mutex_unlock(&q->lock);
	/*
	 * A doorbell or a completion that came while we were still marked
	 * scheduled found nothing to do: look again.
	 */
	qring_full_barrier();
	if (atomic_load(tail) != head ||
	    (stalled && atomic_load(&q->s->inflight) < limits.requests_per_connection))
		schedule(q);
	return true;
}

/* Serve @q until it parks or stalls; consumes the reference it came with. */
static void serve(struct servicer *sv, struct queue *q)
{
	_Atomic uint32_t *tail = word(q, HMMU_RING_SQ_TAIL);
	int64_t last = qring_now_ns();

	atomic_store(word(q, HMMU_RING_SQ_FLAGS), 0);
	for (;;) {
		int64_t now, spin_end;
		bool dead;
		int n;

		pthread_mutex_lock(&q->lock);
		dead = q->dead;
		pthread_mutex_unlock(&q->lock);
		if (dead) {
			pthread_mutex_lock(&q->lock);
			q->scheduled = false;
			pthread_mutex_unlock(&q->lock);
			break;
		}
		n = drain(q);
		if (n == -EAGAIN) {
			if (unschedule(q, true))
				break;
			continue;
		}
		now = qring_now_ns();
		if (n > 0) {
			last = now;
			/* Take turns with the queues that wait. */
			if (others_ready()) {
				pthread_mutex_lock(&queues.lock);
				q->ready_next = NULL;
				*queues.ready_tail = q;
				queues.ready_tail = &q->ready_next;
				pthread_mutex_unlock(&queues.lock);
				return; /* the reference goes with it */
			}
			continue;
		}
		if (others_ready()) {
			if (unschedule(q, false))
				break;
			continue;
		}
		spin_end = now + SPIN_NS;
		while (atomic_load_explicit(tail, memory_order_relaxed) == q->sq_head &&
		       qring_now_ns() < spin_end)
			qring_relax();
		if (atomic_load_explicit(tail, memory_order_relaxed) != q->sq_head)
			continue;
		now = qring_now_ns();
		if (others_ready() || now - last >= LINGER_NS) {
			if (unschedule(q, false))
				break;
			continue;
		}
		/* Sleep on the doorbell: the client wakes us after its tail. */
		atomic_store(word(q, HMMU_RING_SQ_FLAGS), HMMU_SQ_NEED_WAKEUP);
		qring_full_barrier();
		if (atomic_load(tail) == q->sq_head) {
			pthread_mutex_lock(&queues.lock);
			sv->sleeping_on = queues.ready ? NULL : q;
			pthread_mutex_unlock(&queues.lock);
			if (sv->sleeping_on)
				qring_futex_wait(tail, q->sq_head,
						 LINGER_NS - (now - last));
			pthread_mutex_lock(&queues.lock);
			sv->sleeping_on = NULL;
			pthread_mutex_unlock(&queues.lock);
		}
		atomic_store(word(q, HMMU_RING_SQ_FLAGS), 0);
	}
	queue_put(q);
}

static void *servicer_main(void *arg)
{
	struct servicer *sv = arg;

	pthread_mutex_lock(&queues.lock);
	while (!queues.stop) {
		struct queue *q = queues.ready;

		if (!q) {
			queues.idle++;
			pthread_cond_wait(&queues.cond, &queues.lock);
			queues.idle--;
			continue;
		}
		queues.ready = q->ready_next;
		if (!queues.ready)
			queues.ready_tail = &queues.ready;
		pthread_mutex_unlock(&queues.lock);
		serve(sv, q);
		pthread_mutex_lock(&queues.lock);
	}
	pthread_mutex_unlock(&queues.lock);
	return NULL;
}

/* Start the servicers with the first queue. queues.lock held. */
static int servicers_start_locked(void)
{
	unsigned n = limits.queue_threads;

	if (queues.sv)
		return 0;
	queues.sv = calloc(n, sizeof(*queues.sv));
	if (!queues.sv)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		int err = pthread_create(&queues.sv[i].thread, NULL,
					 servicer_main, &queues.sv[i]);

		if (err) {
			if (i == 0) {
				free(queues.sv);
				queues.sv = NULL;
				return -err;
			}
			break;
		}
		queues.nsv++;
	}
	return 0;
}

void queues_stop(void)
{
	pthread_mutex_lock(&queues.lock);
	queues.stop = true;
	pthread_cond_broadcast(&queues.cond);
	pthread_mutex_unlock(&queues.lock);
	for (unsigned i = 0; i < queues.nsv; i++)
		pthread_join(queues.sv[i].thread, NULL);
	free(queues.sv);
	queues.sv = NULL;
	queues.nsv = 0;
	/* What was still on the ready list had no servicer left. */
	while (queues.ready) {
		struct queue *q = queues.ready;

		queues.ready = q->ready_next;
		queue_put(q);
	}
	queues.ready_tail = &queues.ready;
}

/* The eventfd doorbell of a parked queue rang (loop thread). */
static void doorbell_ready(struct loop_watch *w, unsigned revents)
{
	struct queue *q = (struct queue *)((char *)w -
					   offsetof(struct queue, watch));
	uint64_t n;

	(void)revents;
	while (read(w->fd, &n, sizeof(n)) == sizeof(n))
		;
	schedule(q);
}

static void doorbell_gone(struct loop_watch *w)
{
	queue_put((struct queue *)((char *)w - offsetof(struct queue, watch)));
}

/* Holds a reference of its own, which it drops (queue_kill()). */
static void unwatch_on_loop(void *arg)
{
	struct queue *q = arg;

	/* Not watched yet: watch_on_loop() will find it dead. */
	if (q->watched)
		loop_watch_remove(q->s->d->loop, &q->watch);
	queue_put(q);
}

static void watch_on_loop(void *arg)
{
	struct queue *q = arg;
	bool dead;

	pthread_mutex_lock(&q->lock);
	dead = q->dead;
	pthread_mutex_unlock(&q->lock);
	/* Killed before the loop came to it: never watched. */
	if (dead || loop_watch_add(q->s->d->loop, &q->watch) < 0)
		queue_put(q); /* the watch's */
	else
		q->watched = true;
}

/*
 * Stop @q: no more submissions are taken; those running complete into the
 * memory only the daemon still maps, if the client unmapped it. The caller
 * took it off queues.all, with the list's reference.
 */
static void queue_kill(struct queue *q)
{
	pthread_mutex_lock(&q->lock);
	q->dead = true;
	pthread_mutex_unlock(&q->lock);
	/* A servicer asleep on it comes back and lets it go. */
	qring_futex_wake(word(q, HMMU_RING_SQ_TAIL));
	/*
	 * The unwatch gets its own reference: a watch_on_loop() deferred
	 * before it may drop the watch's, the last but this one, first.
	 */
	queue_get(q);
	if (loop_is_current(q->s->d->loop)) {
		unwatch_on_loop(q);
	} else if (loop_defer(q->s->d->loop, unwatch_on_loop, q) < 0) {
		log_err("client %d: queue %llu: cannot stop watching its "
			"doorbell: out of memory", q->s->peer.pid,
			(unsigned long long)q->id);
		queue_put(q);
	}
	queue_put(q); /* the list's */
}

static int map_ring(struct queue *q, int *memfd)
{
	int fd = memfd_create("hmmu-queue", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	if (fd < 0)
		return -errno;
	/*
	 * Sealed before the client sees it: a client that could shrink it
	 * would make our next touch of the ring a SIGBUS.
	 */
	if (ftruncate(fd, (off_t)q->size) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	/* Populated now: its pages are ours, charged before the client maps. */
	q->ring = mmap(NULL, q->size, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, fd, 0);
	if (q->ring == MAP_FAILED) {
		int err = -errno;

		close(fd);
		return err;
	}
	*memfd = fd;
	return 0;
}

int queue_create(struct session *s, uint64_t mirror, uint32_t entries,
		 struct hmmu_wire_queue_reply *rep, int fds[2],
		 struct reply_reason *why)
{
	struct queue *q;
	uint32_t sqes_off, cqes_off, n = 1;
	uint64_t size, id = 0;
	unsigned mine = 0;
	int err;

	while (n < entries)
		n <<= 1;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	qring_layout(n, &sqes_off, &cqes_off, &size);
	q->entries = n;
	q->mask = n - 1;
	q->size = size;
	q->mirror = mirror;
	q->s = s;
	pthread_mutex_init(&q->lock, NULL);
	err = map_ring(q, &fds[0]);
	if (err) {
		pthread_mutex_destroy(&q->lock);
		free(q);
		return reason_set(why, err, "hmmud could not make the queue's "
				  "shared memory: %s", strerror(-err));
	}
	q->sqes = (struct hmmu_wire_sqe *)(q->ring + sqes_off);
	q->cqes = (struct hmmu_wire_cqe *)(q->ring + cqes_off);
	/* Parked from the start: the first submission rings the eventfd. */
	atomic_store(word(q, HMMU_RING_SQ_FLAGS), HMMU_SQ_NEED_EVENT);
	q->watch.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	q->watch.ready = doorbell_ready;
	q->watch.gone = doorbell_gone;
	if (q->watch.fd < 0 || (fds[1] = dup(q->watch.fd)) < 0) {
		err = -errno;
		if (q->watch.fd >= 0)
			close(q->watch.fd);
		munmap(q->ring, q->size);
		close(fds[0]);
		pthread_mutex_destroy(&q->lock);
		free(q);
		return err;
	}

	pthread_mutex_lock(&queues.lock);
	for (struct queue *o = queues.all; o; o = o->next)
		mine += o->s == s;
	err = mine >= limits.queues_per_connection ? -ENOSPC :
						     servicers_start_locked();
	if (!err) {
		q->id = id = ++queues.next_id;
		atomic_init(&q->refs, 2); /* the list's and the watch's */
		session_get(s);		  /* the queue's */
		q->next = queues.all;
		queues.all = q;
	}
	pthread_mutex_unlock(&queues.lock);
	if (err) {
		if (err == -ENOSPC) {
			log_warn("client %d: refused a queue: its connection "
				 "has %u, the limit (--limit "
				 "queues-per-connection)", s->peer.pid, mine);
			reason_set(why, err, "this connection has as many "
				   "queues as hmmud allows (%u, --limit "
				   "queues-per-connection): destroy some",
				   limits.queues_per_connection);
		}
		close(q->watch.fd);
		close(fds[0]);
		close(fds[1]);
		munmap(q->ring, q->size);
		pthread_mutex_destroy(&q->lock);
		free(q);
		return err;
	}
	/*
	 * From here on @q is on the list and may be killed and freed at any
	 * moment (the client dying, a concurrent destroy): the reply is built
	 * from locals only.
	 */
	if (loop_defer(s->d->loop, watch_on_loop, q) < 0)
		queue_put(q);
	*rep = (struct hmmu_wire_queue_reply){
		.queue = id,
		.entries = n,
		.size = size,
		.sqes_off = sqes_off,
		.cqes_off = cqes_off,
	};
	return 0;
}

/* Take the queues of @s that @match off the list, and kill them. */
static unsigned kill_matching(struct session *s, bool (*match)(struct queue *q,
							       uint64_t arg),
			      uint64_t arg)
{
	struct queue *dying = NULL;
	unsigned n = 0;

	pthread_mutex_lock(&queues.lock);
	for (struct queue **pp = &queues.all; *pp;) {
		struct queue *q = *pp;

		if (q->s == s && match(q, arg)) {
			*pp = q->next;
			q->next = dying;
			dying = q;
		} else {
			pp = &q->next;
		}
	}
	pthread_mutex_unlock(&queues.lock);
	while (dying) {
		struct queue *q = dying;

		dying = q->next;
		queue_kill(q);
		n++;
	}
	return n;
}

static bool by_id(struct queue *q, uint64_t id)
{
	return q->id == id;
}

static bool by_mirror(struct queue *q, uint64_t mirror)
{
	return q->mirror == mirror;
}

static bool any(struct queue *q, uint64_t arg)
{
	(void)q;
	(void)arg;
	return true;
}

void queue_reserve_ids(uint64_t above)
{
	pthread_mutex_lock(&queues.lock);
	if (queues.next_id < above)
		queues.next_id = above;
	pthread_mutex_unlock(&queues.lock);
}

int queue_destroy(struct session *s, uint64_t id)
{
	return kill_matching(s, by_id, id) ? 0 : -ENOENT;
}

void queue_mirror_gone(struct session *s, uint64_t mirror)
{
	kill_matching(s, by_mirror, mirror);
}

void queue_session_closed(struct session *s)
{
	kill_matching(s, any, 0);
}

void queue_session_kick(struct session *s)
{
	/* The common case, no queue stalled anywhere, costs one load. */
	if (!atomic_load(&queues.nstalled))
		return;
	pthread_mutex_lock(&queues.lock);
	for (struct queue *q = queues.all; q; q = q->next) {
		bool stalled;

		if (q->s != s)
			continue;
		pthread_mutex_lock(&q->lock);
		stalled = q->stalled;
		pthread_mutex_unlock(&q->lock);
		if (stalled)
			schedule_locked(q);
	}
	pthread_mutex_unlock(&queues.lock);
}
