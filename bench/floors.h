/* SPDX-License-Identifier: MIT */
/* The floors: bare kernel operations, with hmmud's process layout. */
#ifndef HMMU_BENCH_FLOORS_H
#define HMMU_BENCH_FLOORS_H

#include "bench.h"

#include <sys/types.h>

/*
 * The window-16 floor's window: the accelerator's default prefetch (the
 * accel device's prefetch=N), which device-fault-acc's pages_per_fault
 * shows. Change both together.
 */
#define WINDOW_PAGES 16

/* The server process that owns the floors' userfaultfd. */
struct fserver {
	pid_t pid;
	int sock;	  /* our end of the socketpair */
	uint64_t *shared; /* samples the server times, shared with it */
	size_t cap;
	size_t ps;
	int have_uffd;
	/*
	 * futex-rtt: [0] the client's request word, [1] the server's reply
	 * word (MAP_SHARED, mapped before the fork); futex_seq: the last
	 * request sent.
	 */
	uint32_t *futex;
	uint32_t futex_seq;
};

/*
 * Fork the server; @cap samples fit in one of its timed runs. Call it
 * before the first hmmu call: the child then inherits no mirrored memory
 * and no connection.
 */
int fserver_start(struct fserver *fs, size_t cap);
void fserver_stop(struct fserver *fs);

/*
 * Measure @n more samples of floor @id (not a derived one), appended to
 * @r, whose samples are initialized (pvm-read-bulk: --stream-reps samples
 * whatever @n). 0 or -errno. A floor this kernel cannot give (uffd-wp-async
 * without UFFD_FEATURE_WP_ASYNC) marks @r skipped, "no figure: why", and
 * returns 0: not a failure of the run.
 */
int floor_run(struct fserver *fs, const struct config *cfg, enum floor_id id,
	      struct result *r, uint64_t n);

/* Samples taken and dropped before the @pages that count. */
uint64_t warmup_of(uint64_t pages);

/*
 * @n writable 1-page VMAs, page 2*i of the result, with a PROT_NONE page
 * after each; unmap_pages(p, 2 * n) frees what is left.
 */
char *map_separate_pages(size_t n);

#endif
