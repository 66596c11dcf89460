/* SPDX-License-Identifier: MIT */
/*
 * One sockfuzz client: a forked child that connects to hmmud (once or
 * several times at once), mostly says HELLO, and then does a random mix of
 *
 *  - valid requests of every op, with plausible and absurd fields, among
 *    them device commands and jobs on its own memory and the full
 *    registration round trip with a real userfaultfd;
 *  - valid messages mutated (bit flips, truncation, extension, wrong len,
 *    magic, flags, op or status), and random bytes;
 *  - fds of every kind in SCM_RIGHTS, on any op, alone or several;
 *  - messages from another process on the same connection, and with forged
 *    credentials;
 *  - changes to its mirrored memory (writes, discards, unmaps, moves,
 *    forks), some while another thread keeps writing to it;
 *
 * and dies at a random point. Every message it sends is judged first
 * (wire_judge(), plus what the client knows of its connection), and every
 * reply is checked against that judgement: well-formed, answering a
 * message that was sent, with the exact status where the protocol fixes
 * it. A mismatch is a protocol finding, reported through shared memory.
 *
 * Client memory lives in one reserved arena with PROT_NONE guard pages
 * between regions, and the "absurd" addresses are picked where nothing is
 * mapped. So a device write or a job with a wild range stops at a guard
 * page instead of scribbling over this process's own heap and stack, which
 * would make its judgements worthless.
 */
#include "sockfuzz.h"
#include "wire.h"
#include "common/uffd_open.h"
#include "common/kernel_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 3
#define MAX_PENDING 384
#define MAX_MIRRORS 96
#define MAX_FDS_SEND 6
#define MAX_KIDS 4
#define PEND_COPY 96

#define ARENA_SLOTS 16
#define SLOT_BYTES (64ul << 20) /* a region and its guard pages */
#define ARENA_BYTES (ARENA_SLOTS * SLOT_BYTES)
#define REGION_MAX_PAGES 256
#define BUF_PAGES 260 /* the command buffer: READ/WRITE of a whole region */

#define NO_REPLY (-100000) /* call(): nothing came */

/* ---- random numbers ------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void fuzz_rng_seed(struct fuzz_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t fuzz_rng_next(struct fuzz_rng *r)
{
	uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t fuzz_rng_below(struct fuzz_rng *r, uint64_t n)
{
	return n ? fuzz_rng_next(r) % n : 0;
}

int fuzz_rng_chance(struct fuzz_rng *r, unsigned num, unsigned den)
{
	return fuzz_rng_below(r, den) < num;
}

uint64_t fuzz_client_seed(uint64_t seed, uint64_t index)
{
	uint64_t x = seed ^ (index * 0xd1342543de82ef95ull);

	return splitmix64(&x);
}

/* ---- client state -------------------------------------------------------- */

/* What a sent message must get back. */
struct pending {
	uint64_t id;
	unsigned op;
	int status;
	int exact;
	int optional;	  /* sent by another process: may never have left */
	int check_count;  /* a DEVICE_COUNT: the count must be the daemon's */
	int check_create; /* a MIRROR_CREATE: a fresh id, of this device */
	int dev;
	/*
	 * A request on a mirror: -ENOENT if its id was never given out, which
	 * is only known when the reply comes (a MIRROR_CREATE sent after it
	 * may run before it), or if it was destroyed before it was sent.
	 */
	int on_mirror;
	uint64_t mirror;
	const char *kind;
	size_t len;
	int nfds, foreign, hello_done;
	unsigned char bytes[PEND_COPY];
};

struct mirror_ref {
	uint64_t id;
	int dev;	/* index into the daemon's devices */
	int registered; /* as far as we know */
	int gone;	/* destroyed, reply seen */
};

struct conn {
	int fd;
	int n; /* its number, for the trace */
	int hello_done;
	int closed;	 /* EOF or a failed send: no longer used */
	int hangup;	 /* we sent a HELLO of another version */
	uint64_t next_id;
	uint64_t creates; /* MIRROR_CREATEs that reached the handler */
	uint64_t floor;	  /* the largest RESERVE_IDS that reached it */
	uint8_t *ids_seen;
	size_t ids_cap;
	struct mirror_ref mirrors[MAX_MIRRORS];
	unsigned nmirrors;
	struct pending pend[MAX_PENDING];
	unsigned npend;
};

enum region_kind {
	R_ANON,	  /* private anonymous, read-write */
	R_LIST,	  /* private anonymous, a linked list for LIST_SUM */
	R_SHARED, /* shared anonymous (shmem) */
	R_RO,	  /* private anonymous, read-only */
	R_NONE,	  /* PROT_NONE */
	R_FILE,	  /* private mapping of a memfd */
	R_KINDS_
};

struct region {
	char *base;
	size_t pages;
	enum region_kind kind;
	int slot;
	int no_touch; /* a PREPARE was not finished: CPU writes may sleep */
	unsigned list_nodes;
};

static struct {
	const struct fuzz_client_args *a;
	struct fuzz_shared *sh;
	struct fuzz_rng rng;
	int trace_fd;
	long page;
	struct timespec start;

	struct conn conns[MAX_CONNS];
	unsigned nconns;
	int next_conn_n;

	char *arena;
	int slot_used[ARENA_SLOTS];
	struct region regions[8];
	unsigned nregions;
	char *buf; /* command buffer, in the arena too */

	uint64_t uffd_supported;
	int uffd_ok;
	int abandoned_prepare; /* replies may then legitimately stall */

	pid_t kids[MAX_KIDS];
	int kid_socks[MAX_KIDS];
	unsigned nkids;

	pthread_t toucher;
	atomic_int touching;
	int toucher_running;

	union wire_msg reply; /* the last reply call() waited for */
	size_t reply_len;

	/*
	 * FINISHes owed: a PREPARE sent among random requests succeeded.
	 * Until its FINISH, CPU writes to its pages sleep (docs/protocol.md),
	 * so a client that touches its memory must send it, as libhmmu does.
	 */
	struct {
		struct conn *c;
		struct hmmu_wire_device_cmd d;
	} owed[32];
	unsigned nowed;
	int in_send; /* conn_send() is on the stack: send nothing more */
	int own_finish; /* act_migrate() sends its FINISH after the discard */
} C;

#define RNG (&C.rng)

static struct conn *any_conn(void);

/* ---- trace and findings -------------------------------------------------- */

static long elapsed_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - C.start.tv_sec) * 1000 +
	       (now.tv_nsec - C.start.tv_nsec) / 1000000;
}

__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
	char line[512];
	int n;
	va_list ap;

	if (C.trace_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%6ld ", elapsed_ms());
	va_start(ap, fmt);
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(C.trace_fd, line, (size_t)n);
}

static void count(enum fuzz_counter c, uint64_t n)
{
	atomic_fetch_add_explicit(&C.sh->count[c], n, memory_order_relaxed);
}

static size_t hex(char *out, size_t room, const void *p, size_t n)
{
	size_t used = 0;

	for (size_t i = 0; i < n && used + 4 < room; i++)
		used += (size_t)snprintf(out + used, room - used, "%02x%s",
					 ((const unsigned char *)p)[i],
					 i + 1 < n ? " " : "");
	return used;
}

__attribute__((format(printf, 2, 3))) static void
finding(const struct pending *p, const char *fmt, ...)
{
	unsigned i = atomic_fetch_add(&C.sh->nfindings, 1);
	char text[FUZZ_FINDING_TEXT];
	size_t n;
	va_list ap;

	n = (size_t)snprintf(text, sizeof(text),
			     "client #%llu (seed %#llx): ",
			     (unsigned long long)C.a->index,
			     (unsigned long long)C.a->seed);
	va_start(ap, fmt);
	n += (size_t)vsnprintf(text + n, sizeof(text) - n, fmt, ap);
	va_end(ap);
	if (p && n < sizeof(text) - 64) {
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "\n    sent: %s, %zu bytes, %d fd(s)%s%s; "
				      "bytes:\n    ",
				      p->kind, p->len, p->nfds,
				      p->foreign ? ", foreign" : "",
				      p->hello_done ? ", after HELLO" : "");
		hex(text + n, sizeof(text) - n, p->bytes,
		    p->len < PEND_COPY ? p->len : PEND_COPY);
	}
	trace("FINDING %s", text);
	if (i < FUZZ_MAX_FINDINGS) {
		memcpy(C.sh->findings[i].text, text, sizeof(text));
		C.sh->findings[i].client = C.a->index;
	}
}

/* ---- memory -------------------------------------------------------------- */

static int free_slot(void)
{
	int start = (int)fuzz_rng_below(RNG, ARENA_SLOTS);

	for (int i = 0; i < ARENA_SLOTS; i++) {
		int s = (start + i) % ARENA_SLOTS;

		if (!C.slot_used[s])
			return s;
	}
	return -1;
}

/* Back to a PROT_NONE reservation: the arena never gets holes. */
static void unreserve(void *p, size_t len)
{
	mmap(p, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED |
	     MAP_NORESERVE, -1, 0);
}

static int region_prot(enum region_kind k)
{
	return k == R_RO ? PROT_READ : k == R_NONE ? PROT_NONE :
						      PROT_READ | PROT_WRITE;
}

/* Map @len bytes of @kind at @at (MAP_FIXED). */
static int map_kind(char *at, size_t len, enum region_kind k)
{
	int flags = MAP_FIXED, fd = -1;
	void *p;

	switch (k) {
	case R_SHARED:
		flags |= MAP_SHARED | MAP_ANONYMOUS;
		break;
	case R_FILE:
		fd = memfd_create("sockfuzz", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, (off_t)len) < 0) {
			if (fd >= 0)
				close(fd);
			return -1;
		}
		flags |= MAP_PRIVATE;
		break;
	default:
		flags |= MAP_PRIVATE | MAP_ANONYMOUS;
		break;
	}
	p = mmap(at, len, region_prot(k), flags, fd, 0);
	if (fd >= 0)
		close(fd);
	return p == MAP_FAILED ? -1 : 0;
}

/* A list of nodes of 16 bytes (value, next) spread over the region. */
static void build_list(struct region *r)
{
	size_t stride = 48, max = r->pages * (size_t)C.page / stride;
	unsigned n = (unsigned)(1 + fuzz_rng_below(RNG, max < 500 ? max : 500));
	char *prev = NULL;

	for (unsigned i = 0; i < n; i++) {
		char *node = r->base + (size_t)i * stride;
		uint64_t v = fuzz_rng_next(RNG);

		memcpy(node, &v, 8);
		memset(node + 8, 0, 8);
		if (prev)
			memcpy(prev + 8, &node, 8);
		prev = node;
	}
	/* Now and then a cycle: LIST_SUM must stop at its len with -ELOOP. */
	if (prev && fuzz_rng_chance(RNG, 1, 8))
		memcpy(prev + 8, &r->base, 8);
	r->list_nodes = n;
}

static void fill_region(struct region *r)
{
	if (r->kind == R_LIST) {
		build_list(r);
		return;
	}
	if (!(region_prot(r->kind) & PROT_WRITE))
		return;
	for (size_t i = 0; i < r->pages; i++) {
		uint64_t v = fuzz_rng_next(RNG);

		if (fuzz_rng_chance(RNG, 1, 4))
			continue; /* leave some pages never touched */
		memcpy(r->base + i * (size_t)C.page, &v, sizeof(v));
	}
}

