/* SPDX-License-Identifier: MIT */
/*
 * hmmu-bench: per-fault latency of hmmu's fault classes, each against its
 * floor, the bare kernel operation it is built from, measured in the same
 * run with the same process layout. docs/benchmark.md says what each class
 * and floor measures and how to read and compare the results.
 *
 * The run: fork the floor server (floors.c) before anything else; start a
 * private hmmud unless --socket names one; then, class by class, measure
 * the class and its floor in alternating rounds; then the floors no class
 * measured; the stream and its floor last. Then, with --clients, the
 * scaling sweep (scaling.c), with daemons of its own. Then report.
 */
#include "bench.h"
#include "daemon.h"
#include "floors.h"
#include "meter.h"
#include "opcount.h"
#include "report.h"
#include "scaling.h"
#include "hmmu_build_info.h"

#include <errno.h>
#include <getopt.h>
#include <hmmu/hmmu.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/userfaultfd.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#define EXIT_SKIP 77 /* no usable userfaultfd here: ctest's skip code */

/* The targets are issue 11's: p50 ratios against a floor of the same run. */
const struct class_def class_defs[NCLASSES] = {
	[C_DEVICE_FAULT] = { "device-fault", F_RPC_FAULT, RATIO_LATENCY,
			     '<', 1.3,
			     "device reads one cold page, client round trip included" },
	[C_DEVICE_FAULT_ACC] = { "device-fault-acc", F_WINDOW_16, RATIO_LATENCY,
				 '<', 1.5,
				 "accelerator fault (a prefetch window), device time" },
	[C_DEVICE_STREAM] = { "device-stream", F_PVM_READ_BULK, RATIO_BANDWIDTH,
			      '>', 0.5, "device reads a large cold range" },
	/* issue 11, item 8: one copy, into a buffer shared with hmmud. */
	[C_DEVICE_STREAM_ZC] = { "device-stream-zc", F_PVM_READ_BULK,
				 RATIO_BANDWIDTH, '>', 0.8,
				 "the same, into a shared buffer" },
	[C_CPU_WRITE_INVALIDATE] = { "cpu-write-invalidate", F_UFFD_WP,
				     RATIO_LATENCY, '<', 1.25,
				     "CPU writes a mirrored page" },
	[C_CPU_FAULT_DEVMEM] = { "cpu-fault-devmem", F_UFFD_MISSING,
				 RATIO_LATENCY, '<', 1.25,
				 "CPU reads a page in device memory" },
	[C_UNMAP_INVALIDATE] = { "unmap-invalidate", F_UFFD_UNMAP,
				 RATIO_LATENCY, 0, 0,
				 "CPU unmaps a mirrored 1-page mapping" },
	[C_REQUEST] = { "request", F_IPC_RTT, RATIO_LATENCY, '<', 1.2,
			"a request that does no work (hmmu_device_count)" },
	[C_QUEUE_REQUEST] = { "queue-request", F_FUTEX_RTT, RATIO_LATENCY, '<',
			      1.2, "a no-op through a queue: submit + wait" },
	[C_REGISTER] = { "register", F_IPC_RTT_X2, RATIO_LATENCY, 0, 0,
			 "register + unregister, process state kept" },
	[C_REGISTER_FIRST] = { "register-first", F_IPC_RTT_X2, RATIO_LATENCY, 0,
			       0, "register + unregister of the only mirror" },
	[C_CPU_WRITE_COARSE] = { "cpu-write-coarse", F_UFFD_WP_ASYNC,
				 RATIO_LATENCY, '<', 1.25,
				 "CPU writes a page of a coarse-grained mirror" },
};

#define MEASURED { F_NONE, F_NONE }, { 0, 0 }

