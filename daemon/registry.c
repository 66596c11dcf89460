/* SPDX-License-Identifier: MIT */
#include "registry.h"
#include "../core/counters.h"
#include "../core/accounts.h"
#include "../core/client_mem.h"
#include "../core/fault.h"
#include "../lib/log.h"
#include "../core/migrate.h"
#include "../core/mirror.h"
#include "../core/process.h"
#include "../core/device.h"
#include "../core/reason.h"
#include "../common/kernel_uapi.h"
#include "../common/kfeatures.h"
#include "../core/faultbuf.h"
#include "../common/page.h"
#include "restart.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

void registry_init(struct registry *r, struct loop *loop)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	r->loop = loop;
}

void registry_fini(struct registry *r)
{
	pthread_mutex_destroy(&r->lock);
}

static struct process **bucket(struct registry *r, pid_t pid)
{
	return &r->table[(unsigned)pid % REGISTRY_BUCKETS];
}

/* reg->lock held. */
static struct process *lookup(struct registry *r, const struct peer *peer)
{
	for (struct process *p = *bucket(r, peer->pid); p; p = p->hash_next)
		if (p->pid == peer->pid && p->pid_ino == peer->pid_ino)
			return p;
	return NULL;
}

/* reg->lock held: the last mirror left, so the state goes (rule 4). */
static void remove_process(struct registry *r, struct process *p)
{
	for (struct process **pp = bucket(r, p->pid); *pp;
	     pp = &(*pp)->hash_next) {
		if (*pp == p) {
			*pp = p->hash_next;
			break;
		}
	}
	r->processes--;
	/*
	 * Still under the registry lock: a registration racing with this
	 * teardown waits for the lock, then finds no state and builds fresh
	 * state, with a new userfaultfd, on ranges we have unregistered.
	 * Out of the fd store after the stop: a successor that finds it
	 * there meanwhile adopts a state the client then unregisters again.
	 */
	process_stop(p);
	restart_forget_process(p);
	process_put(p); /* the table's reference */
}

/*
 * The userfaultfd's features decide the process's coherence mode
 * (process_create()); they must be those of the mode the mirror asked for.
 * A coarse process needs WP_UNPOPULATED too (the kernel offers
 * PAGEMAP_SCAN's write-protect only on VMAs that use markers) and
 * PAGEMAP_SCAN itself.
 */
static int check_uffd_mode(int uffd, bool coarse, struct reply_reason *why)
{
	uint64_t features = 0;
	int err = process_uffd_features(uffd, &features);

	if (err)
		return err; /* add_process() says why */
	if (!coarse && (features & UFFD_FEATURE_WP_ASYNC))
		return reason_set(why, -EINVAL, "a fine-grained mirror needs a "
				  "userfaultfd without UFFD_FEATURE_WP_ASYNC: "
				  "with it, CPU writes never reach hmmud");
	if (coarse && !(features & UFFD_FEATURE_WP_ASYNC))
		return reason_set(why, -EINVAL, "a coarse-grained mirror needs "
				  "a userfaultfd with UFFD_FEATURE_WP_ASYNC");
	if (coarse && !(features & UFFD_FEATURE_WP_UNPOPULATED))
		return reason_set(why, -EOPNOTSUPP, "coarse-grained mirrors "
				  "need UFFD_FEATURE_WP_UNPOPULATED with "
				  "WP_ASYNC (Linux 6.7 or newer)");
	if (coarse && !kfeatures()->pagemap_scan)
		return reason_set(why, -EOPNOTSUPP, "coarse-grained mirrors "
				  "need PAGEMAP_SCAN on /proc/PID/pagemap "
				  "(Linux 6.7 or newer), which hmmud's kernel "
				  "lacks");
	return 0;
}

/*
 * reg->lock held; creates, checks, starts and inserts the state for @m's
 * owner. The checks (process.h) make sure the userfaultfd is the sender's
 * own and a full one: all else hmmu does for this process relies on it.
 */
