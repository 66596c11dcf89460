/* SPDX-License-Identifier: MIT */
/*
 * Migration to and from device memory; the protocol and why it loses no
 * write are in migrate.h. Locking: p->migrate_lock protects p->devpages and
 * every struct devpage; it nests outside p->lock and the device MMU locks
 * (bringing a page back invalidates while holding it). It is never held
 * while waiting for the client: an ioctl that says EAGAIN (an event is
 * queued) is retried after dropping it, so the loop thread, which needs it
 * to handle that event, can go on.
 */
#include "migrate.h"
#include "accounts.h"
#include "command.h"
#include "counters.h"
#include "limits.h"
#include "fault.h"
#include "journal.h"
#include "../lib/log.h"
#include "../lib/loop.h"
#include "mirror.h"
#include "process.h"
#include "uffd_events.h"
#include "uffdio.h"
#include "client_mem.h"
#include "../common/page.h"
#include "vmas.h"
#include "../lib/scratch.h"
#include "../common/kernel_uapi.h"
#include "device.h"
#include "devmem.h"
#include "failsafe.h"
#include "../common/failsafe.h"
#include "../lib/pagetable.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

enum devpage_state {
	DP_MIGRATING, /* copied or being copied; the CPU page still exists */
	DP_DEVICE,    /* device-private: the CPU page is gone */
};

struct devpage {
	void *mem;	     /* its slot's data page in the process's file */
	struct failsafe *fs; /* the process's device memory file */
	uint32_t slot;	     /* its slot there: the journal entry */
	struct devmem *pool; /* the device's capacity it counts in */
	struct account *acct; /* charged for it (the process's, outlives it) */
	unsigned dev;	      /* which device's share it counts in */
	struct hmmu_mirror *owner;
	uint8_t state;
	uint8_t fresh;	   /* became DP_DEVICE in a migration not finished */
	uint8_t exclusive; /* made exclusive for device atomics */
};

#define COPY_CHUNK_PAGES 256u

static void free_devpage(struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;

	(void)arg;
	failsafe_slot_free(dp->fs, dp->slot);
	devmem_give_page(dp->pool);
	account_uncharge_devmem(dp->acct, dp->dev);
	free(dp);
}

int migrate_init(struct process *p)
{
	int err = pt_create(&p->devpages);

	p->devfile = NULL;
	if (!err)
		pthread_mutex_init(&p->migrate_lock, NULL);
	return err;
}

void migrate_fini(struct process *p)
{
	pt_destroy(p->devpages, free_devpage, NULL);
	failsafe_destroy(p->devfile);
	p->devfile = NULL;
	pthread_mutex_destroy(&p->migrate_lock);
	free(p->held);
}

static struct devpage *lookup(struct process *p, uint64_t page)
{
	struct pt_entry *e = pt_lookup(p->devpages, page);

	return e ? e->data : NULL;
}

/* migrate_lock held. */
static void forget(struct process *p, uint64_t page)
{
	pt_clear_range(p->devpages, page, page + page_size(), free_devpage,
		       NULL);
}

void (*migrate_devfile_made)(struct process *p, int fd);

/* migrate_lock held: the process's device memory file, made if need be. */
static int make_devfile(struct process *p)
{
	int err;

	if (p->devfile)
		return 0;
	err = failsafe_create(&p->devfile);
	if (err)
		return err;
	/* Journalled, then in the fd store, before any page is in it. */
	if (p->journal)
		journal_note_devmem(p->journal, failsafe_gen(p->devfile));
	if (migrate_devfile_made)
		migrate_devfile_made(p, failsafe_fd(p->devfile));
	return 0;
}

/* ---- step 1: prepare ---------------------------------------------------- */

/*
 * Mark in @cand the pages of [start, end) that may migrate: anonymous,
 * private and readable memory, writable or not, as test_hmm's device
 * would take.
 */
static int find_candidates(struct process *p, uint64_t start, uint64_t end,
			   uint8_t *cand)
{
	struct vma_cursor c;
	struct vma v;
	int r;

	vma_cursor_init(&c, p, start);
	while ((r = vma_next(&c, &v)) == 1 && v.start < end) {
		if (!v.read || v.shared || v.inode)
			continue;
		for (uint64_t a = v.start < start ? start : v.start;
		     a < v.end && a < end; a += page_size())
			cand[(a - start) / page_size()] = 1;
	}
	vma_cursor_done(&c);
	return r < 0 ? r : 0;
}

/* Register each run of candidates for missing faults; drop failing runs. */
static void register_candidates(struct process *p, uint64_t start,
				uint64_t npages, uint8_t *cand)
{
	for (uint64_t i = 0; i < npages;) {
		uint64_t j = i;

		if (!cand[i]) {
			i++;
			continue;
		}
		while (j < npages && cand[j])
			j++;
		if (process_register_missing(p, start + i * page_size(),
					     start + j * page_size()) < 0)
			memset(cand + i, 0, j - i);
		i = j;
	}
}

