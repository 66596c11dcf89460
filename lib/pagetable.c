/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "pagetable.h"

#define PT_LEVEL_BITS	9
#define PT_SLOTS	(1U << PT_LEVEL_BITS)
#define PT_SLOT_MASK	(PT_SLOTS - 1)
#define PT_MAX_LEVELS	8

/*
 * Level 0 nodes are leaves holding entries; higher levels hold pointers to
 * the level below. A leaf needs a presence bitmap because {NULL, 0} is a
 * valid entry. Both start with the count of used slots.
 */
struct pt_dir {
	unsigned int used;
	void *slot[PT_SLOTS];
};

struct pt_leaf {
	unsigned int used;
	uint64_t present[PT_SLOTS / 64];
	struct pt_entry e[PT_SLOTS];
};

struct pt {
	void *root;		/* never freed before pt_destroy */
	unsigned int levels;
	unsigned int page_shift;
	uint64_t count;
};

typedef void (*pt_free_fn)(struct pt_entry *e, void *arg);
typedef int (*pt_walk_fn)(uint64_t addr, struct pt_entry *e, void *arg);

static unsigned int *node_used(void *node)
{
	/* Both node types start with "unsigned int used". */
	return node;
}

static void *node_alloc(unsigned int level)
{
	return calloc(1, level ? sizeof(struct pt_dir) :
				 sizeof(struct pt_leaf));
}

static bool leaf_test(const struct pt_leaf *l, unsigned int i)
{
	return l->present[i / 64] & (1ULL << (i % 64));
}

static unsigned int slot_index(uint64_t pn, unsigned int level)
{
	return (pn >> (level * PT_LEVEL_BITS)) & PT_SLOT_MASK;
}

int pt_create(struct pt **out)
{
	long psz = sysconf(_SC_PAGESIZE);
	unsigned int shift;
	struct pt *pt;

	if (psz <= 0)
		psz = 4096;
	shift = (unsigned int)__builtin_ctzl((unsigned long)psz);

	pt = calloc(1, sizeof(*pt));
	if (!pt)
		return -ENOMEM;
	pt->page_shift = shift;
	/* Enough levels to cover PT_VA_BITS; the top one may be partly used. */
	pt->levels = (PT_VA_BITS - shift + PT_LEVEL_BITS - 1) / PT_LEVEL_BITS;
	if (pt->levels < 1)
		pt->levels = 1;
	pt->root = node_alloc(pt->levels - 1);
	if (!pt->root) {
		free(pt);
		return -ENOMEM;
	}
	*out = pt;
	return 0;
}

/*
 * The slots [*first, *last] of a node at @level covering page numbers from
 * @base that [lo, hi) touches; false if it touches none.
 */
static bool slots_in_range(unsigned int level, uint64_t base, uint64_t lo,
			   uint64_t hi, unsigned int *first, unsigned int *last)
{
	unsigned int cshift = level * PT_LEVEL_BITS;
	uint64_t span = (uint64_t)PT_SLOTS << cshift;

	if (lo < base)
		lo = base;
	if (hi > base + span)
		hi = base + span;
	if (lo >= hi)
		return false;
	*first = (unsigned int)((lo - base) >> cshift);
	*last = (unsigned int)((hi - 1 - base) >> cshift);
	return true;
}

/*
 * Remove present entries with page numbers in [lo, hi) below node, which
 * sits at level and covers page numbers from base. Frees children that
 * become empty; the caller frees node itself if its used count drops to 0.
 */
static uint64_t clear_node(void *node, unsigned int level, uint64_t base,
			   uint64_t lo, uint64_t hi, pt_free_fn free_data,
			   void *arg)
{
	struct pt_leaf *l = node;
	struct pt_dir *d = node;
	unsigned int cshift = level * PT_LEVEL_BITS;
	unsigned int first, last, i;
	uint64_t n = 0;

	if (!slots_in_range(level, base, lo, hi, &first, &last))
		return 0;

	if (!level) {
		for (i = first; i <= last; i++) {
			if (!leaf_test(l, i))
				continue;
			if (free_data)
				free_data(&l->e[i], arg);
			l->present[i / 64] &= ~(1ULL << (i % 64));
			l->e[i] = (struct pt_entry){ 0 };
			l->used--;
			n++;
		}
		return n;
	}

	for (i = first; i <= last && d->used; i++) {
		void *child = d->slot[i];

		if (!child)
			continue;
		n += clear_node(child, level - 1,
				base + ((uint64_t)i << cshift), lo, hi,
				free_data, arg);
		if (!*node_used(child)) {
			free(child);
			d->slot[i] = NULL;
			d->used--;
		}
	}
	return n;
}

