/* SPDX-License-Identifier: MIT */
#include "process.h"
#include "../common/page.h"
#include "accounts.h"
#include "counters.h"
#include "limits.h"
#include "../lib/log.h"
#include "migrate.h"
#include "mirror.h"
#include "uffd_events.h"
#include "uffdio.h"
#include "vmas.h"
#include "client_mem.h"
#include "../common/kernel_uapi.h"
#include "device.h"
#include "notifier.h"
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/futex.h>
#include <limits.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

/* A REMOVE whose zap we wait for (see process_remove_begin()). */
struct pending_zap {
	uint64_t start, npages;
	uint64_t *before; /* pagemap words when the event was read, or NULL */
	struct timespec since;
	struct pending_zap *next;
};

/* Is @fd a userfaultfd, and with which features? Both from /proc. */
int process_uffd_features(int fd, uint64_t *features)
{
	char path[64], target[64], line[128];
	unsigned long long api, feat, ioctls;
	ssize_t n;
	FILE *f;
	int err = -EBADF;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, target, sizeof(target) - 1);
	if (n < 0)
		return errno == ENOENT ? -EBADF : -errno;
	target[n] = '\0';
	if (strcmp(target, "anon_inode:[userfaultfd]") != 0)
		return -EBADF;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "API:\t%llx:%llx:%llx", &api, &feat,
			   &ioctls) == 3) {
			*features = feat;
			err = 0;
			break;
		}
	}
	fclose(f);
	return err;
}

/*
 * Opened once: the open file holds on to the process's memory, not to its
 * pid. The pid is checked to still name the peer after the open (its pidfd
 * has not turned readable), so the file is that process's. -1 if not
 * allowed or the process is gone (zaps then settle by time alone).
 */
