/* SPDX-License-Identifier: MIT */
#include "failsafe.h"
#include "accounts.h"
#include "../common/failsafe.h"
#include "../common/page.h"
#include "../lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

/* Set at startup, before any client: read-only afterwards. */
static struct {
	uint64_t npages;
	int node;
} devices[ACCOUNT_MAX_DEVICES];
static unsigned ndevices;

static atomic_uint_fast64_t last_gen;

/*
 * One device's run of slots: [base, base + npages). Slots never used are
 * taken from @fresh on; freed ones go on a stack, whose room is grown when
 * a fresh slot is taken, so that a free never needs memory.
 */
struct run {
	uint32_t base, npages;
	uint32_t fresh;
	uint32_t *stack;
	uint32_t n, cap;
};

/*
 * Freed slots whose pages are punched out of the file together, not one by
 * one: a punch costs about 7 µs here (it unmaps the page from hmmud and
 * from the client), which doubled the cost of bringing a page home. They
 * are punched when this many wait, or when the process has no slot in use
 * any more: so a file holds the pages in device memory, and at most this
 * many more.
 */
#define PUNCH_BATCH 256u

struct failsafe {
	int fd;
	uint64_t gen;
	uint64_t used;	     /* slots not FREE */
	uint32_t *pending;   /* freed, page not punched yet: PUNCH_BATCH */
	unsigned npending;
	uint64_t bytes;
	char *map; /* ours, read-write */
	struct hmmu_failsafe_header *hdr;
	struct hmmu_failsafe_slot *slots;
	char *data;
	unsigned nruns;
	struct run runs[];
};

int failsafe_add_device(unsigned index, uint64_t npages, int node)
{
	if (index >= ACCOUNT_MAX_DEVICES || npages > UINT32_MAX)
		return -EINVAL;
	devices[index].npages = npages;
	devices[index].node = node;
	if (index >= ndevices)
		ndevices = index + 1;
	return 0;
}

/* Best effort: the device's run of data pages on its node. */
static void place(struct failsafe *fs, const struct run *r, int node)
{
	if (node < 0 || !r->npages || numa_available() < 0)
		return;
	numa_tonode_memory(fs->data + (uint64_t)r->base * page_size(),
			   (uint64_t)r->npages * page_size(), node);
}

/* The layout this daemon's devices give a file: its header. */
static int layout(struct hmmu_failsafe_header *h)
{
	uint64_t total = 0, ps = page_size();

	for (unsigned i = 0; i < ndevices; i++)
		total += devices[i].npages;
	if (total > UINT32_MAX)
		return -EINVAL;
	*h = (struct hmmu_failsafe_header){
		.magic = HMMU_FAILSAFE_MAGIC,
		.version = HMMU_FAILSAFE_VERSION,
		.page_size = (uint32_t)ps,
		.slot_size = sizeof(struct hmmu_failsafe_slot),
		.nslots = total,
		.slots_off = sizeof(struct hmmu_failsafe_header),
	};
	h->data_off = (h->slots_off + total * h->slot_size + ps - 1) / ps * ps;
	h->bytes = h->data_off + total * ps;
	return 0;
}

/* The struct around a file of layout @h, with no fd or mapping yet. */
static struct failsafe *alloc_for(const struct hmmu_failsafe_header *h)
{
	struct failsafe *fs = calloc(1, sizeof(*fs) +
					 ndevices * sizeof(fs->runs[0]));

	if (!fs)
		return NULL;
	fs->nruns = ndevices;
	fs->fd = -1;
	fs->map = MAP_FAILED;
	fs->bytes = h->bytes;
	fs->pending = calloc(PUNCH_BATCH, sizeof(*fs->pending));
	if (!fs->pending) {
		failsafe_destroy(fs);
		return NULL;
	}
	for (unsigned i = 0, base = 0; i < ndevices; i++) {
		fs->runs[i].base = base;
		fs->runs[i].npages = (uint32_t)devices[i].npages;
		base += (uint32_t)devices[i].npages;
	}
	return fs;
}