/* migrate_lock held: give back what this call reserved. */
static void unreserve(struct process *p, struct hmmu_mirror *m, uint64_t start,
		      uint64_t npages, uint8_t *map)
{
	for (uint64_t i = 0; i < npages; i++) {
		struct devpage *dp;

		if (!map[i])
			continue;
		dp = lookup(p, start + i * page_size());
		if (dp && dp->owner == m && dp->state == DP_MIGRATING)
			forget(p, start + i * page_size());
		map[i] = 0;
	}
}

static int reserve(struct process *p, struct hmmu_mirror *m, uint64_t start,
		   uint64_t npages, const uint8_t *cand, uint8_t *map,
		   int exclusive, uint64_t *count)
{
	int err = 0;

	pthread_mutex_lock(&p->migrate_lock);
	/* The process's first migration makes its device memory file. */
	if ((err = make_devfile(p)) < 0) {
		log_err("client %d: device memory file: %s", p->pid,
			strerror(-err));
		err = command_fail(err, "hmmud could not make this process's "
				   "device memory file: see its log");
	}
	for (uint64_t i = 0; i < npages && !err; i++) {
		uint64_t a = start + i * page_size();
		struct pt_entry e;
		struct devpage *dp;

		if (!cand[i] || lookup(p, a))
			continue; /* not migratable, or already on a device */
		dp = calloc(1, sizeof(*dp));
		if (!dp || devmem_take_page(m->dev->mem) < 0) {
			free(dp);
			err = command_fail(-ENOMEM, "device %s's memory is full "
					   "(%" PRIu64 " pages): migrate fewer "
					   "pages, or bring some back first",
					   m->dev->name,
					   devmem_pages_total(m->dev->mem));
			break;
		}
		/* Full is -ENOMEM for all; past one's share, -EDQUOT for one. */
		if (!account_charge_devmem(p->acct, m->dev->index,
					   devmem_pages_total(m->dev->mem))) {
			log_warn("client %d: its user holds %u%% of %s's memory, "
				 "as much as allowed (--limit devmem-percent-per-user)",
				 p->pid, limits.devmem_percent_per_user, m->dev->name);
			devmem_give_page(m->dev->mem);
			free(dp);
			err = command_fail(-EDQUOT, "this user holds %u%% of "
					   "device %s's memory, hmmud's limit "
					   "(--limit devmem-percent-per-user): "
					   "bring pages back first",
					   limits.devmem_percent_per_user,
					   m->dev->name);
			break;
		}
		/* The journal says COPYING from here: the CPU page exists. */
		if (failsafe_slot_alloc(p->devfile, m->dev->index, a,
					exclusive, &dp->slot, &dp->mem) < 0) {
			account_uncharge_devmem(p->acct, m->dev->index);
			devmem_give_page(m->dev->mem);
			free(dp);
			err = command_fail(-ENOMEM, "hmmud ran out of memory "
					   "reserving device pages");
			break;
		}
		/* A slot reused holds this process's old data: never show it. */
		memset(dp->mem, 0, page_size());
		dp->fs = p->devfile;
		dp->pool = m->dev->mem;
		dp->acct = p->acct;
		dp->dev = m->dev->index;
		dp->owner = m;
		dp->state = DP_MIGRATING;
		dp->exclusive = (uint8_t)exclusive;
		e = (struct pt_entry){ .data = dp };
		err = pt_set(p->devpages, a, &e, NULL, NULL);
		if (err) {
			free_devpage(&e, NULL);
			break;
		}
		map[i] = 1;
		(*count)++;
	}
	if (err) {
		unreserve(p, m, start, npages, map);
		*count = 0;
	}
	pthread_mutex_unlock(&p->migrate_lock);
	return err;
}

/*
 * The end of step 1, before the reply that has the client discard: the
 * copies of this call's pages are complete, and the journal says so
 * (COPYING -> HELD), so that a client whose daemon dies from here on
 * brings them home itself.
 */
static void hold_copies(struct process *p, struct hmmu_mirror *m,
			uint64_t start, uint64_t npages, const uint8_t *map)
{
	pthread_mutex_lock(&p->migrate_lock);
	for (uint64_t i = 0; i < npages; i++) {
		struct devpage *dp;

		if (!map[i])
			continue;
		dp = lookup(p, start + i * page_size());
		if (dp && dp->owner == m)
			failsafe_slot_hold(dp->fs, dp->slot);
	}
	pthread_mutex_unlock(&p->migrate_lock);
}

/* Copy a run of reserved pages into device memory, write-protected first. */
static int copy_run(struct hmmu_mirror *m, uint64_t start, uint64_t npages,
		    char *bounce)
{
	struct process *p = m->proc;
	int err;

	err = process_write_protect(p, start, npages * page_size(), true);
	for (uint64_t i = 0; i < npages && !err; i += COPY_CHUNK_PAGES) {
		uint64_t n = npages - i < COPY_CHUNK_PAGES ? npages - i :
							     COPY_CHUNK_PAGES;
		uint64_t a = start + i * page_size();

		err = client_read_reserved(p, a, bounce, n * page_size());
		if (err)
			break;
		pthread_mutex_lock(&p->migrate_lock);
		for (uint64_t k = 0; k < n; k++) {
			struct devpage *dp = lookup(p, a + k * page_size());

			/* Gone (unmapped) or taken over: leave it be. */
			if (dp && dp->owner == m && dp->state == DP_MIGRATING)
				memcpy(dp->mem, bounce + k * page_size(),
				       page_size());
		}
		pthread_mutex_unlock(&p->migrate_lock);
	}
	return err;
}

