/* SPDX-License-Identifier: MIT */
/*
 * A device page table: maps the client's virtual pages (host page size) to
 * a struct pt_entry. It is a radix tree over a 48-bit virtual address space
 * (4 levels of 512 slots for 4 KiB pages, like x86-64); interior nodes are
 * allocated on demand and freed when they become empty, so large sparse
 * address spaces stay cheap.
 *
 * Locking: none inside. The caller serialises every call on a table with
 * its own lock. Callbacks (free_data, walk fn) run with that lock held and
 * must not call back into the same table.
 */
#ifndef HMMU_PAGETABLE_H
#define HMMU_PAGETABLE_H

#include <stdbool.h>
#include <stdint.h>

#define PT_VA_BITS	48
#define PT_VA_LIMIT	(1ULL << PT_VA_BITS)

struct pt; /* opaque */

struct pt_entry {
	void *data;
	uint32_t flags;
};

/* 0 or -ENOMEM. */
int pt_create(struct pt **out);

/*
 * Call free_data(e, arg) for each present entry (free_data may be NULL),
 * then free the table. pt may be NULL.
 */
void pt_destroy(struct pt *pt, void (*free_data)(struct pt_entry *e, void *arg),
		void *arg);

/*
 * Install or replace the entry of the page containing addr. *had_old tells
 * whether an entry was present; if so and old is not NULL, *old gets it
 * (with old NULL the previous entry is just overwritten). had_old may be
 * NULL. Returns 0, -EINVAL if addr >= PT_VA_LIMIT, or -ENOMEM with the
 * table unchanged.
 */
int pt_set(struct pt *pt, uint64_t addr, const struct pt_entry *e,
	   struct pt_entry *old, bool *had_old);

/*
 * The entry of the page containing addr, or NULL. Valid until the next
 * pt_set, pt_clear_range or pt_destroy.
 */
struct pt_entry *pt_lookup(struct pt *pt, uint64_t addr);

/*
 * Remove every entry whose page address lies in [start, end), calling
 * free_data(e, arg) for each (free_data may be NULL). Absent subtrees are
 * skipped, so huge sparse ranges are cheap. Returns how many were removed.
 */
uint64_t pt_clear_range(struct pt *pt, uint64_t start, uint64_t end,
			void (*free_data)(struct pt_entry *e, void *arg),
			void *arg);

/*
 * Call fn(addr, e, arg) for each present entry with page address in
 * [start, end), in ascending order. fn may change *e but not the table.
 * Stops and returns fn's value as soon as it is non-zero; else 0.
 */
int pt_walk(struct pt *pt, uint64_t start, uint64_t end,
	    int (*fn)(uint64_t addr, struct pt_entry *e, void *arg), void *arg);

/* Number of present entries. */
uint64_t pt_count(const struct pt *pt);

#endif