static int add_process(struct registry *r, struct hmmu_mirror *m, int *uffd,
		       uint64_t probe, bool coarse, struct process **out,
		       struct reply_reason *why)
{
	struct process *p;
	int err;

	err = check_uffd_mode(*uffd, coarse, why);
	if (err)
		return err;

	err = process_create(&m->owner, *uffd, r->loop, &p);
	if (err == -EBADF)
		return reason_set(why, err, "the fd sent to register with is "
				  "not a userfaultfd");
	if (err == -EINVAL)
		return reason_set(why, err, "the userfaultfd lacks features "
				  "hmmu needs (UFFDIO_API with write-protect "
				  "and the unmap, remove and remap events)");
	if (err == -EACCES || err == -EPERM)
		return reason_set(why, err, "hmmud may not open /proc/%d/mem "
				  "of this process: it needs CAP_SYS_PTRACE "
				  "over it (docs/operations.md)", m->owner.pid);
	if (err)
		return err;
	*uffd = -1; /* p owns it now */
	err = process_verify(p, probe);
	if (err) {
		log_warn("client %d: refused its userfaultfd: %s", p->pid,
			 err == -EINVAL ? "it is not of the sender's own address space" :
			 err == -EFAULT ? "the probe pages are not two untouched private pages" :
					  strerror(-err));
		if (err == -EINVAL)
			reason_set(why, err, "the userfaultfd is not of this "
				   "process's own address space (another "
				   "process's, or from before an exec)");
		else if (err == -EFAULT)
			reason_set(why, err, "the probe pages sent to register "
				   "with are not two untouched private pages");
		process_put(p);
		return err;
	}
	err = process_start(p);
	if (err) {
		process_put(p);
		return err;
	}
	/* Without a loop (unit tests) nobody could serve the probe's fault. */
	err = r->loop ? process_verify_kernel_faults(p, probe) : 0;
	if (err) {
		log_warn("client %d: refused its userfaultfd: %s", p->pid,
			 err == -EPERM ? "it does not serve faults taken by the kernel "
					 "(made with UFFD_USER_MODE_ONLY?)" :
					  strerror(-err));
		if (err == -EPERM)
			reason_set(why, err, "hmmud refused this process's "
				   "userfaultfd: it must serve faults the kernel "
				   "takes, not only user-mode ones "
				   "(UFFD_USER_MODE_ONLY)");
		process_stop(p);
		process_put(p);
		return err;
	}
	p->hash_next = *bucket(r, p->pid);
	*bucket(r, p->pid) = p;
	r->processes++;
	/* Before the reply: a successor must find what the client counts on. */
	restart_store_process(p);
	*out = p;
	return 0;
}

int registry_register(struct registry *r, struct hmmu_mirror *m, int *uffd,
		      uint64_t probe, struct reply_reason *why)
{
	return registry_register_mode(r, m, uffd, probe, false, why);
}

int registry_register_mode(struct registry *r, struct hmmu_mirror *m,
			   int *uffd, uint64_t probe, bool coarse,
			   struct reply_reason *why)
{
	struct process *p;
	int err = 0;

