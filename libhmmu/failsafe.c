/* SPDX-License-Identifier: MIT */
/*
 * Pages in device memory survive hmmud's death. Without this, a SIGKILL of
 * the daemon closes the last reference to the process's userfaultfd: the
 * kernel unregisters every range and the next CPU read of a page that was
 * in device memory maps a fresh zero page, silently.
 *
 * So from the first migration on, this connection holds what it takes to
 * bring those pages home itself: the process's device memory file, where
 * hmmud keeps them and journals each one (common/failsafe.h), mapped
 * read-only; a dup of the process's userfaultfd, which keeps it alive when
 * the daemon dies (missing faults then wait instead of reading zeros); and
 * a watcher thread. A client that never migrates holds none of them.
 *
 * The watcher polls the socket for a hang-up, and only that: it never reads
 * (the request path owns reads), and under systemd a successor that keeps
 * the socket alive means it must do nothing. On a hang-up it first
 * reconnects (reconnect.c): if a successor holds this process's state, it
 * goes on watching the new socket, and the pages stay where they are. Else,
 * the verdict "dead", it waits for the daemon's exit (its pidfd), marks the
 * connection dead (every call then fails -ESHUTDOWN, once it is done), and:
 *
 *   1. reads the userfaultfd's queued messages: a REMOVE or UNMAP makes the
 *      HELD pages it covers obsolete (the client threw them away), unless
 *      it is one of our own migrations' discards, still in flight; a REMAP
 *      moves them; a FORK's fd gets the HELD pages and is closed. Faults
 *      need nothing here: every sleeper is woken below. It waits (poll,
 *      10 ms) until no migration of this connection is in its discard: the
 *      kernel zaps a discarded page only after its REMOVE was read, and a
 *      page brought home before the zap would be lost with it;
 *   2. copies every HELD page that is not obsolete to its address
 *      (UFFDIO_COPY: EEXIST means the client's page is there, and current;
 *      ENOENT or EFAULT, the mapping is gone); an EAGAIN means an event is
 *      queued: read it (step 1) and try again;
 *   3. over every VMA (it does not know which ranges hmmud registered):
 *      lifts write-protection and wakes every sleeper, so a writer held by
 *      a write-protect fault writes, on the page step 2 put back if its own
 *      was discarded; then unregisters, and closes the dup (the kernel
 *      releases the userfaultfd once the last reference goes).
 *
 * Windows that remain (docs/operations.md, "If hmmud dies"): an event
 * hmmud read just before dying whose effect it had not journalled yet (a
 * REMOVE of a page in device memory: the page comes back with its old
 * contents where zeros were due; a REMAP: the page stays at the old
 * address, and the new one reads zeros); a daemon that hangs up on a live
 * client deliberately is taken for a dead one; and the unregistration of
 * step 3 also reaches ranges the process registered with a userfaultfd of
 * its own.
 */
#include "internal.h"
#include "../common/failsafe.h"
#include "../common/kernel_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

void hmmu_failsafe_init(struct hmmu *h)
{
	h->fs.memfd = -1;
	h->fs.uffd = -1;
	h->fs.stopfd = -1;
	h->fs.pidfd = -1;
}

/* The daemon hung up on @sock (or the socket is unusable). */
static bool hung_up(int sock)
{
	struct pollfd p = { .fd = sock, .events = POLLRDHUP };

	return poll(&p, 1, 0) != 0;
}

/* ---- holding the file ---------------------------------------------------- */

/* The layout is one this library knows, and fits the file. */
static int check_layout(const struct hmmu_failsafe_header *hdr, size_t bytes)
{
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (bytes < sizeof(*hdr) || hdr->magic != HMMU_FAILSAFE_MAGIC ||
	    hdr->version != HMMU_FAILSAFE_VERSION)
		return -EPROTO;
	if (hdr->page_size != page ||
	    hdr->slot_size != sizeof(struct hmmu_failsafe_slot) ||
	    hdr->bytes != bytes || hdr->slots_off < sizeof(*hdr) ||
	    hdr->nslots > (bytes / page) ||
	    hdr->slots_off + hdr->nslots * hdr->slot_size > hdr->data_off ||
	    hdr->data_off % page ||
	    hdr->data_off + hdr->nslots * page > bytes)
		return -EPROTO;
	return 0;
}