const struct floor_def floor_defs[NFLOORS] = {
	[F_UFFD_MISSING] = { "uffd-missing", RATIO_LATENCY, MEASURED,
			     "MISSING fault, server UFFDIO_COPY 4 KiB" },
	[F_UFFD_WP] = { "uffd-wp", RATIO_LATENCY, MEASURED,
			"write-protect fault, server un-protects" },
	[F_UFFD_UNMAP] = { "uffd-unmap", RATIO_LATENCY, MEASURED,
			   "munmap of a registered page, server reads UNMAP" },
	[F_PVM_READ_4K] = { "pvm-read-4k", RATIO_LATENCY, MEASURED,
			    "server process_vm_readv of one client page" },
	[F_PVM_WRITE_4K] = { "pvm-write-4k", RATIO_LATENCY, MEASURED,
			     "server process_vm_writev of one client page" },
	[F_WP_4K] = { "wp-4k", RATIO_LATENCY, MEASURED,
		      "server UFFDIO_WRITEPROTECT of one client page" },
	[F_PVM_READ_BULK] = { "pvm-read-bulk", RATIO_BANDWIDTH, MEASURED,
			      "server process_vm_readv of the stream range" },
	[F_ANON_FIRST_TOUCH] = { "anon-first-touch", RATIO_LATENCY, MEASURED,
				 "first write to a fresh anonymous page" },
	[F_IPC_RTT] = { "ipc-rtt", RATIO_LATENCY, MEASURED,
			"request + reply over SOCK_SEQPACKET to the server" },
	[F_RPC_FAULT] = { "rpc-fault", RATIO_LATENCY, MEASURED,
			  "request; server protects, reads, writes back a page; reply" },
	[F_WINDOW_16] = { "window-16", RATIO_LATENCY, MEASURED,
			  "server protects and reads 16 client pages, one call each" },
	[F_UFFD_WP_ASYNC] = { "uffd-wp-async", RATIO_LATENCY, MEASURED,
			      "write to a write-protected page, WP_ASYNC: kernel only" },
	[F_FUTEX_RTT] = { "futex-rtt", RATIO_LATENCY, MEASURED,
			  "round trip over shared memory, futex wake-ups" },
	[F_PVM_READ_4K_WP_4K] = { "pvm-read-4k+wp-4k", RATIO_LATENCY,
				  { F_PVM_READ_4K, F_WP_4K }, { 1, 1 },
				  "pvm-read-4k + wp-4k" },
	[F_IPC_RTT_X2] = { "ipc-rtt-x2", RATIO_LATENCY, { F_IPC_RTT, F_NONE },
			   { 2, 0 }, "two ipc-rtt" },
};

/*
 * The hmmud to start by default: the build's if this is the build's
 * hmmu-bench, else the one installed with it (PREFIX/sbin/hmmud for
 * PREFIX/bin/hmmu-bench). NULL if it is not there; @looked: where it was
 * looked for.
 */
static const char *default_hmmud(const char **looked)
{
	static char path[PATH_MAX + 64], found[PATH_MAX];
	char self[PATH_MAX], build[PATH_MAX], *slash;
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	*looked = HMMUD_BUILD_PATH;
	if (n <= 0)
		return access(HMMUD_BUILD_PATH, X_OK) == 0 ? HMMUD_BUILD_PATH : NULL;
	self[n] = '\0';
	if (realpath(HMMU_BENCH_BUILD_PATH, build) && strcmp(self, build) == 0)
		return access(HMMUD_BUILD_PATH, X_OK) == 0 ? HMMUD_BUILD_PATH : NULL;
	slash = strrchr(self, '/');
	if (slash)
		*slash = '\0';
	if (HMMUD_INSTALLED_PATH[0] == '/')
		snprintf(path, sizeof(path), "%s", HMMUD_INSTALLED_PATH);
	else
		snprintf(path, sizeof(path), "%s/../%s", self,
			 HMMUD_INSTALLED_PATH);
	*looked = path;
	if (access(path, X_OK) != 0 || !realpath(path, found))
		return NULL;
	return found;
}

