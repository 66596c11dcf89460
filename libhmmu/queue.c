/* SPDX-License-Identifier: MIT */
/*
 * Queues, the client side: the rings the daemon made (docs/protocol.md §9).
 * We own sq_tail, cq_head and cq_flags; the daemon owns the rest. The
 * daemon trusts nothing we write, and we trust only its indices within the
 * ring (a CQE count past the ring is the daemon's bug: -EPROTO).
 */
#include "internal.h"
#include "../common/qring.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* How long hmmu_queue_wait() spins before it sleeps. */
#define WAIT_SPIN_NS 0
/*
 * How often a sleeping hmmu_queue_wait() looks whether hmmud restarted:
 * its successor never completes, nor wakes, what the rings it did not
 * make hold, so the queue is made again (revive()).
 */
#define WAIT_RESTART_CHECK_NS (100 * 1000000LL)
/* Restarts one revival follows (each a new daemon dying under it). */
#define REVIVE_TRIES 4

/*
 * Every submission has a tag, 0 to entries - 1, which is what goes to the
 * daemon as its user_data; the caller's user_data, and the SQE itself,
 * stay here until its completion is reaped. So after a restart the queue
 * knows what its rings held that no completion answered, and sends it
 * again on rings the successor makes (commands and jobs may run twice:
 * each leaves what it leaves once, as a request sent again does).
 */
struct tagged {
	struct hmmu_wire_sqe sqe; /* as prepared; its user_data is the tag */
	uint64_t user_data;	  /* the caller's */
	uint32_t seq;		  /* the order it was prepared in */
	bool live;		  /* prepared, in flight, or completed */
};

struct hmmu_queue {
	struct hmmu *h; /* its connection: outlives the queue */
	uint64_t mirror;
	uint64_t id;
	uint32_t entries, mask;
	char *ring;
	size_t size;
	struct hmmu_wire_sqe *sqes;
	struct hmmu_wire_cqe *cqes;
	int efd;
	uint32_t sq_tail;  /* ours, with what is prepared and not submitted */
	uint32_t cq_head;
	unsigned restarts; /* the connection's when it was made: struct hmmu */
	bool dead;	   /* a restart it could not be made again after */
	/* Tags: each submission's until its completion is reaped. */
	struct tagged *tags;
	uint16_t *free_tags;
	unsigned nfree;
	uint32_t seq;
	/* Completions the rings of a dead daemon held, reaped first. */
	struct hmmu_wire_cqe *backlog;
	unsigned nbacklog, backlog_head;
};

_Static_assert(sizeof(struct hmmu_cqe) == sizeof(struct hmmu_wire_cqe) &&
		       offsetof(struct hmmu_cqe, elapsed_ns) ==
			       offsetof(struct hmmu_wire_cqe, elapsed_ns) &&
		       offsetof(struct hmmu_cqe, result) ==
			       offsetof(struct hmmu_wire_cqe, result),
	       "a CQE is the wire's");
_Static_assert(HMMU_QUEUE_MAX == HMMU_QUEUE_MAX_ENTRIES, "queue size");
_Static_assert(HMMU_QUEUE_MAX <= 65536, "a tag is 16 bits");
_Static_assert((int)HMMU_QUEUE_NOP == HMMU_SQE_NOP &&
		       (int)HMMU_QUEUE_CMD == HMMU_SQE_CMD &&
		       (int)HMMU_QUEUE_JOB == HMMU_SQE_JOB,
	       "queue ops are the wire's");

static _Atomic uint32_t *word(struct hmmu_queue *q, enum hmmu_ring_word w)
{
	return qring_word(q->ring, w);
}

/* The rings one QUEUE_CREATE made. */
struct rings {
	uint64_t id;
	uint32_t entries;
	char *ring;
	size_t size;
	uint32_t sqes_off, cqes_off;
	int efd;
	unsigned restarts; /* of the connection, when the daemon replied */
};

/*
 * QUEUE_CREATE for @mirror of @h, at least @entries, the rings mapped
 * into @r. 0 or -errno (detail set).
 */