static void *watch(void *arg);

/*
 * Lock held. A new thread's start touches memory (its TLS, malloc's or a
 * sanitizer's per-thread state) that may lie in ranges hmmud registered:
 * pages not there yet are missing faults, which only hmmud serves. So the
 * watcher is in its loop before the first page is held, and if hmmud dies
 * while it starts, it may wait for ever on such a fault: then our dup of
 * the userfaultfd is closed, which releases the fault (no page is held
 * yet, so nothing is lost) and leaves the watcher nothing to rescue.
 */
static void wait_watcher_started(struct hmmu *h)
{
	while (!h->fs.started) {
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 20 * 1000 * 1000;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		if (pthread_cond_timedwait(&h->cond, &h->lock, &until) !=
			    ETIMEDOUT ||
		    !hung_up(h->fd))
			continue;
		if (!h->fs.started && h->fs.uffd >= 0) {
			close(h->fs.uffd);
			h->fs.uffd = -1;
		}
		return;
	}
}

/* Lock held: start the watcher, with every signal blocked in it. */
static int start_watcher(struct hmmu *h)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = -pthread_create(&h->fs.thread, NULL, watch, h);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!err)
		h->fs.running = true;
	return err;
}

int hmmu_failsafe_update(struct hmmu_mirror *m, uint64_t gen)
{
	struct hmmu *h = m->h;
	struct hmmu_wire_mirror req = { .mirror = m->id };
	struct hmmu_wire_failsafe rep;
	int fds[3] = { -1, -1, -1 }, stopfd = -1, err;
	struct pending p = { .op = HMMU_OP_FAILSAFE, .req = &req,
			     .req_len = sizeof(req), .fd = -1, .out = &rep,
			     .cap = sizeof(rep), .fds = fds, .nfds = 3 };
	struct stat st;
	void *map = MAP_FAILED;
	size_t len;

	pthread_mutex_lock(&h->lock);
	err = h->fs.gen && (!gen || h->fs.gen == gen) ? 1 : 0;
	pthread_mutex_unlock(&h->lock);
	if (err)
		return 0;

	memset(&rep, 0, sizeof(rep));
	err = hmmu_request(h, &p);
	if (err)
		return err < 0 ? err : -EPROTO;
	len = p.len;
	if (len < sizeof(rep) || !rep.generation || !rep.bytes ||
	    rep.bytes > SIZE_MAX || fstat(fds[0], &st) < 0 ||
	    (uint64_t)st.st_size != rep.bytes) {
		err = -EPROTO;
		goto fail;
	}
	map = mmap(NULL, rep.bytes, PROT_READ, MAP_SHARED, fds[0], 0);
	if (map == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	if ((err = check_layout(map, rep.bytes)) < 0) {
		hmmu_set_detail("hmmud's device memory file has a layout this "
				"libhmmu does not know: are hmmud and libhmmu of "
				"one release?");
		goto fail;
	}

	hmmu_lock_settled(h);
	if (h->fs.took_over || h->broken) {
		err = h->broken ? h->broken : -ESHUTDOWN;
		pthread_mutex_unlock(&h->lock);
		goto fail;
	}
	if (p.restarts != h->restarts) {
		/*
		 * The daemon that sent these restarted since, and the
		 * reconnection found nothing armed: ask its successor.
		 */
		pthread_mutex_unlock(&h->lock);
		munmap(map, rep.bytes);
		for (int i = 0; i < 3; i++)
			close(fds[i]);
		return hmmu_failsafe_update(m, gen);
	}
	if (h->fs.gen == rep.generation || (!gen && h->fs.gen)) {
		/* another thread was first */
		pthread_mutex_unlock(&h->lock);
		err = 0;
		goto fail;
	}
	if (!h->fs.running) {
		stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (stopfd < 0) {
			err = -errno;
			pthread_mutex_unlock(&h->lock);
			goto fail;
		}
		h->fs.stopfd = stopfd;
		/*
		 * One daemon per connection: the first pidfd is the one,
		 * until a reconnection brings the next (hmmu_failsafe_rearm()).
		 */
		h->fs.pidfd = fds[2];
		fds[2] = -1;
	}
	/* The old generation's (the process's state ended since): let go. */
	if (h->fs.map) {
		munmap((void *)h->fs.map, h->fs.bytes);
		close(h->fs.memfd);
		close(h->fs.uffd);
	}
	h->fs.gen = rep.generation;
	h->fs.memfd = fds[0];
	h->fs.uffd = fds[1];
	h->fs.map = map;
	h->fs.bytes = rep.bytes;
	err = h->fs.running ? 0 : start_watcher(h);
	if (!err)
		wait_watcher_started(h);
	if (err) {
		/* Without a watcher, hold nothing: discard nothing either. */
		munmap(map, rep.bytes);
		close(fds[0]);
		close(fds[1]);
		close(h->fs.stopfd);
		if (h->fs.pidfd >= 0)
			close(h->fs.pidfd);
		h->fs.stopfd = h->fs.pidfd = -1;
		h->fs.map = NULL;
		h->fs.gen = 0;
		h->fs.memfd = h->fs.uffd = -1;
	}
	pthread_mutex_unlock(&h->lock);
	if (fds[2] >= 0)
		close(fds[2]); /* a later generation's: we have the first */
	return err;
fail:
	if (map != MAP_FAILED)
		munmap(map, rep.bytes);
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return err;
}

int hmmu_failsafe_rearm(struct hmmu *h, int sock, int64_t deadline_ms,
			uint64_t id, uint64_t mirror, char *why, size_t size)
{
	struct hmmu_wire_mirror req = { .mirror = mirror };
	struct hmmu_wire_failsafe rep;
	int fds[3] = { -1, -1, -1 }, err;
	struct pending p = { .id = id, .op = HMMU_OP_FAILSAFE, .req = &req,
			     .req_len = sizeof(req), .fd = -1, .out = &rep,
			     .cap = sizeof(rep), .fds = fds, .nfds = 3 };
	uint64_t gen;

	pthread_mutex_lock(&h->lock);
	gen = h->fs.gen;
	pthread_mutex_unlock(&h->lock);
	if (!gen)
		return 0;
	/*
	 * Without the new daemon's pidfd, the watcher could not tell its
	 * clean stop (it brings the pages home itself, after it hung up)
	 * from a crash, and would race it.
	 */
	if (!mirror) {
		snprintf(why, size, "hmmud restarted, but no mirror of this "
			 "connection is registered to take its device memory "
			 "file again");
		return -ENOENT;
	}
	memset(&rep, 0, sizeof(rep));
	err = hmmu_call_direct(sock, deadline_ms, &p);
	if (!err && p.status)
		err = p.status < 0 ? p.status : -EPROTO;
	if (!err && (!p.got_fds || p.len < sizeof(rep)))
		err = -EPROTO;
	if (!err && rep.generation != gen) {
		snprintf(why, size, "hmmud restarted with another device memory "
			 "file (generation %" PRIu64 ", now %" PRIu64 ")", gen,
			 rep.generation);
		err = -ESTALE;
	} else if (err) {
		snprintf(why, size, "hmmud restarted, but did not hand its "
			 "device memory file over again (error %d%s%.60s)",
			 -err, p.reason[0] ? ": " : "", p.reason);
	}
	if (!err) {
		/*
		 * The same file, which we hold mapped, and the same
		 * userfaultfd, of which we hold a dup: only the daemon is new.
		 */
		pthread_mutex_lock(&h->lock);
		if (h->fs.pidfd >= 0)
			close(h->fs.pidfd);
		h->fs.pidfd = fds[2];
		fds[2] = -1;
		pthread_mutex_unlock(&h->lock);
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return err;
}

uint64_t hmmu_failsafe_gen(struct hmmu *h)
{
	uint64_t gen;

	pthread_mutex_lock(&h->lock);
	gen = h->fs.gen;
	pthread_mutex_unlock(&h->lock);
	return gen;
}

int hmmu_discard_begin(struct hmmu *h, uint64_t start, uint64_t end)
{
	int err = 0;

	pthread_mutex_lock(&h->lock);
	while (!h->fs.took_over && !h->broken &&
	       h->fs.ndiscards == HMMU_DISCARDS_MAX)
		pthread_cond_wait(&h->cond, &h->lock);
	if (h->fs.took_over || h->broken)
		err = -ESHUTDOWN;
	else
		h->fs.discards[h->fs.ndiscards++] =
			(struct hmmu_discard){ start, end, false };
	h->fs.active += !err;
	pthread_mutex_unlock(&h->lock);
	return err;
}

void hmmu_discard_end(struct hmmu *h, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < h->fs.ndiscards; i++) {
		if (h->fs.discards[i].start != start ||
		    h->fs.discards[i].end != end || h->fs.discards[i].done)
			continue;
		/*
		 * Once the watcher took over, it reads this discard's REMOVE
		 * and then lets us go on: the range stays listed, or the
		 * watcher, looking it up after the read, would take our
		 * discard for the client's and forget the pages.
		 */
		if (h->fs.took_over)
			h->fs.discards[i].done = true;
		else
			h->fs.discards[i] = h->fs.discards[--h->fs.ndiscards];
		h->fs.active--;
		break;
	}
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
}

int hmmu_failsafe_wait(struct hmmu *h, int err)
{
	struct timespec until;

	if (!h->fs.running ||
	    (err != -ESHUTDOWN && err != -ECONNRESET && err != -EPIPE))
		return err;
	/*
	 * The socket hung up (a reset says so too): the watcher sees it at
	 * once and takes over; give it 5 s to start, then wait for it to end,
	 * so that a call that fails finds the pages home.
	 */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	while (!h->fs.done) {
		if (h->fs.took_over)
			pthread_cond_wait(&h->cond, &h->lock);
		else if (pthread_cond_timedwait(&h->cond, &h->lock, &until) ==
			 ETIMEDOUT)
			return err;
	}
	return h->broken;
}

void hmmu_failsafe_stop(struct hmmu *h)
{
	uint64_t one = 1;
	bool running;

	pthread_mutex_lock(&h->lock);
	running = h->fs.running;
	pthread_mutex_unlock(&h->lock);
	if (running) {
		/* A thread that took over finishes first: pages come home. */
		/* An eventfd's counter cannot overflow from one write. */
		(void)!write(h->fs.stopfd, &one, sizeof(one));
		pthread_join(h->fs.thread, NULL);
		h->fs.running = h->fs.started = false;
	}
	hmmu_failsafe_forget(h);
}

void hmmu_failsafe_forget(struct hmmu *h)
{
	if (h->fs.map)
		munmap((void *)h->fs.map, h->fs.bytes);
	if (h->fs.memfd >= 0)
		close(h->fs.memfd);
	if (h->fs.uffd >= 0)
		close(h->fs.uffd);
	if (h->fs.stopfd >= 0)
		close(h->fs.stopfd);
	if (h->fs.pidfd >= 0)
		close(h->fs.pidfd);
	h->fs.map = NULL;
	h->fs.memfd = h->fs.uffd = h->fs.stopfd = h->fs.pidfd = -1;
	h->fs.gen = 0;
}

/* ---- bringing pages home ------------------------------------------------- */

struct held {
	uint64_t addr;
	uint32_t slot;
	bool gone; /* the client discarded or unmapped it */
};

struct rescue {
	struct hmmu *h;
	int uffd;
	const struct hmmu_failsafe_header *hdr;
	const struct hmmu_failsafe_slot *slots;
	const char *data;
	uint64_t page;
	struct held *held; /* fresh_memory(), held_bytes long */
	size_t nheld, held_bytes;
	uint64_t home, kept, lost;
};

/*
 * Memory for the rescue. Once the daemon is dead, a fault on a page of a
 * registered range that is not there waits for ever (our dup keeps the
 * userfaultfd alive), and the watcher is the one that would have to serve
 * it. So it takes no memory from malloc (whose arenas, or a sanitizer's
 * regions, may lie in registered ranges) but a mapping made now, which no
 * one registers any more.
 */
static void *fresh_memory(size_t bytes)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/*
 * The HELD slots, read where the file has data: never-used parts of the
 * descriptor table are holes, and reading one would allocate it.
 */
static int collect_held(struct rescue *r, int memfd)
{
	uint64_t end = r->hdr->slots_off + r->hdr->nslots * r->hdr->slot_size;

	if (!r->hdr->nslots)
		return 0;
	r->held_bytes = r->hdr->nslots * sizeof(*r->held);
	r->held = fresh_memory(r->held_bytes);
	if (!r->held)
		return -ENOMEM;

	for (off_t off = (off_t)r->hdr->slots_off; (uint64_t)off < end;) {
		off_t d = lseek(memfd, off, SEEK_DATA), hole;

		if (d < 0 || (uint64_t)d >= end)
			break;
		hole = lseek(memfd, d, SEEK_HOLE);
		if (hole < 0 || (uint64_t)hole > end)
			hole = (off_t)end;
		for (uint64_t i = ((uint64_t)d - r->hdr->slots_off) /
				  r->hdr->slot_size;
		     i < r->hdr->nslots &&
		     r->hdr->slots_off + i * r->hdr->slot_size < (uint64_t)hole;
		     i++) {
			const struct hmmu_failsafe_slot *s = &r->slots[i];

			uint32_t state = atomic_load_explicit(
				&s->state, memory_order_acquire);

			/* HELD, SETTLED, RETURNING: the same to us. */
			if (!hmmu_failsafe_slot_live(state))
				continue;
			r->held[r->nheld++] = (struct held){
				.addr = atomic_load_explicit(
					&s->addr, memory_order_relaxed),
				.slot = (uint32_t)i,
			};
		}
		off = hole;
	}
	return 0;
}

static const void *data_of(const struct rescue *r, uint32_t slot)
{
	return r->data + (uint64_t)slot * r->page;
}

/* Lock held: is [start, end) one of our migrations' discards? */
static bool own_discard(struct hmmu *h, uint64_t start, uint64_t end)
{
	for (unsigned i = 0; i < h->fs.ndiscards; i++)
		if (start < h->fs.discards[i].end &&
		    h->fs.discards[i].start < end)
			return true;
	return false;
}

static void forked(struct rescue *r, int child)
{
	for (size_t i = 0; i < r->nheld; i++) {
		struct uffdio_copy c = {
			.dst = r->held[i].addr,
			.src = (uint64_t)(uintptr_t)data_of(r, r->held[i].slot),
			.len = r->page,
		};

		if (!r->held[i].gone)
			(void)ioctl(child, UFFDIO_COPY, &c);
	}
	close(child);
}

/* Read every queued message; the number read. */
static size_t drain(struct rescue *r)
{
	struct uffd_msg msgs[64];
	size_t total = 0;
	ssize_t n;

	while ((n = read(r->uffd, msgs, sizeof(msgs))) > 0) {
		for (size_t k = 0; k < (size_t)n / sizeof(msgs[0]); k++) {
			const struct uffd_msg *m = &msgs[k];
			uint64_t a, b;
			bool own;

			switch (m->event) {
			case UFFD_EVENT_REMOVE:
			case UFFD_EVENT_UNMAP:
				a = m->arg.remove.start;
				b = m->arg.remove.end;
				pthread_mutex_lock(&r->h->lock);
				own = m->event == UFFD_EVENT_REMOVE &&
				      own_discard(r->h, a, b);
				pthread_mutex_unlock(&r->h->lock);
				for (size_t i = 0; i < r->nheld && !own; i++)
					if (r->held[i].addr >= a &&
					    r->held[i].addr < b)
						r->held[i].gone = true;
				break;
			case UFFD_EVENT_REMAP:
				a = m->arg.remap.from;
				b = a + m->arg.remap.len;
				for (size_t i = 0; i < r->nheld; i++)
					if (r->held[i].addr >= a &&
					    r->held[i].addr < b)
						r->held[i].addr += m->arg.remap.to - a;
				break;
			case UFFD_EVENT_FORK:
				forked(r, (int)m->arg.fork.ufd);
				break;
			default: /* faults: every sleeper is woken later */
				break;
			}
			total++;
		}
	}
	return total;
}

static unsigned discards_in_flight(struct hmmu *h)
{
	unsigned n;

	pthread_mutex_lock(&h->lock);
	n = h->fs.active;
	pthread_mutex_unlock(&h->lock);
	return n;
}

/* Step 1: events read, and no discard of ours still to be zapped. */
static void settle(struct rescue *r)
{
	struct pollfd p = { .fd = r->uffd, .events = POLLIN };

	for (;;) {
		size_t n = drain(r);

		if (!n && !discards_in_flight(r->h))
			return;
		if (!n)
			poll(&p, 1, 10);
	}
}

/* Step 2. */
static void bring_home(struct rescue *r)
{
	for (size_t i = 0; i < r->nheld; i++) {
		for (int tries = 0; tries < 1000; tries++) {
			struct uffdio_copy c = {
				.dst = r->held[i].addr,
				.src = (uint64_t)(uintptr_t)data_of(
					r, r->held[i].slot),
				.len = r->page,
			};
			int err;

			if (r->held[i].gone)
				break;
			err = ioctl(r->uffd, UFFDIO_COPY, &c) < 0 ? -errno : 0;
			if (!err) {
				r->home++;
			} else if (err == -EAGAIN) {
				settle(r); /* an event first */
				continue;
			} else if (err == -EEXIST) {
				r->kept++; /* the client's page is current */
			} else if (err != -ENOENT && err != -EFAULT) {
				r->lost++;
			}
			break;
		}
	}
}

/* Step 3, over one VMA. */
static void let_go(struct rescue *r, uint64_t start, uint64_t end)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = end - start },
		.mode = 0,
	};
	struct uffdio_range range = { .start = start, .len = end - start };

	for (int tries = 0; tries < 1000; tries++) {
		if (ioctl(r->uffd, UFFDIO_WRITEPROTECT, &wp) == 0 ||
		    errno != EAGAIN)
			break;
		settle(r);
	}
	(void)ioctl(r->uffd, UFFDIO_WAKE, &range);
	(void)ioctl(r->uffd, UFFDIO_UNREGISTER, &range);
}

