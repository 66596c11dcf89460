/* SPDX-License-Identifier: MIT */
/*
 * hmmu-stress: many clients at once against one hmmud, so that a
 * ThreadSanitizer build of the daemon (tests/ci/tsan.sh) sees its locks
 * and lifecycles from every side at the same time.
 *
 * N processes (--procs), each with T threads (--threads), run until
 * --seconds have passed. Every thread owns its buffers (malloc'd or
 * mmap'd) and a copy of what they must hold, and loops over random
 * operations on them through a mirror on dmirror0 or dmirror1 and one on
 * acc0: device reads and writes, CPU writes, migration to device memory
 * and back, exclusive access, accelerator jobs, madvise and munmap under the
 * device, fork, snapshots, and mirrors torn down and made anew. Half the
 * threads share their process's connection, half have their own. Every
 * byte a device or the CPU reads is checked against the copy. Meanwhile
 * the parent SIGKILLs a random process now and then and starts another.
 * At the end, the daemon must hold nothing of any of them.
 *
 * Exit status: 0 if everything checked out; 1 on a wrong byte, an
 * unexpected error, a process that did not finish in time, or state left
 * in the daemon; 2 on bad usage.
 *
 * usage: hmmu-stress [--socket PATH] [--procs N] [--threads N]
 *                    [--seconds S] [--seed N] [--kill-ms MS]
 */
#include <hmmu/hmmu.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS 64
#define MAX_THREADS 16
#define MAX_PAGES 32
/*
 * Pages kept unused after each buffer. An accelerator fault brings in a
 * window of 16 pages from the faulting one on (acc0's default prefetch),
 * and a device fault on a page migrated to another device brings it back
 * to the CPU: a neighbour's window reaching into a buffer would make that
 * buffer's migration counts short, rightly but unpredictably.
 */
#define SLACK_PAGES 15
/* A process still running this long after the deadline is stuck. */
#define GRACE_SECONDS 120

/* dmirrors run device commands, the accelerator runs jobs: neither both. */
static const char *const dmirrors[] = { "dmirror0", "dmirror1" };
#define ACCEL "acc0"

enum op {
	OP_READ,
	OP_CPU_WRITE,
	OP_DEV_WRITE,
	OP_MIGRATE,
	OP_EXCLUSIVE,
	OP_JOB,
	OP_DONTNEED,
	OP_NEW_BUFFER,
	OP_NEW_MIRROR,
	OP_SNAPSHOT,
	OP_STATS,
	OP_FORK,
	OP_MAX_
};

static const char *const op_names[OP_MAX_] = {
	"device-read", "cpu-write", "device-write", "migrate", "exclusive",
	"job", "madv-dontneed", "new-buffer", "new-mirror", "snapshot",
	"stats", "fork",
};

/* Out of 1000: the common operations first, fork rarely (it is slow). */
static const unsigned op_weight[OP_MAX_] = {
	[OP_READ] = 200,     [OP_CPU_WRITE] = 150, [OP_DEV_WRITE] = 130,
	[OP_MIGRATE] = 130,  [OP_EXCLUSIVE] = 50,  [OP_JOB] = 90,
	[OP_DONTNEED] = 50,  [OP_NEW_BUFFER] = 60, [OP_NEW_MIRROR] = 80,
	[OP_SNAPSHOT] = 30,  [OP_STATS] = 20,	   [OP_FORK] = 10,
};

/* Shared by every process (MAP_SHARED), for the summary. */
struct tally {
	atomic_ulong ops[OP_MAX_];
	atomic_ulong bytes_checked;
};

static struct tally *tally;
static const char *socket_path;
static struct timespec deadline;
static long page;

struct buffer {
	unsigned char *mem;  /* what the devices see, then SLACK_PAGES */
	unsigned char *want; /* what it must hold */
	size_t npages;	     /* in use */
	int mapped;	     /* mmap'd, else posix_memalign'd */
};

struct worker {
	int proc, index;
	unsigned seed;
	struct hmmu *conn;	 /* the process's, or this thread's own */
	struct hmmu_mirror *m;	 /* on a dmirror, always registered */
	const char *device;	 /* m's */
	struct hmmu_mirror *acc; /* on the accelerator, or NULL */
	struct buffer b;
	unsigned char *scratch; /* device reads land here, writes come from here */
	enum op op;		/* the one running, for messages */
};

