/* SPDX-License-Identifier: MIT */
/*
 * hmmu-bench: what the parts share. The classes (hmmu's fault paths, timed
 * through libhmmu against hmmud) and the floors (the same kernel operations,
 * bare, with the same process layout) both produce a struct result; the
 * report turns them into a table, JSON and a plot.
 */
#ifndef HMMU_BENCH_H
#define HMMU_BENCH_H

#include "stats.h"

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct hmmu;

/*
 * Classes, in the order they run and are reported.
 *
 * Adding a class with a target (say cpu-write-coarse against
 * uffd-wp-async):
 *  1. its C_ name here, before NCLASSES (at most 32: --classes is a mask);
 *  2. its row in class_defs (hmmu-bench.c): name, floor, RATIO_LATENCY (or
 *     RATIO_BANDWIDTH), '<' or '>' and the target ratio, a one-line legend.
 *     The table, the summary's verdict, the JSON's "target" and the plot
 *     follow from that row; the floor is measured in rounds alternating
 *     with the class (class_measure());
 *  3. its sample loop in classes.c, and its case in class_run();
 *  4. its name in CLASSES of bench/check_json.py, and in TARGETED of
 *     tests/bench/summary_lists_targeted_classes.py;
 *  5. its line in docs/benchmark.md's class table.
 * A new floor: its F_ name below (before the derived ones), its row in
 * floor_defs, its case in floor_run() (floors.c; say there whether it needs
 * the server's userfaultfd), its name in FLOORS of check_json.py.
 */
enum class_id {
	C_DEVICE_FAULT,
	C_DEVICE_FAULT_ACC,
	C_DEVICE_STREAM,
	C_DEVICE_STREAM_ZC,
	C_CPU_WRITE_INVALIDATE,
	C_CPU_FAULT_DEVMEM,
	C_UNMAP_INVALIDATE,
	C_REQUEST,
	C_QUEUE_REQUEST,
	C_REGISTER,
	C_REGISTER_FIRST,
	C_CPU_WRITE_COARSE,
	NCLASSES
};

/*
 * Floors. The last ones are derived: their percentiles are sums of the
 * percentiles of measured ones (see floor_defs in hmmu-bench.c).
 */
enum floor_id {
	F_UFFD_MISSING,
	F_UFFD_WP,
	F_UFFD_UNMAP,
	F_PVM_READ_4K,
	F_PVM_WRITE_4K,
	F_WP_4K,
	F_PVM_READ_BULK,
	F_ANON_FIRST_TOUCH,
	F_IPC_RTT,
	F_RPC_FAULT,
	F_WINDOW_16,
	F_UFFD_WP_ASYNC,
	F_FUTEX_RTT,
	F_PVM_READ_4K_WP_4K, /* derived: pvm-read-4k + wp-4k */
	F_IPC_RTT_X2,	     /* derived: 2 x ipc-rtt */
	NFLOORS
};

#define F_NONE (-1)

enum ratio_kind {
	RATIO_NONE,	 /* no floor: absolute figures only */
	RATIO_LATENCY,	 /* p50 / floor p50: lower is better */
	RATIO_BANDWIDTH, /* gbps / floor gbps: higher is better */
};

#define MAX_EXTRA 4

/* One class or floor: its samples (ns) and what was made of them. */
struct result {
	const char *name;
	char skipped[160];  /* why it was not measured; "" if it was */
	struct samples s;   /* ns per operation; per 4 KiB page for bandwidth */
	struct samples aux; /* a second view of the same operations, if any */
	struct summary sum; /* filled by result_finish() */
	uint64_t bytes;	    /* bandwidth results: bytes moved per repetition */
	double gbps;	    /* bandwidth results: bytes / p50 repetition time */
	double ratio;	    /* classes: against their floor; NAN if none */
	struct {
		const char *key;
		double value;
	} extra[MAX_EXTRA]; /* more figures for the JSON, e.g. device-side */
	unsigned nextra;
};

struct class_def {
	const char *name;
	int floor; /* enum floor_id, or F_NONE */
	enum ratio_kind kind;
	char target_op;	 /* '<' (ratio at most), '>' (at least), 0: none */
	double target;	 /* the ratio the issue asks for */
	const char *what; /* one line, for the table's legend */
};

struct floor_def {
	const char *name;
	enum ratio_kind kind; /* RATIO_BANDWIDTH: has gbps */
	int of[2];	      /* derived: the floors summed, else F_NONE */
	double factor[2];
	const char *what;
};

extern const struct class_def class_defs[NCLASSES];
extern const struct floor_def floor_defs[NFLOORS];

struct config {
	uint64_t pages;	     /* samples per latency class and floor */
	unsigned rounds;     /* blocks a class and its floor alternate in */
	uint64_t stream_mib; /* device-stream and pvm-read-bulk range */
	unsigned stream_reps;
	const char *socket;  /* an hmmud to use; NULL: start a private one */
	const char *hmmud;   /* the daemon to start */
	unsigned workers;    /* for the private daemon; 0: its default */
	const char *json;
	const char *plot;
	int summary;
	uint32_t classes;    /* bit per enum class_id; 0: none (--clients) */
	unsigned clients;    /* --clients N (scaling.h); 0: not run */
	double clients_seconds; /* how long the clients fault, per worker count */
	unsigned clients_rounds; /* blocks the worker counts alternate in */
	unsigned clients_queue;	 /* reads in flight through a hmmu_queue; 0: sync */
	int ops_given;	     /* --ops N: count, not time (opcount.h) */
	uint64_t ops;
};

/* What the classes need from the run. */
struct bench {
	const struct config *cfg;
	struct hmmu *h;
	char dmirror[32];  /* the device of most classes */
	char dmirror2[32]; /* a second mirror's device (register), may be = */
	char accel[32];	   /* "" if the daemon offers none */
	size_t page;
};

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	__asm__ volatile("" ::: "memory");
	clock_gettime(CLOCK_MONOTONIC, &ts);
	__asm__ volatile("" ::: "memory");
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* util.c: anonymous memory in its own VMA, guarded from merging. */
void *map_pages(size_t npages);
void unmap_pages(void *p, size_t npages);
/* Write every page once, so that it exists. */
void touch_pages(void *p, size_t npages);
void result_skip(struct result *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Set a named figure of the JSON (the last value set wins). */
void result_extra(struct result *r, const char *key, double value);
/* Sort, summarize, and the bandwidth of bandwidth results. */
void result_finish(struct result *r, enum ratio_kind kind);
/* Progress on stderr, unless quiet. */
void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
extern int progress_quiet;
/* A line on stderr, always. */
void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A userfaultfd with the features asked for, or -errno (as libhmmu). */
int open_userfaultfd(uint64_t features);

/*
 * classes.c: run class @id for @n more samples, appended to @r (whose
 * samples are initialized), or mark it skipped. 0 or -errno.
 */
int class_run(struct bench *b, enum class_id id, struct result *r, uint64_t n);

#endif