static void usage(FILE *f)
{
	const char *looked, *hmmud = default_hmmud(&looked);

	fprintf(f,
		"usage: hmmu-bench [--pages N] [--rounds R] [--stream-mib M]\n"
		"                  [--stream-reps R]\n"
		"                  [--socket PATH | --hmmud PATH [--workers N]]\n"
		"                  [--classes a,b,...] [--json FILE] [--plot FILE.png]\n"
		"                  [--summary]\n"
		"                  [--clients N [--clients-seconds S] [--clients-rounds R]\n"
		"                   [--clients-queue D]]\n"
		"       hmmu-bench --ops N --socket PATH [--classes a,b,...]\n"
		"       hmmu-bench --version | --help\n"
		"\n"
		"  --pages N        samples per class and floor (default 4096)\n"
		"  --rounds R       blocks a class and its floor alternate in (default 4)\n"
		"  --stream-mib M   device-stream and pvm-read-bulk range (default 256)\n"
		"  --stream-reps R  repetitions of the stream and its floor (default 5)\n"
		"  --socket PATH    use the hmmud there instead of a private one\n"
		"  --hmmud PATH     the daemon to start (default %s%s)\n"
		"  --workers N      worker threads of the private daemon\n"
		"  --classes LIST   run only these classes (and their floors)\n"
		"  --json FILE      every figure, as JSON ('-': standard output)\n"
		"  --plot FILE.png  latency distributions, with gnuplot\n"
		"  --summary        print only the classes with a target, against\n"
		"                   their floors, and no step messages (the live\n"
		"                   line on a terminal stays, and leaves nothing)\n"
		"  --clients N      N client processes faulting at once, on hmmud\n"
		"                   with 1 worker, then 2 (only those, unless\n"
		"                   --classes is given too)\n"
		"  --clients-seconds S  how long they fault, per worker count (default 2)\n"
		"  --clients-rounds R   in R blocks each, 1 2, 2 1, ... (default 1)\n"
		"  --clients-queue D    each client keeps D reads in flight through a\n"
		"                   submission queue (hmmu_queue_read), not one\n"
		"                   hmmu_device_read at a time (default 0)\n"
		"  --ops N          run N operations of each class given (request,\n"
		"                   device-fault, device-fault-acc: the default),\n"
		"                   untimed, no floor, on the hmmud at --socket;\n"
		"                   bench/opcounts.sh counts their system calls\n"
		"  --version        print the version and the commit built\n"
		"\nclasses:",
		hmmud ? hmmud : "none: not at ", hmmud ? "" : looked);
	for (int i = 0; i < NCLASSES; i++)
		fprintf(f, " %s", class_defs[i].name);
	fputc('\n', f);
}