int migrate_prepare(struct hmmu_mirror *m, uint64_t start, uint64_t npages,
		    uint8_t *map, int exclusive, uint64_t *count)
{
	struct process *p = m->proc;
	uint8_t *cand = calloc(npages, 1);
	char *bounce = malloc(COPY_CHUNK_PAGES * page_size());
	int err;

	*count = 0;
	memset(map, 0, npages);
	/*
	 * A page moves only once no CPU write can land in it between our
	 * copy and its discard: the writer is held on its write-protect fault
	 * until FINISH. Under UFFD_FEATURE_WP_ASYNC there is no such fault, and
	 * a write made after our copy would be thrown away with the page: a
	 * coarse-grained process keeps its pages (docs/semantics.md).
	 */
	if (p->coarse) {
		err = command_fail(-EOPNOTSUPP, "this process's mirrors are "
				   "coarse-grained: its pages never move to "
				   "device memory (a CPU write racing the move "
				   "could not be held, and would be lost); "
				   "register fine-grained mirrors to migrate");
		goto out;
	}
	if (!cand || !bounce) {
		err = -ENOMEM;
		goto out;
	}
	err = find_candidates(p, start, start + npages * page_size(), cand);
	if (err)
		goto out;
	register_candidates(p, start, npages, cand);
	err = reserve(p, m, start, npages, cand, map, exclusive, count);
	if (err)
		goto out;

	for (uint64_t i = 0; i < npages;) {
		uint64_t j = i;

		if (!map[i]) {
			i++;
			continue;
		}
		while (j < npages && map[j])
			j++;
		if (copy_run(m, start + i * page_size(), j - i, bounce) < 0) {
			/* Unmapped under us: those pages do not migrate. */
			pthread_mutex_lock(&p->migrate_lock);
			unreserve(p, m, start + i * page_size(), j - i, map + i);
			pthread_mutex_unlock(&p->migrate_lock);
			*count -= j - i;
		}
		i = j;
	}
	hold_copies(p, m, start, npages, map);
out:
	free(cand);
	free(bounce);
	return err;
}

/* ---- step 3: finish, on the loop thread ---------------------------------- */

struct finish_args {
	struct hmmu_mirror *m;
	uint64_t start, end;
	uint64_t cpages;
};

static int finish_page(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct finish_args *fa = arg;
	struct devpage *dp = e->data;

	(void)addr;
	if (dp->owner != fa->m)
		return 0;
	if (dp->state == DP_DEVICE && dp->fresh) {
		dp->fresh = 0;
		fa->cpages++;
		/* Its discard, if a REMOVE was lost with a predecessor. */
		failsafe_slot_settle(dp->fs, dp->slot);
	}
	return 0;
}

static int still_migrating(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;
	struct finish_args *fa = arg;

	/* Stop at the first page the client kept: walk again after. */
	if (dp->owner == fa->m && dp->state == DP_MIGRATING) {
		fa->start = addr;
		return 1;
	}
	return 0;
}

static void finish_on_loop(void *arg)
{
	struct finish_args *fa = arg;
	struct process *p = fa->m->proc;
	uint64_t end = fa->end;

	pthread_mutex_lock(&p->migrate_lock);
	pt_walk(p->devpages, fa->start, end, finish_page, fa);
	/* Pages the client did not discard stay with the CPU. */
	for (uint64_t from = fa->start;
	     pt_walk(p->devpages, from, end, still_migrating, fa);
	     from = fa->start + page_size())
		forget(p, fa->start);
	pthread_mutex_unlock(&p->migrate_lock);
	account_count(p->acct, migrated_to_device, fa->cpages);
	/* Writers held during the migration may go on now. */
	uffd_events_release_held(p);
}

int migrate_finish(struct hmmu_mirror *m, uint64_t start, uint64_t npages,
		   uint64_t *cpages)
{
	struct finish_args fa = {
		.m = m,
		.start = start,
		.end = start + npages * page_size(),
	};
	struct process *p = m->proc;
	int err;

	/*
	 * On the loop thread: the client discarded the pages before asking
	 * us to finish, so the loop has read the REMOVE events by now, and a
	 * call queued behind them sees them handled.
	 */
	if (p->loop)
		err = loop_call(p->loop, finish_on_loop, &fa);
	else
		err = (finish_on_loop(&fa), 0);
	*cpages = fa.cpages;
	return err;
}

/* ---- coming back ---------------------------------------------------------- */

/*
 * What the CPU gets of a device page: its contents, or what the model's
 * migrate_to_ram() makes of them, in a buffer of this thread's. Never
 * fails: without a buffer, or if the model fails (logged), the contents as
 * they are, so that the faulting thread never waits for memory.
 */
