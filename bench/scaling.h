/* SPDX-License-Identifier: MIT */
/*
 * --clients N: N client processes (client.c) faulting at once against one
 * hmmud, for 1 worker and for 2; the total device faults per second of
 * each and their ratio. With --clients-rounds R, each worker count runs in
 * R blocks of S/R seconds, in the order 1 2, 2 1, 1 2, ... (a fresh daemon
 * each block), and its figures are over all its blocks.
 */
#ifndef HMMU_BENCH_SCALING_H
#define HMMU_BENCH_SCALING_H

#include "bench.h"
#include "client.h"

#define SCALING_MAX_CLIENTS 64
#define SCALING_POINTS 2

/* One worker count, N clients: the sums over its blocks. */
struct scaling_point {
	unsigned workers;     /* 0: the daemon's own (--socket) */
	char skipped[160];    /* why it has no figures; "" if it has */
	unsigned blocks;      /* measured */
	/* A block's window: start signal to the last client's last read. */
	uint64_t window_ns;   /* the blocks' windows, summed */
	double seconds;	      /* window_ns, in seconds */
	double faults_per_sec; /* all clients' faults over the windows */
	double min_per_client, max_per_client; /* faults/s */
	double rate[SCALING_MAX_CLIENTS];      /* each client's faults/s */
	uint64_t own_ns[SCALING_MAX_CLIENTS];  /* each client's own windows */
	uint64_t faults, reads, warm_reads;
	double recold_share;  /* of the clients' time, spent re-colding */
	/* Each client's counts (summed), device, and last block's times. */
	struct client_msg c[SCALING_MAX_CLIENTS];
};

struct scaling {
	unsigned clients;
	double seconds;	       /* --clients-seconds, per worker count */
	unsigned rounds;       /* --clients-rounds */
	uint64_t pages;	       /* each client's buffer */
	unsigned queue;	       /* --clients-queue: reads in flight; 0: sync */
	char daemon[160];      /* which daemon(s) */
	unsigned npoints;      /* points run (1 with --socket, else 2) */
	struct scaling_point pt[SCALING_POINTS];
	double ratio;	       /* pt[1] over pt[0] faults/s; NAN if not both */
};

/*
 * Run the sweep: with cfg->socket, against that daemon only; else a
 * private hmmud with --workers 1, then one with --workers 2, in each
 * round. 0, or -1 if
 * any point failed (its skipped says why; messages were printed). Children
 * and daemons are gone when it returns, and on SIGINT, SIGTERM and SIGHUP.
 */
int scaling_run(const struct config *cfg, struct scaling *sc);

#endif