static void add_region(enum region_kind k, size_t pages)
{
	int slot = free_slot();
	struct region *r;

	if (slot < 0 || C.nregions == sizeof(C.regions) / sizeof(C.regions[0]))
		return;
	r = &C.regions[C.nregions];
	memset(r, 0, sizeof(*r));
	/* 2 MiB into the slot: huge-page aligned, guard pages all around. */
	r->base = C.arena + (size_t)slot * SLOT_BYTES + (2ul << 20);
	r->pages = pages;
	r->kind = k;
	r->slot = slot;
	if (map_kind(r->base, pages * (size_t)C.page, k) < 0)
		return;
	if (k == R_ANON && fuzz_rng_chance(RNG, 1, 4))
		madvise(r->base, pages * (size_t)C.page, MADV_HUGEPAGE);
	C.slot_used[slot] = 1;
	C.nregions++;
	fill_region(r);
}

static void memory_setup(void)
{
	char *p = mmap(NULL, ARENA_BYTES + SLOT_BYTES, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		_exit(4);
	/* Slot-aligned, so that bit flips in low address bits stay inside. */
	C.arena = (char *)(((uintptr_t)p + SLOT_BYTES - 1) & ~(SLOT_BYTES - 1));
	C.buf = C.arena + (2ul << 20);
	if (map_kind(C.buf, BUF_PAGES * (size_t)C.page, R_ANON) < 0)
		_exit(4);
	C.slot_used[0] = 1;

	add_region(R_ANON, 1 + fuzz_rng_below(RNG, REGION_MAX_PAGES));
	add_region(R_LIST, 1 + fuzz_rng_below(RNG, 64));
	for (int k = R_SHARED; k < R_KINDS_; k++)
		if (fuzz_rng_chance(RNG, 1, 2))
			add_region((enum region_kind)k,
				   1 + fuzz_rng_below(RNG, 32));
	if (fuzz_rng_chance(RNG, 1, 2))
		add_region(R_ANON, 1 + fuzz_rng_below(RNG, REGION_MAX_PAGES));
}

static struct region *any_region(void)
{
	return C.nregions ? &C.regions[fuzz_rng_below(RNG, C.nregions)] : NULL;
}

static int touchable(const struct region *r)
{
	return !r->no_touch && (r->kind == R_ANON || r->kind == R_LIST ||
				r->kind == R_SHARED || r->kind == R_FILE);
}

static void touch_pages(struct region *r, int write, unsigned n)
{
	if (!touchable(r))
		return;
	for (unsigned i = 0; i < n; i++) {
		volatile char *p = r->base +
				   fuzz_rng_below(RNG, r->pages) * (size_t)C.page +
				   fuzz_rng_below(RNG, (uint64_t)C.page);

		if (write && r->kind != R_LIST)
			*p = (char)fuzz_rng_next(RNG);
		else
			(void)*p;
	}
}

/*
 * The toucher thread writes to mirrored memory while the main thread's
 * requests are in flight: CPU faults racing device commands and jobs. It
 * has its own generator, so the main thread's sequence stays reproducible
 * whatever the scheduling.
 */
static void *toucher_main(void *arg)
{
	struct fuzz_rng rng;

	fuzz_rng_seed(&rng, (uint64_t)(uintptr_t)arg);
	while (atomic_load(&C.touching)) {
		struct region *r = &C.regions[fuzz_rng_below(&rng, C.nregions)];
		volatile char *p;

		if (!touchable(r) || r->kind == R_LIST)
			continue;
		p = r->base + fuzz_rng_below(&rng, r->pages) * (size_t)C.page;
		if (fuzz_rng_below(&rng, 2))
			*p = (char)fuzz_rng_next(&rng);
		else
			(void)*p;
	}
	return NULL;
}

static void toucher_start(void)
{
	if (C.toucher_running || !C.nregions)
		return;
	atomic_store(&C.touching, 1);
	if (pthread_create(&C.toucher, NULL, toucher_main,
			   (void *)(uintptr_t)fuzz_rng_next(RNG)) == 0)
		C.toucher_running = 1;
}

/* Before any change to the mappings: the toucher must not fault on them. */
static void toucher_stop(void)
{
	if (!C.toucher_running)
		return;
	atomic_store(&C.touching, 0);
	pthread_join(C.toucher, NULL);
	C.toucher_running = 0;
}

/* ---- fds ----------------------------------------------------------------- */

static void send_fd_over(int sock, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	char byte = 0;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	(void)!sendmsg(sock, &msg, MSG_NOSIGNAL);
}

static int recv_fd_over(int sock, int timeout_ms)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct pollfd p = { .fd = sock, .events = POLLIN };
	struct cmsghdr *c;
	int fd;

	if (poll(&p, 1, timeout_ms) != 1 ||
	    recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) <= 0)
		return -1;
	c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

enum uffd_kind {
	UFFD_GOOD,	/* as libhmmu makes it */
	UFFD_NO_API,	/* UFFDIO_API never called */
	UFFD_MISSING,	/* a required feature left out */
};

/* A userfaultfd, made the way libhmmu/uffd.c makes it (or not quite). */
static int uffd_make(enum uffd_kind kind)
{
	struct uffdio_api api = { .api = UFFD_API };
	uint64_t want;
	int fd;

	if (!C.uffd_ok)
		return -1;
	fd = hmmu_uffd_open();
	if (fd < 0 || kind == UFFD_NO_API)
		return fd;
	want = HMMU_UFFD_REQUIRED_FEATURES |
	       (C.uffd_supported & HMMU_UFFD_OPTIONAL_FEATURES);
	if (kind == UFFD_MISSING) {
		uint64_t req = HMMU_UFFD_REQUIRED_FEATURES, bit;

		do
			bit = 1ull << fuzz_rng_below(RNG, 64);
		while (!(req & bit));
		want &= ~bit;
	}
	api.features = want;
	if (ioctl(fd, UFFDIO_API, &api) < 0 && errno == EPERM &&
	    (want & UFFD_FEATURE_EVENT_FORK)) {
		/* Fork events need CAP_SYS_PTRACE: do without, as libhmmu. */
		close(fd);
		fd = hmmu_uffd_open();
		if (fd < 0)
			return fd;
		api.api = UFFD_API;
		api.features = want & ~(uint64_t)UFFD_FEATURE_EVENT_FORK;
		(void)!ioctl(fd, UFFDIO_API, &api);
	}
	return fd;
}

/* A grandchild must not outlive us, nor run our exit path. */
static void grandchild_setup(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(0);
}

/*
 * A userfaultfd of another process: a forked grandchild makes it and sends
 * it back. It stays alive (until we end) or has exited by the time we use
 * its fd.
 */
static int uffd_of_grandchild(int stay_alive)
{
	pid_t me = getpid(), pid;
	int sp[2], fd;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return -1;
	count(FC_FORKS, 1);
	pid = fork();
	if (pid == 0) {
		char b;

		grandchild_setup(me);
		close(sp[0]);
		fd = uffd_make(UFFD_GOOD);
		if (fd >= 0)
			send_fd_over(sp[1], fd);
		if (stay_alive)
			(void)!read(sp[1], &b, 1); /* until we close our end */
		_exit(0);
	}
	close(sp[1]);
	if (pid < 0) {
		close(sp[0]);
		return -1;
	}
	fd = recv_fd_over(sp[0], 5000);
	if (stay_alive && C.nkids < MAX_KIDS) {
		C.kids[C.nkids] = pid;
		C.kid_socks[C.nkids++] = sp[0];
	} else {
		close(sp[0]);
		waitpid(pid, NULL, 0);
	}
	trace("uffd of %s grandchild %d: fd %d", stay_alive ? "live" : "dead",
	      pid, fd);
	return fd;
}

enum fd_kind {
	FD_PIPE_R,
	FD_PIPE_W,
	FD_EVENTFD,
	FD_MEMFD,
	FD_DEVNULL,
	FD_UFFD_NO_API,
	FD_UFFD_MISSING,
	FD_UFFD_GOOD,
	FD_UFFD_CHILD_ALIVE,
	FD_UFFD_CHILD_DEAD,
	FD_CONN_SELF,
	FD_CONN_OTHER,
	FD_SOCKETPAIR,
	FD_DIR,
	FD_OPATH,
	FD_PIDFD,
	FD_TIMERFD,
	FD_EPOLL,
	FD_PROC_MEM,
	FD_KINDS_
};

static const char *const fd_kind_names[FD_KINDS_] = {
	"pipe-r", "pipe-w", "eventfd", "memfd", "/dev/null", "uffd-no-api",
	"uffd-missing-feature", "uffd", "uffd-of-live-child",
	"uffd-of-dead-child", "this-socket", "other-socket", "socketpair",
	"dir", "O_PATH", "pidfd", "timerfd", "epoll", "/proc/self/mem",
};

/* A new fd of @kind (the caller closes it), or -1. */
static int make_fd(enum fd_kind kind, struct conn *c)
{
	int p[2], fd = -1;

	switch (kind) {
	case FD_PIPE_R:
	case FD_PIPE_W:
		if (pipe2(p, O_CLOEXEC) < 0)
			return -1;
		fd = kind == FD_PIPE_R ? p[0] : p[1];
		close(kind == FD_PIPE_R ? p[1] : p[0]);
		return fd;
	case FD_EVENTFD:
		return eventfd(0, EFD_CLOEXEC);
	case FD_MEMFD:
		return memfd_create("sockfuzz-fd", MFD_CLOEXEC);
	case FD_DEVNULL:
		return open("/dev/null", O_RDWR | O_CLOEXEC);
	case FD_UFFD_NO_API:
		return uffd_make(UFFD_NO_API);
	case FD_UFFD_MISSING:
		return uffd_make(UFFD_MISSING);
	case FD_UFFD_GOOD:
		return uffd_make(UFFD_GOOD);
	case FD_UFFD_CHILD_ALIVE:
		return uffd_of_grandchild(1);
	case FD_UFFD_CHILD_DEAD:
		return uffd_of_grandchild(0);
	case FD_CONN_SELF:
		return fcntl(c->fd, F_DUPFD_CLOEXEC, 0);
	case FD_CONN_OTHER: {
		struct conn *o = any_conn();

		return fcntl(o ? o->fd : c->fd, F_DUPFD_CLOEXEC, 0);
	}
	case FD_SOCKETPAIR:
		if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, p) < 0)
			return -1;
		close(p[1]);
		return p[0];
	case FD_DIR:
		return open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	case FD_OPATH:
		return open("/", O_PATH | O_CLOEXEC);
	case FD_PIDFD:
		return (int)syscall(SYS_pidfd_open, getpid(), 0);
	case FD_TIMERFD:
		return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	case FD_EPOLL:
		return epoll_create1(EPOLL_CLOEXEC);
	case FD_PROC_MEM:
		return open("/proc/self/mem", O_RDWR | O_CLOEXEC);
	default:
		return -1;
	}
}

/* ---- connections ---------------------------------------------------------- */

static struct conn *any_conn(void)
{
	unsigned open = 0;
	struct conn *pick = NULL;

