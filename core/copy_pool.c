/* SPDX-License-Identifier: MIT */
/*
 * The page-copy pool (copy_pool.h).
 *
 * Pages are in one of three places:
 *
 *   handed out   a device MMU's copy (or about to be one): its owner's
 *   warm         in a thread's cache or in the depot: written once, so its
 *                page-table entry exists, ready to hand out ("idle")
 *   cold         in the depot's cold stack: address space we mapped whose
 *                memory went back to the kernel (MADV_DONTNEED) or was
 *                never touched
 *
 * Memory is mapped in chunks of CHUNK_PAGES and never unmapped: trimming
 * gives the memory back page by page with MADV_DONTNEED, which keeps the
 * mapping whole (munmap of single pages would split it into as many VMAs
 * as holes, towards vm.max_map_count). What stays is address space and the
 * page tables of the chunks, 4 KiB per 2 MiB.
 *
 * Locking. The fault path takes no lock shared by all threads per
 * allocation: each thread has a small cache of warm pages (TCACHE_MAX),
 * under a mutex of its own that only the trimmer ever contends for (to
 * take back the memory of idle threads). A thread goes to the depot,
 * under the depot lock, once per TCACHE_BATCH pages, or for an allocation
 * larger than its cache. This is the magazine scheme of Bonwick's slab
 * allocator and of tcmalloc, chosen over a lock-free stack because the
 * latter needs ABA protection (a tagged pointer or a double-width CAS) and
 * still makes every allocation and free bounce one cache line between
 * CPUs; a per-thread mutex costs an uncontended lock (~20 ns) and lets an
 * idle thread's cache be reclaimed, which a purely thread-local cache would
 * not. Order: caches_lock > tcache.lock > depot lock. All are leaves
 * relative to the rest of the daemon: callers may hold anything (a device
 * MMU's lock, a process lock on the loop thread), and nothing under a pool
 * lock waits for anything but memory (mmap, under the depot lock, on a
 * miss).
 *
 * The background thread ("hmmud-copies") refills the depot when the warm
 * pages fall below LOW_WATER, up to TARGET, a REFILL_STEP at a time, with
 * MADV_POPULATE_WRITE (or a store per page where the kernel lacks it);
 * trims what is above the cap; gives everything back after idle_ms without
 * an allocation, or at once on a memory pressure event (a PSI trigger on
 * /proc/pressure/memory), after which it refills nothing for
 * PRESSURE_HOLD_MS. An allocation never waits for it: it kicks it (one
 * eventfd write per crossing of the low-water mark) after it has taken its
 * pages, and on a miss takes cold pages and warms just those itself, so
 * that every page handed out is present.
 */
#include "copy_pool.h"
#include "limits.h"
#include "../common/kernel_uapi.h"
#include "../common/kfeatures.h"
#include "../common/page.h"
#include "../lib/log.h"
#include "../lib/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHUNK_PAGES 512u   /* mapped at a time: 2 MiB */
#define TCACHE_MAX 64u	   /* warm pages a thread keeps: 256 KiB */
#define TCACHE_BATCH 32u   /* taken from or given to the depot at once */
#define LOW_WATER 512u	   /* refill below this many warm pages (2 MiB) */
#define TARGET 2048u	   /* up to this many (8 MiB) */
#define REFILL_STEP 512u   /* pages warmed per round of madvise calls */
#define TRIM_STEP 1024u	   /* pages given back per round */
#define TICK_MS 1000
#define PRESSURE_HOLD_MS 10000
/* 150 ms of stalls in a 2 s window (unprivileged: a multiple of 2 s). */
#define PSI_TRIGGER "some 150000 2000000"

struct tcache {
	pthread_mutex_t lock; /* n, pages: its thread, and the trimmer */
	unsigned n;
	void *pages[TCACHE_MAX];
	struct tcache *next, **pprev; /* under caches_lock */
};

static struct {
	/* The depot: warm and cold stacks, room in them, chunk count. */
	pthread_mutex_t lock;
	void **warm, **cold;
	size_t nwarm, ncold;
	size_t room; /* of each stack: every page ever mapped fits in either */

	pthread_mutex_t caches_lock; /* the list of thread caches */
	struct tcache *caches;

	atomic_int_fast64_t idle; /* warm pages: depot and caches */
	atomic_uint_fast64_t used, hits, misses, refills, trimmed, pressure;
	atomic_uint_fast64_t allocs; /* how the thread tells idleness */
	atomic_uint_fast64_t cap_pages, idle_ms;
	atomic_bool configured, kicked;