static int walk_node(struct pt *pt, void *node, unsigned int level,
		     uint64_t base, uint64_t lo, uint64_t hi, pt_walk_fn fn,
		     void *arg)
{
	struct pt_leaf *l = node;
	struct pt_dir *d = node;
	unsigned int cshift = level * PT_LEVEL_BITS;
	unsigned int first, last, i;
	int ret;

	if (!slots_in_range(level, base, lo, hi, &first, &last))
		return 0;

	if (!level) {
		for (i = first; i <= last; i++) {
			if (!leaf_test(l, i))
				continue;
			ret = fn((base + i) << pt->page_shift, &l->e[i], arg);
			if (ret)
				return ret;
		}
		return 0;
	}

	for (i = first; i <= last; i++) {
		if (!d->slot[i])
			continue;
		ret = walk_node(pt, d->slot[i], level - 1,
				base + ((uint64_t)i << cshift), lo, hi, fn,
				arg);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Turn the byte range [start, end) into the page numbers [*lo, *hi) of the
 * pages whose first byte lies in it. False if there are none.
 */
static bool page_range(const struct pt *pt, uint64_t start, uint64_t end,
		       uint64_t *lo, uint64_t *hi)
{
	uint64_t mask = (1ULL << pt->page_shift) - 1;

	if (end > PT_VA_LIMIT)
		end = PT_VA_LIMIT;
	if (start >= end)
		return false;
	*lo = (start + mask) >> pt->page_shift;
	*hi = (end + mask) >> pt->page_shift;
	return *lo < *hi;
}

uint64_t pt_clear_range(struct pt *pt, uint64_t start, uint64_t end,
			pt_free_fn free_data, void *arg)
{
	uint64_t lo, hi, n;

	if (!page_range(pt, start, end, &lo, &hi))
		return 0;
	n = clear_node(pt->root, pt->levels - 1, 0, lo, hi, free_data, arg);
	pt->count -= n;
	return n;
}

int pt_walk(struct pt *pt, uint64_t start, uint64_t end, pt_walk_fn fn,
	    void *arg)
{
	uint64_t lo, hi;

	if (!page_range(pt, start, end, &lo, &hi))
		return 0;
	return walk_node(pt, pt->root, pt->levels - 1, 0, lo, hi, fn, arg);
}

void pt_destroy(struct pt *pt, pt_free_fn free_data, void *arg)
{
	if (!pt)
		return;
	pt_clear_range(pt, 0, PT_VA_LIMIT, free_data, arg);
	free(pt->root);
	free(pt);
}

int pt_set(struct pt *pt, uint64_t addr, const struct pt_entry *e,
	   struct pt_entry *old, bool *had_old)
{
	void *path[PT_MAX_LEVELS];
	uint64_t pn = addr >> pt->page_shift;
	unsigned int level = pt->levels - 1, top = level, i;
	void *node = pt->root;
	struct pt_leaf *l;

	if (addr >= PT_VA_LIMIT)
		return -EINVAL;

	for (; level; level--) {
		struct pt_dir *d = node;

		path[level] = d;
		i = slot_index(pn, level);
		if (!d->slot[i]) {
			d->slot[i] = node_alloc(level - 1);
			if (!d->slot[i])
				goto err_nomem;
			d->used++;
		}
		node = d->slot[i];
	}

	l = node;
	i = slot_index(pn, 0);
	if (leaf_test(l, i)) {
		if (old)
			*old = l->e[i];
		if (had_old)
			*had_old = true;
	} else {
		l->present[i / 64] |= 1ULL << (i % 64);
		l->used++;
		pt->count++;
		if (had_old)
			*had_old = false;
	}
	l->e[i] = *e;
	return 0;

err_nomem:
	/*
	 * Only nodes this call added can be empty: unlink them bottom up,
	 * never the root.
	 */
	for (; level < top && !*node_used(path[level]); level++) {
		struct pt_dir *parent = path[level + 1];

		free(path[level]);
		parent->slot[slot_index(pn, level + 1)] = NULL;
		parent->used--;
	}
	return -ENOMEM;
}

struct pt_entry *pt_lookup(struct pt *pt, uint64_t addr)
{
	uint64_t pn = addr >> pt->page_shift;
	unsigned int level = pt->levels - 1, i;
	void *node = pt->root;
	struct pt_leaf *l;

	if (addr >= PT_VA_LIMIT)
		return NULL;
	for (; level; level--) {
		node = ((struct pt_dir *)node)->slot[slot_index(pn, level)];
		if (!node)
			return NULL;
	}
	l = node;
	i = slot_index(pn, 0);
	return leaf_test(l, i) ? &l->e[i] : NULL;
}

uint64_t pt_count(const struct pt *pt)
{
	return pt->count;
}