	for (unsigned i = 0; i < C.nconns; i++) {
		if (C.conns[i].closed)
			continue;
		/* Reservoir sampling: one of the open ones, uniformly. */
		if (fuzz_rng_below(RNG, ++open) == 0)
			pick = &C.conns[i];
	}
	return pick;
}

static void conn_drop(struct conn *c, const char *why)
{
	if (c->closed)
		return;
	trace("conn%d: closed (%s), %u request(s) unanswered", c->n, why,
	      c->npend);
	count(FC_UNANSWERED, c->npend);
	c->closed = 1;
	c->npend = 0;
	close(c->fd);
	c->fd = -1;
}

static struct conn *conn_open(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct conn *c = NULL;
	int fd;

	/* Reuse a closed slot, or take a new one. */
	for (unsigned i = 0; i < C.nconns; i++)
		if (C.conns[i].closed)
			c = &C.conns[i];
	if (!c && C.nconns < MAX_CONNS)
		c = &C.conns[C.nconns++];
	if (!c)
		return NULL;
	free(c->ids_seen);
	memset(c, 0, sizeof(*c));
	c->closed = 1;
	c->n = C.next_conn_n++;
	c->next_id = 1;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", C.a->socket);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		trace("connect: %s", strerror(errno));
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->closed = 0;
	count(FC_CONNECTIONS, 1);
	trace("conn%d: connected", c->n);
	return c;
}

/*
 * The largest mirror id @c's creates sent so far may have been given:
 * each takes the next above every floor a RESERVE_IDS raised, and the
 * two may run in either order.
 */
static uint64_t ids_given_max(const struct conn *c)
{
	return c->floor + c->creates;
}

/* Ids past this are checked for being fresh, not remembered. */
#define IDS_REMEMBERED (1u << 20)

static struct mirror_ref *mirror_by_id(struct conn *c, uint64_t id)
{
	for (unsigned i = 0; i < c->nmirrors; i++)
		if (c->mirrors[i].id == id)
			return &c->mirrors[i];
	return NULL;
}

/* A reply to something we sent: check it against its judgement. */
static void reply_check(struct conn *c, const union wire_msg *m, size_t n)
{
	const struct hmmu_wire_hdr *h = &m->hdr;
	struct pending *best = NULL;
	unsigned twins = 0;
	int err = hmmu_proto_check(m, n, 1);

	count(FC_REPLIES, 1);
	if (err) {
		char b[200];

		hex(b, sizeof(b), m, n < 48 ? n : 48);
		finding(NULL, "conn%d: malformed reply (%zu bytes, %s): %s",
			c->n, n, strerror(-err), b);
		return;
	}
	if (!wire_status_sane(h->op, h->status))
		finding(NULL, "conn%d: reply %s/%llu carries status %d", c->n,
			hmmu_proto_op_name(h->op), (unsigned long long)h->id,
			h->status);

	/* The same op and id: an exact match first, then one to be decided. */
	for (unsigned i = 0; i < c->npend; i++) {
		struct pending *p = &c->pend[i];

		if (p->op != h->op || p->id != h->id)
			continue;
		twins++;
		/*
		 * No create sent so far gave this id out: none of them can
		 * have run before the request did.
		 */
		if (p->on_mirror && !p->exact &&
		    p->mirror > ids_given_max(c)) {
			p->exact = 1;
			p->status = -ENOENT;
		}
		if (p->exact && p->status == h->status) {
			best = p;
			break;
		}
		if (!p->exact && (!best || best->exact))
			best = p;
		else if (!best)
			best = p;
	}
	if (!best) {
		finding(NULL, "conn%d: reply %s/%llu (status %d) answers "
			"nothing we sent", c->n, hmmu_proto_op_name(h->op),
			(unsigned long long)h->id, h->status);
		return;
	}
	trace("conn%d: reply %s/%llu: %d", c->n, hmmu_proto_op_name(h->op),
	      (unsigned long long)h->id, h->status);
	if (best->exact && best->status != h->status)
		finding(best, "conn%d: reply %s/%llu: status %d (%s), want "
			"%d (%s)", c->n, hmmu_proto_op_name(h->op),
			(unsigned long long)h->id, h->status,
			strerror(-h->status), best->status,
			strerror(-best->status));
	if (best->check_count && h->status == 0 &&
	    ((const struct hmmu_wire_count *)(h + 1))->count !=
		    C.sh->ndevices)
		finding(best, "conn%d: DEVICE_COUNT says %u, the daemon "
			"started with %u", c->n,
			((const struct hmmu_wire_count *)(h + 1))->count,
			C.sh->ndevices);
	/* A reason, if any, comes first: never on a version mismatch. */
	if (h->op == HMMU_OP_HELLO && !(h->flags & HMMU_MSG_REASON) &&
	    ((const struct hmmu_wire_hello *)(h + 1))->version !=
		    HMMU_PROTO_VERSION &&
	    n >= WIRE_HDR + sizeof(struct hmmu_wire_hello))
		finding(best, "conn%d: HELLO reply names version %u", c->n,
			((const struct hmmu_wire_hello *)(h + 1))->version);
	if (best->check_create && h->status == 0) {
		uint64_t id = ((const struct hmmu_wire_mirror *)(h + 1))->mirror;

		/*
		 * Ids are 1, 2, 3, ... in create order, past the floors
		 * RESERVE_IDS raised, never reused.
		 */
		if (id == 0 || id > ids_given_max(c)) {
			finding(best, "conn%d: MIRROR_CREATE gave id %llu "
				"after %llu create(s), floor %llu", c->n,
				(unsigned long long)id,
				(unsigned long long)c->creates,
				(unsigned long long)c->floor);
		} else {
			if (c->ids_cap <= id && id < IDS_REMEMBERED) {
				size_t cap = (size_t)id * 2 + 64;
				uint8_t *p = realloc(c->ids_seen, cap);

				if (p) {
					memset(p + c->ids_cap, 0,
					       cap - c->ids_cap);
					c->ids_seen = p;
					c->ids_cap = cap;
				}
			}
			if (id < c->ids_cap && c->ids_seen[id])
				finding(best, "conn%d: MIRROR_CREATE gave id "
					"%llu twice", c->n,
					(unsigned long long)id);
			if (id < c->ids_cap)
				c->ids_seen[id] = 1;
			if (c->nmirrors < MAX_MIRRORS)
				c->mirrors[c->nmirrors++] = (struct mirror_ref){
					.id = id, .dev = best->dev
				};
		}
	}
	/* What a reply says of a mirror, when it cannot be another's reply. */
	if (twins == 1 && h->status == 0 && (h->op == HMMU_OP_MIRROR_DESTROY ||
			       h->op == HMMU_OP_MIRROR_UNREGISTER ||
			       h->op == HMMU_OP_MIRROR_REGISTER)) {
		struct mirror_ref *mr;
		uint64_t id;

		memcpy(&id, best->bytes + WIRE_HDR, sizeof(id));
		mr = mirror_by_id(c, id);
		if (mr && h->op == HMMU_OP_MIRROR_DESTROY)
			mr->gone = 1;
		if (mr)
			mr->registered = h->op == HMMU_OP_MIRROR_REGISTER;
		if (h->op == HMMU_OP_MIRROR_REGISTER)
			count(FC_REGISTERED, 1);
	}
	if (h->op == HMMU_OP_DEVICE_CMD && h->status == 0 && !C.own_finish &&
	    best->len >= WIRE_HDR + sizeof(struct hmmu_wire_device_cmd) &&
	    C.nowed < sizeof(C.owed) / sizeof(C.owed[0])) {
		struct hmmu_wire_device_cmd d;

		memcpy(&d, best->bytes + WIRE_HDR, sizeof(d));
		if (d.cmd == HMMU_CMD_MIGRATE_PREPARE ||
		    d.cmd == HMMU_CMD_EXCLUSIVE_PREPARE) {
			d.cmd = HMMU_CMD_MIGRATE_FINISH;
			C.owed[C.nowed].c = c;
			C.owed[C.nowed++].d = d;
		}
	}
	*best = c->pend[--c->npend];
}

static int conn_send(struct conn *c, const void *msg, size_t n,
		     const int *fds, int nfds, const struct ucred *cred,
		     const char *kind);

/* Send the FINISHes owed (not from inside conn_send()). */
static void pay_finishes(void)
{
	while (C.nowed && !C.in_send) {
		struct conn *c = C.owed[--C.nowed].c;
		union wire_msg m;
		size_t len;

		if (c->closed)
			continue;
		len = wire_request(&m, HMMU_OP_DEVICE_CMD, c->next_id++,
				   &C.owed[C.nowed].d, sizeof(C.owed[0].d));
		conn_send(c, &m, len, NULL, 0, NULL, "finish-owed");
	}
}

/*
 * Receive what has come on @c, waiting up to @timeout_ms for the first.
 * If @want_id is not NULL, stop at the reply to it (into C.reply). Returns
 * 1 if that reply came, else 0.
 */
static int conn_recv(struct conn *c, int timeout_ms, const uint64_t *want_id,
		     unsigned want_op)
{
	union wire_msg m;
	long deadline = elapsed_ms() + timeout_ms;

	while (!c->closed) {
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		long left = deadline - elapsed_ms();
		ssize_t n;

		if (poll(&p, 1, left > 0 ? (int)left : 0) != 1)
			return 0;
		n = recv(c->fd, m.buf, sizeof(m.buf), MSG_DONTWAIT | MSG_TRUNC);
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			conn_drop(c, strerror(errno));
			return 0;
		}
		if (n == 0) {
			if (!c->hangup)
				count(FC_HANGUPS, 1);
			conn_drop(c, c->hangup ? "hung up, as asked" :
						  "daemon hung up");
			return 0;
		}
		if ((size_t)n > HMMU_MSG_MAX) {
			finding(NULL, "conn%d: a %zd-byte reply", c->n, n);
			continue;
		}
		reply_check(c, &m, (size_t)n);
		pay_finishes();
		if (want_id && m.hdr.id == *want_id &&
		    (m.hdr.op == want_op || m.hdr.op == HMMU_OP_NONE)) {
			memcpy(&C.reply, &m, (size_t)n);
			C.reply_len = (size_t)n;
			return 1;
		}
	}
	return 0;
}

static void drain_all(int timeout_ms)
{
	for (unsigned i = 0; i < C.nconns; i++)
		if (!C.conns[i].closed)
			conn_recv(&C.conns[i], timeout_ms, NULL, 0);
}

/* What the handler of a decodable request must answer, where we know. */
static void judge_handler(struct conn *c, const union wire_msg *m,
			  struct pending *p)
{
	const void *pl = &m->hdr + 1;
	uint64_t id;