static int past(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > t->tv_sec ||
	       (now.tv_sec == t->tv_sec && now.tv_nsec >= t->tv_nsec);
}

/* A wrong result ends the whole process at once: it is the finding. */
static void __attribute__((noreturn, format(printf, 2, 3)))
fail(const struct worker *w, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	fprintf(stderr, "hmmu-stress: process %d (pid %d) thread %d, %s on %s%s: %s\n",
		w->proc, getpid(), w->index, op_names[w->op],
		w->op == OP_JOB ? ACCEL " and " : "", w->device ? w->device : "-",
		what);
	_exit(1);
}

static void expect_ok(const struct worker *w, const char *call, int err)
{
	if (err)
		fail(w, "%s: %s %s", call, strerror(-err), hmmu_error_detail());
}

/*
 * A count short of what a serial run gives, with the page states the
 * device sees (hmmu_page_state, one per page), so that the lost pages show.
 */
static void expect_cpages(const struct worker *w, const char *call,
			  const struct hmmu_cmd *c, uint64_t want)
{
	struct hmmu_cmd s = { .addr = c->addr, .npages = c->npages };
	uint8_t st[MAX_PAGES];
	char states[3 * MAX_PAGES + 1] = "";

	if (c->cpages == want)
		return;
	if (c->npages <= MAX_PAGES && !hmmu_snapshot(w->m, &s, st))
		for (uint64_t i = 0; i < c->npages; i++)
			snprintf(states + 3 * i, 4, " %02x", st[i]);
	fail(w, "%s: cpages %" PRIu64 ", expected %" PRIu64 "; states now%s",
	     call, c->cpages, want, states);
}

static void check_bytes(const struct worker *w, const char *what,
			const unsigned char *got, const unsigned char *want,
			size_t len)
{
	if (memcmp(got, want, len)) {
		size_t i = 0;

		while (got[i] == want[i])
			i++;
		fail(w, "%s: byte %zu (page %zu + %zu) is %#x, expected %#x",
		     what, i, i / (size_t)page, i % (size_t)page, got[i],
		     want[i]);
	}
	atomic_fetch_add(&tally->bytes_checked, len);
}

static size_t len_of(const struct buffer *b)
{
	return b->npages * (size_t)page;
}

static struct hmmu_cmd cmd_of(const struct buffer *b, size_t first,
			      size_t npages)
{
	return (struct hmmu_cmd){ .addr = (uintptr_t)b->mem + first * (size_t)page,
				  .npages = npages };
}

static void fill_random(struct worker *w, unsigned char *p, size_t len)
{
	unsigned v = rand_r(&w->seed);

	/* Cheap, but different at every byte and every call. */
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(v + i * 131 + (i >> 12) * 7);
}

/* The CPU reads every byte: pages on a device come back on the way. */
static void check_cpu(struct worker *w, const char *what)
{
	check_bytes(w, what, w->b.mem, w->b.want, len_of(&w->b));
}

static void check_device(struct worker *w, const char *what)
{
	struct hmmu_cmd c = cmd_of(&w->b, 0, w->b.npages);

	expect_ok(w, "hmmu_device_read", hmmu_device_read(w->m, &c, w->scratch));
	expect_cpages(w, "hmmu_device_read", &c, w->b.npages);
	check_bytes(w, what, w->scratch, w->b.want, len_of(&w->b));
}

/* ---- buffers and mirrors -------------------------------------------------- */

static void buffer_free(struct buffer *b)
{
	if (!b->mem)
		return;
	/* Registered with the daemon's userfaultfd: an UNMAP event, or none. */
	if (b->mapped)
		munmap(b->mem, len_of(b) + SLACK_PAGES * (size_t)page);
	else
		free(b->mem);
	free(b->want);
	b->mem = NULL;
}