	pthread_rwlock_wrlock(&m->state_lock);
	pthread_mutex_lock(&r->lock);
	if (m->dead) {
		err = -ENOENT;
		goto out;
	}
	if (m->registered) {
		err = reason_set(why, -EBUSY, "mirror %llu on %s is registered "
				 "already: unregister it first",
				 (unsigned long long)m->id, m->dev->name);
		goto out;
	}
	p = lookup(r, &m->owner);
	if (p && !client_mm_alive(p)) {
		/* Same pid and pidfd, but it exec'd: not the one that registered. */
		err = reason_set(why, -ESRCH, "this process exec'd since it "
				 "registered: the new image must connect anew");
		goto out;
	}
	/* One userfaultfd per process, and its features are its mode. */
	if (p && p->coarse != coarse) {
		err = reason_set(why, -EBUSY, "this process's mirrors are "
				 "%s-grained, and a process has one coherence "
				 "mode while it has mirrors: register this one "
				 "%s-grained, or once all are unregistered",
				 p->coarse ? "coarse" : "fine",
				 p->coarse ? "coarse" : "fine");
		goto out;
	}
	if (!p) {
		if (*uffd < 0) {
			err = HMMU_STATUS_NEED_UFFD;
			goto out;
		}
		err = add_process(r, m, uffd, probe, coarse, &p, why);
		if (err)
			goto out;
	}
	m->proc = p; /* the model's bind() may use it */
	err = device_bind(m);
	if (err) {
		reason_default(why, err, "device %s refused to take the "
			       "mirror: %s", m->dev->name, strerror(-err));
		m->proc = NULL;
		if (p->nmirrors == 0)
			remove_process(r, p);
		goto out;
	}
	process_get(p); /* the mirror's, while registered */
	m->registered = true;
	p->nmirrors++;
	r->mirrors++;
	counter_add(&counters.mirrors, 1);
	process_add_mirror(p, m);
out:
	pthread_mutex_unlock(&r->lock);
	pthread_rwlock_unlock(&m->state_lock);
	return err;
}

/*
 * m->state_lock held, m registered, *not* under the registry lock: copying
 * pages back into the client takes a while and needs the loop, so it must
 * not hold up every other client's lifecycle. Rule 8: pages in device
 * memory come back with their data while the process lives (a closed
 * connection is not a dead process); what cannot come back belonged to a
 * process that is gone, and detach() frees it.
 */
static void bring_pages_back(struct hmmu_mirror *m)
{
	struct process *p = m->proc;
	uint64_t n;
	int err;

	if (process_alive(p) != 0)
		return;
	err = migrate_to_system(m, 0, 0, &n);
	/* -ESRCH: it died meanwhile (or exec'd), and its pages with it. */
	if (err < 0 && err != -ESRCH)
		log_err("client %d: could not bring every page back from %s: %s",
			p->pid, m->dev->name, strerror(-err));
}

/* reg->lock and m->state_lock held, m registered. */
static void detach(struct registry *r, struct hmmu_mirror *m, int release)
{
	struct process *p = m->proc;

	process_del_mirror(p, m);
	if (release)
		device_release(m);
	migrate_drop_mirror(p, m);
	device_unbind(m);
	m->registered = false;
	m->proc = NULL;
	r->mirrors--;
	counter_sub(&counters.mirrors, 1);
	if (--p->nmirrors == 0)
		remove_process(r, p);
	process_put(p); /* the mirror's */
}

/*
 * Take @m out of its process, if registered: its pages back first (under
 * its state_lock only), then the registry's part. @dead: it left its
 * connection, never to be registered again; @release: its process or
 * connection is gone, and the device gets release. 1 if it was registered.
 */
static int take_out(struct registry *r, struct hmmu_mirror *m, bool dead,
		    int release)
{
	int was;

	pthread_rwlock_wrlock(&m->state_lock);
	if (dead)
		m->dead = true;
	was = m->registered; /* fixed while we hold state_lock */
	if (was)
		bring_pages_back(m);
	pthread_mutex_lock(&r->lock);
	if (was && release) {
		account_count(m->acct, releases, 1);
		r->releases++;
	}
	if (was)
		detach(r, m, release);
	pthread_mutex_unlock(&r->lock);
	pthread_rwlock_unlock(&m->state_lock);
	return was;
}

int registry_unregister(struct registry *r, struct hmmu_mirror *m)
{
	return take_out(r, m, false, 0) ? 0 : -EINVAL;
}

void registry_destroy(struct registry *r, struct hmmu_mirror *m)
{
	/* Destroying a registered mirror is an unregistration, not a death. */
	take_out(r, m, true, 0);
}

int registry_release(struct registry *r, struct hmmu_mirror *m)
{
	return take_out(r, m, true, 1);
}

