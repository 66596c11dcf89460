/* SPDX-License-Identifier: MIT */
/*
 * copy-engine: a DMA copy engine as an out-of-tree hmmu device model.
 *
 * It runs HMMU_JOB_COPY jobs: it reads the source through a small cache of
 * its own (a direct-mapped table of page copies, its "device page table"),
 * and writes the destination by DMA. The cache is kept coherent the way a
 * kernel driver keeps its page table: a range fault under an interval
 * notifier's sequence fills it, and the notifier's invalidate callback
 * empties it. A job reports how many source pages came from the cache
 * (result) and how many it had to fault in (faults), so a test sees both.
 *
 * Build against an installed hmmu (see Makefile), then:
 *   hmmud --device model=./copy_engine.so,name=copy0
 */
#include <hmmu/driver.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 64 /* cached source pages per client */

struct slot {
	uint64_t addr;
	bool valid;
	char *data;
};

/* Per client (mirror): the cache and the notifier that guards it. */
struct engine {
	struct hmmu_interval_notifier notifier;
	pthread_mutex_t lock; /* the cache, and read_retry() against it */
	struct slot slots[SLOTS];
	char *pages; /* SLOTS pages of cache memory */
};

static bool engine_invalidate(struct hmmu_interval_notifier *n,
			      const struct hmmu_notifier_range *range,
			      uint64_t cur_seq)
{
	struct engine *e = (struct engine *)n; /* notifier is first */
	unsigned dropped = 0;

	pthread_mutex_lock(&e->lock);
	hmmu_interval_set_seq(n, cur_seq);
	for (unsigned i = 0; i < SLOTS; i++) {
		struct slot *s = &e->slots[i];

		if (s->valid && s->addr >= range->start && s->addr < range->end) {
			s->valid = false;
			dropped++;
		}
	}
	pthread_mutex_unlock(&e->lock);
	if (dropped)
		hmmu_log(hmmu_mirror_device(n->mirror), HMMU_LOG_DEBUG,
			 "event %d dropped %u cached pages", range->event,
			 dropped);
	return true;
}

static const struct hmmu_interval_notifier_ops engine_notifier_ops = {
	.invalidate = engine_invalidate,
};

static int engine_bind(struct hmmu_mirror *m)
{
	struct engine *e = calloc(1, sizeof(*e));
	uint64_t ps = hmmu_page_size();
	int err;

	if (!e)
		return -ENOMEM;
	e->pages = hmmu_device_alloc(hmmu_mirror_device(m), SLOTS * ps);
	if (!e->pages) {
		free(e);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < SLOTS; i++)
		e->slots[i].data = e->pages + i * ps;
	pthread_mutex_init(&e->lock, NULL);
	/* The whole address space, as test_hmm's device does at open(). */
	err = hmmu_interval_notifier_insert(&e->notifier, m, 0, 0,
					    &engine_notifier_ops);
	if (err) {
		hmmu_device_free(hmmu_mirror_device(m), e->pages, SLOTS * ps);
		free(e);
		return err;
	}
	hmmu_mirror_set_drvdata(m, e);
	return 0;
}

static void engine_unbind(struct hmmu_mirror *m)
{
	struct engine *e = hmmu_mirror_get_drvdata(m);

	hmmu_interval_notifier_remove(&e->notifier);
	pthread_mutex_destroy(&e->lock);
	hmmu_device_free(hmmu_mirror_device(m), e->pages,
			 SLOTS * hmmu_page_size());
	free(e);
}

/*
 * The source page at @page into @out: from the cache, or by a range fault
 * that fills the cache, retried as long as an invalidation races it.
 */
static int fetch(struct engine *e, uint64_t page, char *out, char *bounce,
		 struct hmmu_job_result *res)
{
	uint64_t ps = hmmu_page_size();
	struct slot *s = &e->slots[(page / ps) % SLOTS];
	struct iovec iov = { bounce, ps };
	struct hmmu_range range = {
		.notifier = &e->notifier,
		.start = page,
		.end = page + ps,
		.pages = &iov,
		.default_flags = HMMU_PFN_REQ_FAULT,
	};
	int err;

	pthread_mutex_lock(&e->lock);
	if (s->valid && s->addr == page) {
		memcpy(out, s->data, ps);
		pthread_mutex_unlock(&e->lock);
		res->result++;
		return 0;
	}
	pthread_mutex_unlock(&e->lock);
	for (;;) {
		if ((err = hmmu_should_stop()))
			return err;
		err = hmmu_interval_read_begin(&e->notifier, &range.notifier_seq);
		if (!err)
			err = hmmu_range_fault(&range);
		if (err == -EBUSY)
			continue;
		if (err)
			return err;
		pthread_mutex_lock(&e->lock);
		if (!hmmu_interval_read_retry(&e->notifier, range.notifier_seq))
			break;
		pthread_mutex_unlock(&e->lock);
	}
	memcpy(s->data, bounce, ps);
	s->addr = page;
	s->valid = true;
	memcpy(out, bounce, ps);
	pthread_mutex_unlock(&e->lock);
	res->faults++;
	return 0;
}

static int engine_job(struct hmmu_mirror *m, const struct hmmu_job_desc *job,
		      struct hmmu_job_result *res)
{
	struct engine *e = hmmu_mirror_get_drvdata(m);
	uint64_t ps = hmmu_page_size();
	char *page = hmmu_thread_buffer(0, ps);
	char *bounce = hmmu_thread_buffer(1, ps);
	int err = 0;

	/* hmmu_fail(): the client reads the sentence (hmmu_error_detail()). */
	if (job->kind != HMMU_JOB_COPY)
		return hmmu_fail(-EOPNOTSUPP, "the copy engine runs COPY jobs "
				 "only");
	if (job->src % ps || job->len % ps || job->len == 0 ||
	    job->src >= HMMU_VA_LIMIT || job->len > HMMU_VA_LIMIT - job->src ||
	    job->dst >= HMMU_VA_LIMIT || job->len > HMMU_VA_LIMIT - job->dst)
		return hmmu_fail(-EINVAL, "the copy engine copies whole pages: "
				 "src and len must be page-aligned");
	/* hmmu.h's HMMU_JOB_COPY: the ranges do not overlap. */
	if (job->src < job->dst + job->len && job->dst < job->src + job->len)
		return hmmu_fail(-EINVAL, "COPY: src and dst overlap");
	if (!page || !bounce)
		return -ENOMEM;
	/* The destination is checked whole before the first byte moves. */
	err = hmmu_dma_check(m, job->dst, job->dst + job->len, true);
	for (uint64_t off = 0; off < job->len && !err; off += ps) {
		err = fetch(e, job->src + off, page, bounce, res);
		if (!err)
			err = hmmu_dma_write(m, job->dst + off, page, ps);
	}
	hmmu_count_device_faults(m, res->faults);
	return err;
}

static const struct hmmu_device_ops engine_ops = {
	.bind = engine_bind,
	.unbind = engine_unbind,
	.job = engine_job,
};

HMMU_DRIVER_MODULE("copy-engine", &engine_ops);
