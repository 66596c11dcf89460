/* SPDX-License-Identifier: MIT */
/*
 * One client process of --clients: what the sweep (scaling.c) hands it and
 * what it sends back. The client runs in a child the sweep forked; it
 * talks to the sweep only through the pipes and the shared start page.
 */
#ifndef HMMU_BENCH_CLIENT_H
#define HMMU_BENCH_CLIENT_H

#include <stdint.h>

/* Written by the sweep before it gives the start signal, read after. */
struct client_start {
	uint64_t t0_ns;	      /* CLOCK_MONOTONIC, the start signal */
	uint64_t deadline_ns; /* every client stops faulting at this time */
};

enum client_phase {
	CLIENT_READY = 1, /* set up, waiting for the start signal */
	CLIENT_DONE = 2,  /* the counts are final */
};

/*
 * A client's message on the results pipe: one CLIENT_READY, then one
 * CLIENT_DONE; either may carry an error, after which nothing follows.
 * Smaller than PIPE_BUF, so each write is atomic on a pipe shared by all
 * the clients.
 */
struct client_msg {
	int32_t index;
	int32_t phase;	      /* enum client_phase */
	int32_t err;	      /* 0 or -errno */
	char device[32];      /* the device it mirrors on */
	uint64_t faults;      /* sum of cmd.faults of the timed reads */
	uint64_t reads;	      /* timed hmmu_device_read calls */
	uint64_t warm_reads;  /* timed reads that took no fault */
	uint64_t setup_faults; /* device faults before the start (warm-up) */
	uint64_t end_ns;      /* CLOCK_MONOTONIC when its last read returned */
	uint64_t recold_ns;   /* timed time spent making the buffer cold */
	uint64_t recolds;     /* how many times it did */
};

struct client_args {
	unsigned index;
	const char *socket;
	uint64_t pages;	  /* its buffer */
	unsigned queue;	  /* reads kept in flight through a hmmu_queue; 0: sync */
	int start_fd;	  /* read end: end of file is the start signal */
	int result_fd;	  /* write end of the results pipe */
	const volatile struct client_start *start;
};

/* The child's whole life: the exit code of the process. */
int client_main(const struct client_args *a);

#endif