static const void *device_to_ram(struct hmmu_mirror *owner, uint64_t page,
				 const void *mem)
{
	const struct hmmu_device_ops *ops = owner->dev->ops;
	void *dst;
	int err;

	if (!ops->migrate_to_ram)
		return mem;
	dst = scratch_get(SCRATCH_DEVPAGE, page_size());
	if (!dst)
		return mem;
	err = ops->migrate_to_ram(owner, page, mem, dst);
	if (err) {
		log_err("%s: migrate_to_ram of %#" PRIx64 " failed: %s; the "
			"page comes back as it is", owner->dev->name, page,
			strerror(-err));
		return mem;
	}
	return dst;
}

/*
 * migrate_lock held, @dp is DP_DEVICE at @page: copy it into the client's
 * page table (the page is missing there), inside an invalidation window so
 * that a racing range fault retries. -EAGAIN: an event is queued.
 */
static int restore(struct process *p, uint64_t page, struct devpage *dp)
{
	struct hmmu_notifier_range r = {
		.start = page,
		.end = page + page_size(),
		.event = HMMU_NOTIFY_MIGRATE,
		.owner = dp->owner->dev,
	};
	const void *src = device_to_ram(dp->owner, page, dp->mem);
	uint32_t was;
	int err;

	process_invalidate_range_start(p, &r);
	/* A successor must tell this page come home from one to discard. */
	was = failsafe_slot_return(dp->fs, dp->slot);
	err = process_fill_page(p, page, src, 0);
	if (uffdio_verdict(UFFDIO_COPY, err) == UFFDIO_FAILED)
		log_err("client %d: UFFDIO_COPY %#" PRIx64 ": %s", p->pid, page,
			strerror(-err));
	process_invalidate_end(p);
	if (err == -EAGAIN) {
		failsafe_slot_unreturn(dp->fs, dp->slot, was);
		return err;
	}
	forget(p, page);
	if (!err)
		account_count(p->acct, migrated_to_system, 1);
	return err;
}

/* A list of page addresses, gathered under the lock, acted on after. */
struct collect {
	struct hmmu_mirror *m;
	uint64_t *addrs;
	uint64_t n, cap;
};

static int push(struct collect *c, uint64_t addr)
{
	if (c->n == c->cap) {
		uint64_t cap = c->cap ? 2 * c->cap : 64;
		uint64_t *a = realloc(c->addrs, cap * sizeof(*a));

		if (!a)
			return -ENOMEM;
		c->addrs = a;
		c->cap = cap;
	}
	c->addrs[c->n++] = addr;
	return 0;
}

/* The mirror's device-private pages. */
static int collect_owned(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;
	struct collect *c = arg;

	if (dp->owner != c->m || dp->state != DP_DEVICE)
		return 0;
	return push(c, addr);
}

/* All the mirror's pages, whatever their state. */
static int collect_mine(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;
	struct collect *c = arg;

	return dp->owner == c->m ? push(c, addr) : 0;
}

int migrate_to_system(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		      uint64_t *cpages)
{
	struct process *p = m->proc;
	struct collect c = { .m = m };
	int err;

	*cpages = 0;
	pthread_mutex_lock(&p->migrate_lock);
	err = pt_walk(p->devpages, start, end ? end : PT_VA_LIMIT,
		      collect_owned, &c);
	pthread_mutex_unlock(&p->migrate_lock);

	for (uint64_t i = 0; i < c.n && err != -EAGAIN; i++) {
		struct uffdio_retry retry = { 0 };

		for (;;) {
			struct devpage *dp;
			int r = 0;

			pthread_mutex_lock(&p->migrate_lock);
			dp = lookup(p, c.addrs[i]);
			if (dp && dp->owner == m && dp->state == DP_DEVICE)
				r = restore(p, c.addrs[i], dp);
			pthread_mutex_unlock(&p->migrate_lock);
			if (r != -EAGAIN) {
				*cpages += !r;
				/* -ESRCH: the process is gone, and the page with it. */
				if (r && !err)
					err = r;
				break;
			}
			/* Lock dropped: the loop reads the queued event. */
			if (!uffdio_retry(&retry)) {
				err = -EAGAIN;
				break;
			}
		}
	}
	free(c.addrs);
	return err;
}

void migrate_drop_mirror(struct process *p, struct hmmu_mirror *m)
{
	struct collect c = { .m = m };

	pthread_mutex_lock(&p->migrate_lock);
	if (pt_walk(p->devpages, 0, PT_VA_LIMIT, collect_mine, &c) < 0)
		log_err("client %d: out of memory dropping device pages",
			p->pid);
	for (uint64_t i = 0; i < c.n; i++)
		forget(p, c.addrs[i]);
	pthread_mutex_unlock(&p->migrate_lock);
	free(c.addrs);
}

