/* SPDX-License-Identifier: MIT */
/*
 * Per-process state: the counterpart of the kernel's struct hmm. One per
 * client process that has at least one registered mirror. It owns the
 * process's userfaultfd, the address ranges registered with it, and the
 * list of the process's registered mirrors, which every invalidation walks.
 *
 * Lifetime: created by the registry for the first registration, removed
 * from the registry's table by the last unregistration (process_stop()).
 * References: the registry's table holds one while the process is in it;
 * the event loop holds one while it watches the userfaultfd; a fault in
 * flight holds one. The last process_put() frees.
 */
#ifndef HMMUD_PROCESS_H
#define HMMUD_PROCESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <hmmu/driver.h>

#include "../lib/loop.h"
#include "peer.h"

struct account;
struct hmmu_mirror;
struct registry;
struct journal;

struct uffd_range {
	uint64_t start, end;
	bool writable; /* the VMA was writable when we last looked */
	bool missing;  /* registered for missing faults too (migration) */
};

struct process {
	pid_t pid;
	uid_t uid;
	struct account *acct; /* its user's, a reference */
	uint64_t pid_ino;
	int pidfd; /* our own dup: the connection's may close first */
	int uffd;
	uint64_t uffd_features;
	/*
	 * Coarse-grained coherence (coherence.c): the userfaultfd came with
	 * UFFD_FEATURE_WP_ASYNC, so CPU writes to protected pages never fault
	 * into us; they are collected at command boundaries instead. Set once
	 * at creation, from the fd's features; read without a lock.
	 * scan_lock serialises the collections (a PAGEMAP_SCAN that
	 * re-protects the written pages, then their invalidation): a page one
	 * scan took is invalidated before any other scan returns. Taken by
	 * workers and compute units holding at most a mirror's state_lock;
	 * under it only p->lock (read) and the device page-table locks, through
	 * the invalidation. Never by the loop thread.
	 */
	bool coarse;
	pthread_mutex_t scan_lock;
	struct loop *loop; /* NULL: nobody watches the userfaultfd (unit tests) */
	atomic_uint refs;

	unsigned nmirrors;	    /* registry lock */
	struct process *hash_next;  /* registry lock */

	/*
	 * lock protects mirrors, ranges and stopped. Read-held by whoever
	 * walks the mirrors to invalidate (the loop thread); write-held to
	 * change the list or the ranges. Nothing that waits for the client
	 * runs under it. Taken after the registry lock and a mirror's
	 * state_lock.
	 */
	pthread_rwlock_t lock;
	struct hmmu_mirror *mirrors;
	struct uffd_range *ranges; /* registered with the userfaultfd */
	unsigned nranges, ranges_cap;
	bool stopped; /* process_stop() ran: register nothing more */

	/*
	 * The invalidation sequence, as the kernel's mmu_interval_notifier:
	 * an invalidation raises inval_active and bumps seq before it drops
	 * device copies, and lowers inval_active when the CPU side has been
	 * let go (page un-protected). A range fault samples seq when no
	 * invalidation is active, and installs pages only if seq is still
	 * the same under the device's page-table lock. See fault.c.
	 * inval_waiters counts the threads waiting for inval_active to drop
	 * to 0 (process_wait_invalidations()): only then does the end of an
	 * invalidation wake anyone (a futex on inval_active).
	 */
	atomic_uint_fast64_t seq;
	atomic_int inval_active;
	atomic_int inval_waiters;

	/*
	 * REMOVE (madvise) is the one change userfaultfd announces before it
	 * happens: the kernel zaps the pages after we read the event. Each
	 * such zap keeps an invalidation open (inval_active) until
	 * process_settle_zaps() sees it done. zap_lock protects zaps.
	 */
	pthread_mutex_t zap_lock;
	struct pending_zap *zaps;
	unsigned nzaps;		   /* records, at most zaps-per-process + 1 */
	struct pending_zap *catchall; /* past the limit: one record for all */
	/*
	 * The address space's own files, opened once when the state is made
	 * and checked to be the userfaultfd's address space (process_verify()).
	 * Each holds that address space, not the pid: after the process execs
	 * or exits, they fail. Every access to the client goes through them
	 * (client_mem.c, vmas.c, cpu_pages.c), never through /proc/PID again.
	 */
	int mem_fd;
	int pagemap_fd;
	/*
	 * The second probe page and the value its missing fault gets (set
	 * before the watch starts, read by the loop): a client cannot have
	 * put that value there itself (process_verify_kernel_faults()). The
	 * page is 0 again once the check is over: the client unmaps it, and
	 * whatever it maps there next is ordinary memory.
	 */
	atomic_uint_fast64_t probe_page;
	void *probe_fill;
	int maps_fd; /* /proc/PID/maps, for PROCMAP_QUERY (vmas.c) */