/* "start-end ..." at @line: 0, or -1 if it is not a VMA's line. */
static int parse_vma(const char *line, uint64_t *start, uint64_t *end)
{
	char *rest;

	errno = 0;
	*start = strtoull(line, &rest, 16);
	if (errno || rest == line || *rest != '-')
		return -1;
	line = rest + 1;
	*end = strtoull(line, &rest, 16);
	if (errno || rest == line || *rest != ' ' || *start >= *end)
		return -1;
	return 0;
}

/*
 * /proc/self/maps with read(), line by line, in a buffer of fresh memory
 * (not stdio: fopen() mallocs; see fresh_memory()). A line is far shorter
 * than the buffer; the line that straddles a read is kept for the next.
 */
static void release_all(struct rescue *r)
{
	const size_t cap = 64 * 1024;
	char *buf = fresh_memory(cap);
	size_t have = 0;
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || !buf)
		goto out; /* closing the dup later releases what it can */
	for (;;) {
		ssize_t n = read(fd, buf + have, cap - 1 - have);
		char *line = buf, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		while ((nl = strchr(line, '\n'))) {
			uint64_t s, e;

			*nl = '\0';
			if (parse_vma(line, &s, &e) == 0)
				let_go(r, s, e);
			line = nl + 1;
		}
		have -= (size_t)(line - buf);
		if (have == cap - 1)
			have = 0; /* no line is this long: drop it */
		memmove(buf, line, have);
	}