static void buffer_new(struct worker *w)
{
	struct buffer *b = &w->b;
	size_t len;

	buffer_free(b);
	b->npages = 1 + (size_t)rand_r(&w->seed) % MAX_PAGES;
	b->mapped = rand_r(&w->seed) % 2;
	len = len_of(b);
	if (b->mapped) {
		b->mem = mmap(NULL, len + SLACK_PAGES * (size_t)page,
			      PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (b->mem == MAP_FAILED)
			b->mem = NULL;
	} else if (posix_memalign((void **)&b->mem, (size_t)page,
				  len + SLACK_PAGES * (size_t)page)) {
		b->mem = NULL;
	}
	/*
	 * Page aligned too, so that no page of it is ever part of a range
	 * another thread migrates (and so discards).
	 */
	if (posix_memalign((void **)&b->want, (size_t)page, len))
		b->want = NULL;
	if (!b->mem || !b->want)
		fail(w, "out of memory for %zu pages", b->npages);
	fill_random(w, b->want, len);
	memcpy(b->mem, b->want, len);
}

static struct hmmu_mirror *mirror_new(struct worker *w, const char *device)
{
	struct hmmu_mirror *m;

	expect_ok(w, "hmmu_mirror_create",
		  hmmu_mirror_create(w->conn, device, &m));
	expect_ok(w, "hmmu_mirror_register", hmmu_mirror_register(m));
	return m;
}

static void dmirror_new(struct worker *w)
{
	hmmu_mirror_destroy(w->m);
	w->device = dmirrors[(size_t)rand_r(&w->seed) % 2];
	w->m = mirror_new(w, w->device);
}

static void op_new_mirror(struct worker *w)
{
	switch (rand_r(&w->seed) % 4) {
	case 0: /* the same mirror again: rule 1 on the way */
		if (hmmu_mirror_register(w->m) != -EBUSY)
			fail(w, "a second registration is not EBUSY");
		expect_ok(w, "hmmu_mirror_unregister",
			  hmmu_mirror_unregister(w->m));
		expect_ok(w, "hmmu_mirror_register", hmmu_mirror_register(w->m));
		break;
	case 1: /* the accelerator's mirror goes, or comes */
		if (w->acc) {
			hmmu_mirror_destroy(w->acc);
			w->acc = NULL;
		} else {
			w->acc = mirror_new(w, ACCEL);
		}
		break;
	default:
		dmirror_new(w);
		break;
	}
	check_device(w, "device read through a new mirror");
}

/* ---- the operations ------------------------------------------------------- */

static void op_cpu_write(struct worker *w)
{
	size_t len = len_of(&w->b);
	int n = 1 + rand_r(&w->seed) % 16;

	/* A few bytes here and there, sometimes a whole page. */
	for (int i = 0; i < n; i++) {
		size_t at = (size_t)rand_r(&w->seed) % len;

		w->b.want[at] = (unsigned char)rand_r(&w->seed);
		w->b.mem[at] = w->b.want[at];
	}
	if (rand_r(&w->seed) % 4 == 0) {
		size_t pg = (size_t)rand_r(&w->seed) % w->b.npages;

		fill_random(w, w->b.want + pg * (size_t)page, (size_t)page);
		memcpy(w->b.mem + pg * (size_t)page,
		       w->b.want + pg * (size_t)page, (size_t)page);
	}
	check_device(w, "device read after CPU writes");
}

static void op_dev_write(struct worker *w)
{
	size_t first = (size_t)rand_r(&w->seed) % w->b.npages;
	size_t n = 1 + (size_t)rand_r(&w->seed) % (w->b.npages - first);
	struct hmmu_cmd c = cmd_of(&w->b, first, n);
	size_t off = first * (size_t)page, len = n * (size_t)page;

	fill_random(w, w->scratch, len);
	expect_ok(w, "hmmu_device_write",
		  hmmu_device_write(w->m, &c, w->scratch));
	expect_cpages(w, "hmmu_device_write", &c, n);
	memcpy(w->b.want + off, w->scratch, len);
	check_cpu(w, "CPU read after a device write");
	if (rand_r(&w->seed) % 2)
		check_device(w, "device read after a device write");
}

/*
 * Every operation leaves the buffer with the CPU (the last check reads it
 * all), so a migration of the whole buffer moves every page.
 */
static void op_migrate(struct worker *w)
{
	struct hmmu_cmd c = cmd_of(&w->b, 0, w->b.npages);

	expect_ok(w, "hmmu_migrate_to_device", hmmu_migrate_to_device(w->m, &c));
	expect_cpages(w, "hmmu_migrate_to_device", &c, w->b.npages);
	switch (rand_r(&w->seed) % 3) {
	case 0: /* the device reads its own memory */
		check_device(w, "device read of migrated pages");
		break;
	case 1:
		c = cmd_of(&w->b, 0, w->b.npages);
		expect_ok(w, "hmmu_migrate_to_system",
			  hmmu_migrate_to_system(w->m, &c));
		expect_cpages(w, "hmmu_migrate_to_system", &c, w->b.npages);
		break;
	default: /* CPU faults bring them back, below */
		break;
	}
	check_cpu(w, "CPU read after migration");
}

static void op_exclusive(struct worker *w)
{
	struct hmmu_cmd c = cmd_of(&w->b, 0, w->b.npages);

	expect_ok(w, "hmmu_make_exclusive", hmmu_make_exclusive(w->m, &c));
	expect_cpages(w, "hmmu_make_exclusive", &c, w->b.npages);
	c = cmd_of(&w->b, 0, w->b.npages);
	expect_ok(w, "hmmu_check_exclusive", hmmu_check_exclusive(w->m, &c));
	check_cpu(w, "CPU read of exclusive pages");
	c = cmd_of(&w->b, 0, w->b.npages);
	if (hmmu_check_exclusive(w->m, &c) != -EPERM)
		fail(w, "pages still exclusive after the CPU read them all");
}

static void job_fill(struct worker *w, struct hmmu_job *j)
{
	size_t len = len_of(&w->b) / 8;
	size_t first = (size_t)rand_r(&w->seed) % len;
	size_t n = 1 + (size_t)rand_r(&w->seed) % (len - first);
	uint64_t value = (uint64_t)rand_r(&w->seed) << 32 | (unsigned)rand_r(&w->seed);

	*j = (struct hmmu_job){ .kind = HMMU_JOB_FILL,
				.dst = (uintptr_t)w->b.mem + first * 8,
				.len = n * 8, .value = value };
	expect_ok(w, "fill job", hmmu_job_run(w->acc, j));
	for (size_t i = 0; i < n; i++)
		memcpy(w->b.want + (first + i) * 8, &value, 8);
}

static void job_copy(struct worker *w, struct hmmu_job *j)
{
	size_t half = len_of(&w->b) / 2;
	size_t n = 1 + (size_t)rand_r(&w->seed) % half;
	size_t src = (size_t)rand_r(&w->seed) % (half - n + 1);
	size_t dst = half + (size_t)rand_r(&w->seed) % (half - n + 1);

	if (rand_r(&w->seed) % 2) { /* either way round */
		size_t t = src;

		src = dst;
		dst = t;
	}
	*j = (struct hmmu_job){ .kind = HMMU_JOB_COPY,
				.src = (uintptr_t)w->b.mem + src,
				.dst = (uintptr_t)w->b.mem + dst, .len = n };
	expect_ok(w, "copy job", hmmu_job_run(w->acc, j));
	memcpy(w->b.want + dst, w->b.want + src, n);
}

static void job_sum(struct worker *w, struct hmmu_job *j)
{
	size_t len = len_of(&w->b) / 8;
	size_t first = (size_t)rand_r(&w->seed) % len;
	size_t n = 1 + (size_t)rand_r(&w->seed) % (len - first);
	uint64_t sum = 0, v;

	for (size_t i = 0; i < n; i++) {
		memcpy(&v, w->b.want + (first + i) * 8, 8);
		sum += v;
	}
	*j = (struct hmmu_job){ .kind = HMMU_JOB_SUM64,
				.src = (uintptr_t)w->b.mem + first * 8,
				.len = n };
	expect_ok(w, "sum64 job", hmmu_job_run(w->acc, j));
	if (j->result != sum)
		fail(w, "sum64 of %zu words: %#" PRIx64 ", expected %#" PRIx64,
		     n, j->result, sum);
}

static void op_job(struct worker *w)
{
	struct hmmu_job j = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)w->b.mem,
			      .len = 1 };
	struct hmmu_cmd c = cmd_of(&w->b, 0, 1);
	int err;

	if (!w->acc)
		w->acc = mirror_new(w, ACCEL);
	switch (rand_r(&w->seed) % 8) {
	case 0: /* each device refuses what it does not do */
		err = hmmu_job_run(w->m, &j);
		if (err != -EOPNOTSUPP)
			fail(w, "a job on a dmirror: %s, expected EOPNOTSUPP",
			     strerror(-err));
		err = hmmu_device_read(w->acc, &c, w->scratch);
		if (err != -EOPNOTSUPP)
			fail(w, "a device read on the accelerator: %s, "
			     "expected EOPNOTSUPP", strerror(-err));
		return;
	case 1:
	case 2:
		job_fill(w, &j);
		break;
	case 3:
	case 4:
		job_copy(w, &j);
		break;
	default:
		job_sum(w, &j);
		break;
	}
	check_cpu(w, "CPU read after a job");
}