	switch (m->hdr.op) {
	case HMMU_OP_DEVICE_COUNT:
		p->exact = 1;
		p->status = 0;
		p->check_count = 1;
		break;
	case HMMU_OP_STATS:
	case HMMU_OP_LIST:
		p->exact = 1;
		p->status = 0;
		break;
	case HMMU_OP_DEVICE_INFO:
		p->exact = 1;
		p->status = ((const struct hmmu_wire_index *)pl)->index <
					    C.sh->ndevices ? 0 : -ENODEV;
		break;
	case HMMU_OP_MIRROR_CREATE: {
		const char *name = ((const struct hmmu_wire_device_name *)pl)->name;

		p->dev = -1;
		for (unsigned i = 0; i < C.sh->ndevices; i++)
			if (strcmp(name, C.sh->devices[i]) == 0)
				p->dev = (int)i;
		if (p->dev < 0) {
			p->exact = 1;
			p->status = -ENODEV;
		} else {
			p->check_create = 1;
		}
		c->creates++;
		break;
	}
	case HMMU_OP_RESERVE_IDS: {
		uint64_t above;

		/* The decoder bounded it; the handler takes any such. */
		memcpy(&above, pl, sizeof(above));
		p->exact = 1;
		p->status = 0;
		if (c->floor < above)
			c->floor = above;
		break;
	}
	case HMMU_OP_MIRROR_REGISTER:
	case HMMU_OP_MIRROR_UNREGISTER:
	case HMMU_OP_MIRROR_DESTROY:
	case HMMU_OP_DEVICE_CMD:
	case HMMU_OP_JOB: {
		struct mirror_ref *mr;

		/* Every request on a mirror starts with its id. */
		memcpy(&id, pl, sizeof(id));
		mr = mirror_by_id(c, id);
		p->on_mirror = 1;
		p->mirror = id;
		if (id == 0 || (mr && mr->gone)) {
			p->exact = 1;
			p->status = -ENOENT;
		}
		break;
	}
	default:
		break;
	}
}

/* --avoid-known: would this message trigger a bug already known? */
static int known_bug(struct conn *c, const void *msg, size_t n,
		     const struct wire_verdict *v)
{
	const uint64_t top = ~0ull - (16ull << 20);
	union wire_msg m;
	uint64_t id;

	if (!v->handler)
		return 0;
	memcpy(&m, msg, n);
	if (v->op == HMMU_OP_JOB &&
	    n >= WIRE_HDR + sizeof(struct hmmu_wire_job)) {
		const struct hmmu_wire_job *j = wire_payload(&m);

		/*
		 * A list walk follows pointers from memory, which device
		 * writes of any bytes (SNAPSHOT's 0xff among them) may have
		 * made ~0: no LIST_SUM at all.
		 */
		return j->src >= top || j->dst >= top ||
		       j->kind == HMMU_WIRE_JOB_LIST_SUM;
	}
	if (v->op != HMMU_OP_MIRROR_REGISTER && v->op != HMMU_OP_MIRROR_DESTROY)
		return 0;
	memcpy(&id, wire_payload(&m), sizeof(id));
	for (unsigned i = 0; i < c->npend; i++) {
		const struct pending *p = &c->pend[i];

		if (p->on_mirror && p->mirror == id && p->op != v->op &&
		    (p->op == HMMU_OP_MIRROR_REGISTER ||
		     p->op == HMMU_OP_MIRROR_DESTROY))
			return 1;
	}
	return 0;
}

/*
 * Send one message on @c with @nfds fds and, if @cred, explicit
 * credentials. Judges it first and files what it must get back. Returns
 * the pending id's slot index, or -1 if nothing was sent.
 */
static int conn_send(struct conn *c, const void *msg, size_t n,
		     const int *fds, int nfds, const struct ucred *cred,
		     const char *kind)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS_SEND * sizeof(int)) * 2 +
			 CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = (void *)msg, .iov_len = n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct wire_verdict v;
	struct pending *p;
	struct cmsghdr *cm;
	int foreign = cred && cred->pid != getpid();
	int split = nfds >= 2 && fuzz_rng_chance(RNG, 1, 3);

	if (c->closed || c->hangup)
		return -1;
	/* No room to file one more: let the replies in first. */
	if (c->npend >= MAX_PENDING) {
		C.in_send++;
		conn_recv(c, C.a->reply_timeout_ms, NULL, 0);
		C.in_send--;
	}
	if (c->closed || c->npend >= MAX_PENDING)
		return -1;

	memset(&control, 0, sizeof(control));
	if (nfds || cred) {
		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof(control.buf);
		cm = CMSG_FIRSTHDR(&mh);
		size_t used = 0;

		/* Several fds in one SCM_RIGHTS block, or in two. */
		for (int done = 0, part = 0; done < nfds; part++) {
			int k = split && part == 0 ? nfds / 2 : nfds - done;

			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN((size_t)k * sizeof(int));
			memcpy(CMSG_DATA(cm), fds + done,
			       (size_t)k * sizeof(int));
			used += CMSG_SPACE((size_t)k * sizeof(int));
			done += k;
			cm = (struct cmsghdr *)(control.buf + used);
		}
		if (cred) {
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_CREDENTIALS;
			cm->cmsg_len = CMSG_LEN(sizeof(*cred));
			memcpy(CMSG_DATA(cm), cred, sizeof(*cred));
			used += CMSG_SPACE(sizeof(*cred));
		}
		mh.msg_controllen = used;
	}

	wire_judge(msg, n, nfds, foreign, c->hello_done, &v);
	if (C.a->avoid_known && known_bug(c, msg, n, &v)) {
		trace("conn%d: not sent (a known bug): %s %s", c->n, kind,
		      hmmu_proto_op_name(v.op));
		return -1;
	}
	for (int tries = 0;; tries++) {
		int err;

		if (sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
			break;
		err = errno;
		if (err == EAGAIN && tries < 20) {
			/* Our queue is full: read replies while it drains. */
			C.in_send++;
			conn_recv(c, 50, NULL, 0);
			C.in_send--;
			if (c->closed)
				return -1;
			continue;
		}
		trace("conn%d: send %s (%zu bytes): %s", c->n, kind, n,
		      strerror(err));
		if (err == EPIPE || err == ECONNRESET || err == EAGAIN)
			conn_drop(c, "send failed");
		return -1;
	}
	count(FC_MESSAGES, 1);
	count(FC_FDS, (uint64_t)nfds);
	if (foreign)
		count(FC_FOREIGN, 1);

	p = &c->pend[c->npend++];
	memset(p, 0, sizeof(*p));
	p->op = v.op;
	p->id = v.id;
	p->status = v.status;
	p->exact = v.exact;
	p->kind = kind;
	p->len = n;
	p->nfds = nfds;
	p->foreign = foreign;
	p->hello_done = c->hello_done;
	memcpy(p->bytes, msg, n < PEND_COPY ? n : PEND_COPY);
	if (v.handler)
		judge_handler(c, msg, p);
	if (v.hello_ok)
		c->hello_done = 1;
	if (v.hangup)
		c->hangup = 1;
	if (C.trace_fd >= 0) {
		char b[3 * 88];

		hex(b, sizeof(b), (const char *)msg + (n > WIRE_HDR ? WIRE_HDR : 0),
		    n > WIRE_HDR ? (n - WIRE_HDR < 80 ? n - WIRE_HDR : 80) : n);
		trace("conn%d: sent %s %s/%llu, %zu bytes, %d fd(s)%s: expect "
		      "%s%d; %s: %s", c->n, kind, hmmu_proto_op_name(v.op),
		      (unsigned long long)v.id, n, nfds,
		      foreign ? ", foreign" : "", p->exact ? "" : "~",
		      p->status, n > WIRE_HDR ? "payload" : "bytes", b);
	}
	return (int)(p - c->pend);
}

/* Send and wait for the reply. Returns its status, or NO_REPLY. */
static int call(struct conn *c, const union wire_msg *m, size_t n,
		const int *fds, int nfds, const char *kind)
{
	uint64_t id = m->hdr.id;
	unsigned op = m->hdr.op;

	if (conn_send(c, m, n, fds, nfds, NULL, kind) < 0)
		return NO_REPLY;
	if (!conn_recv(c, C.a->reply_timeout_ms, &id, op)) {
		trace("conn%d: no reply to %s/%llu", c->n,
		      hmmu_proto_op_name(op), (unsigned long long)id);
		return NO_REPLY;
	}
	return C.reply.hdr.status;
}

/* ---- building requests ---------------------------------------------------- */

static uint64_t next_id(struct conn *c)
{
	/* Mostly fresh ids; now and then one already in use, or 0. */
	if (fuzz_rng_chance(RNG, 1, 50))
		return fuzz_rng_chance(RNG, 1, 2) ? 0 : c->next_id - 1;
	return c->next_id++;
}

/* An address where nothing is mapped, or no address at all. */
static uint64_t absurd_addr(void)
{
	static const uint64_t fixed[] = {
		0,
		1,
		0xfff,
		0x1000,
		0x7ffffffff000ull,
		0x800000000000ull,
		0xffff800000000000ull,
		0xfffffffffffff000ull,
		~0ull,
		(1ull << 48) - 0x1000,
		1ull << 48,
		1ull << 63,
	};

	switch (fuzz_rng_below(RNG, 4)) {
	case 0:
		return fixed[fuzz_rng_below(RNG, sizeof(fixed) / sizeof(fixed[0]))];
	case 1: /* a guard page or an empty slot of the arena */
		return (uint64_t)(uintptr_t)C.arena +
		       (fuzz_rng_below(RNG, ARENA_BYTES) & ~0xfffull);
	case 2: /* a region's edge, one page either side */
		if (C.nregions) {
			struct region *r = any_region();
			uint64_t end = (uint64_t)(uintptr_t)r->base +
				       r->pages * (uint64_t)C.page;

			return fuzz_rng_chance(RNG, 1, 2) ?
				       end :
				       (uint64_t)(uintptr_t)r->base - C.page;
		}
		return 0;
	default: /* non-canonical */
		return fuzz_rng_next(RNG) | (1ull << 62);
	}
}

static uint64_t absurd_count(void)
{
	static const uint64_t fixed[] = {
		0,
		1,
		HMMU_CMD_MAX_PAGES,
		HMMU_CMD_MAX_PAGES + 1,
		HMMU_CMD_MAX_PAGES - 1,
		0xffffffffull,
		1ull << 32,
		1ull << 36,
		(1ull << 33) + 1,
		~0ull,
		1ull << 63,
	};

	if (fuzz_rng_chance(RNG, 1, 4))
		return fuzz_rng_next(RNG);
	return fixed[fuzz_rng_below(RNG, sizeof(fixed) / sizeof(fixed[0]))];
}

/* A mirror id: mostly one this connection has, sometimes not. */
static uint64_t pick_mirror(struct conn *c, int want_model_accel)
{
	unsigned tries = 8;

	switch (fuzz_rng_below(RNG, 12)) {
	case 0:
		return 0;
	case 1:
		return ids_given_max(c) + 1 + fuzz_rng_below(RNG, 4);
	case 2:
		return fuzz_rng_next(RNG);
	default:
		break;
	}
	while (c->nmirrors && tries--) {
		struct mirror_ref *m = &c->mirrors[fuzz_rng_below(RNG, c->nmirrors)];
		int accel = m->dev >= 0 &&
			    strcmp(C.sh->models[m->dev], "accel") == 0;

		if (want_model_accel < 0 || accel == want_model_accel)
			return m->id;
	}
	return c->nmirrors ? c->mirrors[0].id : 1;
}

static int device_of_model(const char *model)
{
	int found = -1, n = 0;

	for (unsigned i = 0; i < C.sh->ndevices; i++)
		if (strcmp(C.sh->models[i], model) == 0 &&
		    fuzz_rng_below(RNG, (uint64_t)++n) == 0)
			found = (int)i;
	return found;
}