void registry_stats(struct registry *r, const struct peer *peer,
		    struct account *acct, struct hmmu_wire_stats *out)
{
	/* Root sees the daemon; anyone else, the share of its own uid. */
	struct counters *c = peer->uid == 0 || !acct ? &counters : &acct->counted;
	struct process *p;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&r->lock);
	if (c == &counters) {
		out->value[HMMU_STAT_PROCESSES] = r->processes;
		out->value[HMMU_STAT_MIRRORS] = r->mirrors;
		out->value[HMMU_STAT_RELEASES] = r->releases;
	} else {
		for (unsigned b = 0; b < REGISTRY_BUCKETS; b++) {
			for (p = r->table[b]; p; p = p->hash_next) {
				if (p->uid != peer->uid)
					continue;
				out->value[HMMU_STAT_PROCESSES]++;
				out->value[HMMU_STAT_MIRRORS] += p->nmirrors;
			}
		}
		out->value[HMMU_STAT_RELEASES] = counter_read(&c->releases);
	}
	p = lookup(r, peer);
	out->value[HMMU_STAT_MY_STATE] = p != NULL;
	out->value[HMMU_STAT_MY_MIRRORS] = p ? p->nmirrors : 0;
	pthread_mutex_unlock(&r->lock);

	out->value[HMMU_STAT_DEVICE_FAULTS] = counter_read(&c->device_faults);
	out->value[HMMU_STAT_FAULT_BATCHES] = counter_read(&c->fault_batches);
	out->value[HMMU_STAT_FAULT_ENTRIES] = counter_read(&c->fault_entries);
	out->value[HMMU_STAT_FAULT_DUPLICATES] = counter_read(&c->fault_duplicates);
	out->value[HMMU_STAT_FAULT_BLOCKS] = counter_read(&c->fault_blocks);
	out->value[HMMU_STAT_FAULT_RUNS] = counter_read(&c->fault_runs);
	out->value[HMMU_STAT_DENSITY_FETCHES] = counter_read(&c->density_fetches);
	/* The rule is the daemon's, whoever asks. */
	out->value[HMMU_STAT_FAULT_WINDOW_PAGES] =
		counter_read(&counters.fault_window_pages);
	out->value[HMMU_STAT_FAULT_DENSITY_PCT] =
		counter_read(&counters.fault_density_pct);
	if (out->value[HMMU_STAT_FAULT_WINDOW_PAGES]) {
		out->value[HMMU_STAT_FAULT_BATCH_MAX] = FAULTBUF_BATCH;
		out->value[HMMU_STAT_FAULT_BLOCK_PAGES] =
			FAULTBUF_BLOCK_BYTES / page_size();
	}
	out->value[HMMU_STAT_CPU_FAULTS] = counter_read(&c->cpu_faults);
	out->value[HMMU_STAT_INVALIDATIONS] = counter_read(&c->invalidations);
	out->value[HMMU_STAT_MIGRATED_TO_DEVICE] =
		counter_read(&c->migrated_to_device);
	out->value[HMMU_STAT_MIGRATED_TO_SYSTEM] =
		counter_read(&c->migrated_to_system);
	if (c == &counters) {
		out->value[HMMU_STAT_SESSIONS] = counter_read(&counters.sessions);
		out->value[HMMU_STAT_DEVICE_PAGES] = counter_read(&counters.device_pages);
	} else {
		out->value[HMMU_STAT_SESSIONS] = account_connections(acct);
		out->value[HMMU_STAT_DEVICE_PAGES] = counter_read(&acct->copy_pages);
	}
}

/* One entry (if it falls in the window), counting all. r->lock held. */
static void list_add(uint32_t *n, uint32_t start, uint32_t max, uint32_t *count,
		     struct hmmu_wire_list_entry *out,
		     const struct hmmu_wire_list_entry *e)
{
	if (*n >= start && *count < max)
		out[(*count)++] = *e;
	(*n)++;
}