static void op_dontneed(struct worker *w)
{
	size_t first, n;

	if (!w->b.mapped) { /* malloc's memory is not ours to discard */
		check_device(w, "device read");
		return;
	}
	first = (size_t)rand_r(&w->seed) % w->b.npages;
	n = 1 + (size_t)rand_r(&w->seed) % (w->b.npages - first);
	if (madvise(w->b.mem + first * (size_t)page, n * (size_t)page,
		    MADV_DONTNEED))
		fail(w, "madvise: %s", strerror(errno));
	memset(w->b.want + first * (size_t)page, 0, n * (size_t)page);
	check_device(w, "device read after MADV_DONTNEED");
	check_cpu(w, "CPU read after MADV_DONTNEED");
}

static void op_snapshot(struct worker *w)
{
	struct hmmu_cmd c = cmd_of(&w->b, 0, w->b.npages);
	uint8_t states[MAX_PAGES];

	expect_ok(w, "hmmu_snapshot", hmmu_snapshot(w->m, &c, states));
	expect_cpages(w, "hmmu_snapshot", &c, w->b.npages);
	for (size_t i = 0; i < w->b.npages; i++)
		if (states[i] == HMMU_PAGE_ERROR)
			fail(w, "page %zu of a mapped buffer: state ERROR", i);
}