static void gen_device_cmd(struct conn *c, struct hmmu_wire_device_cmd *d,
			   int plausible)
{
	struct region *r = any_region();

	memset(d, 0, sizeof(*d));
	d->mirror = pick_mirror(c, 0);
	d->cmd = 1 + (uint32_t)fuzz_rng_below(RNG, HMMU_CMD_MAX_ - 1);
	if (r) {
		uint64_t first = fuzz_rng_below(RNG, r->pages);
		uint64_t max = r->pages - first;

		d->addr = (uint64_t)(uintptr_t)r->base + first * C.page;
		d->npages = 1 + fuzz_rng_below(RNG, max < 64 ? max : 64);
		if (fuzz_rng_chance(RNG, 1, 3)) { /* the whole region */
			d->addr = (uint64_t)(uintptr_t)r->base;
			d->npages = r->pages;
		}
	} else {
		d->addr = absurd_addr();
		d->npages = 1;
	}
	d->buf = (uint64_t)(uintptr_t)C.buf;
	d->buf_len = d->cmd == HMMU_CMD_READ || d->cmd == HMMU_CMD_WRITE ?
			     d->npages * C.page :
			     d->npages;
	/* A PREPARE's map comes in its reply: no buffer, a bounded range. */
	if (d->cmd == HMMU_CMD_MIGRATE_PREPARE ||
	    d->cmd == HMMU_CMD_EXCLUSIVE_PREPARE) {
		d->buf = d->buf_len = 0;
		if (d->npages > HMMU_PREPARE_MAX_PAGES)
			d->npages = HMMU_PREPARE_MAX_PAGES;
	}
	if (plausible)
		return;
	/* One or more fields absurd, the rest plausible. */
	do {
		switch (fuzz_rng_below(RNG, 8)) {
		case 0:
			d->addr = absurd_addr();
			break;
		case 1:
			d->addr += 1 + fuzz_rng_below(RNG, (uint64_t)C.page - 1);
			break;
		case 2:
			d->npages = absurd_count();
			break;
		case 3:
			d->buf = absurd_addr();
			break;
		case 4:
			d->buf_len = fuzz_rng_chance(RNG, 1, 2) ?
					     d->buf_len - 1 :
					     absurd_count();
			break;
		case 5:
			d->cmd = (uint32_t)fuzz_rng_below(RNG, HMMU_CMD_MAX_ + 3);
			break;
		case 6:
			d->reserved = (uint32_t)fuzz_rng_next(RNG);
			break;
		default:
			d->mirror = pick_mirror(c, -1);
			break;
		}
	} while (fuzz_rng_chance(RNG, 1, 3));
}

static void gen_job(struct conn *c, struct hmmu_wire_job *j, int plausible)
{
	struct region *src = any_region(), *dst = any_region();
	uint64_t page = (uint64_t)C.page;

	memset(j, 0, sizeof(*j));
	j->mirror = pick_mirror(c, 1);
	j->kind = 1 + (uint32_t)fuzz_rng_below(RNG, HMMU_WIRE_JOB_MAX_ - 1);
	if (src && dst) {
		uint64_t sbytes = src->pages * page, dbytes = dst->pages * page;

		j->src = (uint64_t)(uintptr_t)src->base;
		j->dst = (uint64_t)(uintptr_t)dst->base;
		switch (j->kind) {
		case HMMU_WIRE_JOB_FILL:
			j->len = 8 * (1 + fuzz_rng_below(RNG, dbytes / 8));
			j->value = fuzz_rng_next(RNG);
			break;
		case HMMU_WIRE_JOB_COPY:
			j->len = 1 + fuzz_rng_below(RNG, sbytes < dbytes ?
								 sbytes :
								 dbytes);
			break;
		case HMMU_WIRE_JOB_SUM64:
			j->len = 1 + fuzz_rng_below(RNG, sbytes / 8);
			break;
		default: {
			struct region *l = NULL;

			for (unsigned i = 0; i < C.nregions; i++)
				if (C.regions[i].kind == R_LIST)
					l = &C.regions[i];
			j->src = l ? (uint64_t)(uintptr_t)l->base : 0;
			j->len = l ? l->list_nodes + fuzz_rng_below(RNG, 3) : 1;
			if (fuzz_rng_chance(RNG, 1, 4))
				j->len = 1 + fuzz_rng_below(RNG, 10000);
			j->next_offset = 8;
			j->value_offset = 0;
			break;
		}
		}
	} else {
		j->dst = absurd_addr();
		j->len = 8;
	}
	if (plausible)
		return;
	do {
		switch (fuzz_rng_below(RNG, 9)) {
		case 0:
			j->dst = absurd_addr();
			break;
		case 1:
			j->src = absurd_addr();
			break;
		case 2:
			j->len = absurd_count();
			break;
		case 3:
			j->kind = (uint32_t)fuzz_rng_below(RNG,
							   HMMU_WIRE_JOB_MAX_ + 3);
			break;
		case 4:
			j->reserved = (uint32_t)fuzz_rng_next(RNG);
			break;
		case 5:
			j->next_offset = (uint32_t)(fuzz_rng_chance(RNG, 1, 2) ?
							    page + 1 :
							    fuzz_rng_below(RNG, page));
			j->value_offset = (uint32_t)fuzz_rng_below(RNG, page + 2);
			break;
		case 6: /* overlapping copy */
			j->src = j->dst + fuzz_rng_below(RNG, 64);
			break;
		case 7:
			j->dst += 1 + fuzz_rng_below(RNG, 7);
			break;
		default:
			j->mirror = pick_mirror(c, -1);
			break;
		}
	} while (fuzz_rng_chance(RNG, 1, 3));
	/* Never a long walk of a cycle: that is a job that runs for ever. */
	if (j->kind == HMMU_WIRE_JOB_LIST_SUM && j->len > 100000)
		j->len = 100000;
}

static void gen_name(char name[HMMU_NAME_MAX])
{
	memset(name, 0, HMMU_NAME_MAX);
	if (C.sh->ndevices && fuzz_rng_chance(RNG, 4, 5)) {
		memcpy(name, C.sh->devices[fuzz_rng_below(RNG, C.sh->ndevices)],
		       HMMU_NAME_MAX);
		return;
	}
	switch (fuzz_rng_below(RNG, 4)) {
	case 0: /* a device's name with a byte changed */
		memcpy(name, C.sh->ndevices ? C.sh->devices[0] : "x", 2);
		name[0] ^= 0x20;
		break;
	case 1: /* the longest valid name */
		memset(name, 'n', HMMU_NAME_MAX - 1);
		break;
	default: {
		size_t n = 1 + fuzz_rng_below(RNG, HMMU_NAME_MAX - 1);

		for (size_t i = 0; i < n; i++)
			name[i] = (char)(1 + fuzz_rng_below(RNG, 255));
		break;
	}
	}
}

/*
 * A request of @op with fields that make sense on @c, the decoder
 * accepts (unless @plausible is 0, then some fields may be absurd).
 */
static size_t gen_request(struct conn *c, union wire_msg *m, unsigned op,
			  int plausible)
{
	uint64_t id = next_id(c);

	switch (op) {
	case HMMU_OP_HELLO: {
		struct hmmu_wire_hello h = { .version = HMMU_PROTO_VERSION };

		/* Another version ends the connection: rarely. */
		if (!plausible && fuzz_rng_chance(RNG, 1, 8))
			h.version = (uint32_t)fuzz_rng_below(RNG, 4);
		if (!plausible && fuzz_rng_chance(RNG, 1, 8))
			h.reserved = 1;
		return wire_request(m, op, id, &h, sizeof(h));
	}
	case HMMU_OP_DEVICE_INFO: {
		struct hmmu_wire_index i = {
			.index = (uint32_t)fuzz_rng_below(RNG, C.sh->ndevices + 2),
		};

		if (!plausible && fuzz_rng_chance(RNG, 1, 3))
			i.index = (uint32_t)fuzz_rng_next(RNG);
		if (!plausible && fuzz_rng_chance(RNG, 1, 4))
			i.reserved = 1;
		return wire_request(m, op, id, &i, sizeof(i));
	}
	case HMMU_OP_MIRROR_CREATE: {
		struct hmmu_wire_device_name n;

		gen_name(n.name);
		if (!plausible && fuzz_rng_chance(RNG, 1, 4))
			n.name[HMMU_NAME_MAX - 1] = 'x';
		return wire_request(m, op, id, &n, sizeof(n));
	}
	case HMMU_OP_MIRROR_REGISTER: {
		/* Without an fd the probe means nothing: any value will do. */
		struct hmmu_wire_register reg = {
			.mirror = pick_mirror(c, -1),
			.probe = plausible ? 0 : absurd_addr(),
		};

		return wire_request(m, op, id, &reg, sizeof(reg));
	}
	case HMMU_OP_MIRROR_UNREGISTER:
	case HMMU_OP_MIRROR_DESTROY: {
		struct hmmu_wire_mirror mi = { .mirror = pick_mirror(c, -1) };

		return wire_request(m, op, id, &mi, sizeof(mi));
	}
	case HMMU_OP_DEVICE_CMD: {
		struct hmmu_wire_device_cmd d;

		gen_device_cmd(c, &d, plausible);
		count(FC_DEVICE_CMDS, 1);
		return wire_request(m, op, id, &d, sizeof(d));
	}
	case HMMU_OP_JOB: {
		struct hmmu_wire_job j;

		gen_job(c, &j, plausible);
		count(FC_JOBS, 1);
		return wire_request(m, op, id, &j, sizeof(j));
	}
	case HMMU_OP_LIST: {
		struct hmmu_wire_list l = {
			.what = 1 + (uint32_t)fuzz_rng_below(RNG, HMMU_LIST_MAX_ - 1),
			.start = (uint32_t)fuzz_rng_below(RNG, 12),
		};

		if (!plausible && fuzz_rng_chance(RNG, 1, 2))
			l.start = (uint32_t)fuzz_rng_next(RNG);
		if (!plausible && fuzz_rng_chance(RNG, 1, 4))
			l.what = (uint32_t)fuzz_rng_next(RNG);
		return wire_request(m, op, id, &l, sizeof(l));
	}
	case HMMU_OP_RESERVE_IDS: {
		/* Mostly past or below the ids given; sometimes the bound. */
		static const uint64_t edges[] = {
			HMMU_RESERVE_IDS_MAX, HMMU_RESERVE_IDS_MAX + 1,
			UINT64_MAX,
		};
		struct hmmu_wire_reserve_ids r = {
			.above = fuzz_rng_below(RNG, ids_given_max(c) + 16),
		};

		if (!plausible)
			r.above = fuzz_rng_chance(RNG, 1, 2) ?
					  edges[fuzz_rng_below(RNG, 3)] :
					  fuzz_rng_next(RNG);
		return wire_request(m, op, id, &r, sizeof(r));
	}
	default: {
		/* DEVICE_COUNT, STATS, and ops newer than this file. */
		unsigned char junk[HMMU_MSG_MAX];

		for (size_t i = 0; i < sizeof(junk); i++)
			junk[i] = plausible ? 0 : (unsigned char)fuzz_rng_next(RNG);
		return wire_request(m, op, id, junk, sizeof(junk));
	}
	}
}