static int map_file(struct failsafe *fs, const struct hmmu_failsafe_header *h)
{
	/* Sparse: only the pages written cost memory. */
	fs->map = mmap(NULL, fs->bytes, PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_NORESERVE, fs->fd, 0);
	if (fs->map == MAP_FAILED)
		return -errno;
	fs->hdr = (void *)fs->map;
	fs->slots = (void *)(fs->map + h->slots_off);
	fs->data = fs->map + h->data_off;
	return 0;
}

int failsafe_create(struct failsafe **out)
{
	struct hmmu_failsafe_header h;
	struct failsafe *fs;
	int err = layout(&h);

	if (err)
		return err;
	fs = alloc_for(&h);
	if (!fs)
		return -ENOMEM;
	fs->fd = memfd_create("hmmu-devmem", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	/*
	 * A memfd is made 0777, and /proc/PID/fd/N opens it again with the
	 * file's mode, not the open's: read-only to its owner (us; our fd is
	 * open already) and to no one else, or the client would reopen its
	 * read-only open for writing, and write the journal a successor
	 * adopts.
	 */
	if (fs->fd < 0 || fchmod(fs->fd, 0400) < 0 ||
	    ftruncate(fs->fd, (off_t)fs->bytes) < 0)
		goto fail;
	err = map_file(fs, &h);
	if (err) {
		failsafe_destroy(fs);
		return err;
	}
	fs->gen = atomic_fetch_add(&last_gen, 1) + 1;
	h.gen = fs->gen;
	*fs->hdr = h;
	for (unsigned i = 0; i < ndevices; i++)
		place(fs, &fs->runs[i], devices[i].node);
	/*
	 * Sealed so that no one can shrink it under us (no access of ours
	 * ever faults). The client gets a read-only open of it
	 * (failsafe_open_for_client()), so it cannot write the journal or
	 * punch pages either; F_SEAL_FUTURE_WRITE would do that too, but it
	 * would also stop us punching the pages of freed slots.
	 */
	if (fcntl(fs->fd, F_ADD_SEALS, SEALS) < 0)
		goto fail;
	*out = fs;
	return 0;
fail:
	err = -errno;
	failsafe_destroy(fs);
	return err;
}

/* Also of one failsafe_create() made only in part. */
void failsafe_destroy(struct failsafe *fs)
{
	if (!fs)
		return;
	if (fs->map != MAP_FAILED)
		munmap(fs->map, fs->bytes);
	if (fs->fd >= 0)
		close(fs->fd);
	for (unsigned i = 0; i < fs->nruns; i++)
		free(fs->runs[i].stack);
	free(fs->pending);
	free(fs);
}

/* Room on @r's free stack for one more slot taken fresh. */
static int grow_stack(struct run *r)
{
	uint32_t cap = r->cap ? 2 * r->cap : 64;
	uint32_t *st;

	if (cap > r->npages)
		cap = r->npages;
	st = realloc(r->stack, cap * sizeof(*st));
	if (!st)
		return -ENOMEM;
	r->stack = st;
	r->cap = cap;
	return 0;
}

static struct run *run_of(struct failsafe *fs, uint32_t slot)
{
	for (unsigned i = 0; i < fs->nruns; i++)
		if (slot >= fs->runs[i].base &&
		    slot - fs->runs[i].base < fs->runs[i].npages)
			return &fs->runs[i];
	return NULL;
}

int failsafe_slot_alloc(struct failsafe *fs, unsigned dev, uint64_t addr,
			bool exclusive, uint32_t *slot, void **data)
{
	struct hmmu_failsafe_slot *s;
	struct run *r;
	uint32_t i;

	if (dev >= fs->nruns)
		return -ENOMEM;
	r = &fs->runs[dev];
	if (r->n) {
		i = r->stack[--r->n];
	} else if (r->fresh < r->npages) {
		if (r->fresh == r->cap && grow_stack(r) < 0)
			return -ENOMEM;
		i = r->base + r->fresh++;
	} else {
		return -ENOMEM;
	}
	fs->used++;
	/* FREE until the state says otherwise: the address may go first. */
	s = &fs->slots[i];
	atomic_store_explicit(&s->addr, addr, memory_order_relaxed);
	s->device = dev | (exclusive ? HMMU_SLOT_EXCLUSIVE : 0);
	atomic_store_explicit(&s->state, HMMU_SLOT_COPYING,
			      memory_order_release);
	*slot = i;
	*data = fs->data + (uint64_t)i * page_size();
	return 0;
}

void failsafe_slot_hold(struct failsafe *fs, uint32_t slot)
{
	struct hmmu_failsafe_slot *s = &fs->slots[slot];

	if (atomic_load_explicit(&s->state, memory_order_relaxed) !=
	    HMMU_SLOT_COPYING)
		return;
	/* The data page's stores come before: release. */
	atomic_store_explicit(&s->state, HMMU_SLOT_HELD, memory_order_release);
	atomic_fetch_add_explicit(&fs->hdr->held, 1, memory_order_relaxed);
}

void failsafe_slot_settle(struct failsafe *fs, uint32_t slot)
{
	uint32_t from = HMMU_SLOT_HELD;

	atomic_compare_exchange_strong_explicit(
		&fs->slots[slot].state, &from, HMMU_SLOT_SETTLED,
		memory_order_release, memory_order_relaxed);
}

uint32_t failsafe_slot_return(struct failsafe *fs, uint32_t slot)
{
	_Atomic uint32_t *state = &fs->slots[slot].state;
	uint32_t was = atomic_load_explicit(state, memory_order_relaxed);

	if (was == HMMU_SLOT_HELD || was == HMMU_SLOT_SETTLED)
		atomic_store_explicit(state, HMMU_SLOT_RETURNING,
				      memory_order_release);
	return was;
}

void failsafe_slot_unreturn(struct failsafe *fs, uint32_t slot, uint32_t was)
{
	uint32_t from = HMMU_SLOT_RETURNING;

	atomic_compare_exchange_strong_explicit(&fs->slots[slot].state, &from,
						was, memory_order_release,
						memory_order_relaxed);
}

void failsafe_slot_move(struct failsafe *fs, uint32_t slot, uint64_t addr)
{
	atomic_store_explicit(&fs->slots[slot].addr, addr,
			      memory_order_release);
}

static int by_index(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * Punch out the pages of the pending slots still FREE (one taken again
 * since holds a live page), a run of neighbours at a time. Failing costs
 * memory, not correctness: a slot is written whole before it is HELD.
 */
static void punch_pending(struct failsafe *fs)
{
	const off_t ps = (off_t)page_size(), data = (off_t)(fs->data - fs->map);

	qsort(fs->pending, fs->npending, sizeof(*fs->pending), by_index);
	for (unsigned i = 0; i < fs->npending;) {
		uint32_t first = fs->pending[i], last = first;

		if (atomic_load_explicit(&fs->slots[first].state,
					 memory_order_relaxed) != HMMU_SLOT_FREE) {
			i++;
			continue;
		}
		/* Duplicates (freed, taken, freed again) and neighbours. */
		while (++i < fs->npending &&
		       fs->pending[i] <= last + 1 &&
		       atomic_load_explicit(&fs->slots[fs->pending[i]].state,
					    memory_order_relaxed) ==
			       HMMU_SLOT_FREE)
			last = fs->pending[i];
		if (fallocate(fs->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			      data + (off_t)first * ps,
			      (off_t)(last - first + 1) * ps) < 0)
			log_warn("device memory file: cannot release slots "
				 "%u-%u: %s", first, last, strerror(errno));
	}
	fs->npending = 0;
}

void failsafe_slot_free(struct failsafe *fs, uint32_t slot)
{
	struct hmmu_failsafe_slot *s = &fs->slots[slot];
	struct run *r = run_of(fs, slot);

	uint32_t was = atomic_exchange_explicit(&s->state, HMMU_SLOT_FREE,
						memory_order_release);

	if (hmmu_failsafe_slot_live(was))
		atomic_fetch_sub_explicit(&fs->hdr->held, 1,
					  memory_order_relaxed);
	fs->used--;
	if (!r) {
		log_err("device memory file: slot %u is no device's", slot);
		return;
	}
	r->stack[r->n++] = slot; /* room made when it was taken fresh */
	fs->pending[fs->npending++] = slot;
	if (fs->npending == PUNCH_BATCH || !fs->used)
		punch_pending(fs);
}

/* A slot of an adopted file (a free or a held one), in its run. */
static int adopt_slot(struct failsafe *fs, struct run *r, uint32_t i,
		      bool in_use)
{
	/* Slots up to the last one in use count as taken fresh... */
	while (r->fresh <= i - r->base) {
		if (r->fresh == r->cap && grow_stack(r) < 0)
			return -ENOMEM;
		/* ...and those free among them go on the free stack. */
		if (r->base + r->fresh != i || !in_use)
			r->stack[r->n++] = r->base + r->fresh;
		r->fresh++;
	}
	if (in_use)
		fs->used++;
	return 0;
}

int failsafe_adopt(int fd, struct failsafe **out,
		   void (*held)(void *arg, uint32_t slot, uint64_t addr,
				unsigned dev, void *data, uint32_t state,
				bool exclusive),
		   void *arg)
{
	struct hmmu_failsafe_header want;
	struct failsafe *fs;
	int seals = fcntl(fd, F_GET_SEALS), err = layout(&want);
	struct stat st;

	if (err)
		return err;
	if (seals != SEALS || fstat(fd, &st) < 0 ||
	    (uint64_t)st.st_size != want.bytes)
		return -EBADMSG;
	fs = alloc_for(&want);
	if (!fs)
		return -ENOMEM;
	fs->fd = fd;
	err = map_file(fs, &want);
	if (err) {
		fs->fd = -1; /* still the caller's */
		failsafe_destroy(fs);
		return err;
	}
	want.gen = fs->hdr->gen;
	want.held = fs->hdr->held;
	if (memcmp(fs->hdr, &want, sizeof(want)) || !want.gen) {
		fs->fd = -1; /* still the caller's */
		failsafe_destroy(fs);
		return -EBADMSG;
	}
	fs->gen = want.gen;
	failsafe_gen_floor(fs->gen);
	*out = fs; /* for @held's pages */
	for (unsigned i = 0; i < ndevices; i++)
		place(fs, &fs->runs[i], devices[i].node);
	/* First the free lists, which may fail; then the pages, which may not. */
	for (unsigned d = 0; d < fs->nruns; d++) {
		struct run *r = &fs->runs[d];

		for (uint32_t i = r->base; i < r->base + r->npages; i++) {
			struct hmmu_failsafe_slot *s = &fs->slots[i];
			uint32_t state = atomic_load(&s->state);

			if (state == HMMU_SLOT_COPYING)
				atomic_store(&s->state, HMMU_SLOT_FREE);
			if (hmmu_failsafe_slot_live(state) &&
			    adopt_slot(fs, r, i, true) < 0) {
				fs->fd = -1;
				failsafe_destroy(fs);
				*out = NULL;
				return -ENOMEM;
			}
		}
	}
	for (unsigned d = 0; d < fs->nruns; d++) {
		struct run *r = &fs->runs[d];

		for (uint32_t i = r->base; i < r->base + r->npages; i++) {
			struct hmmu_failsafe_slot *s = &fs->slots[i];
			uint32_t state = atomic_load(&s->state), excl;

			if (!hmmu_failsafe_slot_live(state))
				continue;
			/* The slot's run is its device. */
			excl = s->device & HMMU_SLOT_EXCLUSIVE;
			s->device = d | excl;
			held(arg, i, atomic_load(&s->addr), d,
			     fs->data + (uint64_t)i * page_size(), state,
			     excl != 0);
		}
	}
	atomic_store(&fs->hdr->held, fs->used);
	return 0;
}

int failsafe_fd(const struct failsafe *fs)
{
	return fs->fd;
}

void failsafe_gen_floor(uint64_t gen)
{
	uint64_t last = atomic_load(&last_gen);

	while (last < gen && !atomic_compare_exchange_weak(&last_gen, &last, gen))
		;
}

int failsafe_open_for_client(const struct failsafe *fs)
{
	char path[64];
	int fd;

	/* A new open file description, read-only: its mmap cannot write. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fs->fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

uint64_t failsafe_gen(const struct failsafe *fs)
{
	return fs->gen;
}

uint64_t failsafe_bytes(const struct failsafe *fs)
{
	return fs->bytes;
}
