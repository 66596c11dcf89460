/* SPDX-License-Identifier: MIT */
#include "notifier.h"
#include "fault.h"
#include "mirror.h"
#include "process.h"

#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>

/*
 * A notifier's sequence is read and written by different threads without
 * a common lock (read_retry under the model's lock, the invalidation under
 * ours): atomics, through the plain uint64_t the public struct has.
 */
static uint64_t seq_load(const struct hmmu_interval_notifier *n)
{
	return __atomic_load_n(&n->invalidate_seq, __ATOMIC_SEQ_CST);
}

static void seq_store(struct hmmu_interval_notifier *n, uint64_t seq)
{
	__atomic_store_n(&n->invalidate_seq, seq, __ATOMIC_SEQ_CST);
}

void notifier_invalidate(struct hmmu_mirror *m,
			 const struct hmmu_notifier_range *r, uint64_t cur_seq)
{
	pthread_rwlock_rdlock(&m->notifier_lock);
	for (struct hmmu_interval_notifier *n = m->notifiers; n; n = n->next) {
		if (n->end <= r->start || r->end <= n->start)
			continue;
		/*
		 * Set here as well as by the model's set_seq(): before the
		 * callback, so that a fault that sampled the old sequence
		 * retries even if the model forgets to.
		 */
		seq_store(n, cur_seq);
		n->ops->invalidate(n, r, cur_seq);
	}
	pthread_rwlock_unlock(&m->notifier_lock);
}

void notifier_release(struct hmmu_mirror *m)
{
	struct hmmu_notifier_range r = {
		.start = 0,
		.end = HMMU_VA_LIMIT,
		.event = HMMU_NOTIFY_RELEASE,
	};
	uint64_t cur = m->proc ? atomic_fetch_add(&m->proc->seq, 1) + 1 : 1;

	notifier_invalidate(m, &r, cur);
}

void notifier_remove_all(struct hmmu_mirror *m)
{
	pthread_rwlock_wrlock(&m->notifier_lock);
	m->notifiers = NULL;
	pthread_rwlock_unlock(&m->notifier_lock);
}

int hmmu_interval_notifier_insert(struct hmmu_interval_notifier *n,
				  struct hmmu_mirror *m, uint64_t start,
				  uint64_t length,
				  const struct hmmu_interval_notifier_ops *ops)
{
	uint64_t end = length ? start + length : HMMU_VA_LIMIT;

	if (!ops || !ops->invalidate || start >= HMMU_VA_LIMIT || end < start ||
	    end > HMMU_VA_LIMIT)
		return -EINVAL;
	n->ops = ops;
	n->mirror = m;
	n->start = start;
	n->end = end;
	seq_store(n, m->proc ? atomic_load(&m->proc->seq) : 0);
	pthread_rwlock_wrlock(&m->notifier_lock);
	n->next = m->notifiers;
	m->notifiers = n;
	pthread_rwlock_unlock(&m->notifier_lock);
	return 0;
}

void hmmu_interval_notifier_remove(struct hmmu_interval_notifier *n)
{
	struct hmmu_mirror *m = n->mirror;

	/* The write lock waits out a running invalidate() of @n. */
	pthread_rwlock_wrlock(&m->notifier_lock);
	for (struct hmmu_interval_notifier **pp = &m->notifiers; *pp;
	     pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	}
	pthread_rwlock_unlock(&m->notifier_lock);
	n->next = NULL;
}

int hmmu_interval_read_begin(struct hmmu_interval_notifier *n, uint64_t *seq)
{
	struct process *p = n->mirror->proc;
	uint64_t unused;
	int err;

	/*
	 * The notifier's sequence before the process's quiet check, for the
	 * reason fault_read_begin() gives: an invalidation stores it after
	 * raising inval_active.
	 */
	for (;;) {
		uint64_t s = seq_load(n);

		err = fault_read_begin(p, &unused);
		if (err)
			return err;
		if (seq_load(n) == s) {
			*seq = s;
			return 0;
		}
	}
}

bool hmmu_interval_read_retry(struct hmmu_interval_notifier *n, uint64_t seq)
{
	return seq_load(n) != seq;
}

void hmmu_interval_set_seq(struct hmmu_interval_notifier *n, uint64_t cur_seq)
{
	seq_store(n, cur_seq);
}