static int parse_u64(const char *opt, const char *s, uint64_t min,
		     uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || !*s || v < min || v > max) {
		fprintf(stderr, "hmmu-bench: %s takes %" PRIu64 " to %" PRIu64
			"\n", opt, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_seconds(const char *opt, const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !*s || !(v >= 0.1 && v <= 3600)) {
		fprintf(stderr, "hmmu-bench: %s takes 0.1 to 3600 (seconds)\n",
			opt);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse_classes(const char *list, uint32_t *mask)
{
	char *copy = strdup(list), *save = NULL;
	int err = 0;

	*mask = 0;
	if (!copy)
		return -1;
	for (char *t = strtok_r(copy, ",", &save); t;
	     t = strtok_r(NULL, ",", &save)) {
		int i;

		for (i = 0; i < NCLASSES; i++)
			if (strcmp(t, class_defs[i].name) == 0)
				break;
		if (i == NCLASSES) {
			fprintf(stderr, "hmmu-bench: no class '%s'\n", t);
			err = -1;
		} else {
			*mask |= 1u << i;
		}
	}
	free(copy);
	return err || !*mask ? -1 : 0;
}

static int parse_options(int argc, char **argv, struct config *cfg)
{
	static const struct option longopts[] = {
		{ "pages", required_argument, NULL, 'n' },
		{ "stream-mib", required_argument, NULL, 'm' },
		{ "stream-reps", required_argument, NULL, 'r' },
		{ "rounds", required_argument, NULL, 'R' },
		{ "socket", required_argument, NULL, 's' },
		{ "hmmud", required_argument, NULL, 'd' },
		{ "workers", required_argument, NULL, 'w' },
		{ "classes", required_argument, NULL, 'c' },
		{ "json", required_argument, NULL, 'j' },
		{ "plot", required_argument, NULL, 'p' },
		{ "summary", no_argument, NULL, 'S' },
		{ "clients", required_argument, NULL, 'C' },
		{ "clients-seconds", required_argument, NULL, 'T' },
		{ "clients-rounds", required_argument, NULL, 'O' },
		{ "clients-queue", required_argument, NULL, 'Q' },
		{ "ops", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int classes_given = 0, seconds_given = 0;
	uint64_t v;
	int c;

	*cfg = (struct config){ .pages = 4096, .stream_mib = 256,
				.stream_reps = 5, .rounds = 4,
				.classes = (1u << NCLASSES) - 1,
				.clients_seconds = 2, .clients_rounds = 1 };
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'n':
			if (parse_u64("--pages", optarg, 1, 1u << 22, &cfg->pages))
				return -1;
			break;
		case 'm':
			if (parse_u64("--stream-mib", optarg, 1, 16384,
				      &cfg->stream_mib))
				return -1;
			break;
		case 'r':
			if (parse_u64("--stream-reps", optarg, 1, 1000, &v))
				return -1;
			cfg->stream_reps = (unsigned)v;
			break;
		case 'R':
			if (parse_u64("--rounds", optarg, 1, 1000, &v))
				return -1;
			cfg->rounds = (unsigned)v;
			break;
		case 's':
			cfg->socket = optarg;
			break;
		case 'd':
			cfg->hmmud = optarg;
			break;
		case 'w':
			if (parse_u64("--workers", optarg, 1, 256, &v))
				return -1;
			cfg->workers = (unsigned)v;
			break;
		case 'c':
			if (parse_classes(optarg, &cfg->classes))
				return -1;
			classes_given = 1;
			break;
		case 'j':
			cfg->json = optarg;
			break;
		case 'p':
			cfg->plot = optarg;
			break;
		case 'S':
			cfg->summary = 1;
			break;
		case 'C':
			if (parse_u64("--clients", optarg, 1,
				      SCALING_MAX_CLIENTS, &v))
				return -1;
			cfg->clients = (unsigned)v;
			break;
		case 'T':
			if (parse_seconds("--clients-seconds", optarg,
					  &cfg->clients_seconds))
				return -1;
			seconds_given = 1;
			break;
		case 'O':
			if (parse_u64("--clients-rounds", optarg, 1, 100, &v))
				return -1;
			cfg->clients_rounds = (unsigned)v;
			seconds_given = 1;
			break;
		case 'Q':
			if (parse_u64("--clients-queue", optarg, 0, 256, &v))
				return -1;
			cfg->clients_queue = (unsigned)v;
			seconds_given = 1;
			break;
		case 'o':
			if (parse_u64("--ops", optarg, 0, 1u << 24, &cfg->ops))
				return -1;
			cfg->ops_given = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("hmmu-bench %s (%s)\n", HMMU_BUILD_VERSION,
			       HMMU_BUILD_COMMIT);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -1;
	}
	if (cfg->socket && cfg->hmmud) {
		fprintf(stderr, "hmmu-bench: --hmmud starts a daemon, --socket "
				"uses a running one: give one of them\n");
		return -1;
	}
	if (cfg->socket && cfg->workers) {
		fprintf(stderr, "hmmu-bench: --workers is for the private "
				"daemon, not one given with --socket\n");
		return -1;
	}
	if (seconds_given && !cfg->clients) {
		fprintf(stderr, "hmmu-bench: --clients-seconds, --clients-rounds "
				"and --clients-queue go with --clients\n");
		return -1;
	}
	if (cfg->clients_seconds / cfg->clients_rounds < 0.1) {
		fprintf(stderr, "hmmu-bench: a block of --clients-seconds / "
				"--clients-rounds must last 0.1 s at least\n");
		return -1;
	}
	if (cfg->ops_given) {
		if (!classes_given)
			cfg->classes = OPS_CLASSES;
		if (cfg->classes & ~OPS_CLASSES || !cfg->socket ||
		    cfg->clients || cfg->json || cfg->plot) {
			fprintf(stderr, "hmmu-bench: --ops takes --socket, and "
					"--classes among request, device-fault, "
					"device-fault-acc; nothing else\n");
			return -1;
		}
	}
	/* --clients alone runs no class: see docs/benchmark.md. */
	if (cfg->clients && !classes_given) {
		cfg->classes = 0;
		if (cfg->workers || cfg->plot) {
			fprintf(stderr, "hmmu-bench: --workers and --plot "
					"are for the classes: with --clients, "
					"give --classes too\n");
			return -1;
		}
	}
	return 0;
}

/* Devices to use, from what the daemon offers. */
static int pick_devices(struct bench *b)
{
	int n = hmmu_device_count(b->h);

	if (n < 0) {
		warnx_("device count: %s", strerror(-n));
		return n;
	}
	for (int i = 0; i < n; i++) {
		struct hmmu_device_info info;

		if (hmmu_device_info(b->h, (unsigned)i, &info) < 0)
			continue;
		if (strcmp(info.model, "dmirror") == 0) {
			if (!b->dmirror[0])
				strcpy(b->dmirror, info.name);
			else if (!b->dmirror2[0])
				strcpy(b->dmirror2, info.name);
		} else if (strcmp(info.model, "accel") == 0 && !b->accel[0]) {
			strcpy(b->accel, info.name);
		}
	}
	if (!b->dmirror[0]) {
		warnx_("the daemon offers no dmirror device");
		return -ENODEV;
	}
	if (!b->dmirror2[0])
		strcpy(b->dmirror2, b->dmirror);
	return 0;
}

struct run {
	struct config cfg;
	struct fserver fs;
	struct result classes[NCLASSES];
	struct result floors[NFLOORS];
	uint32_t floors_wanted; /* bit per enum floor_id */
	unsigned measured, nclasses; /* classes begun, selected: the meter's */
	int failed;
};

/* @n more samples of floor @id; of its parts if it is a derived one. */
static int floor_chunk(struct run *run, int id, uint64_t n)
{
	const struct floor_def *d = &floor_defs[id];
	struct result *r = &run->floors[id];
	int err;

	if (d->of[0] != F_NONE) {
		err = floor_chunk(run, d->of[0], n);
		if (!err && d->of[1] != F_NONE)
			err = floor_chunk(run, d->of[1], n);
		return err;
	}
	/*
	 * Failed before (the run stops), or has no figure on this machine
	 * (floor_run() said why, and its class still runs).
	 */
	if (r->skipped[0])
		return run->failed ? -EIO : 0;
	err = floor_run(&run->fs, &run->cfg, id, r, n);
	if (err) {
		result_skip(r, "failed: %s", strerror(-err));
		warnx_("floor %s: %s", d->name, strerror(-err));
		run->failed = 1;
	}
	return err;
}

/*
 * A class and its floor, in --rounds alternating blocks (floor, class,
 * floor, class...): whatever else the machine does meanwhile weighs on
 * both alike, so their ratio holds on a noisy machine. The stream takes
 * one round: its samples are whole repetitions.
 */
static void class_measure(struct run *run, struct bench *b, int id)
{
	const struct class_def *d = &class_defs[id];
	struct result *r = &run->classes[id];
	uint64_t pages = run->cfg.pages;
	int stream = id == C_DEVICE_STREAM || id == C_DEVICE_STREAM_ZC;
	uint64_t rounds = stream ? 1 : run->cfg.rounds;

	if (rounds > pages)
		rounds = pages;
	progress("class %s, floor %s", d->name,
		 d->floor == F_NONE ? "none" : floor_defs[d->floor].name);
	if (stream)
		meter_begin(d->name, ++run->measured, run->nclasses, &r->s,
			    run->cfg.stream_reps, "repetitions");
	else
		meter_begin(d->name, ++run->measured, run->nclasses, &r->s,
			    pages, "samples");
	for (uint64_t k = 0; k < rounds && !run->failed && !r->skipped[0]; k++) {
		uint64_t n = pages / rounds + (k < pages % rounds);
		int err;

		if (d->floor != F_NONE) {
			meter_floor(floor_defs[d->floor].name);
			err = floor_chunk(run, d->floor, n);
			meter_floor(NULL);
			if (err)
				break;
		}
		err = class_run(b, id, r, n);
		if (err) {
			result_skip(r, "failed: %s", strerror(-err));
			warnx_("class %s: %s", d->name, strerror(-err));
			run->failed = 1;
		}
	}
	meter_end();
}

/* Floors no class measured (enough of), then the derived ones. */
static void floors_complete(struct run *run)
{
	for (int i = 0; i < NFLOORS && !run->failed; i++) {
		struct result *r = &run->floors[i];

		if (!(run->floors_wanted & (1u << i)) ||
		    floor_defs[i].of[0] != F_NONE || r->skipped[0])
			continue;
		if (i == F_PVM_READ_BULK ? r->s.n == 0 : r->s.n < run->cfg.pages) {
			progress("floor %s", floor_defs[i].name);
			floor_chunk(run, i, run->cfg.pages - r->s.n);
		}
	}
	for (int i = 0; i < NFLOORS; i++) {
		const struct floor_def *d = &floor_defs[i];
		struct result *r = &run->floors[i];
		struct result *p0, *p1;
		struct samples sum;

		if (d->of[0] == F_NONE || r->skipped[0])
			continue;
		p0 = &run->floors[d->of[0]];
		p1 = d->of[1] != F_NONE ? &run->floors[d->of[1]] : NULL;
		if (!p0->s.n || p0->skipped[0] || (p1 && (!p1->s.n || p1->skipped[0])))
			continue;
		if (samples_quantile_sum(&p0->s, d->factor[0], p1 ? &p1->s : NULL,
					 d->factor[1], &sum) < 0) {
			result_skip(r, "failed: %s", strerror(ENOMEM));
			continue;
		}
		samples_free(&r->s);
		r->s = sum;
	}
}

static void compute_ratios(struct run *run)
{
	for (int i = 0; i < NCLASSES; i++) {
		const struct class_def *d = &class_defs[i];
		struct result *r = &run->classes[i];
		struct result *fl = d->floor == F_NONE ? NULL :
							 &run->floors[d->floor];

		r->ratio = NAN;
		if (!fl || r->skipped[0] || fl->skipped[0] || !r->sum.count ||
		    !fl->sum.count)
			continue;
		if (d->kind == RATIO_BANDWIDTH)
			r->ratio = fl->gbps > 0 ? r->gbps / fl->gbps : NAN;
		else
			r->ratio = fl->sum.p50 ?
					   (double)r->sum.p50 / (double)fl->sum.p50 :
					   NAN;
	}
}

/* The daemon to start, checked before anything runs. 0 or -1 (said why). */
static int find_hmmud(struct config *cfg)
{
	const char *looked;

	if (cfg->hmmud) {
		if (access(cfg->hmmud, X_OK) == 0)
			return 0;
		warnx_("--hmmud %s: %s", cfg->hmmud, strerror(errno));
		return -1;
	}
	cfg->hmmud = default_hmmud(&looked);
	if (cfg->hmmud)
		return 0;
	warnx_("no hmmud at %s: give the daemon to start with --hmmud PATH, "
	       "or a running one's socket with --socket PATH", looked);
	return -1;
}

/* Fails (exit 77) where no userfaultfd with what hmmu needs can be had. */
static void require_userfaultfd(void)
{
	int fd = open_userfaultfd(UFFD_FEATURE_PAGEFAULT_FLAG_WP |
				  UFFD_FEATURE_EVENT_UNMAP |
				  UFFD_FEATURE_EVENT_REMOVE |
				  UFFD_FEATURE_EVENT_REMAP);

	if (fd >= 0) {
		close(fd);
		return;
	}
	warnx_("cannot create a userfaultfd with write-protect faults and "
	       "unmap events (%s): hmmu and these floors need one (root, "
	       "access to /dev/userfaultfd, or vm.unprivileged_userfaultfd=1)",
	       strerror(-fd));
	exit(EXIT_SKIP);
}

/*
 * The classes and their floors: the floor server first, then the daemon,
 * the classes, the floors left, the stream last; every result finished.
 * -1 if the floor server or the daemon did not start (nothing to report),
 * else 0 (run->failed says whether all went well).
 */
static int run_classes(struct run *run, struct bench *b, char *desc,
		       size_t len)
{
	struct private_daemon pd = { 0 };
	const struct config *cfg = &run->cfg;
	int err;

	/* First, before any daemon or connection: see floors.h. */
	err = fserver_start(&run->fs, cfg->pages + warmup_of(cfg->pages) +
					      cfg->stream_reps + 16);
	if (err) {
		warnx_("floor server: %s", strerror(-err));
		return -1;
	}
	if (cfg->socket) {
		snprintf(desc, len, "hmmud at %s", cfg->socket);
	} else {
		progress("starting %s", cfg->hmmud);
		err = daemon_start(&pd, cfg->hmmud, cfg->workers);
		if (err) {
			fserver_stop(&run->fs);
			return -1;
		}
		if (cfg->workers)
			snprintf(desc, len, "private hmmud, %u workers",
				 cfg->workers);
		else
			snprintf(desc, len, "private hmmud, default workers");
	}
	err = hmmu_connect(cfg->socket ? cfg->socket : pd.socket, &b->h);
	if (err) {
		warnx_("connect: %s %s", strerror(-err), hmmu_error_detail());
		run->failed = 1;
	} else if (pick_devices(b) < 0) {
		run->failed = 1;
	}

	/*
	 * The stream and its floor go last: allocating and freeing hundreds
	 * of MiB disturbs the latencies measured after it for a while (on a
	 * VM, free page reporting hands the memory back to the host).
	 */
	for (int i = 0; i < NCLASSES; i++)
		run->nclasses += (cfg->classes >> i) & 1;
	for (int i = 0; i < NCLASSES && !run->failed; i++)
		if (i != C_DEVICE_STREAM && i != C_DEVICE_STREAM_ZC &&
		    (cfg->classes & (1u << i)))
			class_measure(run, b, i);
	run->floors_wanted &= ~(1u << F_PVM_READ_BULK);
	floors_complete(run);
	if (!run->failed && (cfg->classes & (1u << C_DEVICE_STREAM)))
		class_measure(run, b, C_DEVICE_STREAM);
	if (!run->failed && (cfg->classes & (1u << C_DEVICE_STREAM_ZC)))
		class_measure(run, b, C_DEVICE_STREAM_ZC);

	for (int i = 0; i < NFLOORS; i++) {
		struct result *r = &run->floors[i];

		if (r->s.n && !r->skipped[0])
			result_finish(r, floor_defs[i].kind);
		else if (!r->skipped[0])
			result_skip(r, run->failed ? "not measured: the run failed" :
					 "not needed by the selected classes");
	}
	for (int i = 0; i < NCLASSES; i++) {
		struct result *r = &run->classes[i];

		if (r->s.n && !r->skipped[0])
			result_finish(r, class_defs[i].kind);
		else if (!r->skipped[0])
			result_skip(r, "not measured: the run failed");
	}

	hmmu_disconnect(b->h);
	b->h = NULL;
	if (!cfg->socket && daemon_stop(&pd) < 0)
		run->failed = 1;
	fserver_stop(&run->fs);
	compute_ratios(run);
	return 0;
}

/*
 * --ops: the operations alone, one line each on stdout ("request 1000").
 * No floor server is forked: its process would be counted as the bench's.
 */
static int run_ops(const struct config *cfg, struct bench *b)
{
	int err = hmmu_connect(cfg->socket, &b->h);

	if (err) {
		warnx_("connect: %s %s", strerror(-err), hmmu_error_detail());
		return 1;
	}
	err = pick_devices(b);
	for (int i = 0; i < NCLASSES && !err; i++) {
		if (!(cfg->classes & (1u << i)))
			continue;
		err = ops_run(b, i, cfg->ops);
		if (err)
			warnx_("--ops %s: %s", class_defs[i].name, strerror(-err));
		else
			printf("%s %" PRIu64 "\n", class_defs[i].name, cfg->ops);
	}
	hmmu_disconnect(b->h);
	return err ? 1 : 0;
}

int main(int argc, char **argv)
{
	static struct run run;
	static struct scaling sc;
	struct bench b = { 0 };
	struct report rp = { 0 };
	struct utsname u;
	char daemon_desc[192] = "";
	FILE *out;

	if (parse_options(argc, argv, &run.cfg) < 0)
		return 2;
	progress_quiet = run.cfg.summary;
	meter_init();
	/* A JSON file of an earlier run must not pass for this one's. */
	if (run.cfg.json && strcmp(run.cfg.json, "-"))
		unlink(run.cfg.json);
	if (!run.cfg.socket && find_hmmud(&run.cfg) < 0)
		return 1;
	require_userfaultfd();
	b.cfg = &run.cfg;
	b.page = (size_t)sysconf(_SC_PAGESIZE);
	if (run.cfg.ops_given)
		return run_ops(&run.cfg, &b);

	for (int i = 0; i < NCLASSES; i++) {
		run.classes[i].name = class_defs[i].name;
		run.classes[i].ratio = NAN;
		if (samples_init(&run.classes[i].s, 0) < 0 ||
		    samples_init(&run.classes[i].aux, 0) < 0)
			return 1;
		if (!(run.cfg.classes & (1u << i)))
			result_skip(&run.classes[i], "not selected (--classes)");
		else if (class_defs[i].floor != F_NONE)
			run.floors_wanted |= 1u << class_defs[i].floor;
	}
	for (int i = 0; i < NFLOORS; i++) {
		run.floors[i].name = floor_defs[i].name;
		run.floors[i].ratio = NAN;
		if (samples_init(&run.floors[i].s, 0) < 0 ||
		    samples_init(&run.floors[i].aux, 0) < 0)
			return 1;
	}
	/* Without --classes every floor is measured, needed or not. */
	if (run.cfg.classes == (1u << NCLASSES) - 1)
		run.floors_wanted = (1u << NFLOORS) - 1;

	if (run.cfg.classes &&
	    run_classes(&run, &b, daemon_desc, sizeof(daemon_desc)) < 0)
		return 1;
	/* After the classes: no floor server, no daemon, no mirror left. */
	if (run.cfg.clients && scaling_run(&run.cfg, &sc) < 0)
		run.failed = 1;

	rp = (struct report){ .cfg = &run.cfg,
			      .daemon = run.cfg.classes ? daemon_desc : sc.daemon,
			      .page = b.page,
			      .cpus = sysconf(_SC_NPROCESSORS_ONLN),
			      .classes = run.cfg.classes ? run.classes : NULL,
			      .floors = run.cfg.classes ? run.floors : NULL,
			      .scaling = run.cfg.clients ? &sc : NULL };
	if (uname(&u) == 0)
		snprintf(rp.kernel, sizeof(rp.kernel), "%s", u.release);
	/* With --json -, standard output is the JSON's alone. */
	out = run.cfg.json && !strcmp(run.cfg.json, "-") ? stderr : stdout;
	if (rp.classes && run.cfg.summary)
		report_summary(out, &rp);
	else if (rp.classes)
		report_table(out, &rp);
	if (rp.scaling)
		report_scaling(out, &rp);
	fflush(out);
	if (run.cfg.json && report_json(run.cfg.json, &rp) < 0)
		run.failed = 1;
	if (run.cfg.plot && report_plot(run.cfg.plot, &rp) < 0)
		run.failed = 1;
	for (int i = 0; i < NCLASSES; i++) {
		samples_free(&run.classes[i].s);
		samples_free(&run.classes[i].aux);
	}
	for (int i = 0; i < NFLOORS; i++) {
		samples_free(&run.floors[i].s);
		samples_free(&run.floors[i].aux);
	}
	return run.failed ? 1 : 0;
}
