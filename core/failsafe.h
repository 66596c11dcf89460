/* SPDX-License-Identifier: MIT */
/*
 * A client process's device memory file (common/failsafe.h has the layout
 * and the slot states): where its pages in device memory live, and the
 * journal libhmmu reads to bring them home if hmmud dies.
 *
 * One per process, made by its first migration to a device (migrate.c),
 * gone with the process's state. Locking: every call but failsafe_fd() and
 * failsafe_gen() runs under the owning process's migrate_lock, which
 * protects the free lists; the slot descriptors are written with atomic
 * stores because another process (the client) maps them.
 */
#ifndef HMMUD_FAILSAFE_H
#define HMMUD_FAILSAFE_H

#include <stdbool.h>
#include <stdint.h>

struct failsafe;

/*
 * At startup, before any client: device @index has @npages pages of
 * memory, on NUMA node @node (-1: none). Every file made after has a run
 * of @npages slots for it. -EINVAL past ACCOUNT_MAX_DEVICES.
 */
int failsafe_add_device(unsigned index, uint64_t npages, int node);

/* A new file, sized for every device added, mapped here and sealed. */
int failsafe_create(struct failsafe **out);
void failsafe_destroy(struct failsafe *fs);

/*
 * A FREE slot of device @dev's run for the client page @addr (@exclusive
 * to the device), marked COPYING; its data page in *@data. -ENOMEM if the
 * run is full (the device's capacity bounds it first) or a free list
 * cannot grow.
 */
int failsafe_slot_alloc(struct failsafe *fs, unsigned dev, uint64_t addr,
			bool exclusive, uint32_t *slot, void **data);
/* COPYING -> HELD: the data page is complete (end of PREPARE). */
void failsafe_slot_hold(struct failsafe *fs, uint32_t slot);
/* HELD -> SETTLED: hmmud read the client's discard of the page. */
void failsafe_slot_settle(struct failsafe *fs, uint32_t slot);
/*
 * HELD or SETTLED -> RETURNING before the page is copied back into the
 * client; the state it had, for failsafe_slot_unreturn().
 */
uint32_t failsafe_slot_return(struct failsafe *fs, uint32_t slot);
/* RETURNING -> @was: the copy back must be tried again. */
void failsafe_slot_unreturn(struct failsafe *fs, uint32_t slot, uint32_t was);
/* A HELD page moved with its VMA (mremap). */
void failsafe_slot_move(struct failsafe *fs, uint32_t slot, uint64_t addr);
/* -> FREE, back on its device's free list. */
void failsafe_slot_free(struct failsafe *fs, uint32_t slot);

/*
 * Take over the file @fd a predecessor made (from the fd store), if its
 * layout is the one failsafe_create() would make now: -EBADMSG if not.
 * Every COPYING slot becomes FREE (its CPU page exists); @held is called
 * for each live one (HELD, SETTLED or RETURNING: @state; @exclusive to its
 * device), whose data page is at @data. On success the file owns @fd.
 */
int failsafe_adopt(int fd, struct failsafe **out,
		   void (*held)(void *arg, uint32_t slot, uint64_t addr,
				unsigned dev, void *data, uint32_t state,
				bool exclusive),
		   void *arg);
/* No file made from now on has a generation <= @gen (adopted files). */
void failsafe_gen_floor(uint64_t gen);
/* The file's own fd, for the fd store. */
int failsafe_fd(const struct failsafe *fs);

/* A read-only fd of the file for the client, or -errno. */
int failsafe_open_for_client(const struct failsafe *fs);
/* The file's generation, never 0, and its size. */
uint64_t failsafe_gen(const struct failsafe *fs);
uint64_t failsafe_bytes(const struct failsafe *fs);

#endif
