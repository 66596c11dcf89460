/* SPDX-License-Identifier: MIT */
/*
 * The device memory file of a client process ("hmmu-devmem"): where hmmud
 * keeps the process's pages in device memory, and the journal that lets
 * libhmmu bring them home itself if hmmud dies (docs/design.md, "If the
 * daemon dies"). Shared by both ends: hmmud writes it, libhmmu maps a
 * read-only open of it (the file is sealed F_SEAL_SHRINK | F_SEAL_GROW |
 * F_SEAL_SEAL; hmmud punches out the page of each slot it frees).
 *
 * Layout: the header, then nslots slot descriptors, then, from data_off (a
 * multiple of the page size), one data page per slot: slot i's page is at
 * data_off + i * page_size. The slots are partitioned by device: device d
 * owns a contiguous run of as many slots as it has pages of memory, so
 * hmmud can place each run on its device's NUMA node once.
 *
 * A slot's life, each step written by hmmud before it takes effect (so a
 * SIGKILL at any instruction leaves a record the client can act on):
 *
 *   FREE ──reserve──► COPYING ──end of PREPARE, before its reply──► HELD
 *     ▲                  │                                           │
 *     └──rolled back─────┘            hmmud read the client's discard│
 *     │                                                              ▼
 *     │      SETTLED ◄──copy back tried again── RETURNING ◄──────── SETTLED
 *     │                                            │  about to be copied back
 *     └────────────────────────────────────────────┘  (UFFDIO_COPY)
 *
 * and from HELD, SETTLED or RETURNING to FREE when the page is copied back
 * (UFFDIO_COPY succeeded or EEXIST), rolled back at FINISH (not discarded),
 * unmapped, or its mirror dropped.
 *
 * COPYING: the data page is being filled; the client's page surely exists.
 * HELD: the data page is complete and is the page's contents, unless the
 * client's page exists (one the client has not discarded yet, or never
 * will): UFFDIO_COPY then says EEXIST and the client's page stays. For a
 * successor of hmmud, the page is still being migrated: the client's
 * discard (a REMOVE event) may wait unread in the userfaultfd.
 * SETTLED: as HELD for the client; for a successor, hmmud has seen the
 * discard: a REMOVE that comes now is the program's own (MADV_DONTNEED of
 * a page in device memory), whose data it throws away.
 * RETURNING: as HELD for the client; for a successor it also says that a
 * client page that exists is this one come home.
 * The address is written before the state (a release store); a reader
 * loads the state with acquire, then the address. mremap of a HELD page
 * rewrites its address in place (one atomic store).
 *
 * held counts the live slots, HELD, SETTLED or RETURNING (a hint for a
 * report, not a bound on a scan).
 * gen is the generation FAILSAFE's reply names: a successor of hmmud that
 * adopts the file from the fd store goes on with it.
 */
#ifndef HMMU_COMMON_FAILSAFE_H
#define HMMU_COMMON_FAILSAFE_H

#include <stdatomic.h>
#include <stdint.h>

#define HMMU_FAILSAFE_MAGIC 0x53464d48u /* "HMFS" in memory order */
#define HMMU_FAILSAFE_VERSION 3u /* 2: RETURNING; 3: SETTLED */

enum hmmu_failsafe_state {
	HMMU_SLOT_FREE = 0,
	HMMU_SLOT_COPYING = 1,
	HMMU_SLOT_HELD = 2,
	HMMU_SLOT_RETURNING = 3,
	HMMU_SLOT_SETTLED = 4,
};

/* A slot whose data page is a page of the client's (if it has none). */
static inline int hmmu_failsafe_slot_live(uint32_t state)
{
	return state == HMMU_SLOT_HELD || state == HMMU_SLOT_SETTLED ||
	       state == HMMU_SLOT_RETURNING;
}

/*
 * In a slot's device word: the page was made exclusive to the device, for
 * its atomics (until a CPU access brings it home). A successor keeps it so.
 */
#define HMMU_SLOT_EXCLUSIVE (1u << 31)

struct hmmu_failsafe_slot {
	_Atomic uint64_t addr; /* the client's page address */
	_Atomic uint32_t state; /* enum hmmu_failsafe_state */
	uint32_t device;	/* the daemon's device index | HMMU_SLOT_EXCLUSIVE */
};

struct hmmu_failsafe_header {
	uint32_t magic;	     /* HMMU_FAILSAFE_MAGIC */
	uint32_t version;    /* HMMU_FAILSAFE_VERSION */
	uint32_t page_size;  /* of the data pages: the host's */
	uint32_t slot_size;  /* sizeof(struct hmmu_failsafe_slot) */
	uint64_t nslots;
	uint64_t slots_off;  /* of slot 0 */
	uint64_t data_off;   /* of slot 0's data page */
	uint64_t bytes;	     /* of the whole file */
	_Atomic uint64_t held; /* slots HELD now */
	uint64_t gen;	     /* the file's generation (hmmud's; 0 in old files) */
};

_Static_assert(sizeof(struct hmmu_failsafe_slot) == 16, "slot is 16 bytes");
_Static_assert(sizeof(struct hmmu_failsafe_header) == 64, "header is 64 bytes");

#endif