int migrate_devfile(struct process *p, int *fd, uint64_t *gen,
		    uint64_t *bytes)
{
	int err = 0;

	pthread_mutex_lock(&p->migrate_lock);
	/*
	 * Made here too, before the first PREPARE: the client arms itself
	 * while no page of it is held (a write of its own would then wait
	 * for its own FINISH). Coarse processes never migrate.
	 */
	if (p->coarse)
		err = -EOPNOTSUPP;
	else
		err = make_devfile(p);
	if (!err) {
		*fd = failsafe_open_for_client(p->devfile);
		err = *fd < 0 ? *fd : 0;
		*gen = failsafe_gen(p->devfile);
		*bytes = failsafe_bytes(p->devfile);
	}
	pthread_mutex_unlock(&p->migrate_lock);
	return err;
}

uint64_t migrate_devfile_gen(struct process *p)
{
	uint64_t gen;

	pthread_mutex_lock(&p->migrate_lock);
	gen = p->devfile ? failsafe_gen(p->devfile) : 0;
	pthread_mutex_unlock(&p->migrate_lock);
	return gen;
}

/* ---- a successor's adoption (restart.c) ----------------------------------- */

struct adoption {
	struct process *p;
	struct hmmu_mirror *const *owners;
	unsigned nowners;
	uint64_t pages, migrating;
	int err;
};

/*
 * Does the client's page at @addr exist (present, swapped out, or being
 * moved by the kernel)? A uffd-wp marker left on a missing page (what
 * UFFDIO_WRITEPROTECT puts in an empty entry under WP_UNPOPULATED) reads
 * as a swap entry too, of the last swap type: that is no page.
 */
static bool cpu_page_exists(struct process *p, uint64_t addr)
{
	uint64_t word = 0;

	if (pread(p->pagemap_fd, &word, sizeof(word),
		  (off_t)(addr / page_size() * sizeof(word))) != sizeof(word))
		return false;
	if (word & PM_PRESENT)
		return true;
	return (word & PM_SWAP) &&
	       (word & PM_SWAP_TYPE_MASK) != PM_SWAP_TYPE_PTE_MARKER;
}

/*
 * A live slot of the predecessor's, by its journal state (failsafe.h) and
 * whether the client has the page now:
 *
 *   RETURNING, page there   came home: the slot is free
 *   SETTLED, page there     cannot be (coming home is RETURNING first);
 *                           the CPU's page is what the program sees
 *   HELD, page there        being migrated: the client has not discarded
 *                           it yet, or never will (its FINISH rolls it back)
 *   HELD, no page           discarded, its REMOVE perhaps unread: the
 *                           device's, fresh as in a migration not finished
 *   SETTLED, no page        the device's
 *   RETURNING, no page      the device's, its copy back to be tried again;
 *                           whether its REMOVE was read is not known: HELD
 */
static void adopt_held(void *arg, uint32_t slot, uint64_t addr, unsigned dev,
		       void *data, uint32_t state, bool exclusive)
{
	struct adoption *a = arg;
	struct process *p = a->p;
	struct hmmu_mirror *m = dev < a->nowners ? a->owners[dev] : NULL;
	bool exists = cpu_page_exists(p, addr);
	struct devpage *dp;
	struct pt_entry e;

	if (a->err)
		return;
	if (exists && state != HMMU_SLOT_HELD) {
		if (state == HMMU_SLOT_SETTLED)
			log_warn("client %d: page %#" PRIx64 " is in device "
				 "memory and on the CPU: keeping the CPU's",
				 p->pid, addr);
		failsafe_slot_free(p->devfile, slot);
		return;
	}
	if (state == HMMU_SLOT_RETURNING) {
		failsafe_slot_unreturn(p->devfile, slot, HMMU_SLOT_HELD);
		state = HMMU_SLOT_HELD;
	}
	if (!m || addr % page_size() || addr >= PT_VA_LIMIT || lookup(p, addr)) {
		a->err = -EBADMSG;
		return;
	}
	dp = calloc(1, sizeof(*dp));
	if (!dp) {
		a->err = -ENOMEM;
		return;
	}
	*dp = (struct devpage){
		.mem = data,
		.fs = p->devfile,
		.slot = slot,
		.pool = m->dev->mem,
		.acct = p->acct,
		.dev = dev,
		.owner = m,
		/*
		 * HELD with the CPU page still there: the predecessor died
		 * between PREPARE and the client's discard. The client either
		 * discards it now (the REMOVE waits in the userfaultfd) or
		 * sends its FINISH again, which rolls it back: as if the
		 * migration were in flight, which it is. HELD without it:
		 * discarded, and the REMOVE that says so is not to drop it.
		 */
		.state = exists ? DP_MIGRATING : DP_DEVICE,
		.fresh = !exists && state == HMMU_SLOT_HELD,
		.exclusive = exclusive,
	};
	/* The same devices, the same capacity: the pool has this page. */
	if (devmem_take_page(m->dev->mem) < 0) {
		free(dp);
		a->err = -ENOSPC;
		return;
	}
	account_force_devmem(p->acct, dev);
	e = (struct pt_entry){ .data = dp };
	if (pt_set(p->devpages, addr, &e, NULL, NULL) < 0) {
		devmem_give_page(m->dev->mem);
		account_uncharge_devmem(p->acct, dev);
		free(dp);
		a->err = -ENOMEM;
		return;
	}
	a->pages++;
	a->migrating += dp->state == DP_MIGRATING;
}