uint32_t registry_list(struct registry *r, const struct peer *viewer,
		       unsigned what, uint32_t start,
		       struct hmmu_wire_list_entry *out, uint32_t max,
		       uint32_t *count)
{
	uint32_t n = 0;

	*count = 0;
	pthread_mutex_lock(&r->lock);
	for (unsigned b = 0; b < REGISTRY_BUCKETS; b++) {
		for (struct process *p = r->table[b]; p; p = p->hash_next) {
			struct hmmu_wire_list_entry e = {
				.pid = p->pid,
				.uid = p->uid,
				.mirrors = p->nmirrors,
			};

			if (viewer->uid != 0 && viewer->uid != p->uid)
				continue;
			if (what == HMMU_LIST_PROCESSES) {
				list_add(&n, start, max, count, out, &e);
				continue;
			}
			/* The mirror list changes only under r->lock. */
			for (struct hmmu_mirror *m = p->mirrors; m; m = m->proc_next) {
				/* Names are NUL-terminated within 32 bytes. */
				memcpy(e.device, m->dev->name, sizeof(e.device));
				e.device_pages = device_pages(m);
				list_add(&n, start, max, count, out, &e);
			}
		}
	}
	pthread_mutex_unlock(&r->lock);
	return n;
}

int registry_adopt(struct registry *r, struct process *p,
		   struct hmmu_mirror *const *ghosts, unsigned n)
{
	struct peer who = { .pid = p->pid, .pid_ino = p->pid_ino };
	unsigned bound = 0;
	int err = 0;

	pthread_mutex_lock(&r->lock);
	if (lookup(r, &who))
		err = -EEXIST;
	/* The ghosts are nobody else's yet: their state_locks are not needed. */
	for (; bound < n && !err; bound++) {
		ghosts[bound]->proc = p;
		err = device_bind(ghosts[bound]);
		if (err) {
			ghosts[bound]->proc = NULL;
			break;
		}
	}
	if (err) {
		while (bound--) {
			device_unbind(ghosts[bound]);
			ghosts[bound]->proc = NULL;
		}
		pthread_mutex_unlock(&r->lock);
		return err;
	}
	p->hash_next = *bucket(r, p->pid);
	*bucket(r, p->pid) = p;
	r->processes++;
	for (unsigned i = 0; i < n; i++) {
		process_get(p); /* the mirror's, while registered */
		ghosts[i]->registered = true;
		ghosts[i]->ghost = true;
		p->nmirrors++;
		r->mirrors++;
		counter_add(&counters.mirrors, 1);
		process_add_mirror(p, ghosts[i]);
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

int registry_restore(struct registry *r, struct hmmu_mirror *m, bool coarse,
		     struct reply_reason *why)
{
	struct hmmu_mirror *ghost = NULL;
	struct process *p;
	int nofd = -1, err;

	err = registry_register_mode(r, m, &nofd, 0, coarse, why);
	if (err == HMMU_STATUS_NEED_UFFD)
		return reason_set(why, -ESTALE, "hmmud holds no state for this "
				  "process: it was not handed over across the "
				  "restart");
	if (err)
		return err;
	/* The ghost of this device, if any, gives its pages to @m. */
	pthread_mutex_lock(&r->lock);
	p = m->proc;
	for (struct hmmu_mirror *g = p->mirrors; g; g = g->proc_next) {
		if (g->ghost && g->dev == m->dev) {
			g->ghost = false; /* claimed: by us only */
			ghost = g;
			mirror_get(ghost);
			break;
		}
	}
	pthread_mutex_unlock(&r->lock);
	if (ghost) {
		migrate_transfer(p, ghost, m);
		registry_destroy(r, ghost);
		mirror_put(ghost);
	}
	return 0;
}

struct process *registry_find_process(struct registry *r,
				      const struct peer *peer)
{
	struct process *p;

	pthread_mutex_lock(&r->lock);
	p = lookup(r, peer);
	if (p)
		process_get(p);
	pthread_mutex_unlock(&r->lock);
	return p;
}
