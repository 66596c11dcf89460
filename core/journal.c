/* SPDX-License-Identifier: MIT */
#include "journal.h"
#include "process.h"
#include "../common/page.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define RANGE_WRITABLE 0x1u
#define RANGE_MISSING 0x2u
#define RANGES_OVERFLOWED UINT32_MAX

struct journal_range {
	uint64_t start, end;
	uint32_t flags;
	uint32_t reserved;
};

struct journal_header {
	uint32_t magic;
	uint32_t version;
	int32_t pid;
	uint32_t uid;
	uint64_t pid_ino;
	uint64_t serial;
	uint32_t coarse;
	_Atomic uint32_t live; /* which copy of the ranges: 0 or 1 */
	uint32_t n[2];	       /* ranges in each copy, or RANGES_OVERFLOWED */
	uint64_t devices;      /* journal_devices() */
	_Atomic uint64_t devmem_gen;
	uint64_t reserved;
};

struct journal_file {
	struct journal_header hdr;
	struct journal_range copy[2][JOURNAL_MAX_RANGES];
};

struct journal {
	int fd;
	struct journal_file *f;
};

/* FNV-1a of the devices' names, models and sizes, set up at startup. */
static uint64_t devices_digest = 0xcbf29ce484222325ull;

static void digest(const void *data, size_t n)
{
	const unsigned char *b = data;

	for (size_t i = 0; i < n; i++)
		devices_digest = (devices_digest ^ b[i]) * 0x100000001b3ull;
}

void journal_add_device(const char *name, const char *model, uint64_t npages)
{
	/* The NULs too: "ab"+"c" is not "a"+"bc". */
	digest(name, strlen(name) + 1);
	digest(model, strlen(model) + 1);
	digest(&npages, sizeof(npages));
}

uint64_t journal_devices(void)
{
	return devices_digest;
}

int journal_fd(const struct journal *j)
{
	return j->fd;
}

static int map_file(int fd, struct journal **out)
{
	struct journal *j = calloc(1, sizeof(*j));

	if (!j)
		return -ENOMEM;
	j->f = mmap(NULL, sizeof(*j->f), PROT_READ | PROT_WRITE, MAP_SHARED,
		    fd, 0);
	if (j->f == MAP_FAILED) {
		int err = -errno;

		free(j);
		return err;
	}
	j->fd = fd;
	*out = j;
	return 0;
}

int journal_create(const struct journal_identity *id, struct journal **out)
{
	int fd = memfd_create("hmmu-journal", MFD_CLOEXEC), err;
	struct journal_header *h;

	if (fd < 0)
		return -errno;
	/* Sparse: only the pages written hold memory. */
	if (ftruncate(fd, sizeof(struct journal_file)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	err = map_file(fd, out);
	if (err) {
		close(fd);
		return err;
	}
	h = &(*out)->f->hdr;
	h->version = JOURNAL_VERSION;
	h->pid = id->pid;
	h->uid = id->uid;
	h->pid_ino = id->pid_ino;
	h->serial = id->serial;
	h->coarse = id->coarse;
	h->devices = devices_digest;
	/* Last: a journal without its magic is one a successor ignores. */
	atomic_store_explicit((_Atomic uint32_t *)&h->magic, JOURNAL_MAGIC,
			      memory_order_release);
	return 0;
}

void journal_end(struct journal *j)
{
	atomic_store_explicit((_Atomic uint32_t *)&j->f->hdr.magic,
			      JOURNAL_ENDED, memory_order_release);
}

void journal_note_devmem(struct journal *j, uint64_t gen)
{
	atomic_store_explicit(&j->f->hdr.devmem_gen, gen, memory_order_release);
}

void journal_write_ranges(struct journal *j, const struct uffd_range *ranges,
			  unsigned n)
{
	struct journal_header *h = &j->f->hdr;
	unsigned next = !atomic_load_explicit(&h->live, memory_order_relaxed);

	if (n > JOURNAL_MAX_RANGES) {
		h->n[next] = RANGES_OVERFLOWED;
	} else {
		for (unsigned i = 0; i < n; i++)
			j->f->copy[next][i] = (struct journal_range){
				.start = ranges[i].start,
				.end = ranges[i].end,
				.flags = (ranges[i].writable ? RANGE_WRITABLE : 0) |
					 (ranges[i].missing ? RANGE_MISSING : 0),
			};
		h->n[next] = n;
	}
	atomic_store_explicit(&h->live, next, memory_order_release);
}

int journal_adopt(int fd, struct journal **out, struct journal_identity *id,
		  struct uffd_range **ranges, unsigned *n)
{
	const struct journal_header *h;
	struct uffd_range *r = NULL;
	struct journal *j;
	struct stat st;
	unsigned live, count;
	int err;

	if (fstat(fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size != sizeof(struct journal_file))
		return -EBADMSG;
	err = map_file(fd, &j);
	if (err)
		return err;
	h = &j->f->hdr;
	err = -ESTALE;
	if (atomic_load_explicit((_Atomic uint32_t *)&h->magic,
				 memory_order_acquire) == JOURNAL_ENDED)
		goto fail;
	err = -EBADMSG;
	live = atomic_load_explicit(&h->live, memory_order_acquire);
	count = live <= 1 ? h->n[live] : RANGES_OVERFLOWED;
	if (h->magic != JOURNAL_MAGIC || h->version != JOURNAL_VERSION ||
	    count > JOURNAL_MAX_RANGES)
		goto fail;
	if (count && !(r = calloc(count, sizeof(*r)))) {
		err = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < count; i++) {
		const struct journal_range *x = &j->f->copy[live][i];

		if (x->start >= x->end || x->start % page_size() ||
		    x->end % page_size())
			goto fail;
		r[i] = (struct uffd_range){
			.start = x->start,
			.end = x->end,
			.writable = x->flags & RANGE_WRITABLE,
			.missing = x->flags & RANGE_MISSING,
		};
	}
	*id = (struct journal_identity){
		.pid = h->pid,
		.uid = h->uid,
		.pid_ino = h->pid_ino,
		.serial = h->serial,
		.coarse = h->coarse,
		.devices = h->devices,
		.devmem_gen = atomic_load_explicit(&h->devmem_gen,
						   memory_order_acquire),
	};
	*ranges = r;
	*n = count;
	*out = j;
	return 0;
fail:
	free(r);
	munmap(j->f, sizeof(*j->f));
	free(j);
	return err;
}

void journal_destroy(struct journal *j)
{
	if (!j)
		return;
	munmap(j->f, sizeof(*j->f));
	close(j->fd);
	free(j);
}