out:
	if (fd >= 0)
		close(fd);
	if (buf)
		munmap(buf, cap);
}

static void take_over(struct hmmu *h)
{
	struct rescue r = { .h = h, .page = (uint64_t)sysconf(_SC_PAGESIZE) };
	const char *why;
	int uffd, flags, err;

	pthread_mutex_lock(&h->lock);
	h->fs.took_over = true;
	h->broken = -ESHUTDOWN;
	pthread_cond_broadcast(&h->cond);
	/* No generation changes from here on: calls fail. */
	uffd = h->fs.uffd;
	r.hdr = (const void *)h->fs.map;
	pthread_mutex_unlock(&h->lock);

	r.uffd = uffd;
	r.slots = (const void *)((const char *)r.hdr + r.hdr->slots_off);
	r.data = (const char *)r.hdr + r.hdr->data_off;
	/* No dup: let go while we started (wait_watcher_started()). */
	if (uffd >= 0) {
		flags = fcntl(uffd, F_GETFL);
		if (flags >= 0 && !(flags & O_NONBLOCK))
			fcntl(uffd, F_SETFL, flags | O_NONBLOCK);
		err = collect_held(&r, h->fs.memfd);
		settle(&r);
		bring_home(&r);
		release_all(&r);
		drain(&r);
	} else {
		err = 0;
	}

	pthread_mutex_lock(&h->lock);
	if (uffd >= 0)
		close(uffd);
	h->fs.uffd = -1;
	/*
	 * Nothing was in device memory (a daemon that stopped cleanly had
	 * brought it all back): the connection was reset, as for any client;
	 * unless a reconnection found a daemon without our state: that is
	 * -ESHUTDOWN for every call, with or without pages (protocol.md §11).
	 */
	if (!err && !r.nheld && h->verdict != -ESHUTDOWN)
		h->broken = -ECONNRESET;
	why = h->why[0] ? h->why : "hmmud went away";
	if (err || r.lost)
		snprintf(h->fs.detail, sizeof(h->fs.detail),
			 "%s; of its pages in device memory %" PRIu64 " were "
			 "brought home, %" PRIu64 " could not be%s", why,
			 r.home, r.lost, err ? " (out of memory)" : "");
	else
		snprintf(h->fs.detail, sizeof(h->fs.detail),
			 "%s; the %" PRIu64 " pages that were in device memory "
			 "were brought home: connect again", why, r.home);
	h->fs.done = true;
	pthread_cond_broadcast(&h->cond);
	pthread_mutex_unlock(&h->lock);
	if (r.held)
		munmap(r.held, r.held_bytes);
}