static int rings_make(struct hmmu *h, uint64_t mirror, unsigned entries,
		      struct rings *r)
{
	struct hmmu_wire_queue_create req = { .mirror = mirror,
					      .entries = entries };
	struct hmmu_wire_queue_reply rep;
	uint64_t size;
	int fds[2], err;
	struct pending p = { .op = HMMU_OP_QUEUE_CREATE, .req = &req,
			     .req_len = sizeof(req), .fd = -1, .out = &rep,
			     .cap = sizeof(rep), .fds = fds, .nfds = 2 };

	memset(&rep, 0, sizeof(rep));
	err = hmmu_request(h, &p);
	if (err)
		return err;
	/* The layout is the one both ends compute: check the daemon's. */
	qring_layout(rep.entries, &r->sqes_off, &r->cqes_off, &size);
	if (rep.entries < entries || rep.entries > HMMU_QUEUE_MAX ||
	    (rep.entries & (rep.entries - 1)) || rep.sqes_off != r->sqes_off ||
	    rep.cqes_off != r->cqes_off || rep.size != size) {
		err = -EPROTO;
		goto err_fds;
	}
	r->ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0],
		       0);
	if (r->ring == MAP_FAILED) {
		err = -errno;
		goto err_fds;
	}
	/* A child must not reach the rings, which act for this process. */
	if (madvise(r->ring, size, MADV_DONTFORK) < 0) {
		err = -errno;
		munmap(r->ring, size);
		goto err_fds;
	}
	close(fds[0]);
	r->id = rep.queue;
	r->entries = rep.entries;
	r->size = size;
	r->efd = fds[1];
	r->restarts = p.restarts;
	return 0;

err_fds:
	close(fds[0]);
	close(fds[1]);
	/* The daemon made it: let it go there too. */
	{
		struct hmmu_wire_queue_id id = { .queue = rep.queue };

		hmmu_call(h, HMMU_OP_QUEUE_DESTROY, &id, sizeof(id), -1,
			  NULL, 0);
	}
	return err;
}

/* Work on @r from now on; the rings before are the caller's to free. */
static void rings_use(struct hmmu_queue *q, const struct rings *r)
{
	q->id = r->id;
	q->ring = r->ring;
	q->size = r->size;
	q->sqes = (struct hmmu_wire_sqe *)(r->ring + r->sqes_off);
	q->cqes = (struct hmmu_wire_cqe *)(r->ring + r->cqes_off);
	q->efd = r->efd;
	q->restarts = r->restarts;
	q->sq_tail = atomic_load(word(q, HMMU_RING_SQ_TAIL));
	q->cq_head = atomic_load(word(q, HMMU_RING_CQ_HEAD));
}

/*
 * Let go of rings rings_make() made and nobody uses: unmapped, and, if
 * @destroy, gone on the daemon too (not on one that died since).
 */
static void rings_free(struct hmmu *h, struct rings *r, bool destroy)
{
	if (destroy) {
		struct hmmu_wire_queue_id id = { .queue = r->id };

		hmmu_call(h, HMMU_OP_QUEUE_DESTROY, &id, sizeof(id), -1,
			  NULL, 0);
	}
	munmap(r->ring, r->size);
	close(r->efd);
}

static void queue_free(struct hmmu_queue *q)
{
	free(q->tags);
	free(q->free_tags);
	free(q->backlog);
	free(q);
}