static unsigned any_op(void)
{
	return 1 + (unsigned)fuzz_rng_below(RNG, HMMU_OP_MAX_ - 1);
}

/* ---- mutations ------------------------------------------------------------- */

static const uint64_t interesting[] = {
	0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x1000, 0x7fff, 0x8000, 0xffff,
	0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 0x100000000ull,
	HMMU_MSG_MAX, HMMU_MSG_MAX + 1, WIRE_HDR, WIRE_HDR - 1,
	HMMU_PROTO_MAGIC, HMMU_CMD_MAX_PAGES, ~0ull, 1ull << 63,
};

/* Mutate @m of length @n in place, up to @room bytes. Returns the length. */
static size_t mutate(union wire_msg *m, size_t n, size_t room)
{
	unsigned rounds = 1 + (unsigned)fuzz_rng_below(RNG, 3);

	while (rounds--) {
		switch (fuzz_rng_below(RNG, 12)) {
		case 0: /* bit flips */
			for (unsigned k = 1 + (unsigned)fuzz_rng_below(RNG, 8);
			     k-- && n;)
				m->buf[fuzz_rng_below(RNG, n)] ^=
					(unsigned char)(1u << fuzz_rng_below(RNG, 8));
			break;
		case 1: { /* an interesting value at an aligned offset */
			uint64_t v = interesting[fuzz_rng_below(
				RNG, sizeof(interesting) / sizeof(interesting[0]))];
			size_t w = (size_t)1 << fuzz_rng_below(RNG, 4);

			if (n >= w) {
				size_t at = fuzz_rng_below(RNG, n / w + 1) * w;

				if (at + w <= n)
					memcpy(m->buf + at, &v, w);
			}
			break;
		}
		case 2: /* truncation, len field left */
			n = fuzz_rng_below(RNG, n + 1);
			break;
		case 3: /* truncation, len field following */
			n = fuzz_rng_below(RNG, n + 1);
			if (n >= WIRE_HDR)
				m->hdr.len = (uint32_t)n;
			break;
		case 4: { /* extension */
			size_t add = 1 + fuzz_rng_below(RNG, 64);

			if (fuzz_rng_chance(RNG, 1, 6))
				add = HMMU_MSG_MAX + fuzz_rng_below(RNG, 600);
			if (n + add > room)
				add = room - n;
			for (size_t i = 0; i < add; i++)
				m->buf[n + i] = fuzz_rng_chance(RNG, 1, 2) ?
							0 :
							(unsigned char)fuzz_rng_next(RNG);
			n += add;
			if (n >= WIRE_HDR && fuzz_rng_chance(RNG, 1, 2))
				m->hdr.len = (uint32_t)n;
			break;
		}
		case 5: /* wrong len field */
			if (n >= WIRE_HDR)
				m->hdr.len = fuzz_rng_chance(RNG, 1, 2) ?
						     (uint32_t)(n + fuzz_rng_below(RNG, 9) - 4) :
						     (uint32_t)fuzz_rng_next(RNG);
			break;
		case 6:
			if (n >= WIRE_HDR)
				m->hdr.magic ^= 1u << fuzz_rng_below(RNG, 32);
			break;
		case 7:
			if (n >= WIRE_HDR)
				m->hdr.flags = (uint16_t)(fuzz_rng_chance(RNG, 1, 2) ?
								  HMMU_MSG_REPLY :
								  fuzz_rng_next(RNG));
			break;
		case 8: /* another op: known (wrong size, most likely) or not */
			if (n >= WIRE_HDR)
				m->hdr.op = (uint16_t)(fuzz_rng_chance(RNG, 2, 3) ?
							       fuzz_rng_below(RNG, HMMU_OP_MAX_ + 2) :
							       fuzz_rng_next(RNG));
			break;
		case 9:
			if (n >= WIRE_HDR)
				m->hdr.status = (int32_t)interesting[fuzz_rng_below(
					RNG, sizeof(interesting) / sizeof(interesting[0]))];
			break;
		case 10: /* a random byte */
			if (n)
				m->buf[fuzz_rng_below(RNG, n)] =
					(unsigned char)fuzz_rng_next(RNG);
			break;
		default: /* the payload's tail zeroed or filled */
			if (n > WIRE_HDR) {
				size_t at = WIRE_HDR + fuzz_rng_below(RNG, n - WIRE_HDR);

				memset(m->buf + at, fuzz_rng_chance(RNG, 1, 2) ? 0 : 0xff,
				       n - at);
			}
			break;
		}
	}
	return n;
}

static size_t random_bytes(union wire_msg *m)
{
	size_t n;

	switch (fuzz_rng_below(RNG, 5)) {
	case 0:
		n = fuzz_rng_below(RNG, WIRE_HDR);
		break;
	case 1:
		n = HMMU_MSG_MAX + 1 + fuzz_rng_below(RNG, 1024);
		break;
	default:
		n = WIRE_HDR + fuzz_rng_below(RNG, HMMU_MSG_MAX - WIRE_HDR + 1);
		break;
	}
	for (size_t i = 0; i < n; i++)
		m->buf[i] = (unsigned char)fuzz_rng_next(RNG);
	/* Half the time a header that gets past the first checks. */
	if (n >= WIRE_HDR && fuzz_rng_chance(RNG, 1, 2)) {
		m->hdr.magic = HMMU_PROTO_MAGIC;
		m->hdr.len = (uint32_t)n;
		if (fuzz_rng_chance(RNG, 1, 2))
			m->hdr.flags = 0;
		if (fuzz_rng_chance(RNG, 1, 2))
			m->hdr.op = (uint16_t)any_op();
		if (fuzz_rng_chance(RNG, 1, 2))
			m->hdr.status = 0;
	}
	return n;
}

/* ---- actions ---------------------------------------------------------------- */

static void act_valid(struct conn *c)
{
	union wire_msg m;
	size_t n = gen_request(c, &m, any_op(), fuzz_rng_chance(RNG, 2, 3));

	count(FC_VALID, 1);
	conn_send(c, &m, n, NULL, 0, NULL, "valid");
}

static void act_mutated(struct conn *c)
{
	union wire_msg m;
	size_t n = gen_request(c, &m, any_op(), 1);

	n = mutate(&m, n, sizeof(m.buf));
	count(FC_MUTATED, 1);
	conn_send(c, &m, n, NULL, 0, NULL, "mutated");
}

static void act_random(struct conn *c)
{
	union wire_msg m;
	size_t n = random_bytes(&m);

	count(FC_RANDOM, 1);
	conn_send(c, &m, n, NULL, 0, NULL, "random");
}