/*
 * Lock held. The daemon that answered the reconnection holds this
 * process's state, which it brings home itself once our connection is gone
 * (reconnect.c): ours would race it. Our dup of the userfaultfd goes, so
 * that it never keeps a fault waiting for a rescue that will not come.
 */
static void stand_down(struct hmmu *h)
{
	if (h->fs.uffd >= 0)
		close(h->fs.uffd);
	h->fs.uffd = -1;
	snprintf(h->fs.detail, sizeof(h->fs.detail), "%s; hmmud kept the "
		 "pages that were in device memory and brings them home "
		 "itself: connect again", h->why);
	h->fs.done = true;
	pthread_cond_broadcast(&h->cond);
}

/*
 * Touch the stack the rescue will use while hmmud can still serve faults:
 * a page of it not there yet could be in a registered range by then.
 */
static __attribute__((noinline)) void touch_stack(void)
{
	volatile char reserve[64 * 1024];

	for (size_t i = 0; i < sizeof(reserve); i += 1024)
		reserve[i] = 0;
}

/*
 * Poll p[0] (what to wait for) and p[1] (the stop eventfd) until p[0]
 * shows one of @want: true. False if hmmu_disconnect() stops us first, or
 * p[0] is no fd.
 */
static bool wait_for(struct pollfd p[2], short want)
{
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		if (p[1].revents || (p[0].revents & POLLNVAL))
			return false;
		if (p[0].revents & want)
			return true;
	}
}