static void op_stats(struct worker *w)
{
	struct hmmu_mirror_info mi[8];
	struct hmmu_stats st;
	int n;

	n = hmmu_stats(w->conn, &st, sizeof(st));
	expect_ok(w, "hmmu_stats", n < 0 ? n : 0);
	if (!st.my_state || !st.my_mirrors)
		fail(w, "stats: my_state %u, my_mirrors %u with a mirror registered",
		     st.my_state, st.my_mirrors);
	n = hmmu_list_mirrors(w->conn, mi, 8);
	if (n < 1)
		fail(w, "hmmu_list_mirrors: %d with a mirror registered", n);
}

/*
 * The child sees its copy of the buffer, pages on the device included
 * (the daemon copies them in through the child's userfaultfd). It may not
 * malloc or take stdio's locks: other threads may hold them.
 */
static void op_fork(struct worker *w)
{
	struct hmmu_cmd c = cmd_of(&w->b, 0, w->b.npages);
	int status;
	pid_t pid;

	if (rand_r(&w->seed) % 2) {
		expect_ok(w, "hmmu_migrate_to_device",
			  hmmu_migrate_to_device(w->m, &c));
		expect_cpages(w, "hmmu_migrate_to_device", &c, w->b.npages);
	}
	pid = fork();
	if (pid < 0)
		fail(w, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(memcmp(w->b.mem, w->b.want, len_of(&w->b)) ? 3 : 0);
	if (waitpid(pid, &status, 0) != pid)
		fail(w, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail(w, "the forked child saw other data (status %#x)", status);
	check_cpu(w, "CPU read after fork");
}

static void run_op(struct worker *w)
{
	unsigned r = (unsigned)rand_r(&w->seed) % 1000;
	enum op op = 0;

	while (r >= op_weight[op]) {
		r -= op_weight[op];
		op++;
	}
	w->op = op;
	switch (op) {
	case OP_READ:
		check_device(w, "device read");
		break;
	case OP_CPU_WRITE:
		op_cpu_write(w);
		break;
	case OP_DEV_WRITE:
		op_dev_write(w);
		break;
	case OP_MIGRATE:
		op_migrate(w);
		break;
	case OP_EXCLUSIVE:
		op_exclusive(w);
		break;
	case OP_JOB:
		op_job(w);
		break;
	case OP_DONTNEED:
		op_dontneed(w);
		break;
	case OP_NEW_BUFFER:
		buffer_new(w);
		check_device(w, "device read of a new buffer");
		break;
	case OP_NEW_MIRROR:
		op_new_mirror(w);
		break;
	case OP_SNAPSHOT:
		op_snapshot(w);
		break;
	case OP_STATS:
		op_stats(w);
		break;
	case OP_FORK:
		op_fork(w);
		break;
	case OP_MAX_:
		break;
	}
	atomic_fetch_add(&tally->ops[op], 1);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	w->scratch = malloc(MAX_PAGES * (size_t)page);
	if (!w->scratch)
		fail(w, "out of memory");
	buffer_new(w);
	dmirror_new(w);
	while (!past(&deadline))
		run_op(w);
	/* Half tear down by hand, half leave it to disconnect and exit. */
	if (w->index % 2) {
		hmmu_mirror_destroy(w->m);
		hmmu_mirror_destroy(w->acc);
	}
	buffer_free(&w->b);
	free(w->scratch);
	return NULL;
}

static int client_main(int proc, unsigned threads, unsigned seed)
{
	struct worker w[MAX_THREADS];
	pthread_t t[MAX_THREADS];
	struct hmmu *shared;
	int err;

	err = hmmu_connect(socket_path, &shared);
	if (err) {
		fprintf(stderr, "hmmu-stress: process %d: connect: %s\n", proc,
			strerror(-err));
		return 1;
	}
	for (unsigned i = 0; i < threads; i++) {
		w[i] = (struct worker){ .proc = proc, .index = (int)i,
					.seed = seed * 7919u + i, .conn = shared };
		if (i % 2) {
			err = hmmu_connect(socket_path, &w[i].conn);
			if (err) {
				fprintf(stderr, "hmmu-stress: process %d: "
					"connect: %s\n", proc, strerror(-err));
				return 1;
			}
		}
	}
	for (unsigned i = 0; i < threads; i++) {
		err = pthread_create(&t[i], NULL, worker_main, &w[i]);
		if (err) {
			fprintf(stderr, "hmmu-stress: pthread_create: %s\n",
				strerror(err));
			return 1;
		}
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	for (unsigned i = 0; i < threads; i++)
		if (w[i].conn != shared)
			hmmu_disconnect(w[i].conn);
	hmmu_disconnect(shared);
	return 0;
}

/* ---- the parent ----------------------------------------------------------- */

struct child {
	pid_t pid;
	int killed; /* by us: its end is expected */
};

static pid_t spawn(int proc, unsigned threads, unsigned seed)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(client_main(proc, threads, seed));
	if (pid < 0)
		perror("hmmu-stress: fork");
	return pid;
}

/* 0 if the child ended as expected. */
static int reaped(int proc, const struct child *c, int status)
{
	if (c->killed && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	fprintf(stderr, "hmmu-stress: process %d (pid %d) failed: status %#x\n",
		proc, c->pid, status);
	return 1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, ms % 1000 * 1000000 };

	nanosleep(&ts, NULL);
}

/* The daemon must come to hold nothing of any client. */
static int daemon_is_clean(void)
{
	struct hmmu_stats st = { 0 };
	struct hmmu *h;
	int err;

	err = hmmu_connect(socket_path, &h);
	if (err) {
		fprintf(stderr, "hmmu-stress: connect at the end: %s\n",
			strerror(-err));
		return 0;
	}
	/* Teardown of killed clients is asynchronous; and slow under TSan. */
	for (int i = 0; i < 3000; i++) {
		err = hmmu_stats(h, &st, sizeof(st));
		if (err < 0 || (st.processes == 0 && st.mirrors == 0 &&
			    st.sessions == 1 && st.device_pages == 0 &&
			    st.device_mem_pages == 0))
			break;
		sleep_ms(10);
	}
	hmmu_disconnect(h);
	/* hmmu_stats() returns the bytes it filled. */
	if (err < 0) {
		fprintf(stderr, "hmmu-stress: stats: %s\n", strerror(-err));
		return 0;
	}
	if (st.processes || st.mirrors || st.sessions != 1 ||
	    st.device_pages || st.device_mem_pages) {
		fprintf(stderr,
			"hmmu-stress: the daemon still holds processes %" PRIu64
			", mirrors %" PRIu64 ", sessions %" PRIu64
			" (1 is ours), device pages %" PRIu64
			", device memory pages %" PRIu64 "\n",
			st.processes, st.mirrors, st.sessions, st.device_pages,
			st.device_mem_pages);
		return 0;
	}
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: hmmu-stress [--socket PATH] [--procs N] [--threads N]\n"
		   "                   [--seconds S] [--seed N] [--kill-ms MS]\n"
		   "  --kill-ms MS  SIGKILL a random client about every MS ms "
		   "(0: never; default 1000)\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "procs", required_argument, NULL, 'p' },
		{ "threads", required_argument, NULL, 't' },
		{ "seconds", required_argument, NULL, 'S' },
		{ "seed", required_argument, NULL, 'r' },
		{ "kill-ms", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	unsigned procs = 4, threads = 4, seconds = 20, seed = (unsigned)time(NULL);
	long kill_ms = 1000;
	struct child kids[MAX_PROCS] = { 0 };
	struct timespec give_up, next_kill;
	unsigned long spawned = 0, killed = 0;
	int c, failed = 0, live = 0;

	while ((c = getopt_long(argc, argv, "s:p:t:S:r:k:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			socket_path = optarg;
			break;
		case 'p':
			procs = (unsigned)atoi(optarg);
			break;
		case 't':
			threads = (unsigned)atoi(optarg);
			break;
		case 'S':
			seconds = (unsigned)atoi(optarg);
			break;
		case 'r':
			seed = (unsigned)strtoul(optarg, NULL, 0);
			break;
		case 'k':
			kill_ms = atol(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || procs < 1 || procs > MAX_PROCS || threads < 1 ||
	    threads > MAX_THREADS || seconds < 1 || kill_ms < 0) {
		usage(stderr);
		return 2;
	}
	page = sysconf(_SC_PAGESIZE);
	tally = mmap(NULL, sizeof(*tally), PROT_READ | PROT_WRITE,
		     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (tally == MAP_FAILED) {
		perror("hmmu-stress: mmap");
		return 1;
	}
	printf("hmmu-stress: %u processes x %u threads for %u s, seed %u, "
	       "a SIGKILL every ~%ld ms\n", procs, threads, seconds, seed, kill_ms);
	fflush(stdout);
	srand(seed);

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	next_kill = give_up = deadline;
	deadline.tv_sec += seconds;
	give_up.tv_sec += seconds + GRACE_SECONDS;
	for (unsigned i = 0; i < procs; i++) {
		kids[i].pid = spawn((int)i, threads, seed + (unsigned)spawned++);
		if (kids[i].pid < 0)
			return 1;
		live++;
	}

	while (live) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);

		if (pid > 0) {
			for (unsigned i = 0; i < procs; i++) {
				if (kids[i].pid != pid)
					continue;
				failed |= reaped((int)i, &kids[i], status);
				kids[i] = (struct child){ 0 };
				live--;
				/* A killed client's place is taken while there is time. */
				if (!past(&deadline)) {
					kids[i].pid = spawn((int)i, threads,
							    seed + (unsigned)spawned++);
					if (kids[i].pid > 0)
						live++;
				}
			}
			continue;
		}
		if (past(&give_up)) {
			fprintf(stderr, "hmmu-stress: %d client(s) still running "
				"%d s after the end: stuck (see the daemon)\n",
				live, GRACE_SECONDS);
			for (unsigned i = 0; i < procs; i++)
				if (kids[i].pid > 0)
					kill(kids[i].pid, SIGKILL);
			while (wait(NULL) > 0)
				;
			return 1;
		}
		if (kill_ms && !past(&deadline) && past(&next_kill)) {
			unsigned i = (unsigned)rand() % procs;

			if (kids[i].pid > 0 && !kids[i].killed) {
				kill(kids[i].pid, SIGKILL);
				kids[i].killed = 1;
				killed++;
			}
			clock_gettime(CLOCK_MONOTONIC, &next_kill);
			next_kill.tv_nsec += (kill_ms / 2 + rand() % (kill_ms + 1)) * 1000000L;
			next_kill.tv_sec += next_kill.tv_nsec / 1000000000L;
			next_kill.tv_nsec %= 1000000000L;
		}
		sleep_ms(5);
	}

	if (!daemon_is_clean())
		failed = 1;
	printf("hmmu-stress: %lu client processes, %lu SIGKILLed, %lu bytes checked\n",
	       spawned, killed, atomic_load(&tally->bytes_checked));
	for (int i = 0; i < OP_MAX_; i++)
		printf("  %-14s %lu\n", op_names[i], atomic_load(&tally->ops[i]));
	printf("hmmu-stress: %s\n", failed ? "FAILED" : "ok");
	return failed;
}