/* One or more fds of any kind on a message of any kind. */
static void act_fds(struct conn *c)
{
	int fds[MAX_FDS_SEND], nfds = 1, sent;
	union wire_msg m;
	size_t n;
	unsigned op = fuzz_rng_chance(RNG, 1, 2) ? HMMU_OP_MIRROR_REGISTER :
						   any_op();

	if (fuzz_rng_chance(RNG, 1, 3))
		nfds = 2 + (int)fuzz_rng_below(RNG, MAX_FDS_SEND - 1);
	for (int i = 0; i < nfds; i++) {
		enum fd_kind k = (enum fd_kind)fuzz_rng_below(RNG, FD_KINDS_);

		fds[i] = make_fd(k, c);
		trace("fd %d: %s", fds[i], fd_kind_names[k]);
		if (fds[i] < 0)
			fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (k >= FD_UFFD_NO_API && k <= FD_UFFD_CHILD_DEAD)
			count(FC_UFFDS, 1);
	}
	if (c->closed)
		goto out;
	n = gen_request(c, &m, op, fuzz_rng_chance(RNG, 3, 4));
	if (fuzz_rng_chance(RNG, 1, 4))
		n = mutate(&m, n, sizeof(m.buf));
	sent = conn_send(c, &m, n, fds, nfds, NULL, "with-fds");
	(void)sent;
out:
	for (int i = 0; i < nfds; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* Credentials we choose: our own pid with another uid, or another pid. */
static void act_forged_creds(struct conn *c)
{
	struct ucred cr = { .pid = getpid(), .uid = 0, .gid = 0 };
	union wire_msg m;
	size_t n = gen_request(c, &m, any_op(), 1);
	int fd = -1;

	switch (fuzz_rng_below(RNG, 4)) {
	case 0:
		cr.uid = (uid_t)fuzz_rng_below(RNG, 70000);
		break;
	case 1:
		cr.pid = getppid();
		break;
	case 2:
		cr.pid = 1;
		break;
	default:
		cr.pid = C.nkids ? C.kids[0] : getppid();
		break;
	}
	if (fuzz_rng_chance(RNG, 1, 3))
		fd = make_fd(fuzz_rng_chance(RNG, 1, 2) ? FD_UFFD_GOOD : FD_EVENTFD,
			     c);
	conn_send(c, &m, n, fd >= 0 ? &fd : NULL, fd >= 0, &cr, "forged-creds");
	if (fd >= 0)
		close(fd);
}

/*
 * A forked grandchild speaks on our connection: every message it sends is
 * refused with -EPERM. Its messages are judged here, before it runs.
 */
static void act_foreign(struct conn *c)
{
	union wire_msg msgs[4];
	size_t lens[4];
	unsigned k = 1 + (unsigned)fuzz_rng_below(RNG, 4), filed = 0;
	pid_t me = getpid(), pid;

	for (unsigned i = 0; i < k; i++) {
		struct wire_verdict v;
		struct pending *p;

		lens[i] = gen_request(c, &msgs[i], any_op(), 1);
		if (fuzz_rng_chance(RNG, 1, 3))
			lens[i] = mutate(&msgs[i], lens[i], sizeof(msgs[i].buf));
		if (c->npend >= MAX_PENDING)
			break;
		wire_judge(&msgs[i], lens[i], 0, 1, c->hello_done, &v);
		p = &c->pend[c->npend++];
		memset(p, 0, sizeof(*p));
		p->op = v.op;
		p->id = v.id;
		p->status = v.status;
		p->exact = v.exact;
		p->optional = 1;
		p->kind = "from-grandchild";
		p->len = lens[i];
		p->foreign = 1;
		p->hello_done = c->hello_done;
		memcpy(p->bytes, &msgs[i], lens[i] < PEND_COPY ? lens[i] : PEND_COPY);
		filed++;
	}
	toucher_stop();
	count(FC_FORKS, 1);
	pid = fork();
	if (pid == 0) {
		grandchild_setup(me);
		for (unsigned i = 0; i < filed; i++)
			if (send(c->fd, &msgs[i], lens[i],
				 MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) {
				count(FC_MESSAGES, 1);
				count(FC_FOREIGN, 1);
			}
		_exit(0);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	trace("conn%d: grandchild %d sent %u message(s)", c->n, pid, filed);
}

/* Create a mirror on @dev (or any device) and wait for its id. */
static uint64_t sync_create(struct conn *c, int dev)
{
	struct hmmu_wire_device_name n;
	union wire_msg m;
	size_t len;

	memset(&n, 0, sizeof(n));
	if (dev < 0)
		dev = (int)fuzz_rng_below(RNG, C.sh->ndevices);
	memcpy(n.name, C.sh->devices[dev], HMMU_NAME_MAX);
	len = wire_request(&m, HMMU_OP_MIRROR_CREATE, c->next_id++, &n, sizeof(n));
	if (call(c, &m, len, NULL, 0, "create") != 0)
		return 0;
	return ((struct hmmu_wire_mirror *)wire_payload(&C.reply))->mirror;
}

/*
 * Register @id as libhmmu does: without an fd; on NEED_UFFD, again with
 * one. Mostly a good userfaultfd, sometimes one of the wrong kinds.
 */
static int sync_register(struct conn *c, uint64_t id)
{
	struct hmmu_wire_register mi = { .mirror = id };
	union wire_msg m;
	size_t len = wire_request(&m, HMMU_OP_MIRROR_REGISTER, c->next_id++,
				  &mi, sizeof(mi));
	int st = call(c, &m, len, NULL, 0, "register"), fd;
	enum fd_kind k = FD_UFFD_GOOD;
	size_t probe_len = 2 * C.page;
	char *probe;

	if (st != HMMU_STATUS_NEED_UFFD)
		return st;
	switch (fuzz_rng_below(RNG, 16)) {
	case 0:
		k = FD_UFFD_CHILD_ALIVE;
		break;
	case 1:
		k = FD_UFFD_CHILD_DEAD;
		break;
	case 2:
		k = FD_UFFD_NO_API;
		break;
	case 3:
		k = FD_UFFD_MISSING;
		break;
	case 4:
		k = (enum fd_kind)fuzz_rng_below(RNG, FD_KINDS_);
		break;
	default:
		break;
	}
	fd = make_fd(k, c);
	trace("register %llu with fd %d: %s", (unsigned long long)id, fd,
	      fd_kind_names[k]);
	if (fd < 0)
		return NO_REPLY;
	count(FC_UFFDS, 1);
	/*
	 * Two fresh pages for the daemon's proof that the fd is ours, as
	 * libhmmu sends; now and then touched, absent or absurd.
	 */
	probe = mmap(NULL, probe_len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mi.probe = probe == MAP_FAILED ? 0 : (uint64_t)(uintptr_t)probe;
	switch (probe == MAP_FAILED ? 0 : fuzz_rng_below(RNG, 24)) {
	case 0:
		mi.probe = fuzz_rng_chance(RNG, 1, 2) ? 0 : absurd_addr();
		break;
	case 1:
		probe[0] = 1;
		break;
	case 2:
		probe[C.page] = 1;
		break;
	default:
		break;
	}
	len = wire_request(&m, HMMU_OP_MIRROR_REGISTER, c->next_id++, &mi,
			   sizeof(mi));
	st = call(c, &m, len, &fd, 1, "register+uffd");
	close(fd);
	if (probe != MAP_FAILED)
		munmap(probe, probe_len);
	return st;
}

/* A registered mirror on a device of @model, made if need be; 0 if none. */
static uint64_t registered_mirror(struct conn *c, const char *model)
{
	int dev = device_of_model(model);
	uint64_t id;

	for (unsigned i = 0; i < c->nmirrors; i++) {
		struct mirror_ref *mr = &c->mirrors[i];

		if (mr->registered && !mr->gone && mr->dev >= 0 &&
		    strcmp(C.sh->models[mr->dev], model) == 0 &&
		    fuzz_rng_chance(RNG, 3, 4))
			return mr->id;
	}
	if (dev < 0)
		return 0;
	id = sync_create(c, dev);
	if (id && sync_register(c, id) == 0)
		return id;
	return 0;
}

/*
 * A migration as libhmmu does it: PREPARE, discard what it marked, FINISH.
 * Now and then the client leaves out FINISH, and then keeps its hands off
 * the range (CPU writes to it may sleep until then).
 */
static void act_migrate(struct conn *c, uint64_t mirror, struct region *r)
{
	struct hmmu_wire_device_cmd d = { .mirror = mirror };
	uint64_t first = fuzz_rng_below(RNG, r->pages);
	union wire_msg m;
	size_t len;
	int st;

	d.cmd = fuzz_rng_chance(RNG, 1, 3) ? HMMU_CMD_EXCLUSIVE_PREPARE :
					     HMMU_CMD_MIGRATE_PREPARE;
	d.addr = (uint64_t)(uintptr_t)r->base + first * C.page;
	d.npages = 1 + fuzz_rng_below(RNG, r->pages - first);
	if (d.npages > HMMU_PREPARE_MAX_PAGES)
		d.npages = HMMU_PREPARE_MAX_PAGES;
	len = wire_request(&m, HMMU_OP_DEVICE_CMD, c->next_id++, &d, sizeof(d));
	C.own_finish = 1;
	st = call(c, &m, len, NULL, 0, "prepare");
	C.own_finish = 0;
	count(FC_MIGRATIONS, 1);
	if (st != 0)
		return;
	/* The map of pages to discard comes in the reply, a bit a page. */
	memset(C.buf, 0, d.npages);
	{
		const struct hmmu_wire_prepare_result *pr = wire_payload(&C.reply);

		for (uint64_t i = 0; i < d.npages; i++)
			C.buf[i] = (pr->discard[i / 8] >> (i % 8)) & 1;
	}
	for (uint64_t i = 0; i < d.npages; i++) {
		uint64_t j = i;

		if (C.buf[i] != 1 || fuzz_rng_chance(RNG, 1, 10))
			continue;
		while (j < d.npages && C.buf[j] == 1)
			j++;
		madvise(r->base + (first + i) * C.page, (j - i) * C.page,
			MADV_DONTNEED);
		i = j;
	}
	if (fuzz_rng_chance(RNG, 1, 20) && !C.a->avoid_known) {
		static const uint32_t cmds[] = {
			HMMU_CMD_READ, HMMU_CMD_WRITE, HMMU_CMD_SNAPSHOT,
			HMMU_CMD_MIGRATE_TO_SYSTEM, HMMU_CMD_RELEASE,
		};

		/*
		 * No FINISH: requests on the range (the daemon's own writes
		 * to it may sleep now), then death. Whatever the migration
		 * left behind is the daemon's to clean up.
		 */
		trace("prepare of %llu pages left unfinished, dying",
		      (unsigned long long)d.npages);
		r->no_touch = 1;
		C.abandoned_prepare = 1;
		for (uint64_t k = fuzz_rng_below(RNG, 4); k--;) {
			d.cmd = cmds[fuzz_rng_below(RNG, sizeof(cmds) / sizeof(cmds[0]))];
			d.buf = (uint64_t)(uintptr_t)C.buf;
			d.buf_len = d.npages * C.page;
			len = wire_request(&m, HMMU_OP_DEVICE_CMD, c->next_id++,
					   &d, sizeof(d));
			conn_send(c, &m, len, NULL, 0, NULL, "after-prepare");
		}
		if (fuzz_rng_chance(RNG, 1, 2))
			usleep((useconds_t)fuzz_rng_below(RNG, 20000));
		if (fuzz_rng_chance(RNG, 1, 2))
			kill(getpid(), SIGKILL);
		_exit(0);
	}
	d.cmd = HMMU_CMD_MIGRATE_FINISH;
	len = wire_request(&m, HMMU_OP_DEVICE_CMD, c->next_id++, &d, sizeof(d));
	if (fuzz_rng_chance(RNG, 1, 2))
		call(c, &m, len, NULL, 0, "finish");
	else
		conn_send(c, &m, len, NULL, 0, NULL, "finish");
	/* Touch it again: pages come back from device memory. */
	if (fuzz_rng_chance(RNG, 1, 2))
		touch_pages(r, fuzz_rng_chance(RNG, 1, 2), 4);
}

/* Work on our own memory through a registered mirror: the real thing. */
static void act_scenario(struct conn *c)
{
	int accel = fuzz_rng_chance(RNG, 1, 3);
	uint64_t id = registered_mirror(c, accel ? "accel" : "dmirror");
	struct region *r = any_region();
	unsigned burst = 1 + (unsigned)fuzz_rng_below(RNG, 12);

	if (!id || !r || c->closed)
		return;
	if (fuzz_rng_chance(RNG, 1, 3))
		toucher_start();
	if (!accel && touchable(r) && fuzz_rng_chance(RNG, 1, 3)) {
		act_migrate(c, id, r);
		return;
	}
	while (burst-- && !c->closed) {
		union wire_msg m;
		size_t len;

		if (accel) {
			struct hmmu_wire_job j;

			gen_job(c, &j, fuzz_rng_chance(RNG, 4, 5));
			j.mirror = id;
			len = wire_request(&m, HMMU_OP_JOB, c->next_id++, &j,
					   sizeof(j));
			count(FC_JOBS, 1);
		} else {
			struct hmmu_wire_device_cmd d;

			gen_device_cmd(c, &d, fuzz_rng_chance(RNG, 4, 5));
			d.mirror = id;
			/* Migrations go through act_migrate(), in order. */
			if (d.cmd == HMMU_CMD_MIGRATE_PREPARE ||
			    d.cmd == HMMU_CMD_EXCLUSIVE_PREPARE)
				d.cmd = HMMU_CMD_SNAPSHOT;
			len = wire_request(&m, HMMU_OP_DEVICE_CMD, c->next_id++,
					   &d, sizeof(d));
			count(FC_DEVICE_CMDS, 1);
		}
		if (fuzz_rng_chance(RNG, 1, 3))
			call(c, &m, len, NULL, 0, "scenario");
		else
			conn_send(c, &m, len, NULL, 0, NULL, "scenario");
		if (fuzz_rng_chance(RNG, 1, 3))
			touch_pages(r, 1, 2);
	}
}

/* A PREPARE or FINISH in flight on @c, or a FINISH owed? */
static int migration_in_flight(void)
{
	if (C.nowed)
		return 1;
	for (unsigned i = 0; i < C.nconns; i++) {
		struct conn *c = &C.conns[i];

		for (unsigned k = 0; !c->closed && k < c->npend; k++) {
			struct hmmu_wire_device_cmd d;

			if (c->pend[k].op != HMMU_OP_DEVICE_CMD ||
			    c->pend[k].len < WIRE_HDR + sizeof(d))
				continue;
			memcpy(&d, c->pend[k].bytes + WIRE_HDR, sizeof(d));
			if (d.cmd == HMMU_CMD_MIGRATE_PREPARE ||
			    d.cmd == HMMU_CMD_EXCLUSIVE_PREPARE ||
			    d.cmd == HMMU_CMD_MIGRATE_FINISH)
				return 1;
		}
	}
	return 0;
}

/*
 * --avoid-known: moving or unmapping pages while their migration is not
 * settled leaves it unsettled for ever (sockfuzz.h). Wait for the replies
 * first; 0 if they did not come.
 */
static int migrations_settled(void)
{
	long deadline = elapsed_ms() + C.a->reply_timeout_ms;

	while (migration_in_flight() && elapsed_ms() < deadline) {
		drain_all(20);
		pay_finishes();
	}
	return !migration_in_flight();
}

/* Change the CPU side of mirrored memory: the daemon must keep up. */
static void act_memory(void)
{
	struct region *r = any_region();
	size_t bytes, first, n;

	if (!r)
		return;
	count(FC_MEM_OPS, 1);
	bytes = r->pages * (size_t)C.page;
	first = fuzz_rng_below(RNG, r->pages);
	n = 1 + fuzz_rng_below(RNG, r->pages - first);
	switch (fuzz_rng_below(RNG, 8)) {
	case 0:
	case 1:
		touch_pages(r, 1, 1 + (unsigned)fuzz_rng_below(RNG, 32));
		break;
	case 2:
		if (!r->no_touch)
			madvise(r->base + first * C.page, n * C.page,
				fuzz_rng_chance(RNG, 1, 4) ? MADV_REMOVE :
							     MADV_DONTNEED);
		break;
	case 3: /* read-only for a while */
		if (region_prot(r->kind) != (PROT_READ | PROT_WRITE))
			break;
		toucher_stop();
		mprotect(r->base + first * C.page, n * C.page, PROT_READ);
		touch_pages(r, 0, 4);
		mprotect(r->base + first * C.page, n * C.page,
			 PROT_READ | PROT_WRITE);
		break;
	case 4: /* unmap part, map it back */
		if (r->no_touch || (C.a->avoid_known && !migrations_settled()))
			break;
		toucher_stop();
		munmap(r->base + first * C.page, n * C.page);
		if (map_kind(r->base + first * C.page, n * C.page, r->kind) < 0) {
			trace("remap of %p +%zu pages: %s", (void *)r->base,
			      n, strerror(errno));
			unreserve(r->base + first * C.page, n * C.page);
		}
		trace("memory: unmapped and mapped again %p +%zu pages of %p",
		      (void *)(r->base + first * C.page), n, (void *)r->base);
		if (r->kind == R_LIST)
			build_list(r);
		break;
	case 5: { /* move it to another slot */
		int slot = free_slot();
		char *to;

		if (slot < 0 || r->no_touch ||
		    (C.a->avoid_known && !migrations_settled()))
			break;
		toucher_stop();
		to = C.arena + (size_t)slot * SLOT_BYTES + (2ul << 20);
		if (mremap(r->base, bytes, bytes, MREMAP_MAYMOVE | MREMAP_FIXED,
			   to) == MAP_FAILED) {
			/*
			 * A range of several VMAs (split by an earlier remap
			 * or by userfaultfd) may have moved in part before
			 * the error: start the region afresh where it was.
			 */
			trace("memory: mremap %p: %s", (void *)r->base,
			      strerror(errno));
			unreserve(to, bytes);
			if (map_kind(r->base, bytes, r->kind) < 0)
				unreserve(r->base, bytes);
			else
				fill_region(r);
			break;
		}
		trace("memory: moved %p to %p", (void *)r->base, (void *)to);
		unreserve(r->base, bytes);
		C.slot_used[r->slot] = 0;
		C.slot_used[slot] = 1;
		r->slot = slot;
		r->base = to;
		if (r->kind == R_LIST)
			build_list(r); /* its pointers moved away */
		break;
	}
	case 6: { /* a forked grandchild writes to it (copy on write) */
		pid_t me = getpid(), pid;

		toucher_stop();
		count(FC_FORKS, 1);
		pid = fork();
		if (pid == 0) {
			grandchild_setup(me);
			touch_pages(r, 1, 8);
			_exit(0);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
		break;
	}
	default:
		touch_pages(r, 0, 16);
		break;
	}
}

/* Many mirrors at once, on one connection. */
static void act_many_mirrors(struct conn *c)
{
	unsigned n = 1 + (unsigned)fuzz_rng_below(RNG, 200);
	union wire_msg m;

	for (unsigned i = 0; i < n && !c->closed; i++) {
		struct hmmu_wire_device_name name;
		size_t len;

		memset(&name, 0, sizeof(name));
		memcpy(name.name,
		       C.sh->devices[fuzz_rng_below(RNG, C.sh->ndevices)],
		       HMMU_NAME_MAX);
		len = wire_request(&m, HMMU_OP_MIRROR_CREATE, c->next_id++,
				   &name, sizeof(name));
		conn_send(c, &m, len, NULL, 0, NULL, "create-many");
		if (i % 32 == 31)
			conn_recv(c, 100, NULL, 0);
	}
}

/* A burst of requests, then death with all of them in flight. */
static void die_with_requests_in_flight(struct conn *c)
{
	unsigned n = 1 + (unsigned)fuzz_rng_below(RNG, 40);

	for (unsigned i = 0; i < n && !c->closed; i++) {
		if (fuzz_rng_chance(RNG, 1, 2))
			act_scenario(c);
		else
			act_valid(c);
	}
	trace("dying with requests in flight");
	switch (fuzz_rng_below(RNG, 3)) {
	case 0:
		abort();
	case 1:
		kill(getpid(), SIGKILL);
		_exit(1);
	default:
		_exit(0);
	}
}

/* The end: graceful (every reply awaited) or not. */
static void __attribute__((noreturn)) finish(int graceful)
{
	if (graceful) {
		toucher_stop();
		for (unsigned i = 0; i < C.nconns; i++) {
			struct conn *c = &C.conns[i];
			long deadline = elapsed_ms() + C.a->reply_timeout_ms;

			while (!c->closed && c->npend &&
			       elapsed_ms() < deadline)
				conn_recv(c, 100, NULL, 0);
			if (c->closed || C.abandoned_prepare)
				continue;
			for (unsigned k = 0; k < c->npend; k++)
				if (!c->pend[k].optional)
					finding(&c->pend[k], "conn%d: no reply "
						"to %s/%llu within %d ms",
						c->n,
						hmmu_proto_op_name(c->pend[k].op),
						(unsigned long long)c->pend[k].id,
						C.a->reply_timeout_ms);
		}
	}
	trace("exit (%s)", graceful ? "graceful" : "abrupt");
	_exit(0);
}

/*
 * A client should never crash: its memory is kept away from wild device
 * writes. If it does, its trace says where, and what its regions were.
 */
static void on_crash(int sig, siginfo_t *si, void *uc)
{
	char line[160];
	int n;

	(void)uc;
	n = snprintf(line, sizeof(line), "CRASH: signal %d at %p; regions:\n",
		     sig, si->si_addr);
	(void)!write(C.trace_fd, line, (size_t)n);
	for (unsigned i = 0; i < C.nregions; i++) {
		n = snprintf(line, sizeof(line), "  %p +%zu pages kind %d%s\n",
			     (void *)C.regions[i].base, C.regions[i].pages,
			     C.regions[i].kind,
			     C.regions[i].no_touch ? " no-touch" : "");
		(void)!write(C.trace_fd, line, (size_t)n);
	}
	/* Not async-signal-safe, but this process is done for anyway. */
	{
		FILE *f = fopen("/proc/self/maps", "r");
		uintptr_t at = (uintptr_t)si->si_addr, lo, hi;

		while (f && fgets(line, sizeof(line), f))
			if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 &&
			    hi > at - SLOT_BYTES && lo < at + SLOT_BYTES)
				(void)!write(C.trace_fd, line, strlen(line));
		if (f)
			fclose(f);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

void fuzz_client_main(const struct fuzz_client_args *a)
{
	struct sigaction crash = { .sa_sigaction = on_crash,
				   .sa_flags = SA_SIGINFO };
	struct rlimit no_core = { 0, 0 };
	unsigned actions;
	struct conn *c;

	memset(&C, 0, sizeof(C));
	C.a = a;
	C.sh = a->shared;
	C.page = sysconf(_SC_PAGESIZE);
	fuzz_rng_seed(&C.rng, a->seed);
	clock_gettime(CLOCK_MONOTONIC, &C.start);
	C.trace_fd = a->trace ? open(a->trace, O_WRONLY | O_CREAT | O_TRUNC |
						       O_CLOEXEC, 0644) :
				-1;
	setrlimit(RLIMIT_CORE, &no_core);
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	signal(SIGPIPE, SIG_IGN);
	if (C.trace_fd >= 0) {
		sigaction(SIGSEGV, &crash, NULL);
		sigaction(SIGBUS, &crash, NULL);
	}
	C.uffd_ok = hmmu_uffd_supported(&C.uffd_supported) == 0;
	trace("client #%llu seed %#llx pid %d", (unsigned long long)a->index,
	      (unsigned long long)a->seed, getpid());

	memory_setup();
	c = conn_open();
	if (!c)
		_exit(3);
	/* Mostly a proper HELLO first; sometimes none, or a bad one. */
	if (fuzz_rng_chance(RNG, 9, 10)) {
		union wire_msg m;
		size_t n = gen_request(c, &m, HMMU_OP_HELLO, 1);

		call(c, &m, n, NULL, 0, "hello");
	}

	/* Log-uniform: many short clients, some long ones. */
	actions = 1u << fuzz_rng_below(RNG, 10);
	actions += (unsigned)fuzz_rng_below(RNG, actions);
	for (unsigned i = 0; i < actions; i++) {
		uint64_t roll = fuzz_rng_below(RNG, 1000);

		c = any_conn();
		if (!c) {
			c = conn_open();
			if (!c)
				break;
			if (fuzz_rng_chance(RNG, 9, 10)) {
				union wire_msg m;
				size_t n = gen_request(c, &m, HMMU_OP_HELLO, 1);

				call(c, &m, n, NULL, 0, "hello");
			}
			continue;
		}
		trace("action %s on conn%d",
		      roll < 240 ? "valid" : roll < 420 ? "mutated" :
		      roll < 480 ? "random" : roll < 580 ? "fds" :
		      roll < 740 ? "scenario" : roll < 820 ? "memory" :
		      roll < 850 ? "drain" : roll < 870 ? "foreign" :
		      roll < 890 ? "forged-creds" : roll < 900 ? "many-mirrors" :
		      roll < 930 ? "connect" : roll < 940 ? "close" :
		      roll < 944 ? "die-in-flight" : roll < 946 ? "exit" :
							      "drain-and-valid",
		      c->n);
		if (roll < 240)
			act_valid(c);
		else if (roll < 420)
			act_mutated(c);
		else if (roll < 480)
			act_random(c);
		else if (roll < 580)
			act_fds(c);
		else if (roll < 740)
			act_scenario(c);
		else if (roll < 820)
			act_memory();
		else if (roll < 850)
			drain_all(fuzz_rng_below(RNG, 50));
		else if (roll < 870)
			act_foreign(c);
		else if (roll < 890)
			act_forged_creds(c);
		else if (roll < 900)
			act_many_mirrors(c);
		else if (roll < 930) {
			struct conn *n = conn_open();

			if (n && fuzz_rng_chance(RNG, 9, 10)) {
				union wire_msg m;
				size_t len = gen_request(n, &m, HMMU_OP_HELLO, 1);

				call(n, &m, len, NULL, 0, "hello");
			}
		} else if (roll < 940) {
			conn_drop(c, "closed by us");
		} else if (roll < 944) {
			die_with_requests_in_flight(c);
		} else if (roll < 946) {
			finish(0);
		} else {
			/* Keep up with the replies, as a real client does. */
			drain_all(0);
			act_valid(c);
		}
		if (i % 8 == 7)
			drain_all(0);
		/*
		 * A PREPARE among the random requests: its FINISH must follow
		 * before this client writes to its memory again, or the write
		 * sleeps with nobody left to send the FINISH.
		 */
		migrations_settled();
	}
	finish(fuzz_rng_chance(RNG, 2, 3));
}