	int efd; /* wakes the thread */
	pthread_once_t once;
	pthread_key_t key;
	bool started;

	/* copy_pool_sync(): rounds asked for and done. */
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;
	uint64_t sync_req, sync_done;
} pool = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.caches_lock = PTHREAD_MUTEX_INITIALIZER,
	.efd = -1,
	.once = PTHREAD_ONCE_INIT,
	.sync_lock = PTHREAD_MUTEX_INITIALIZER,
	.sync_cond = PTHREAD_COND_INITIALIZER,
};

static __thread struct tcache *my_tcache;

static void kick(bool force)
{
	uint64_t one = 1;

	if (pool.efd < 0)
		return;
	if (!force && atomic_exchange(&pool.kicked, true))
		return;
	if (write(pool.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("page-copy pool: waking its thread: %s", strerror(errno));
}

static uint64_t cap_pages(void)
{
	return atomic_load_explicit(&pool.cap_pages, memory_order_relaxed);
}

static uint64_t low_water(void)
{
	uint64_t cap = cap_pages();

	return cap / 4 < LOW_WATER ? cap / 4 : LOW_WATER;
}

/* ---- the depot ---------------------------------------------------------- */

/* Depot lock held: map one more chunk onto the cold stack. */
static int map_chunk_locked(void)
{
	size_t ps = page_size(), room = pool.room + CHUNK_PAGES;
	void **w, **c;
	char *chunk;

	/* Make room first, so that a page pushed later always fits. */
	w = realloc(pool.warm, room * sizeof(*w));
	if (!w)
		return -ENOMEM;
	pool.warm = w;
	c = realloc(pool.cold, room * sizeof(*c));
	if (!c)
		return -ENOMEM;
	pool.cold = c;
	chunk = mmap(NULL, CHUNK_PAGES * ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (chunk == MAP_FAILED)
		return -ENOMEM;
	pool.room = room;
	/* Highest first, so that pops come in address order. */
	for (unsigned i = CHUNK_PAGES; i-- > 0;)
		pool.cold[pool.ncold++] = chunk + (size_t)i * ps;
	return 0;
}

static int addr_cmp(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t)*(void *const *)a, y = (uintptr_t)*(void *const *)b;

	return x < y ? -1 : x > y;
}

/* Apply @advice to each run of adjacent pages of @pages (sorted here). */
static void advise_runs(void **pages, size_t n, int advice)
{
	size_t ps = page_size();

	qsort(pages, n, sizeof(*pages), addr_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && (char *)pages[j] == (char *)pages[j - 1] + ps)
			j++;
		if (madvise(pages[i], (j - i) * ps, advice)) {
			if (advice != MADV_POPULATE_WRITE)
				log_warn("page-copy pool: madvise(%d) of %zu pages: %s",
					 advice, j - i, strerror(errno));
			/* Populate failed (ENOMEM, say): touch what it did not. */
			for (size_t k = i; advice == MADV_POPULATE_WRITE && k < j; k++)
				*(volatile char *)pages[k] = 0;
		}
		i = j;
	}
}

/* Write each page once (they are cold: no data of anyone's in them). */
static void warm_pages(void **pages, size_t n)
{
	if (kfeatures()->madv_populate_write) {
		advise_runs(pages, n, MADV_POPULATE_WRITE);
		return;
	}
	for (size_t i = 0; i < n; i++)
		*(volatile char *)pages[i] = 0;
}

/*
 * Warm cold pages an allocation took on a miss, in runs of adjacent pages
 * as they come (the cold stack hands out a fresh chunk in address order):
 * every page handed out is present, and one madvise over a run costs less
 * than a first-touch fault per page inside the read that follows.
 */
static void warm_iov(const struct iovec *iov, unsigned n)
{
	size_t ps = page_size();

	for (unsigned i = 0; i < n;) {
		unsigned j = i + 1;

		while (j < n && (char *)iov[j].iov_base ==
					(char *)iov[j - 1].iov_base + ps)
			j++;
		if (!kfeatures()->madv_populate_write ||
		    madvise(iov[i].iov_base, (j - i) * ps, MADV_POPULATE_WRITE))
			for (unsigned k = i; k < j; k++)
				*(volatile char *)iov[k].iov_base = 0;
		i = j;
	}
}

/* ---- thread caches ------------------------------------------------------ */

static void push_warm(void *const *pages, size_t n)
{
	pthread_mutex_lock(&pool.lock);
	for (size_t i = 0; i < n; i++)
		pool.warm[pool.nwarm++] = pages[i];
	pthread_mutex_unlock(&pool.lock);
}

/* A thread ends: its cache goes to the depot. */
static void tcache_destroy(void *arg)
{
	struct tcache *tc = arg;

	pthread_mutex_lock(&pool.caches_lock);
	*tc->pprev = tc->next;
	if (tc->next)
		tc->next->pprev = tc->pprev;
	pthread_mutex_unlock(&pool.caches_lock);
	pthread_mutex_lock(&tc->lock);
	push_warm(tc->pages, tc->n);
	tc->n = 0;
	pthread_mutex_unlock(&tc->lock);
	pthread_mutex_destroy(&tc->lock);
	free(tc);
	my_tcache = NULL;
}

/* This thread's cache, NULL if there is no memory for one (then the depot). */
static struct tcache *tcache(void)
{
	struct tcache *tc = my_tcache;

	if (tc)
		return tc;
	tc = calloc(1, sizeof(*tc));
	if (!tc)
		return NULL;
	pthread_mutex_init(&tc->lock, NULL);
	if (pthread_setspecific(pool.key, tc)) {
		pthread_mutex_destroy(&tc->lock);
		free(tc);
		return NULL;
	}
	pthread_mutex_lock(&pool.caches_lock);
	tc->next = pool.caches;
	if (tc->next)
		tc->next->pprev = &tc->next;
	tc->pprev = &pool.caches;
	pool.caches = tc;
	pthread_mutex_unlock(&pool.caches_lock);
	return my_tcache = tc;
}

/* ---- the background thread ---------------------------------------------- */

/*
 * Give back warm pages until at most @keep are left: the depot's first,
 * then the threads' caches.
 */
static void trim(uint64_t keep)
{
	void **buf = malloc(TRIM_STEP * sizeof(*buf));

	if (!buf)
		return;
	for (;;) {
		int64_t idle = atomic_load(&pool.idle);
		size_t want, k = 0;

		if (idle <= (int64_t)keep)
			break;
		want = (uint64_t)idle - keep < TRIM_STEP ? (uint64_t)idle - keep :
							    TRIM_STEP;
		pthread_mutex_lock(&pool.lock);
		while (k < want && pool.nwarm)
			buf[k++] = pool.warm[--pool.nwarm];
		pthread_mutex_unlock(&pool.lock);
		if (k < want) {
			pthread_mutex_lock(&pool.caches_lock);
			for (struct tcache *tc = pool.caches; tc && k < want;
			     tc = tc->next) {
				pthread_mutex_lock(&tc->lock);
				while (k < want && tc->n)
					buf[k++] = tc->pages[--tc->n];
				pthread_mutex_unlock(&tc->lock);
			}
			pthread_mutex_unlock(&pool.caches_lock);
		}
		if (!k)
			break;
		atomic_fetch_sub(&pool.idle, (int64_t)k);
		/* Their contents go with their memory: a cold page reads zero. */
		advise_runs(buf, k, MADV_DONTNEED);
		pthread_mutex_lock(&pool.lock);
		for (size_t i = 0; i < k; i++)
			pool.cold[pool.ncold++] = buf[i];
		pthread_mutex_unlock(&pool.lock);
		atomic_fetch_add(&pool.trimmed, k);
	}
	free(buf);
}

/* Warm pages until TARGET (at most the cap) are ready. */
static void refill(void)
{
	uint64_t target = cap_pages() < TARGET ? cap_pages() : TARGET;
	void **buf = malloc(REFILL_STEP * sizeof(*buf));

	if (!buf)
		return;
	while (atomic_load(&pool.idle) < (int64_t)target) {
		uint64_t want = target - (uint64_t)atomic_load(&pool.idle);
		size_t k = 0;

		if (want > REFILL_STEP)
			want = REFILL_STEP;
		pthread_mutex_lock(&pool.lock);
		if (pool.ncold < want && map_chunk_locked() && !pool.ncold) {
			pthread_mutex_unlock(&pool.lock);
			break;
		}
		while (k < want && pool.ncold)
			buf[k++] = pool.cold[--pool.ncold];
		pthread_mutex_unlock(&pool.lock);
		warm_pages(buf, k);
		atomic_fetch_add(&pool.idle, (int64_t)k);
		push_warm(buf, k);
		atomic_fetch_add(&pool.refills, 1);
	}
	free(buf);
}

/*
 * A PSI trigger on memory stalls, or -1 where there is none (no
 * CONFIG_PSI, psi=0 at boot, or a kernel that refuses unprivileged
 * triggers): then only the cap and idleness bound the pool.
 */
static int psi_open(void)
{
	int fd = open("/proc/pressure/memory", O_RDWR | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -1;
	if (write(fd, PSI_TRIGGER, sizeof(PSI_TRIGGER)) < 0) {
		log_debug("page-copy pool: no memory pressure trigger (%s): "
			  "bounded by its cap and idle time only",
			  strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

static void log_stats(void)
{
	static struct copy_pool_stats last;
	struct copy_pool_stats st;

	if (!log_enabled(LOG_DEBUG_))
		return;
	copy_pool_stats(&st);
	if (!memcmp(&st, &last, sizeof(st)))
		return;
	last = st;
	log_debug("page-copy pool: %" PRIu64 " pages warm, %" PRIu64
		  " cold, %" PRIu64 " handed out; %" PRIu64 " hits, %" PRIu64
		  " misses, %" PRIu64 " refills, %" PRIu64 " pages trimmed, %"
		  PRIu64 " pressure events",
		  st.idle_pages, st.cold_pages, st.used_pages, st.hits,
		  st.misses, st.refills, st.trimmed, st.pressure);
}

static void *pool_thread(void *arg)
{
	uint64_t seen = UINT64_MAX, active_at = monotonic_ms(), hold_until = 0;
	int psi = (int)(intptr_t)arg; /* pool_start() opened it */

	for (;;) {
		struct pollfd fds[2] = { { .fd = pool.efd, .events = POLLIN },
					 { .fd = psi, .events = POLLPRI } };
		uint64_t now, allocs, req, idle_ms, v;

		if (poll(fds, psi >= 0 ? 2 : 1, TICK_MS) < 0 && errno != EINTR)
			log_warn("page-copy pool: poll: %s", strerror(errno));
		if ((fds[0].revents & POLLIN) &&
		    read(pool.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			log_warn("page-copy pool: eventfd: %s", strerror(errno));
		pthread_mutex_lock(&pool.sync_lock);
		req = pool.sync_req;
		pthread_mutex_unlock(&pool.sync_lock);
		atomic_store(&pool.kicked, false);

		now = monotonic_ms();
		allocs = atomic_load(&pool.allocs);
		if (allocs != seen) {
			seen = allocs;
			active_at = now;
		}
		if (psi >= 0 && (fds[1].revents & POLLPRI)) {
			atomic_fetch_add(&pool.pressure, 1);
			hold_until = now + PRESSURE_HOLD_MS;
			log_debug("page-copy pool: memory pressure: giving back "
				  "every idle page, no refill for %d s",
				  PRESSURE_HOLD_MS / 1000);
		}
		if (psi >= 0 && (fds[1].revents & (POLLERR | POLLNVAL))) {
			close(psi);
			psi = -1;
		}
		idle_ms = atomic_load(&pool.idle_ms);
		if (now < hold_until || now - active_at >= idle_ms)
			trim(0);
		else if ((uint64_t)atomic_load(&pool.idle) > cap_pages())
			trim(cap_pages());
		else if (atomic_load(&pool.idle) < (int64_t)low_water() + 1)
			refill();
		log_stats();

		pthread_mutex_lock(&pool.sync_lock);
		pool.sync_done = req;
		pthread_cond_broadcast(&pool.sync_cond);
		pthread_mutex_unlock(&pool.sync_lock);
	}
	return NULL;
}

static void pool_start(void)
{
	sigset_t all, old;
	pthread_attr_t attr;
	pthread_t t;
	int psi;

	if (!atomic_load(&pool.configured)) {
		atomic_store(&pool.cap_pages, limits.copy_pool_bytes / page_size());
		atomic_store(&pool.idle_ms, limits.copy_pool_idle_ms);
	}
	if (pthread_key_create(&pool.key, tcache_destroy))
		return; /* every call goes to the depot */
	pool.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (pool.efd < 0) {
		log_warn("page-copy pool: eventfd: %s: no refills, every "
			 "copy is cold", strerror(errno));
		return;
	}
	/* Signals are the loop's: the thread blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	psi = psi_open();
	if (pthread_create(&t, &attr, pool_thread, (void *)(intptr_t)psi) == 0) {
		pthread_setname_np(t, "hmmud-copies");
		pool.started = true;
	} else {
		log_warn("page-copy pool: no thread: every copy is cold");
		if (psi >= 0)
			close(psi);
	}
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- the interface ------------------------------------------------------ */

int copy_pool_alloc(struct iovec *iov, unsigned n)
{
	struct tcache *tc;
	unsigned got = 0, warm;
	int err = 0;

	pthread_once(&pool.once, pool_start);
	tc = pool.started ? tcache() : NULL;
	if (tc) {
		pthread_mutex_lock(&tc->lock);
		while (got < n && tc->n)
			iov[got++].iov_base = tc->pages[--tc->n];
	}
	warm = got;
	if (got < n) {
		pthread_mutex_lock(&pool.lock);
		while (got < n && pool.nwarm)
			iov[got++].iov_base = pool.warm[--pool.nwarm];
		warm = got;
		/* Take a batch for the cache while here. */
		while (tc && tc->n < TCACHE_BATCH && pool.nwarm)
			tc->pages[tc->n++] = pool.warm[--pool.nwarm];
		/* A miss: cold pages, which we warm ourselves, unlocked. */
		while (got < n && !err) {
			if (!pool.ncold)
				err = map_chunk_locked();
			while (got < n && pool.ncold)
				iov[got++].iov_base = pool.cold[--pool.ncold];
		}
		if (err) {
			/* All or nothing: what we took goes back where it was. */
			for (unsigned i = warm; i < got; i++)
				pool.cold[pool.ncold++] = iov[i].iov_base;
			for (unsigned i = 0; i < warm; i++)
				pool.warm[pool.nwarm++] = iov[i].iov_base;
		}
		pthread_mutex_unlock(&pool.lock);
	}
	if (tc)
		pthread_mutex_unlock(&tc->lock);
	if (err)
		return err;
	if (warm < n)
		warm_iov(iov + warm, n - warm);
	for (unsigned i = 0; i < n; i++)
		iov[i].iov_len = page_size();
	atomic_fetch_sub(&pool.idle, (int64_t)warm);
	atomic_fetch_add_explicit(&pool.used, n, memory_order_relaxed);
	atomic_fetch_add_explicit(&pool.allocs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(warm == n ? &pool.hits : &pool.misses, 1,
				  memory_order_relaxed);
	/* After the fault is served: never waits for the refill. */
	if (atomic_load_explicit(&pool.idle, memory_order_relaxed) <=
		    (int64_t)low_water() &&
	    cap_pages())
		kick(false);
	return 0;
}

void copy_pool_free(void *page)
{
	struct tcache *tc = pool.started ? tcache() : NULL;

	atomic_fetch_sub_explicit(&pool.used, 1, memory_order_relaxed);
	/* Counted before it can be taken, so idle never goes below zero. */
	atomic_fetch_add(&pool.idle, 1);
	if (!tc) {
		push_warm(&page, 1);
	} else {
		pthread_mutex_lock(&tc->lock);
		if (tc->n == TCACHE_MAX) {
			tc->n -= TCACHE_MAX - TCACHE_BATCH;
			push_warm(tc->pages + tc->n, TCACHE_MAX - TCACHE_BATCH);
		}
		tc->pages[tc->n++] = page;
		pthread_mutex_unlock(&tc->lock);
	}
	if ((uint64_t)atomic_load_explicit(&pool.idle, memory_order_relaxed) >
	    cap_pages())
		kick(false);
}

void copy_pool_stats(struct copy_pool_stats *st)
{
	int64_t idle = atomic_load(&pool.idle);

	pthread_mutex_lock(&pool.lock);
	st->cold_pages = pool.ncold;
	pthread_mutex_unlock(&pool.lock);
	st->idle_pages = idle > 0 ? (uint64_t)idle : 0;
	st->used_pages = atomic_load(&pool.used);
	st->hits = atomic_load(&pool.hits);
	st->misses = atomic_load(&pool.misses);
	st->refills = atomic_load(&pool.refills);
	st->trimmed = atomic_load(&pool.trimmed);
	st->pressure = atomic_load(&pool.pressure);
}

void copy_pool_start(void)
{
	pthread_once(&pool.once, pool_start);
}

void copy_pool_configure(uint64_t cap_bytes, uint64_t idle_ms)
{
	atomic_store(&pool.cap_pages, cap_bytes / page_size());
	atomic_store(&pool.idle_ms, idle_ms ? idle_ms : limits.copy_pool_idle_ms);
	atomic_store(&pool.configured, true);
}

void copy_pool_sync(void)
{
	uint64_t req;

	pthread_once(&pool.once, pool_start);
	if (!pool.started)
		return;
	pthread_mutex_lock(&pool.sync_lock);
	req = ++pool.sync_req;
	pthread_mutex_unlock(&pool.sync_lock);
	kick(true);
	pthread_mutex_lock(&pool.sync_lock);
	while (pool.sync_done < req)
		pthread_cond_wait(&pool.sync_cond, &pool.sync_lock);
	pthread_mutex_unlock(&pool.sync_lock);
}