/* Ring the doorbell if the daemon asked for it (after a new sq_tail). */
static int doorbell(struct hmmu_queue *q)
{
	uint32_t flags;

	/* Against the daemon's "set the flags, then read the tail". */
	qring_full_barrier();
	flags = atomic_load_explicit(word(q, HMMU_RING_SQ_FLAGS),
				     memory_order_relaxed);
	if (flags & HMMU_SQ_NEED_EVENT) {
		uint64_t one = 1;

		/* EAGAIN: the counter is full, so a wake-up is pending. */
		if (write(q->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			return -errno;
	} else if (flags & HMMU_SQ_NEED_WAKEUP) {
		qring_futex_wake(word(q, HMMU_RING_SQ_TAIL));
	}
	return 0;
}

static int by_seq(const void *a, const void *b)
{
	const struct tagged *x = *(const struct tagged *const *)a;
	const struct tagged *y = *(const struct tagged *const *)b;

	/* Free-running: the older is the one behind. */
	return x->seq == y->seq ? 0 : (int32_t)(x->seq - y->seq) < 0 ? -1 : 1;
}

/*
 * hmmud restarted since the rings were made, and kept this process's
 * state (the connection's restart count moved: reconnect.c): the
 * successor never serves rings it did not make. Keep the completions the
 * old rings hold, make new rings for the same mirror, and put there, in
 * their order, the submissions no completion answered: those the old
 * daemon never took, those it took and died on (they run again), and
 * those prepared and not submitted (published at the next submit).
 * 0, or -errno with the detail set; the queue is unchanged then.
 */
static int revive(struct hmmu_queue *q)
{
	uint32_t unpublished = q->sq_tail - atomic_load(word(q, HMMU_RING_SQ_TAIL));
	uint32_t tail = atomic_load_explicit(word(q, HMMU_RING_CQ_TAIL),
					     memory_order_acquire);
	/* The submissions from this one on were prepared, not submitted. */
	uint32_t first_unpublished = q->seq - unpublished;
	struct tagged *order[HMMU_QUEUE_MAX];
	bool answered[HMMU_QUEUE_MAX] = { false };
	unsigned n = 0, submitted = 0;
	struct rings r;
	int err = 0;

	if (tail - q->cq_head > q->entries)
		return -EPROTO;
	/* Answered: in the old rings, or kept from a restart before. */
	for (uint32_t i = q->cq_head; i != tail; i++) {
		uint64_t tag = q->cqes[i & q->mask].user_data;

		if (tag >= q->entries || !q->tags[tag].live)
			return -EPROTO;
		answered[tag] = true;
	}
	for (unsigned i = q->backlog_head; i < q->nbacklog; i++)
		answered[q->backlog[i].user_data] = true;
	for (int tries = 0;; tries++) {
		err = rings_make(q->h, q->mirror, q->entries, &r);
		if (err || r.restarts == atomic_load(&q->h->restarts))
			break;
		/* Made by a daemon that died in turn: its successor's. */
		rings_free(q->h, &r, false);
		if (tries + 1 == REVIVE_TRIES) {
			err = -ESHUTDOWN;
			break;
		}
	}
	if (err) {
		hmmu_set_detail("hmmud restarted, and this queue could not be "
				"made again (%s): make it anew",
				strerrorname_np(-err) ? strerrorname_np(-err) :
							"?");
		return err == -ESHUTDOWN || err == -ECONNRESET ? err :
								   -ESHUTDOWN;
	}
	if (r.entries != q->entries) {
		rings_free(q->h, &r, true);
		hmmu_set_detail("hmmud restarted, and made this queue again "
				"with %u entries, not %u", r.entries,
				q->entries);
		return -ESHUTDOWN;
	}
	/* The old rings' completions, after those kept before: each is live. */
	memmove(q->backlog, q->backlog + q->backlog_head,
		(q->nbacklog - q->backlog_head) * sizeof(*q->backlog));
	q->nbacklog -= q->backlog_head;
	q->backlog_head = 0;
	for (uint32_t i = q->cq_head; i != tail; i++)
		q->backlog[q->nbacklog++] = q->cqes[i & q->mask];
	for (unsigned t = 0; t < q->entries; t++)
		if (q->tags[t].live && !answered[t])
			order[n++] = &q->tags[t];
	qsort(order, n, sizeof(order[0]), by_seq);

	munmap(q->ring, q->size);
	close(q->efd);
	rings_use(q, &r);
	for (unsigned i = 0; i < n; i++) {
		struct tagged *t = order[i];

		q->sqes[q->sq_tail++ & q->mask] = t->sqe;
		/* Submitted before: submitted again now; the rest waits. */
		if ((int32_t)(t->seq - first_unpublished) < 0)
			submitted = i + 1;
	}
	atomic_store_explicit(word(q, HMMU_RING_SQ_TAIL),
			      q->sq_tail - (n - submitted),
			      memory_order_release);
	return submitted ? doorbell(q) : 0;
}

/* The queue, made again first if hmmud restarted since. 0 or -errno. */
static int queue_current(struct hmmu_queue *q)
{
	int err;

	if (q->dead) {
		hmmu_set_detail("hmmud restarted, and this queue could not be "
				"made again: make it anew");
		return -ESHUTDOWN;
	}
	if (q->restarts == atomic_load(&q->h->restarts))
		return 0;
	err = revive(q);
	/* Not tried again: each try would make the daemon work for nothing. */
	q->dead = err != 0;
	return err;
}

static int check_queue(struct hmmu_queue *q)
{
	if (!q)
		return -EINVAL;
	if (!hmmu_is_owner(q->h)) {
		hmmu_set_detail("this queue belongs to the parent process; "
				"after fork(), connect and make a queue anew in "
				"the child");
		return -ECHILD;
	}
	return queue_current(q);
}

HMMU_EXPORT int hmmu_queue_create(struct hmmu_mirror *m, unsigned entries,
				  struct hmmu_queue **out)
{
	struct hmmu_queue *q;
	struct rings r;
	int err;

	hmmu_clear_detail();
	if (!m || !out || entries == 0 || entries > HMMU_QUEUE_MAX)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	err = rings_make(m->h, m->id, entries, &r);
	if (err) {
		free(q);
		return err;
	}
	q->tags = calloc(r.entries, sizeof(*q->tags));
	q->free_tags = calloc(r.entries, sizeof(*q->free_tags));
	q->backlog = calloc(r.entries, sizeof(*q->backlog));
	if (!q->tags || !q->free_tags || !q->backlog) {
		rings_free(m->h, &r, true);
		queue_free(q);
		return -ENOMEM;
	}
	q->h = m->h;
	q->mirror = m->id;
	q->entries = r.entries;
	q->mask = r.entries - 1;
	for (unsigned t = r.entries; t > 0; t--)
		q->free_tags[q->nfree++] = (uint16_t)(t - 1);
	/* Made again at once if its daemon restarted since it replied. */
	rings_use(q, &r);
	*out = q;
	return 0;
}

/*
 * The next free SQE, or NULL when the queue holds all it may: a tag per
 * submission prepared, in flight, or completed and not reaped, each of
 * which has its completion's slot. commit() makes it a submission.
 */
static struct hmmu_wire_sqe *next_sqe(struct hmmu_queue *q, unsigned op,
				      uint64_t user_data, int *err)
{
	struct hmmu_wire_sqe *sqe;
	uint16_t tag;

	*err = check_queue(q);
	if (*err)
		return NULL;
	if (!q->nfree) {
		hmmu_set_detail("the queue has %u submissions in flight, all "
				"it holds: reap completions first", q->entries);
		*err = -EBUSY;
		return NULL;
	}
	tag = q->free_tags[q->nfree - 1];
	q->tags[tag].user_data = user_data;
	sqe = &q->sqes[q->sq_tail & q->mask];
	memset(sqe, 0, sizeof(*sqe));
	sqe->op = (uint16_t)op;
	sqe->user_data = tag;
	return sqe;
}

/* The SQE next_sqe() gave, filled in: prepared, and kept for a restart. */
static void commit(struct hmmu_queue *q, const struct hmmu_wire_sqe *sqe)
{
	struct tagged *t = &q->tags[q->free_tags[--q->nfree]];

	t->sqe = *sqe;
	t->seq = q->seq++;
	t->live = true;
	q->sq_tail++;
}

HMMU_EXPORT int hmmu_queue_nop(struct hmmu_queue *q, uint64_t user_data)
{
	struct hmmu_wire_sqe *sqe;
	int err;

	hmmu_clear_detail();
	sqe = next_sqe(q, HMMU_SQE_NOP, user_data, &err);
	if (!sqe)
		return err;
	commit(q, sqe);
	return 0;
}

static int queue_cmd(struct hmmu_queue *q, const struct hmmu_cmd *c,
		     unsigned cmd, const void *buf, uint64_t buf_len,
		     uint64_t user_data)
{
	struct hmmu_wire_sqe *sqe;
	int err;

	hmmu_clear_detail();
	if (!c || !buf)
		return -EINVAL;
	err = hmmu_check_range(c);
	if (err)
		return err;
	sqe = next_sqe(q, HMMU_SQE_CMD, user_data, &err);
	if (!sqe)
		return err;
	sqe->u.cmd = (struct hmmu_wire_device_cmd){
		.cmd = cmd,
		.addr = c->addr,
		.npages = c->npages,
		.buf = (uint64_t)(uintptr_t)buf,
		.buf_len = buf_len,
	};
	commit(q, sqe);
	return 0;
}

static uint64_t bytes(const struct hmmu_cmd *c)
{
	return c ? c->npages * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

HMMU_EXPORT int hmmu_queue_read(struct hmmu_queue *q, const struct hmmu_cmd *c,
				void *buf, uint64_t user_data)
{
	return queue_cmd(q, c, HMMU_CMD_READ, buf, bytes(c), user_data);
}

HMMU_EXPORT int hmmu_queue_write(struct hmmu_queue *q,
				 const struct hmmu_cmd *c, const void *buf,
				 uint64_t user_data)
{
	return queue_cmd(q, c, HMMU_CMD_WRITE, buf, bytes(c), user_data);
}

HMMU_EXPORT int hmmu_queue_snapshot(struct hmmu_queue *q,
				    const struct hmmu_cmd *c, uint8_t *states,
				    uint64_t user_data)
{
	return queue_cmd(q, c, HMMU_CMD_SNAPSHOT, states, c ? c->npages : 0,
			 user_data);
}

HMMU_EXPORT int hmmu_queue_job(struct hmmu_queue *q, const struct hmmu_job *job,
			       uint64_t user_data)
{
	struct hmmu_wire_sqe *sqe;
	struct hmmu_wire_job wire;
	int err;

	hmmu_clear_detail();
	if (!job)
		return -EINVAL;
	/* The mirror is the queue's: 0 in an SQE. */
	err = hmmu_job_to_wire(job, 0, &wire);
	if (err)
		return err;
	sqe = next_sqe(q, HMMU_SQE_JOB, user_data, &err);
	if (!sqe)
		return err;
	sqe->u.job = wire;
	commit(q, sqe);
	return 0;
}

HMMU_EXPORT int hmmu_queue_submit(struct hmmu_queue *q)
{
	_Atomic uint32_t *tail;
	uint32_t old;
	int err;

	hmmu_clear_detail();
	err = check_queue(q);
	if (err)
		return err;
	tail = word(q, HMMU_RING_SQ_TAIL);
	old = atomic_load_explicit(tail, memory_order_relaxed);
	if (old == q->sq_tail)
		return 0;
	atomic_store_explicit(tail, q->sq_tail, memory_order_release);
	err = doorbell(q);
	return err ? err : (int)(q->sq_tail - old);
}

/*
 * @cqe for the caller: its user_data, and its tag free again. -EPROTO if
 * the daemon names no submission of ours.
 */
static int deliver(struct hmmu_queue *q, const struct hmmu_wire_cqe *cqe,
		   struct hmmu_cqe *out)
{
	uint64_t tag = cqe->user_data;

	if (tag >= q->entries || !q->tags[tag].live)
		return -EPROTO;
	memcpy(out, cqe, sizeof(*out));
	out->user_data = q->tags[tag].user_data;
	q->tags[tag].live = false;
	q->free_tags[q->nfree++] = (uint16_t)tag;
	return 0;
}

/* Copy what has come, up to @max. -EPROTO if the daemon's tail is wild. */
static int reap(struct hmmu_queue *q, struct hmmu_cqe *out, unsigned max)
{
	uint32_t tail = atomic_load_explicit(word(q, HMMU_RING_CQ_TAIL),
					     memory_order_acquire);
	unsigned n = 0;
	int err = 0;

	if (tail - q->cq_head > q->entries)
		return -EPROTO;
	while (n < max && q->backlog_head < q->nbacklog && !err)
		err = deliver(q, &q->backlog[q->backlog_head++], &out[n++]);
	if (q->backlog_head == q->nbacklog)
		q->backlog_head = q->nbacklog = 0;
	while (n < max && q->cq_head != tail && !err)
		err = deliver(q, &q->cqes[q->cq_head++ & q->mask], &out[n++]);
	if (n)
		atomic_store_explicit(word(q, HMMU_RING_CQ_HEAD), q->cq_head,
				      memory_order_release);
	return err ? err : (int)n;
}

HMMU_EXPORT int hmmu_queue_wait(struct hmmu_queue *q, struct hmmu_cqe *out,
				unsigned max, unsigned min, int timeout_ms)
{
	_Atomic uint32_t *tail, *flags;
	int64_t deadline = 0, spin_end;
	bool slept_idle = false;
	unsigned got = 0;
	int err;

	hmmu_clear_detail();
	if (!out || min > max)
		return -EINVAL;
	err = check_queue(q);
	if (err)
		return err;
	tail = word(q, HMMU_RING_CQ_TAIL);
	flags = word(q, HMMU_RING_CQ_FLAGS);
	if (timeout_ms > 0)
		deadline = qring_now_ns() + (int64_t)timeout_ms * 1000000;
	spin_end = qring_now_ns() + WAIT_SPIN_NS;
	for (;;) {
		uint32_t seen;
		int64_t left = 0;

		err = reap(q, out + got, max - got);
		if (err < 0)
			return err;
		got += (unsigned)err;
		if (got >= min || timeout_ms == 0)
			return (int)got;
		seen = q->cq_head;
		if (qring_now_ns() < spin_end) {
			qring_relax();
			continue;
		}
		if (deadline) {
			left = deadline - qring_now_ns();
			if (left <= 0)
				return (int)got;
		}
		/*
		 * Nothing here reads the socket: after a sleep that saw no
		 * completion, see whether hmmud went away, for it completes
		 * nothing more, and its successor serves only rings it made.
		 * (Not before each sleep: a system call per wait.)
		 */
		err = slept_idle ? hmmu_connection_check(q->h) : 0;
		if (!err)
			err = queue_current(q);
		if (err)
			return got ? (int)got : err;
		if (word(q, HMMU_RING_CQ_TAIL) != tail) {
			/* Made again: reap what the old rings held first. */
			tail = word(q, HMMU_RING_CQ_TAIL);
			flags = word(q, HMMU_RING_CQ_FLAGS);
			continue;
		}
		if (!left || left > WAIT_RESTART_CHECK_NS)
			left = WAIT_RESTART_CHECK_NS;
		/* Ask for a wake-up, then look again: no CQE falls between. */
		atomic_store(flags, HMMU_CQ_WAITING);
		qring_full_barrier();
		if (atomic_load(tail) == seen)
			err = qring_futex_wait(tail, seen, left);
		atomic_store(flags, 0);
		slept_idle = err == -ETIMEDOUT;
		if (err == -EINTR && !got)
			return -EINTR;
	}
}

HMMU_EXPORT void hmmu_queue_destroy(struct hmmu_queue *q)
{
	struct hmmu_wire_queue_id id;

	if (!q)
		return;
	/*
	 * In a child, the rings are not mapped and the queue is not ours.
	 * A daemon that restarted since never made it: nothing to say.
	 */
	if (hmmu_is_owner(q->h)) {
		id.queue = q->id;
		if (q->restarts == atomic_load(&q->h->restarts))
			hmmu_call(q->h, HMMU_OP_QUEUE_DESTROY, &id, sizeof(id),
				  -1, NULL, 0);
		munmap(q->ring, q->size);
	}
	close(q->efd);
	queue_free(q);
}