/*
 * Until the connection hangs up: 1, or 0 if hmmu_disconnect() stops us
 * first. The daemon's death alone is no hang-up when a service manager
 * holds our connection in its fd store for a successor; one that comes
 * closes it. But none may come (systemd's start limit, with
 * FileDescriptorStorePreserve=yes keeping the store): once the daemon has
 * exited, wait one connection budget for the hang-up, then take it as
 * given, for a thread touching a page in device memory waits until then.
 */
static int wait_for_hangup(struct hmmu *h, int sock, int pidfd)
{
	int budget = h->timeout_ms > 0 ? h->timeout_ms : HMMU_CONNECT_TIMEOUT_MS;
	struct pollfd p[3] = {
		{ .fd = sock, .events = POLLRDHUP },
		{ .fd = h->fs.stopfd, .events = POLLIN },
		{ .fd = pidfd, .events = POLLIN },
	};
	int64_t deadline = -1;

	for (;;) {
		int left = deadline < 0 ? -1 : (int)(deadline - hmmu_now_ms());
		int n;

		if (deadline >= 0 && left <= 0)
			return 1;
		n = poll(p, 3, left);
		if (n < 0 && errno != EINTR)
			return 0;
		if (n <= 0)
			continue;
		if (p[1].revents || (p[0].revents & POLLNVAL))
			return 0;
		if (p[0].revents & (POLLHUP | POLLRDHUP | POLLERR))
			return 1;
		if (p[2].revents) {
			/* hmmud exited: the hang-up has one budget to come. */
			p[2].fd = -1;
			deadline = hmmu_now_ms() + budget;
		}
	}
}