static int open_proc_file(const struct peer *peer, const char *name, int flags)
{
	struct pollfd pfd = { .fd = peer->pidfd, .events = POLLIN };
	char path[64];
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/%s", peer->pid, name);
	fd = open(path, flags | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	if (poll(&pfd, 1, 0) != 0) {
		close(fd);
		return -ESRCH;
	}
	return fd;
}

/* The address space's files; -errno if any cannot be had. */
static int open_mm_files(struct process *p, const struct peer *peer)
{
	p->mem_fd = open_proc_file(peer, "mem", O_RDWR);
	p->pagemap_fd = open_proc_file(peer, "pagemap", O_RDONLY);
	p->maps_fd = open_proc_file(peer, "maps", O_RDONLY);
	if (p->mem_fd < 0)
		return p->mem_fd;
	if (p->pagemap_fd < 0)
		return p->pagemap_fd;
	return p->maps_fd < 0 ? p->maps_fd : 0;
}

bool process_journals;
static atomic_uint_fast64_t last_serial;

void process_serial_floor(uint64_t serial)
{
	uint64_t last = atomic_load(&last_serial);

	while (last < serial &&
	       !atomic_compare_exchange_weak(&last_serial, &last, serial))
		;
}

/* The state around @uffd (checked) with no file of the address space yet. */
static int process_alloc(const struct peer *peer, int uffd, struct loop *loop,
			 struct process **out)
{
	struct process *p;
	uint64_t features = 0;
	int err;

	err = process_uffd_features(uffd, &features);
	if (err)
		return err;
	if ((features & HMMU_UFFD_REQUIRED_FEATURES) !=
	    HMMU_UFFD_REQUIRED_FEATURES)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	err = migrate_init(p);
	if (err) {
		free(p);
		return err;
	}
	p->pidfd = fcntl(peer->pidfd, F_DUPFD_CLOEXEC, 3);
	if (p->pidfd < 0) {
		err = -errno;
		migrate_fini(p);
		free(p);
		return err;
	}
	p->mem_fd = p->pagemap_fd = p->maps_fd = -1;
	p->acct = account_get(peer->uid);
	p->pid = peer->pid;
	p->uid = peer->uid;
	p->pid_ino = peer->pid_ino;
	p->uffd = -1; /* the caller's until the end */
	p->uffd_features = features;
	p->coarse = features & UFFD_FEATURE_WP_ASYNC;
	pthread_mutex_init(&p->scan_lock, NULL);
	p->loop = loop;
	atomic_init(&p->refs, 1); /* the registry's table */
	pthread_rwlock_init(&p->lock, NULL);
	pthread_mutex_init(&p->close_lock, NULL);
	pthread_cond_init(&p->close_cond, NULL);
	pthread_mutex_init(&p->zap_lock, NULL);
	if (!p->acct) {
		process_put(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

/* The daemon keeps a journal for a successor: make it. */
static int make_journal(struct process *p)
{
	struct journal_identity id = {
		.pid = p->pid,
		.uid = p->uid,
		.pid_ino = p->pid_ino,
		.coarse = p->coarse,
	};

	p->serial = id.serial = atomic_fetch_add(&last_serial, 1) + 1;
	return process_journals ? journal_create(&id, &p->journal) : 0;
}

/*
 * The daemon polls the fd, and poll on a blocking userfaultfd reports
 * EPOLLERR (so would systemd, which drops such an fd from its store). The
 * flag lives on the open file, so this also changes the client's copy,
 * which the client never reads.
 */
static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int process_create(const struct peer *peer, int uffd, struct loop *loop,
		   struct process **out)
{
	struct process *p;
	int err = process_alloc(peer, uffd, loop, &p);

	if (err)
		return err;
	err = open_mm_files(p, peer);
	if (err)
		log_warn("client %d: cannot open its /proc/%d files: %s",
			 peer->pid, peer->pid, strerror(-err));
	if (!err)
		err = make_journal(p);
	/* Last, so that a failure above leaves the caller's fd as it was. */
	if (!err)
		err = set_nonblocking(uffd);
	if (err) {
		process_put(p);
		return err;
	}
	p->uffd = uffd;
	p->uffd_watch.fd = uffd;
	*out = p;
	return 0;
}

int process_adopt(const struct peer *peer, const struct process_fds *fds,
		  struct journal *j, uint64_t serial,
		  const struct uffd_range *ranges, unsigned n,
		  struct loop *loop, struct process **out)
{
	struct process *p;
	int err = process_alloc(peer, fds->uffd, loop, &p);

	if (err)
		return err;
	if (n) {
		p->ranges = malloc(n * sizeof(*p->ranges));
		if (!p->ranges) {
			process_put(p);
			return -ENOMEM;
		}
		memcpy(p->ranges, ranges, n * sizeof(*p->ranges));
		p->nranges = p->ranges_cap = n;
	}
	err = set_nonblocking(fds->uffd);
	if (err) {
		process_put(p);
		return err;
	}
	/* Everything is the state's from here on, journal included. */
	p->mem_fd = fds->mem;
	p->pagemap_fd = fds->pagemap;
	p->maps_fd = fds->maps;
	p->journal = j;
	p->serial = serial;
	process_serial_floor(serial);
	p->uffd = fds->uffd;
	p->uffd_watch.fd = fds->uffd;
	*out = p;
	return 0;
}

void process_wake_all(struct process *p)
{
	pthread_rwlock_rdlock(&p->lock);
	for (unsigned i = 0; i < p->nranges; i++) {
		int err = uffdio_wake(p->uffd, p->ranges[i].start,
				      p->ranges[i].end - p->ranges[i].start);

		if (uffdio_verdict(UFFDIO_WAKE, err) == UFFDIO_FAILED)
			log_warn("client %d: UFFDIO_WAKE %#" PRIx64 "+%#" PRIx64
				 ": %s", p->pid, p->ranges[i].start,
				 p->ranges[i].end - p->ranges[i].start,
				 strerror(-err));
	}
	pthread_rwlock_unlock(&p->lock);
}

void process_get(struct process *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void process_put(struct process *p)
{
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (p->uffd >= 0)
		close(p->uffd);
	close(p->pidfd);
	if (p->mem_fd >= 0)
		close(p->mem_fd);
	free(p->probe_fill);
	if (p->pagemap_fd >= 0)
		close(p->pagemap_fd);
	if (p->maps_fd >= 0)
		close(p->maps_fd);
	while (p->zaps) {
		struct pending_zap *z = p->zaps;

		p->zaps = z->next;
		free(z->before);
		free(z);
	}
	pthread_mutex_destroy(&p->zap_lock);
	pthread_mutex_destroy(&p->scan_lock);
	migrate_fini(p);
	account_put(p->acct);
	pthread_rwlock_destroy(&p->lock);
	pthread_mutex_destroy(&p->close_lock);
	pthread_cond_destroy(&p->close_cond);
	journal_destroy(p->journal);
	free(p->ranges);
	free(p);
}

static struct process *watch_to_process(struct loop_watch *w)
{
	return (struct process *)((char *)w - offsetof(struct process, uffd_watch));
}

static void uffd_ready(struct loop_watch *w, unsigned revents)
{
	uffd_events_handle(watch_to_process(w), revents);
}

/* The loop is done with the fd: close it, and drop the loop's reference. */
static void close_uffd(struct process *p)
{
	close(p->uffd);
	p->uffd = -1;
	pthread_mutex_lock(&p->close_lock);
	p->uffd_closed = true;
	pthread_cond_broadcast(&p->close_cond);
	pthread_mutex_unlock(&p->close_lock);
	process_put(p);
}

static void uffd_gone(struct loop_watch *w)
{
	close_uffd(watch_to_process(w));
}

static void start_watch(void *arg)
{
	struct process *p = arg;

	p->uffd_watch.ready = uffd_ready;
	p->uffd_watch.gone = uffd_gone;
	if (loop_watch_add(p->loop, &p->uffd_watch) < 0) {
		log_err("client %d: cannot watch its userfaultfd", p->pid);
		/* Never on the ring: stop_watch() must not remove it. */
		p->uffd_watch.removing = true;
		close_uffd(p);
	}
}

int process_start(struct process *p)
{
	int err;

	if (!p->loop)
		return 0;
	process_get(p); /* the loop's, dropped by uffd_gone() */
	err = loop_defer(p->loop, start_watch, p);
	if (err)
		process_put(p);
	return err;
}

static void stop_watch(void *arg)
{
	struct process *p = arg;

	if (!p->uffd_watch.removing)
		loop_watch_remove(p->loop, &p->uffd_watch);
}

/* p->lock held for write: the ranges changed, so does the journal. */
static void ranges_changed(struct process *p)
{
	if (p->journal)
		journal_write_ranges(p->journal, p->ranges, p->nranges);
}

void process_stop(struct process *p)
{
	pthread_rwlock_wrlock(&p->lock);
	p->stopped = true;
	for (unsigned i = 0; i < p->nranges; i++) {
		uint64_t start = p->ranges[i].start;
		uint64_t len = p->ranges[i].end - start;
		int err = uffdio_unregister(p->uffd, start, len);

		/* Gone: the process or the range, and its registration with it. */
		if (uffdio_verdict(UFFDIO_UNREGISTER, err) == UFFDIO_FAILED)
			log_warn("client %d: UFFDIO_UNREGISTER %#" PRIx64
				 "+%#" PRIx64 ": %s",
				 p->pid, start, len, strerror(-err));
	}
	p->nranges = 0;
	ranges_changed(p);
	pthread_rwlock_unlock(&p->lock);

	/*
	 * Closing the fd is the loop's job: it may be reading from it right
	 * now. A started watch always ends in close_uffd(), even when the
	 * loop has already stopped. Without a loop, process_put() closes it.
	 */
	if (!p->loop)
		return;
	if (loop_defer(p->loop, stop_watch, p) < 0) {
		log_err("client %d: cannot stop watching its userfaultfd",
			p->pid);
		return;
	}
	pthread_mutex_lock(&p->close_lock);
	while (!p->uffd_closed)
		pthread_cond_wait(&p->close_cond, &p->close_lock);
	pthread_mutex_unlock(&p->close_lock);
}

void process_add_mirror(struct process *p, struct hmmu_mirror *m)
{
	pthread_rwlock_wrlock(&p->lock);
	m->proc_next = p->mirrors;
	p->mirrors = m;
	pthread_rwlock_unlock(&p->lock);
}

void process_del_mirror(struct process *p, struct hmmu_mirror *m)
{
	/*
	 * Taking the lock for write waits out any invalidation walking the
	 * list: once we return, no callback for @m runs again (rule 6).
	 */
	pthread_rwlock_wrlock(&p->lock);
	for (struct hmmu_mirror **pp = &p->mirrors; *pp; pp = &(*pp)->proc_next) {
		if (*pp == m) {
			*pp = m->proc_next;
			break;
		}
	}
	m->proc_next = NULL;
	pthread_rwlock_unlock(&p->lock);
}

void process_invalidate_range_start(struct process *p,
				    const struct hmmu_notifier_range *r)
{
	uint64_t cur;

	atomic_fetch_add(&p->inval_active, 1);
	cur = atomic_fetch_add(&p->seq, 1) + 1;
	pthread_rwlock_rdlock(&p->lock);
	for (struct hmmu_mirror *m = p->mirrors; m; m = m->proc_next) {
		/*
		 * A fork leaves the parent's pages as they were, and our
		 * write-protection on them: the device's copies stay good.
		 */
		if (r->event != HMMU_NOTIFY_FORK)
			mmu_invalidate(&m->mmu, r->start, r->end);
		notifier_invalidate(m, r, cur);
	}
	pthread_rwlock_unlock(&p->lock);
	account_count(p->acct, invalidations, 1);
}

void process_invalidate_start(struct process *p, uint64_t start, uint64_t end,
			      enum hmmu_notifier_event event)
{
	struct hmmu_notifier_range r = {
		.start = start, .end = end, .event = event,
	};

	process_invalidate_range_start(p, &r);
}

/*
 * inval_active is the futex word: a waiter sleeps while it holds the value
 * it saw, and the invalidation that brings it to 0 wakes every waiter, if
 * any (inval_waiters: both sides sequentially consistent, so either the
 * waker sees the waiter or the waiter sees the 0). The kernel only reads
 * the word; it stays a C11 atomic for us.
 */
static int *futex_word(struct process *p)
{
	return (int *)&p->inval_active;
}

void process_invalidate_end(struct process *p)
{
	if (atomic_fetch_sub(&p->inval_active, 1) == 1 &&
	    atomic_load(&p->inval_waiters))
		syscall(SYS_futex, futex_word(p), FUTEX_WAKE_PRIVATE, INT_MAX,
			NULL, NULL, 0);
}

void process_wait_invalidations(struct process *p, long timeout_ns)
{
	struct timespec limit = { 0, timeout_ns };
	int seen;

	atomic_fetch_add(&p->inval_waiters, 1);
	seen = atomic_load(&p->inval_active);
	/* EAGAIN (it changed meanwhile), EINTR, ETIMEDOUT: the caller looks. */
	if (seen)
		syscall(SYS_futex, futex_word(p), FUTEX_WAIT_PRIVATE, seen,
			&limit, NULL, 0);
	atomic_fetch_sub(&p->inval_waiters, 1);
}

/* See process.h. Waiters: as inval_waiters, both sides seq_cst. */
static atomic_uint events_seq;
static atomic_int events_waiters;

void process_events_begin(void)
{
	atomic_fetch_add(&events_seq, 1);
}

void process_events_end(void)
{
	atomic_fetch_add(&events_seq, 1);
	if (atomic_load(&events_waiters))
		syscall(SYS_futex, (int *)&events_seq, FUTEX_WAKE_PRIVATE,
			INT_MAX, NULL, NULL, 0);
}

void process_wait_events(void)
{
	unsigned seen = atomic_load(&events_seq);

	if (!(seen & 1))
		return;
	/*
	 * Only the batch seen in progress: a later one read nothing that the
	 * client had seen complete before it sent this request.
	 */
	atomic_fetch_add(&events_waiters, 1);
	while (atomic_load(&events_seq) == seen)
		syscall(SYS_futex, (int *)&events_seq, FUTEX_WAIT_PRIVATE,
			seen, NULL, NULL, 0);
	atomic_fetch_sub(&events_waiters, 1);
}

/* ---- REMOVE: invalidations that end when the kernel's zap is done ---- */

/* A zap is taken as done after this long, whatever pagemap says. */
#define ZAP_SETTLE_NS 20000000ll
#define ZAP_MAX_PAGES 16384u /* a record keeps at most 128 KiB of pagemap */

static uint64_t *read_pagemap(struct process *p, uint64_t start,
			      uint64_t npages)
{
	uint64_t *w;
	off_t off = (off_t)(start / page_size() * 8);

	if (p->pagemap_fd < 0 || npages > ZAP_MAX_PAGES)
		return NULL;
	w = malloc(npages * 8);
	if (w && pread(p->pagemap_fd, w, npages * 8, off) != (ssize_t)(npages * 8)) {
		free(w);
		w = NULL;
	}
	return w;
}

void process_remove_begin(struct process *p, uint64_t start, uint64_t end)
{
	struct hmmu_notifier_range r = {
		.start = start, .end = end, .event = HMMU_NOTIFY_DISCARD,
	};
	struct pending_zap *z;
	bool snapshot;

	migrate_classify_remove(p, &r);
	process_invalidate_range_start(p, &r);
	/*
	 * A client can send REMOVEs as fast as it can call madvise. Past
	 * zaps-per-process records, one catch-all record, settled by time
	 * alone, stands for all the others: each new REMOVE restarts its
	 * clock, and its own invalidation closes at once, covered by it.
	 */
	pthread_mutex_lock(&p->zap_lock);
	if (p->catchall) {
		clock_gettime(CLOCK_MONOTONIC, &p->catchall->since);
		pthread_mutex_unlock(&p->zap_lock);
		process_invalidate_end(p);
		return;
	}
	/* Only we (the loop) add records: the count can only fall meanwhile. */
	snapshot = p->nzaps < limits.zaps_per_process;
	pthread_mutex_unlock(&p->zap_lock);
	z = calloc(1, sizeof(*z));
	if (!z) {
		/* No record: close at once, as a plain invalidation. */
		process_invalidate_end(p);
		return;
	}
	z->start = start;
	z->npages = (end - start) / page_size();
	/* The zap may be running already: a page seen gone is just done. */
	if (snapshot)
		z->before = read_pagemap(p, start, z->npages);
	clock_gettime(CLOCK_MONOTONIC, &z->since);
	pthread_mutex_lock(&p->zap_lock);
	if (++p->nzaps > limits.zaps_per_process)
		p->catchall = z;
	z->next = p->zaps;
	p->zaps = z;
	pthread_mutex_unlock(&p->zap_lock);
}

/*
 * The zap is done once no page that was present then is still the same
 * page now: gone, or another frame (with PFNs, which need CAP_SYS_ADMIN),
 * or no longer write-protected by us. Past ZAP_SETTLE_NS we stop waiting.
 */
static bool zap_done(struct process *p, const struct pending_zap *z)
{
	struct timespec now;
	uint64_t *cur;
	bool done = true;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if ((now.tv_sec - z->since.tv_sec) * 1000000000ll +
		    (now.tv_nsec - z->since.tv_nsec) > ZAP_SETTLE_NS)
		return true;
	if (!z->before)
		return false;
	cur = read_pagemap(p, z->start, z->npages);
	if (!cur)
		return false;
	for (uint64_t i = 0; i < z->npages && done; i++) {
		uint64_t b = z->before[i], c = cur[i];

		if (!(b & PM_PRESENT) || !(c & PM_PRESENT))
			continue;
		if (b & PM_PFN_MASK)
			done = (b & PM_PFN_MASK) != (c & PM_PFN_MASK);
		else
			done = (b & PM_UFFD_WP) && !(c & PM_UFFD_WP);
	}
	free(cur);
	return done;
}

bool process_settle_zaps(struct process *p)
{
	struct pending_zap **pz, *z;
	bool left;

	pthread_mutex_lock(&p->zap_lock);
	for (pz = &p->zaps; (z = *pz);) {
		if (!zap_done(p, z)) {
			pz = &z->next;
			continue;
		}
		*pz = z->next;
		if (z == p->catchall)
			p->catchall = NULL;
		p->nzaps--;
		free(z->before);
		free(z);
		process_invalidate_end(p);
	}
	left = p->zaps != NULL;
	pthread_mutex_unlock(&p->zap_lock);
	return left;
}

void process_invalidate(struct process *p, uint64_t start, uint64_t end,
			enum hmmu_notifier_event event)
{
	process_invalidate_start(p, start, end, event);
	process_invalidate_end(p);
}

/*
 * Range bookkeeping, p->lock held. True if registered ranges cover
 * [start, end), writable ones if @write, registered for missing faults if
 * @missing: the range fault's fast path, which then needs no VMA lookup.
 * (Permissions are those seen at registration: mprotect is not observed.)
 */
static bool range_known(struct process *p, uint64_t start, uint64_t end,
			int write, int missing)
{
	uint64_t addr = start;

	while (addr < end) {
		unsigned i;

		for (i = 0; i < p->nranges; i++)
			if (p->ranges[i].start <= addr && addr < p->ranges[i].end &&
			    (!write || p->ranges[i].writable) &&
			    (!missing || p->ranges[i].missing))
				break;
		if (i == p->nranges)
			return false;
		addr = p->ranges[i].end;
	}
	return true;
}

static int range_add(struct process *p, uint64_t start, uint64_t end)
{
	if (p->nranges == p->ranges_cap) {
		unsigned cap = p->ranges_cap ? 2 * p->ranges_cap : 16;
		struct uffd_range *r = realloc(p->ranges, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		p->ranges = r;
		p->ranges_cap = cap;
	}
	p->ranges[p->nranges++] = (struct uffd_range){ start, end, false, false };
	return 0;
}

void process_forget_range(struct process *p, uint64_t start, uint64_t end)
{
	pthread_rwlock_wrlock(&p->lock);
	for (unsigned i = 0; i < p->nranges;) {
		struct uffd_range *r = &p->ranges[i];

		if (r->end <= start || end <= r->start) {
			i++;
			continue;
		}
		if (r->start < start && end < r->end) {
			/* A hole in the middle: keep both sides. */
			uint64_t tail = r->end;

			r->end = start;
			if (range_add(p, end, tail) < 0)
				log_warn("client %d: out of memory for ranges",
					 p->pid);
			i++;
			continue;
		}
		if (start <= r->start && r->end <= end) {
			*r = p->ranges[--p->nranges];
			continue;
		}
		if (r->start < start)
			r->end = start;
		else
			r->start = end;
		i++;
	}
	ranges_changed(p);
	pthread_rwlock_unlock(&p->lock);
}

void process_add_range(struct process *p, uint64_t start, uint64_t end)
{
	pthread_rwlock_wrlock(&p->lock);
	if (!p->stopped && range_add(p, start, end) < 0)
		log_warn("client %d: out of memory for ranges", p->pid);
	ranges_changed(p);
	pthread_rwlock_unlock(&p->lock);
}

/*
 * The VMAs of @p over [start, end): -EFAULT if any page is unmapped or not
 * readable, -EPERM if @write and any is read-only. With @vmas NULL it
 * only checks; else it collects at most @max VMAs (-E2BIG past that).
 */
static int find_vmas(struct process *p, uint64_t start, uint64_t end, int write,
		     struct uffd_range *vmas, unsigned max, unsigned *count)
{
	struct vma_cursor c;
	uint64_t covered = start;
	struct vma v;
	unsigned n = 0;
	int err = 0, r = 1;

	vma_cursor_init(&c, p, start);
	while (covered < end && (r = vma_next(&c, &v)) == 1) {
		if (v.start > covered || !v.read) {
			err = -EFAULT;
			break;
		}
		if (write && !v.write) {
			err = -EPERM;
			break;
		}
		if (vmas && n == max) {
			err = -E2BIG;
			break;
		}
		if (vmas)
			vmas[n++] = (struct uffd_range){ v.start, v.end, v.write,
							 false };
		covered = v.end;
	}
	vma_cursor_done(&c);
	if (!err && covered < end)
		err = r < 0 ? r : -EFAULT;
	*count = n;
	return err;
}

#define MAX_VMAS_PER_FAULT 64

/* p->lock held for write: note the permission and mode of a VMA. */
static void remember_vma(struct process *p, const struct uffd_range *vma)
{
	for (unsigned i = 0; i < p->nranges; i++) {
		if (p->ranges[i].start == vma->start &&
		    p->ranges[i].end == vma->end) {
			p->ranges[i].writable = vma->writable;
			p->ranges[i].missing |= vma->missing;
		}
	}
}

static int register_vmas(struct process *p, uint64_t start, uint64_t end,
			 int write, int missing)
{
	struct uffd_range vmas[MAX_VMAS_PER_FAULT];
	unsigned n = 0;
	bool known;
	int err;

	pthread_rwlock_rdlock(&p->lock);
	known = !p->stopped && range_known(p, start, end, write, missing);
	pthread_rwlock_unlock(&p->lock);
	if (known)
		return 0;

	err = find_vmas(p, start, end, write, vmas, MAX_VMAS_PER_FAULT, &n);
	if (err)
		return err;

	pthread_rwlock_wrlock(&p->lock);
	if (p->stopped) {
		err = -ESRCH;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t mode = UFFDIO_REGISTER_MODE_WP;

		vmas[i].missing = missing;
		if (missing)
			mode |= UFFDIO_REGISTER_MODE_MISSING;
		/* Same fd, same VMA, more modes: the kernel updates it. */
		if (range_known(p, vmas[i].start, vmas[i].end, 0, missing)) {
			remember_vma(p, &vmas[i]);
			continue;
		}
		/* Whole VMAs: a registration never splits one. */
		err = uffdio_register(p->uffd, vmas[i].start,
				      vmas[i].end - vmas[i].start, mode);
		if (err) {
			/*
			 * EINVAL: memory userfaultfd cannot write-protect (a
			 * file on most filesystems). Not an error: devices
			 * reach it without copies (mmu.c, untracked()); only
			 * what needs copies or migration refuses it.
			 */
			if (err == -EINVAL) {
				log_debug("client %d: %#" PRIx64 "-%#" PRIx64
					  " is memory userfaultfd cannot "
					  "write-protect: no device copies of it",
					  p->pid, vmas[i].start, vmas[i].end);
				err = -EPERM;
			} else {
				log_warn("client %d: UFFDIO_REGISTER %#" PRIx64
					 "-%#" PRIx64 ": %s",
					 p->pid, vmas[i].start, vmas[i].end,
					 strerror(-err));
			}
			break;
		}
		if (!range_known(p, vmas[i].start, vmas[i].end, 0, 0))
			err = range_add(p, vmas[i].start, vmas[i].end);
		if (err)
			break;
		remember_vma(p, &vmas[i]);
	}
	/*
	 * After the registrations: a range the journal lacks has no page in
	 * device memory yet (a slot is reserved only after this returns).
	 */
	ranges_changed(p);
out:
	pthread_rwlock_unlock(&p->lock);
	return err;
}

int process_register_range(struct process *p, uint64_t start, uint64_t end,
			   int write)
{
	return register_vmas(p, start, end, write, 0);
}

int process_register_missing(struct process *p, uint64_t start, uint64_t end)
{
	return register_vmas(p, start, end, 0, 1);
}

/* ---- the address space is the sender's ---------------------------------- */

#define PROBE_NONCE_BYTES 32


static int probe_range(struct process *p, uint64_t probe, int reg)
{
	if (reg)
		return uffdio_register(p->uffd, probe, 2 * page_size(),
				       UFFDIO_REGISTER_MODE_MISSING);
	return uffdio_unregister(p->uffd, probe, 2 * page_size());
}

int process_verify(struct process *p, uint64_t probe)
{
	uint8_t *nonce = NULL, seen[PROBE_NONCE_BYTES];
	int err;

	if (!probe || probe % page_size() || probe + 2 * page_size() < probe)
		return -EFAULT;
	/*
	 * The userfaultfd acts on its own address space, our mem file on the
	 * one we opened for the sender's pid: a value placed through the
	 * first that reads back through the second proves they are one.
	 * Fresh private pages: a COPY into one that exists fails (EEXIST).
	 */
	/*
	 * A userfaultfd whose address space is gone (an exited child's, say)
	 * fails with ESRCH, or ENOMEM on newer kernels: not the sender's.
	 */
	err = probe_range(p, probe, 1);
	if (err)
		return err == -ESRCH || err == -ENOMEM ? -EINVAL : -EFAULT;
	nonce = aligned_alloc(page_size(), page_size());
	if (!nonce) {
		err = -ENOMEM;
		goto out;
	}
	memset(nonce, 0, page_size());
	if (getrandom(nonce, PROBE_NONCE_BYTES, 0) != PROBE_NONCE_BYTES) {
		err = -errno;
		goto out;
	}
	/* Present already (UFFDIO_EXISTED): the page was not fresh. */
	err = uffdio_copy(p->uffd, probe, nonce, page_size(), 0);
	if (err) {
		err = err == -ESRCH ? -EINVAL : -EFAULT;
		goto out;
	}
	if (pread(p->mem_fd, seen, sizeof(seen), (off_t)probe) != sizeof(seen) ||
	    memcmp(seen, nonce, sizeof(seen)) != 0) {
		err = -EINVAL;
		goto out;
	}
	/* A second value, for the second page, which the loop will place. */
	if (getrandom(nonce, PROBE_NONCE_BYTES, 0) != PROBE_NONCE_BYTES) {
		err = -errno;
		goto out;
	}
	p->probe_fill = nonce;
	atomic_store(&p->probe_page, probe + page_size());
	nonce = NULL;
out:
	free(nonce);
	if (err)
		probe_range(p, probe, 0);
	return err;
}

/* The probe's remote read, on a thread of its own (see below). */
struct probe_read {
	pid_t pid;
	uint64_t addr;
	char seen[PROBE_NONCE_BYTES];
	ssize_t n;
	int err;
	bool done;
	pthread_mutex_t lock;
	pthread_cond_t cond;
};

static void *probe_read_thread(void *arg)
{
	struct probe_read *pr = arg;
	struct iovec local = { .iov_base = pr->seen, .iov_len = sizeof(pr->seen) };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)pr->addr,
				.iov_len = sizeof(pr->seen) };
	ssize_t n = process_vm_readv(pr->pid, &local, 1, &remote, 1, 0);
	int err = n < 0 ? errno : 0;

	pthread_mutex_lock(&pr->lock);
	pr->n = n;
	pr->err = err;
	pr->done = true;
	pthread_cond_signal(&pr->cond);
	pthread_mutex_unlock(&pr->lock);
	return NULL;
}

/* Wait for the probe read up to @ms; true if it is done. */
static bool probe_wait(struct probe_read *pr, long ms)
{
	struct timespec until;
	bool done;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&pr->lock);
	while (!pr->done &&
	       pthread_cond_timedwait(&pr->cond, &pr->lock, &until) == 0)
		;
	done = pr->done;
	pthread_mutex_unlock(&pr->lock);
	return done;
}

/* Fill the probe page and wake whoever waits on it, whatever state it is in. */
static void probe_release(struct process *p, uint64_t addr)
{
	if (process_fill_page(p, addr, p->probe_fill, 0) == -EAGAIN)
		(void)uffdio_wake(p->uffd, addr, page_size());
}

int process_probe_fault(struct process *p, uint64_t page)
{
	if (!p->probe_fill || page != atomic_load(&p->probe_page))
		return 0;
	return process_fill_page(p, page, p->probe_fill, 0) == -EAGAIN ? -EAGAIN : 1;
}

int process_verify_kernel_faults(struct process *p, uint64_t probe)
{
	struct probe_read pr = {
		.pid = p->pid,
		.addr = probe + page_size(),
		.lock = PTHREAD_MUTEX_INITIALIZER,
		.cond = PTHREAD_COND_INITIALIZER,
	};
	pthread_t t;
	int err = 0;

	/*
	 * The one access by pid left, for this one question: a remote read
	 * is a fault the kernel takes on the client's behalf. A full
	 * userfaultfd queues it, and the loop (now watching the fd) fills the
	 * page; one made with UFFD_USER_MODE_ONLY fails it at once (EFAULT).
	 * What we read is thrown away. Checked after: the address space is
	 * still the one we verified (had the pid exec'd meanwhile, the read
	 * went elsewhere, and this state is dead anyway).
	 *
	 * The read runs on a thread of its own, because a client that kept
	 * a copy of its userfaultfd could read the fault's message itself and
	 * never answer it, and a loaded loop may be slow: past 50 ms we fill
	 * and wake the page ourselves (a fault that finds it present goes on).
	 * A read that waited at all was a fault the fd queued: it is a full
	 * one, whoever answered. No worker waits for a client.
	 */
	if (!p->probe_fill)
		return -EINVAL; /* process_verify() did not pass */
	err = -pthread_create(&t, NULL, probe_read_thread, &pr);
	if (err)
		goto out;
	for (int round = 0; !probe_wait(&pr, round ? 10 : 50); round++)
		probe_release(p, pr.addr);
	pthread_join(t, NULL);
	if (!err && pr.n != PROBE_NONCE_BYTES)
		err = pr.err == ESRCH ? -ESRCH : -EPERM;
	/*
	 * What it read must be what we placed: a page the client populated
	 * beforehand takes no fault at all, and proves nothing.
	 */
	if (!err && memcmp(pr.seen, p->probe_fill, sizeof(pr.seen)) != 0)
		err = -EPERM;
	if (!err && !client_mm_alive(p))
		err = -ESRCH;
out:
	probe_range(p, probe, 0);
	atomic_store(&p->probe_page, 0);
	pthread_mutex_destroy(&pr.lock);
	pthread_cond_destroy(&pr.cond);
	return err;
}

/* ---- access and protection ---------------------------------------------- */

int process_check_access(struct process *p, uint64_t start, uint64_t end,
			 int write)
{
	unsigned n;

	if (end < start)
		return -EFAULT;
	return find_vmas(p, start, end, write, NULL, 0, &n);
}

int process_write_protect(struct process *p, uint64_t start, uint64_t len,
			  bool protect)
{
	struct uffdio_retry retry = { 0 };
	int err;

	/* An event is queued: the loop thread will read it. No lock held. */
	while ((err = uffdio_writeprotect(p->uffd, start, len, protect)) ==
		       -EAGAIN &&
	       uffdio_retry(&retry))
		;
	return err;
}

int process_unprotect(struct process *p, uint64_t start, uint64_t end)
{
	int err = 0;

	pthread_rwlock_rdlock(&p->lock);
	for (unsigned i = 0; i < p->nranges && !err; i++) {
		uint64_t s = p->ranges[i].start > start ? p->ranges[i].start : start;
		uint64_t e = p->ranges[i].end < end ? p->ranges[i].end : end;

		/*
		 * ENOENT: the VMA changed under us; its event will tell.
		 * EAGAIN goes back: p->lock is held, the loop needs it.
		 */
		if (s < e)
			err = uffdio_writeprotect(p->uffd, s, e - s, false);
		if (err == -ENOENT)
			err = 0;
	}
	pthread_rwlock_unlock(&p->lock);
	return err;
}

/*
 * The pid is only a name: make sure it still names the process we hold a
 * pidfd of.
 */
int process_alive(struct process *p)
{
	struct pollfd pfd = { .fd = p->pidfd, .events = POLLIN };

	/* A pidfd turns readable when its process exits. */
	return poll(&pfd, 1, 0) == 0 ? 0 : -ESRCH;
}

int process_fill_page(struct process *p, uint64_t page, const void *src,
		      uint64_t mode)
{
	int err = uffdio_copy(p->uffd, page, src, page_size(), mode);

	if (err == 0 || err == -EAGAIN)
		return err; /* the copy woke the waiters itself, or retry */
	/* Present already, or its VMA or process gone: nobody woke them. */
	(void)uffdio_wake(p->uffd, page, page_size());
	return err == UFFDIO_EXISTED ? 0 : err;
}