	/*
	 * Pages in device memory (migrate.c): a page table keyed by the
	 * client's virtual address, protected by migrate_lock, which nests
	 * outside lock (the migration code invalidates while holding it).
	 * held: write faults on pages being migrated, kept asleep until the
	 * migration settles; loop thread only.
	 */
	pthread_mutex_t migrate_lock;
	struct pt *devpages;
	/*
	 * Where the device pages live, and their journal (failsafe.h): made
	 * by the first migration, under migrate_lock; NULL before.
	 */
	struct failsafe *devfile;
	struct uffd_msg *held;
	unsigned nheld, held_cap;

	/*
	 * For a successor (restart.c): the journal (journal.h), NULL unless
	 * process_journals, and the number naming the process's fds in the
	 * fd store. Set at creation.
	 */
	struct journal *journal;
	uint64_t serial;

	struct loop_watch uffd_watch;
	/* uffd_closed: the loop closed the fd; process_stop() waits for it. */
	pthread_mutex_t close_lock;
	pthread_cond_t close_cond;
	bool uffd_closed;
};

/*
 * Make the state for @peer around @uffd, which must be a userfaultfd that
 * went through UFFDIO_API with the features hmmu needs. On success the
 * process owns @uffd. Errors: -EBADF (not a userfaultfd), -EINVAL (missing
 * features), -ENOMEM.
 */
int process_create(const struct peer *peer, int uffd, struct loop *loop,
		   struct process **out);
/* Keep a journal for each process made from now on (the daemon's fd store). */
extern bool process_journals;

/* The fds of an address space a successor adopts from the fd store. */
struct process_fds {
	int uffd, mem, pagemap, maps;
};

/*
 * A successor's process_create(): the state of a process its predecessor
 * made, from the fds and journal it kept. No check of the userfaultfd
 * beyond its features: the predecessor proved it, and the fd store is the
 * daemon's own. On success the state owns the fds and @j.
 */
int process_adopt(const struct peer *peer, const struct process_fds *fds,
		  struct journal *j, uint64_t serial,
		  const struct uffd_range *ranges, unsigned n,
		  struct loop *loop, struct process **out);
/*
 * Wake every thread asleep on a fault in @p's ranges: a successor does so
 * once it watches the userfaultfd, for the faults its predecessor read and
 * died before serving (no event tells of them again). Each woken thread
 * takes its fault again if it still must, and the successor sees that one.
 */
void process_wake_all(struct process *p);
/* Processes made from now on are numbered past @serial. */
void process_serial_floor(uint64_t serial);

/*
 * The features @fd went through UFFDIO_API with; -EBADF if it is not a
 * userfaultfd. (process_create() makes the state's coherence mode of them.)
 */
int process_uffd_features(int fd, uint64_t *features);
/*
 * Prove that the userfaultfd belongs to the address space we opened for
 * the sender, using @probe, two pages of the sender's that nobody touched
 * (libhmmu maps them for this): a random value is placed in the first
 * through the userfaultfd and must read back through our /proc/PID/mem.
 * -EINVAL if it does not (another process's userfaultfd, or the sender
 * exec'd meanwhile), -EFAULT if @probe is not two fresh private pages.
 */
int process_verify(struct process *p, uint64_t probe);

/*
 * After process_start(): prove that the userfaultfd serves faults the
 * kernel takes on the client's behalf, not only its user-mode ones (a
 * UFFD_USER_MODE_ONLY fd, which a user may create without the privilege
 * a full one needs, would let every such fault fail with EFAULT). Uses the
 * second probe page. -EPERM if it does not.
 */
int process_verify_kernel_faults(struct process *p, uint64_t probe);

/* Start watching the userfaultfd on the loop. */
int process_start(struct process *p);

/*
 * Loop thread, a missing fault at @page: if it is the probe's, fill it.
 * 1 if it was (served), 0 if not the probe's, -EAGAIN to retry.
 */
int process_probe_fault(struct process *p, uint64_t page);
/*
 * Tear down: unregister every range from the userfaultfd (so the client's
 * VMAs lose their uffd flags now), stop watching it and close it, and return
 * once it is closed. The caller has removed @p from the registry and holds
 * the registry lock; the loop thread never waits for that lock, so waiting
 * for the loop here cannot deadlock.
 */
void process_stop(struct process *p);
void process_get(struct process *p);
void process_put(struct process *p);

/* Mirror list changes; called under the registry lock. */
void process_add_mirror(struct process *p, struct hmmu_mirror *m);
void process_del_mirror(struct process *p, struct hmmu_mirror *m);