static void *watch(void *arg)
{
	struct hmmu *h = arg;
	struct pollfd p[2] = {
		{ .fd = -1 },
		{ .fd = h->fs.stopfd, .events = POLLIN },
	};
	unsigned seen;
	int lost;

	touch_stack();
	pthread_mutex_lock(&h->lock);
	h->fs.started = true;
	h->fs.watching = true;
	pthread_cond_broadcast(&h->cond);
	/*
	 * A hang-up says the daemon is gone (or its death, if nobody hangs
	 * up: wait_for_hangup()); if it restarted and kept our state, the
	 * reconnection (reconnect.c: here, while we watch) gives us a new
	 * socket to watch.
	 */
	do {
		int sock, pidfd;

		/* A caller's, begun before we watched. */
		while (h->reconnecting)
			pthread_cond_wait(&h->cond, &h->lock);
		if (h->broken)
			break;
		sock = h->fd;
		pidfd = h->fs.pidfd; /* a reconnection, ours, changes it */
		seen = h->restarts;
		pthread_mutex_unlock(&h->lock);
		if (!wait_for_hangup(h, sock, pidfd))
			goto stopped;
		pthread_mutex_lock(&h->lock);
		lost = hmmu_connection_lost(h, seen, -ECONNRESET, true);
	} while (!lost);
	h->fs.watching = false;
	if (h->kept) {
		stand_down(h);
		pthread_mutex_unlock(&h->lock);
		return NULL;
	}
	p[0] = (struct pollfd){ .fd = h->fs.pidfd, .events = POLLIN };
	pthread_mutex_unlock(&h->lock);

	/*
	 * A daemon that stops cleanly hangs up first, then brings every page
	 * back and exits: wait for its exit (the pidfd turns readable), and
	 * never race its last copies. A daemon that hung up on us but lives
	 * on releases our mirrors itself: then this thread waits, doing
	 * nothing, until hmmu_disconnect().
	 */
	if (p[0].fd >= 0 && !wait_for(p, POLLIN | POLLHUP | POLLERR))
		return NULL;
	take_over(h);
	return NULL;

stopped:
	pthread_mutex_lock(&h->lock);
	h->fs.watching = false;
	pthread_mutex_unlock(&h->lock);
	return NULL;
}