int migrate_adopt(struct process *p, int fd, struct hmmu_mirror *const *owners,
		  unsigned nowners, uint64_t *pages, uint64_t *migrating)
{
	struct adoption a = { .p = p, .owners = owners, .nowners = nowners };
	int err;

	pthread_mutex_lock(&p->migrate_lock);
	/* adopt_held() runs inside, with p->devfile set for the pages. */
	err = failsafe_adopt(fd, &p->devfile, adopt_held, &a);
	if (err)
		close(fd);
	pthread_mutex_unlock(&p->migrate_lock);
	if (!err && a.err) {
		migrate_abandon(p);
		err = a.err;
	}
	*pages = a.pages;
	*migrating = a.migrating;
	return err;
}

/* Like free_devpage(), but the slot stays as the journal says. */
static void drop_devpage(struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;

	(void)arg;
	devmem_give_page(dp->pool);
	account_uncharge_devmem(dp->acct, dp->dev);
	free(dp);
}

void migrate_abandon(struct process *p)
{
	pthread_mutex_lock(&p->migrate_lock);
	pt_clear_range(p->devpages, 0, PT_VA_LIMIT, drop_devpage, NULL);
	failsafe_destroy(p->devfile);
	p->devfile = NULL;
	pthread_mutex_unlock(&p->migrate_lock);
}

static int transfer(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct hmmu_mirror **from_to = arg;
	struct devpage *dp = e->data;

	(void)addr;
	if (dp->owner == from_to[0])
		dp->owner = from_to[1];
	return 0;
}

void migrate_transfer(struct process *p, struct hmmu_mirror *from,
		      struct hmmu_mirror *to)
{
	struct hmmu_mirror *from_to[2] = { from, to };

	pthread_mutex_lock(&p->migrate_lock);
	pt_walk(p->devpages, 0, PT_VA_LIMIT, transfer, from_to);
	pthread_mutex_unlock(&p->migrate_lock);
}

/* ---- device side ---------------------------------------------------------- */

int migrate_check_exclusive(struct hmmu_mirror *m, uint64_t start, uint64_t end)
{
	struct process *p = m->proc;
	int err = 0;

	pthread_mutex_lock(&p->migrate_lock);
	for (uint64_t a = start; a < end && !err; a += page_size()) {
		struct devpage *dp = lookup(p, a);

		if (!dp || dp->owner != m || dp->state != DP_DEVICE ||
		    !dp->exclusive)
			err = command_fail(-EPERM, "page %#" PRIx64 " is not "
					   "exclusive to device %s: never made "
					   "so, or a CPU access took it back",
					   a, m->dev->name);
	}
	pthread_mutex_unlock(&p->migrate_lock);
	return err;
}

int migrate_copy_local(struct hmmu_mirror *m, uint64_t page, void *dst)
{
	struct process *p = m->proc;
	struct devpage *dp;
	int err = -ENOENT;

	pthread_mutex_lock(&p->migrate_lock);
	dp = lookup(p, page);
	if (dp && dp->owner == m && dp->state == DP_DEVICE) {
		if (dst)
			memcpy(dst, dp->mem, page_size());
		err = 0;
	}
	pthread_mutex_unlock(&p->migrate_lock);
	return err;
}

uint8_t migrate_page_state(struct hmmu_mirror *m, uint64_t page)
{
	struct process *p = m->proc;
	struct devpage *dp;
	uint8_t st = 0;

	pthread_mutex_lock(&p->migrate_lock);
	dp = lookup(p, page);
	if (dp && dp->state == DP_DEVICE)
		st = HMMU_PFN_DEVICE_PRIVATE |
		     (dp->owner->dev == m->dev ? HMMU_PFN_DEVICE_OWNER : 0);
	pthread_mutex_unlock(&p->migrate_lock);
	return st;
}

/* ---- userfaultfd traffic, on the loop thread ------------------------------ */

static const char zero_page[65536] __attribute__((aligned(4096)));

/*
 * migrate_lock held: fill the missing page at @page. A device-private page
 * comes back; a page being migrated that was never populated gets a zero
 * page, write-protected so that its writer is held like the others (only
 * where @fill_reserved says that is safe); any other page is plain new
 * memory. 0, -EAGAIN (an event is queued: drop the lock and retry),
 * -EBUSY, -ESRCH, or -ENOENT/-EINVAL (no VMA of ours).
 *
 * fill_reserved: a worker is not ordered after the loop's reading of
 * events: a page being migrated may have been discarded by the client a
 * moment ago, with its REMOVE read but not yet applied. Such a page must
 * not be filled with zeros, so a worker passes false and gets -EBUSY for
 * it; the loop (which applies events before faults) and the migration's
 * own copy, before it has told the client what to discard, pass true.
 */
int migrate_fault_in_locked(struct process *p, uint64_t page, bool fill_reserved)
{
	struct devpage *dp = lookup(p, page);
	int err;

	if (dp && dp->state == DP_DEVICE)
		return restore(p, page, dp);
	if (dp && !fill_reserved)
		return -EBUSY;
	/* A device may be snapshotting this page right now: make it retry. */
	process_invalidate_start(p, page, page + page_size(),
				 HMMU_NOTIFY_MIGRATE);
	err = process_fill_page(p, page, zero_page,
				dp ? UFFDIO_COPY_MODE_WP : 0);
	process_invalidate_end(p);
	return err;
}

