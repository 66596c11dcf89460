/* SPDX-License-Identifier: MIT */
/* Daemon-wide event counters, reported by HMMU_OP_STATS. Lock-free. */
#ifndef HMMUD_COUNTERS_H
#define HMMUD_COUNTERS_H

#include <stdatomic.h>
#include <stdint.h>

struct counters {
	atomic_uint_fast64_t device_faults;
	atomic_uint_fast64_t cpu_faults;
	atomic_uint_fast64_t invalidations;
	atomic_uint_fast64_t migrated_to_device;
	atomic_uint_fast64_t migrated_to_system;
	atomic_uint_fast64_t releases;	   /* mirrors released on death */
	atomic_uint_fast64_t sessions;	   /* open connections, not a total */
	/*
	 * Registered mirrors, now: registry.mirrors, which only its lock
	 * may read, told to those that must not take it (the event loop's
	 * STATUS= for systemd).
	 */
	atomic_uint_fast64_t mirrors;
	atomic_uint_fast64_t device_pages; /* held in device page tables, now */
	/* Replayable fault buffers (faultbuf.h): what their servicers did. */
	atomic_uint_fast64_t fault_batches;    /* batches drained */
	atomic_uint_fast64_t fault_entries;    /* faults posted and drained */
	atomic_uint_fast64_t fault_duplicates; /* dropped: already served */
	atomic_uint_fast64_t fault_blocks;     /* 2 MiB blocks served, per batch */
	atomic_uint_fast64_t fault_runs;       /* range faults (WP + read) */
	atomic_uint_fast64_t density_fetches;  /* blocks fetched whole */
	/* Their rule, the largest of the devices' (set as they are created). */
	atomic_uint_fast64_t fault_window_pages;
	atomic_uint_fast64_t fault_density_pct;
};

extern struct counters counters;

static inline void counter_add(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline void counter_sub(atomic_uint_fast64_t *c, uint64_t n)
{
	atomic_fetch_sub_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t counter_read(atomic_uint_fast64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

#endif
