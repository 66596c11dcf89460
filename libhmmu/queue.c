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
 * its successor never completes, nor wakes, what it did not make.
 */
#define WAIT_RESTART_CHECK_NS (100 * 1000000LL)

struct hmmu_queue {
	struct hmmu *h; /* its connection: outlives the queue */
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
};

_Static_assert(sizeof(struct hmmu_cqe) == sizeof(struct hmmu_wire_cqe) &&
		       offsetof(struct hmmu_cqe, elapsed_ns) ==
			       offsetof(struct hmmu_wire_cqe, elapsed_ns) &&
		       offsetof(struct hmmu_cqe, result) ==
			       offsetof(struct hmmu_wire_cqe, result),
	       "a CQE is the wire's");
_Static_assert(HMMU_QUEUE_MAX == HMMU_QUEUE_MAX_ENTRIES, "queue size");
_Static_assert((int)HMMU_QUEUE_NOP == HMMU_SQE_NOP &&
		       (int)HMMU_QUEUE_CMD == HMMU_SQE_CMD &&
		       (int)HMMU_QUEUE_JOB == HMMU_SQE_JOB,
	       "queue ops are the wire's");

/*
 * Made by a daemon that restarted since: hmmud does not make queues again
 * (docs/protocol.md §11). -ESHUTDOWN with the detail, or 0.
 */
static int queue_dead(struct hmmu_queue *q)
{
	if (q->restarts == atomic_load(&q->h->restarts))
		return 0;
	hmmu_set_detail(HMMU_RESTARTED_DETAIL);
	return -ESHUTDOWN;
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
	return queue_dead(q);
}

static _Atomic uint32_t *word(struct hmmu_queue *q, enum hmmu_ring_word w)
{
	return qring_word(q->ring, w);
}

HMMU_EXPORT int hmmu_queue_create(struct hmmu_mirror *m, unsigned entries,
				  struct hmmu_queue **out)
{
	struct hmmu_wire_queue_create req = { .entries = entries };
	struct hmmu_wire_queue_reply rep;
	struct hmmu_queue *q;
	uint32_t sqes_off, cqes_off;
	uint64_t size;
	int fds[2], err;
	struct pending p = { .op = HMMU_OP_QUEUE_CREATE, .req = &req,
			     .req_len = sizeof(req), .fd = -1, .out = &rep,
			     .cap = sizeof(rep), .fds = fds, .nfds = 2 };

	hmmu_clear_detail();
	if (!m || !out || entries == 0 || entries > HMMU_QUEUE_MAX)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	req.mirror = m->id;
	memset(&rep, 0, sizeof(rep));
	err = hmmu_request(m->h, &p);
	if (err) {
		free(q);
		return err;
	}
	/* The layout is the one both ends compute: check the daemon's. */
	qring_layout(rep.entries, &sqes_off, &cqes_off, &size);
	if (rep.entries < entries || rep.entries > HMMU_QUEUE_MAX ||
	    (rep.entries & (rep.entries - 1)) || rep.sqes_off != sqes_off ||
	    rep.cqes_off != cqes_off || rep.size != size) {
		err = -EPROTO;
		goto err_fds;
	}
	q->ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0],
		       0);
	if (q->ring == MAP_FAILED) {
		err = -errno;
		goto err_fds;
	}
	/* A child must not reach the rings, which act for this process. */
	if (madvise(q->ring, size, MADV_DONTFORK) < 0) {
		err = -errno;
		munmap(q->ring, size);
		goto err_fds;
	}
	close(fds[0]);
	q->h = m->h;
	q->id = rep.queue;
	q->entries = rep.entries;
	q->mask = rep.entries - 1;
	q->size = size;
	q->sqes = (struct hmmu_wire_sqe *)(q->ring + sqes_off);
	q->cqes = (struct hmmu_wire_cqe *)(q->ring + cqes_off);
	q->efd = fds[1];
	/* Dead at once if its daemon restarted since it replied. */
	q->restarts = p.restarts;
	q->sq_tail = atomic_load(word(q, HMMU_RING_SQ_TAIL));
	q->cq_head = atomic_load(word(q, HMMU_RING_CQ_HEAD));
	*out = q;
	return 0;

err_fds:
	close(fds[0]);
	close(fds[1]);
	free(q);
	/* The daemon made it: let it go there too. */
	{
		struct hmmu_wire_queue_id id = { .queue = rep.queue };

		hmmu_call(m->h, HMMU_OP_QUEUE_DESTROY, &id, sizeof(id), -1,
			  NULL, 0);
	}
	return err;
}

/* The next free SQE, or NULL when the ring holds all it may. */
static struct hmmu_wire_sqe *next_sqe(struct hmmu_queue *q, unsigned op,
				      uint64_t user_data, int *err)
{
	struct hmmu_wire_sqe *sqe;

	*err = check_queue(q);
	if (*err)
		return NULL;
	/* Prepared or in flight, each needs its completion's slot. */
	if (q->sq_tail - q->cq_head >= q->entries) {
		hmmu_set_detail("the queue has %u submissions in flight, all "
				"it holds: reap completions first", q->entries);
		*err = -EBUSY;
		return NULL;
	}
	sqe = &q->sqes[q->sq_tail & q->mask];
	memset(sqe, 0, sizeof(*sqe));
	sqe->op = (uint16_t)op;
	sqe->user_data = user_data;
	return sqe;
}

HMMU_EXPORT int hmmu_queue_nop(struct hmmu_queue *q, uint64_t user_data)
{
	int err;

	hmmu_clear_detail();
	if (!next_sqe(q, HMMU_SQE_NOP, user_data, &err))
		return err;
	q->sq_tail++;
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
	q->sq_tail++;
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
	q->sq_tail++;
	return 0;
}

HMMU_EXPORT int hmmu_queue_submit(struct hmmu_queue *q)
{
	_Atomic uint32_t *tail;
	uint32_t flags, old;
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
		qring_futex_wake(tail);
	}
	return (int)(q->sq_tail - old);
}

/* Copy what has come, up to @max. -EPROTO if the daemon's tail is wild. */
static int reap(struct hmmu_queue *q, struct hmmu_cqe *out, unsigned max)
{
	uint32_t tail = atomic_load_explicit(word(q, HMMU_RING_CQ_TAIL),
					     memory_order_acquire);
	unsigned n = 0;

	if (tail - q->cq_head > q->entries)
		return -EPROTO;
	while (n < max && q->cq_head != tail) {
		memcpy(&out[n++], &q->cqes[q->cq_head & q->mask],
		       sizeof(out[0]));
		q->cq_head++;
	}
	if (n)
		atomic_store_explicit(word(q, HMMU_RING_CQ_HEAD), q->cq_head,
				      memory_order_release);
	return (int)n;
}

HMMU_EXPORT int hmmu_queue_wait(struct hmmu_queue *q, struct hmmu_cqe *out,
				unsigned max, unsigned min, int timeout_ms)
{
	_Atomic uint32_t *tail, *flags;
	int64_t deadline = 0, spin_end;
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
		err = queue_dead(q);
		if (err)
			return got ? (int)got : err;
		if (!left || left > WAIT_RESTART_CHECK_NS)
			left = WAIT_RESTART_CHECK_NS;
		/* Ask for a wake-up, then look again: no CQE falls between. */
		atomic_store(flags, HMMU_CQ_WAITING);
		qring_full_barrier();
		if (atomic_load(tail) == seen)
			err = qring_futex_wait(tail, seen, left);
		atomic_store(flags, 0);
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
	free(q);
}