/*
 * A missing fault, on the loop thread. Events are handled before faults,
 * so a page being migrated whose fault we see now was never discarded by
 * the client: it was never populated, and a zero page is its content.
 */
int migrate_missing_fault(struct process *p, const struct uffd_msg *msg)
{
	uint64_t page = msg->arg.pagefault.address & ~(page_size() - 1);
	struct devpage *dp;
	int err;

	pthread_mutex_lock(&p->migrate_lock);
	dp = lookup(p, page);
	if (dp && dp->state == DP_DEVICE) {
		err = restore(p, page, dp);
		if (!err)
			account_count(p->acct, cpu_faults, 1);
		pthread_mutex_unlock(&p->migrate_lock);
		return err == -EAGAIN ? err : 0;
	}
	err = migrate_fault_in_locked(p, page, true);
	pthread_mutex_unlock(&p->migrate_lock);
	if (uffdio_verdict(UFFDIO_COPY, err) == UFFDIO_FAILED)
		log_err("client %d: missing fault at %#" PRIx64 ": %s", p->pid,
			page, strerror(-err));
	return err == -EAGAIN ? err : 0;
}

static int find_migrating(uint64_t addr, struct pt_entry *e, void *arg)
{
	const struct devpage *dp = e->data;

	(void)addr;
	(void)arg;
	return dp->state == DP_MIGRATING;
}

bool migrate_busy_locked(struct process *p, uint64_t start, uint64_t end)
{
	return pt_count(p->devpages) &&
	       pt_walk(p->devpages, start, end, find_migrating, NULL) == 1;
}

int migrate_holds_write(struct process *p, uint64_t page)
{
	struct devpage *dp;
	int held;

	/*
	 * Until its migration finishes, not merely until the page is the
	 * device's: the client's MADV_DONTNEED announces itself (REMOVE)
	 * before the kernel zaps the page, so a writer let go when the
	 * event is read could write into the page just before the zap takes
	 * it, and that write would be lost. FINISH comes after the client's
	 * madvise returned: the zap is done then.
	 */
	pthread_mutex_lock(&p->migrate_lock);
	dp = lookup(p, page);
	held = dp && (dp->state == DP_MIGRATING || dp->fresh);
	pthread_mutex_unlock(&p->migrate_lock);
	return held;
}

static int on_remove(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;
	struct collect *gone = arg;

	if (dp->state == DP_MIGRATING) {
		/* The client discarded its copy: the device's is the page. */
		dp->state = DP_DEVICE;
		dp->fresh = 1;
	} else if (!dp->fresh) {
		/* madvise of a device-private page: its data is discarded. */
		return push(gone, addr);
	}
	/* Seen: from now on a REMOVE of it is the program's (failsafe.h). */
	failsafe_slot_settle(dp->fs, dp->slot);
	return 0;
}

void migrate_on_remove(struct process *p, uint64_t start, uint64_t end)
{
	struct collect gone = { .m = NULL };

	pthread_mutex_lock(&p->migrate_lock);
	pt_walk(p->devpages, start, end, on_remove, &gone);
	for (uint64_t i = 0; i < gone.n; i++)
		forget(p, gone.addrs[i]);
	pthread_mutex_unlock(&p->migrate_lock);
	free(gone.addrs);
}

/* The first page of the range being migrated decides the event. */
static int find_migrating_page(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;
	struct hmmu_notifier_range *r = arg;

	(void)addr;
	if (dp->state != DP_MIGRATING)
		return 0;
	r->event = dp->exclusive ? HMMU_NOTIFY_EXCLUSIVE : HMMU_NOTIFY_MIGRATE;
	r->owner = dp->owner->dev;
	return 1;
}

void migrate_classify_remove(struct process *p, struct hmmu_notifier_range *r)
{
	pthread_mutex_lock(&p->migrate_lock);
	if (pt_count(p->devpages))
		pt_walk(p->devpages, r->start, r->end, find_migrating_page, r);
	pthread_mutex_unlock(&p->migrate_lock);
}

void migrate_on_unmap(struct process *p, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&p->migrate_lock);
	pt_clear_range(p->devpages, start, end, free_devpage, NULL);
	pthread_mutex_unlock(&p->migrate_lock);
}

/* Every page, whoever owns it. */
static int collect_any(uint64_t addr, struct pt_entry *e, void *arg)
{
	(void)e;
	return push(arg, addr);
}