/*
 * Invalidate [start, end) in every mirror of @p, before the CPU-side change
 * completes: process_invalidate_start() bumps the sequence and drops the
 * device copies, process_invalidate_end() closes the window once the CPU
 * side has been let go. Any thread; takes p->lock for read.
 */
void process_invalidate_start(struct process *p, uint64_t start, uint64_t end,
			      enum hmmu_notifier_event event);
/* The same, with the whole range a notifier sees (its owner, say). */
void process_invalidate_range_start(struct process *p,
				    const struct hmmu_notifier_range *r);
void process_invalidate_end(struct process *p);

/*
 * A REMOVE event for [start, end): invalidate, and keep the invalidation
 * open until the kernel has really discarded the pages (loop thread).
 */
void process_remove_begin(struct process *p, uint64_t start, uint64_t end);

/*
 * Close the invalidations of the REMOVEs whose pages are gone by now.
 * Called by whoever waits for inval_active to drop (fault.c). True if
 * some are still awaited: nobody will wake a waiter for those, so it must
 * come back and look.
 */
bool process_settle_zaps(struct process *p);

/*
 * Sleep until no invalidation is in flight (inval_active is 0), or for
 * @timeout_ns at most (less than a second); may return early. Any thread
 * but the loop, which ends the invalidations.
 */
void process_wait_invalidations(struct process *p, long timeout_ns);

/*
 * The loop thread, around one read of a userfaultfd and the events it
 * brought: begin before the read, end once their invalidations are done.
 * One seqcount for all processes (odd while a batch is being applied):
 * the loop reads one userfaultfd at a time.
 *
 * Reading an UNMAP, REMOVE or REMAP event lets the client's munmap,
 * madvise or mremap return, before the loop has applied it; the request
 * the client sends next may reach a receiver meanwhile. So every request
 * first waits out the batch in progress, if any (process_wait_events()):
 * what a client ordered after a munmap/madvise/mremap then finds the
 * device copies gone and the counters moved (rule 7). Never called on the
 * loop thread. Costs a request one atomic load when no batch is in flight.
 */
void process_events_begin(void);
void process_events_end(void);
void process_wait_events(void);

/* Both at once, for changes that need nothing done in between. */
void process_invalidate(struct process *p, uint64_t start, uint64_t end,
			enum hmmu_notifier_event event);

/*
 * Make sure the VMAs covering [start, end) are registered with the
 * userfaultfd for write-protect, whole VMAs at a time so that registration
 * never splits a VMA. -EFAULT if part of the range is not mapped or not
 * readable, -EPERM if @write and part is read-only, or if a VMA is of a
 * kind userfaultfd cannot write-protect; -ESRCH if the state is stopping.
 */
int process_register_range(struct process *p, uint64_t start, uint64_t end,
			   int write);

/*
 * The same, for missing faults as well as write-protect: what a range
 * needs before its pages can move to device memory.
 */
int process_register_missing(struct process *p, uint64_t start, uint64_t end);

/*
 * Check that [start, end) is mapped and readable (and writable if @write),
 * as the CPU would: -EFAULT if not mapped or not readable, -EPERM if not
 * writable, -ESRCH if the address space is gone.
 */
int process_check_access(struct process *p, uint64_t start, uint64_t end,
			 int write);

/*
 * Set or lift our write-protection on [start, start + len), all of which
 * must be registered; retried while an event is queued. Not on the loop.
 */
int process_write_protect(struct process *p, uint64_t start, uint64_t len,
			  bool protect);

/*
 * Lift our write-protection from the registered parts of [start, end), in
 * one try: -EAGAIN if an event is queued (the caller may hold locks the
 * loop needs to read it, so it retries after dropping them).
 */
int process_unprotect(struct process *p, uint64_t start, uint64_t end);

/* 0 while the process behind @p lives, -ESRCH once it has exited. */
int process_alive(struct process *p);

/*
 * Fill the missing page at @page with a copy of @src (@mode: 0 or
 * UFFDIO_COPY_MODE_WP): 0 if done or the page was there already (EEXIST),
 * -EAGAIN (an event is queued: retry), else -errno. Whatever the outcome
 * but -EAGAIN, a thread waiting on the page is woken: a fault the daemon
 * considers handled must never leave its thread asleep.
 */
int process_fill_page(struct process *p, uint64_t page, const void *src,
		      uint64_t mode);

/* The CPU side moved or unmapped a range: update what is registered. */
void process_forget_range(struct process *p, uint64_t start, uint64_t end);
void process_add_range(struct process *p, uint64_t start, uint64_t end);

#endif