void migrate_on_remap(struct process *p, uint64_t from, uint64_t to,
		      uint64_t len)
{
	struct collect mv = { .m = NULL };

	pthread_mutex_lock(&p->migrate_lock);
	if (pt_walk(p->devpages, from, from + len, collect_any, &mv) < 0)
		log_err("client %d: out of memory moving device pages", p->pid);
	/*
	 * The pages moved with their VMA: move our entries too, a page at a
	 * time (the kernel never lets the old and new ranges overlap).
	 *
	 * A page still being migrated is rolled back instead: its CPU copy
	 * moved with the VMA and holds the data, and the FINISH its client
	 * sent (or sends) names the old range, so at the new one it would
	 * never settle and a write to it would be held for ever. A page that
	 * became the device's in a migration not yet finished moves, but
	 * that migration will not count it: it is fresh no more.
	 */
	for (uint64_t i = 0; i < mv.n; i++) {
		uint64_t old = mv.addrs[i], new = to + (old - from);
		struct pt_entry e = *pt_lookup(p->devpages, old);
		struct devpage *moving = e.data;

		if (moving->state == DP_MIGRATING) {
			forget(p, old);
			continue;
		}
		moving->fresh = 0;
		pt_clear_range(p->devpages, old, old + page_size(), NULL, NULL);
		if (pt_set(p->devpages, new, &e, NULL, NULL) < 0) {
			log_err("client %d: lost a device page in mremap",
				p->pid);
			free_devpage(&e, NULL);
			continue;
		}
		/* The journal follows the page (a window: operations.md). */
		failsafe_slot_move(moving->fs, moving->slot, new);
	}
	pthread_mutex_unlock(&p->migrate_lock);
	free(mv.addrs);
}

static int copy_to_child(uint64_t addr, struct pt_entry *e, void *arg)
{
	struct devpage *dp = e->data;
	int child = *(int *)arg, err;

	if (dp->state != DP_DEVICE)
		return 0; /* the child got the CPU page itself */
	err = uffdio_copy(child, addr, dp->mem, page_size(), 0);
	if (err < 0)
		log_err("fork: child's copy of %#" PRIx64 ": %s", addr,
			strerror(-err));
	return 0;
}

void migrate_on_fork(struct process *p, int child_uffd)
{
	/*
	 * The child inherited no CPU page for a device-private one: give it
	 * the contents through its own userfaultfd before we close that fd.
	 */
	pthread_mutex_lock(&p->migrate_lock);
	pt_walk(p->devpages, 0, PT_VA_LIMIT, copy_to_child, &child_uffd);
	pthread_mutex_unlock(&p->migrate_lock);
}

/* ---- the driver API's three steps (hmmu/driver.h) ------------------------- */

/* The range every step checks; finalize needs no src array. */
static int migrate_vma_check_range(const struct hmmu_migrate_vma *args)
{
	uint64_t npages = (args->end - args->start) / page_size();

	if (!args->mirror || args->start >= args->end ||
	    args->end > HMMU_VA_LIMIT || args->start % page_size() ||
	    args->end % page_size() || npages > HMMU_MIGRATE_MAX_PAGES)
		return -EINVAL;
	return 0;
}

static int migrate_vma_check(const struct hmmu_migrate_vma *args)
{
	return args->src ? migrate_vma_check_range(args) : -EINVAL;
}

int hmmu_migrate_vma_setup(struct hmmu_migrate_vma *args)
{
	int err = migrate_vma_check(args);

	if (err)
		return err;
	if (!(args->flags & HMMU_MIGRATE_VMA_SELECT_SYSTEM))
		return -EINVAL;
	return migrate_prepare(args->mirror, args->start,
			       (args->end - args->start) / page_size(),
			       args->src,
			       !!(args->flags & HMMU_MIGRATE_VMA_EXCLUSIVE),
			       &args->cpages);
}

/*
 * Pages whose flag the model cleared stay reserved until finalize, which
 * rolls them back as it does every page the client kept: the client is
 * not told to discard them, so it keeps them.
 */
int hmmu_migrate_vma_pages(struct hmmu_migrate_vma *args, uint8_t *discard)
{
	struct process *p;
	uint64_t npages;
	int err = migrate_vma_check(args);

	if (err)
		return err;
	p = args->mirror->proc;
	npages = (args->end - args->start) / page_size();
	memset(discard, 0, (npages + 7) / 8);
	args->cpages = 0;
	/*
	 * Only pages this mirror has reserved and copied may be discarded: a
	 * flag a model set on any other page would have the client throw
	 * away the only copy of its data.
	 */
	pthread_mutex_lock(&p->migrate_lock);
	for (uint64_t i = 0; i < npages; i++) {
		struct devpage *dp;

		if (!(args->src[i] & HMMU_MIGRATE_PFN_MIGRATE))
			continue;
		dp = lookup(p, args->start + i * page_size());
		if (!dp || dp->owner != args->mirror || dp->state != DP_MIGRATING) {
			args->src[i] &= (uint8_t)~HMMU_MIGRATE_PFN_MIGRATE;
			continue;
		}
		discard[i / 8] |= (uint8_t)(1u << (i % 8));
		args->cpages++;
	}
	pthread_mutex_unlock(&p->migrate_lock);
	return 0;
}

int hmmu_migrate_vma_finalize(struct hmmu_migrate_vma *args)
{
	int err = migrate_vma_check_range(args);

	if (err)
		return err;
	return migrate_finish(args->mirror, args->start,
			      (args->end - args->start) / page_size(),
			      &args->cpages);
}
