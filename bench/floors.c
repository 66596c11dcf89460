/* SPDX-License-Identifier: MIT */
/*
 * The floors: the kernel operations hmmu's fault paths are built from,
 * bare, with hmmud's process layout. A server process, forked by the bench
 * before it talks to any daemon, is handed a userfaultfd the bench (the
 * client) created, over a socketpair, as libhmmu hands one to hmmud. The
 * server waits in poll() on that fd and on the socket, like hmmud's event
 * loop; it registers and write-protects client ranges on request, resolves
 * the client's faults, and times the operations that only it can do
 * (process_vm_readv/writev of the client, write-protecting a client page)
 * into a shared array.
 *
 * Client-side floors are timed in the client around the one access or call.
 */
#include "floors.h"
#include "../common/kernel_uapi.h"

#include <errno.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

enum op {
	OP_UFFD = 1,	   /* take the attached userfaultfd */
	OP_REGISTER,	   /* n ranges [addr + i*stride, +len), mode */
	OP_PROTECT,	   /* write-protect [addr, +len) (mode 1) or un- (0) */
	OP_TIME_WP_4K,	   /* protect each of n pages, timed */
	OP_TIME_PVM_READ,  /* process_vm_readv each of n pages, timed */
	OP_TIME_PVM_WRITE, /* process_vm_writev each of n pages, timed */
	OP_TIME_PVM_BULK,  /* process_vm_readv [addr, +len) n times, timed */
	OP_PING,	   /* answer at once */
	OP_RPC_FAULT,	   /* protect, read page addr, write it to dst; untimed */
	OP_TIME_WINDOW,	   /* protect + read [addr, +len), timed into [n] */
	OP_FUTEX_RTT,	   /* answer n futex round trips, then the socket */
	OP_QUIT,
};

struct fcmd {
	uint32_t op;
	uint32_t mode;
	uint64_t addr, len, n, stride;
	uint64_t dst; /* OP_RPC_FAULT: the client's reply buffer */
};

struct freply {
	int64_t status; /* 0 or -errno */
};

/* ---- the server ---------------------------------------------------------- */

struct server {
	int sock, uffd;
	pid_t client;
	uint64_t *shared;
	size_t cap;
	size_t ps;
	char *src;  /* the page UFFDIO_COPY copies in */
	char *page; /* a local page for 4 KiB reads and writes */
	char *window; /* WINDOW_PAGES local pages, touched: window-16 reads */
	uint32_t *futex; /* struct fserver's futex words */
};

static int uffd_ioctl(int fd, unsigned long req, void *arg)
{
	/* EAGAIN: an event is queued unread; none is expected here. */
	for (int tries = 0; tries < 100000; tries++) {
		if (ioctl(fd, req, arg) == 0)
			return 0;
		if (errno != EAGAIN)
			return -errno;
	}
	return -EAGAIN;
}

static void serve_uffd(struct server *sv)
{
	struct uffd_msg msgs[16];
	ssize_t n = read(sv->uffd, msgs, sizeof(msgs));

	for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(msgs[0]); i++) {
		const struct uffd_msg *m = &msgs[i];
		uint64_t addr = m->arg.pagefault.address & ~(uint64_t)(sv->ps - 1);

		if (m->event != UFFD_EVENT_PAGEFAULT)
			continue; /* UNMAP: reading it is all the client waits for */
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) {
			struct uffdio_writeprotect wp = {
				.range = { .start = addr, .len = sv->ps },
				.mode = 0, /* un-protect and wake */
			};

			if (uffd_ioctl(sv->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
				perror("floor server: UFFDIO_WRITEPROTECT");
		} else {
			struct uffdio_copy c = {
				.dst = addr,
				.src = (uint64_t)(uintptr_t)sv->src,
				.len = sv->ps,
				.mode = 0, /* and wake */
			};

			if (uffd_ioctl(sv->uffd, UFFDIO_COPY, &c) < 0)
				perror("floor server: UFFDIO_COPY");
		}
	}
}

static int64_t time_pages(struct server *sv, const struct fcmd *c)
{
	if (c->n > sv->cap)
		return -E2BIG;
	for (uint64_t i = 0; i < c->n; i++) {
		uint64_t a = c->addr + i * sv->ps, t0, t1;
		struct iovec local = { sv->page, sv->ps };
		struct iovec remote = { (void *)(uintptr_t)a, sv->ps };
		struct uffdio_writeprotect wp = {
			.range = { .start = a, .len = sv->ps },
			.mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};
		ssize_t r = 0;

		t0 = now_ns();
		if (c->op == OP_TIME_PVM_READ)
			r = process_vm_readv(sv->client, &local, 1, &remote, 1, 0);
		else if (c->op == OP_TIME_PVM_WRITE)
			r = process_vm_writev(sv->client, &local, 1, &remote, 1, 0);
		else
			r = ioctl(sv->uffd, UFFDIO_WRITEPROTECT, &wp) ? -1 : 0;
		t1 = now_ns();
		if (r < 0)
			return -errno;
		sv->shared[i] = t1 - t0;
	}
	return 0;
}

static int64_t time_bulk(struct server *sv, const struct fcmd *c)
{
	char *dst;
	int64_t err = 0;

	if (c->n > sv->cap)
		return -E2BIG;
	dst = mmap(NULL, c->len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (dst == MAP_FAILED)
		return -errno;
	madvise(dst, c->len, MADV_NOHUGEPAGE);
	/* Touched beforehand: the floor is the copy, not our page faults. */
	memset(dst, 1, c->len);
	for (uint64_t rep = 0; rep < c->n && !err; rep++) {
		uint64_t done = 0, t0 = now_ns();

		while (done < c->len) {
			struct iovec local = { dst + done, c->len - done };
			struct iovec remote = {
				(void *)(uintptr_t)(c->addr + done),
				c->len - done
			};
			ssize_t r = process_vm_readv(sv->client, &local, 1,
						     &remote, 1, 0);

			if (r <= 0) {
				err = r < 0 ? -errno : -EIO;
				break;
			}
			done += (uint64_t)r;
		}
		sv->shared[rep] = now_ns() - t0;
	}
	munmap(dst, c->len);
	return err;
}

/*
 * rpc-fault, the server's part: what hmmud's worker does for a one-page
 * device read that faults, and nothing else. Protect the client's page (so
 * that a later CPU write would fault), read it into our page (the device's
 * copy: warm, as a pool of pre-touched copies would make it), write it into
 * the client's reply buffer. The client times the whole round trip.
 */
static int64_t rpc_fault(struct server *sv, const struct fcmd *c)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = c->addr, .len = sv->ps },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	struct iovec local = { sv->page, sv->ps };
	struct iovec remote = { (void *)(uintptr_t)c->addr, sv->ps };
	struct iovec out = { (void *)(uintptr_t)c->dst, sv->ps };
	int err = uffd_ioctl(sv->uffd, UFFDIO_WRITEPROTECT, &wp);
	ssize_t r;

	if (err)
		return err;
	r = process_vm_readv(sv->client, &local, 1, &remote, 1, 0);
	if (r == (ssize_t)sv->ps)
		r = process_vm_writev(sv->client, &local, 1, &out, 1, 0);
	if (r < 0)
		return -errno;
	return r == (ssize_t)sv->ps ? 0 : -EIO;
}

/*
 * window-16, the server's part: one write-protect of the whole window and
 * one process_vm_readv of it into local pages touched beforehand, timed
 * here around exactly that, as device-fault-acc's sample is the device's
 * own time. Sample slot c->n.
 */
static int64_t time_window(struct server *sv, const struct fcmd *c)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = c->addr, .len = c->len },
		.mode = UFFDIO_WRITEPROTECT_MODE_WP,
	};
	struct iovec local = { sv->window, c->len };
	struct iovec remote = { (void *)(uintptr_t)c->addr, c->len };
	uint64_t t0, t1;
	ssize_t r;
	int err;

	if (c->n >= sv->cap || c->len > WINDOW_PAGES * sv->ps)
		return -E2BIG;
	t0 = now_ns();
	err = uffd_ioctl(sv->uffd, UFFDIO_WRITEPROTECT, &wp);
	r = err ? 0 : process_vm_readv(sv->client, &local, 1, &remote, 1, 0);
	t1 = now_ns();
	if (err)
		return err;
	if (r != (ssize_t)c->len)
		return r < 0 ? -errno : -EIO;
	sv->shared[c->n] = t1 - t0;
	return 0;
}

static long futex(uint32_t *word, int op, uint32_t val,
		  const struct timespec *timeout)
{
	/* Not FUTEX_PRIVATE_FLAG: the two sides are different processes. */
	return syscall(SYS_futex, word, op, val, timeout, NULL, 0);
}

/* Until *word differs from @old; -ETIMEDOUT after @timeout (NULL: never). */
static int futex_wait_change(uint32_t *word, uint32_t old,
			     const struct timespec *timeout)
{
	while (__atomic_load_n(word, __ATOMIC_ACQUIRE) == old) {
		if (futex(word, FUTEX_WAIT, old, timeout) < 0 &&
		    errno != EAGAIN && errno != EINTR)
			return -errno;
	}
	return 0;
}

/*
 * futex-rtt, the server's part: @n times, sleep until the client's request
 * word moves, answer in the reply word and wake the client. No spinning: on
 * two CPUs shared with others a spinner takes the CPU the other side needs.
 */
static int64_t futex_serve(struct server *sv, const struct fcmd *c)
{
	uint32_t *req = &sv->futex[0], *rep = &sv->futex[1];
	uint32_t last = __atomic_load_n(rep, __ATOMIC_ACQUIRE);
	/* A client silent for 10 s has given up (futex_floor()). */
	const struct timespec limit = { 10, 0 };

	for (uint64_t i = 0; i < c->n; i++) {
		int err = futex_wait_change(req, last, &limit);

		if (err)
			return err;
		last = __atomic_load_n(req, __ATOMIC_ACQUIRE);
		__atomic_store_n(rep, last, __ATOMIC_RELEASE);
		futex(rep, FUTEX_WAKE, 1, NULL);
	}
	return 0;
}

static int recv_cmd(int sock, struct fcmd *c, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { c, sizeof(*c) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1,
			      .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	struct cmsghdr *cm;
	ssize_t n;

	*fd = -1;
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n != sizeof(*c))
		return -1;
	for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(cm), sizeof(int));
	return 0;
}

static int64_t execute(struct server *sv, const struct fcmd *c, int fd)
{
	switch (c->op) {
	case OP_UFFD:
		if (fd < 0)
			return -EBADF;
		if (sv->uffd >= 0)
			close(sv->uffd);
		sv->uffd = fd;
		return 0;
	case OP_REGISTER:
		for (uint64_t i = 0; i < c->n; i++) {
			struct uffdio_register reg = {
				.range = { .start = c->addr + i * c->stride,
					   .len = c->len },
				.mode = c->mode,
			};

			if (ioctl(sv->uffd, UFFDIO_REGISTER, &reg) < 0)
				return -errno;
		}
		return 0;
	case OP_PROTECT: {
		struct uffdio_writeprotect wp = {
			.range = { .start = c->addr, .len = c->len },
			.mode = c->mode ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
		};

		return uffd_ioctl(sv->uffd, UFFDIO_WRITEPROTECT, &wp);
	}
	case OP_TIME_WP_4K:
	case OP_TIME_PVM_READ:
	case OP_TIME_PVM_WRITE:
		return time_pages(sv, c);
	case OP_TIME_PVM_BULK:
		return time_bulk(sv, c);
	case OP_PING:
		return 0;
	case OP_RPC_FAULT:
		return rpc_fault(sv, c);
	case OP_TIME_WINDOW:
		return time_window(sv, c);
	case OP_FUTEX_RTT:
		return futex_serve(sv, c);
	default:
		return -EINVAL;
	}
}

static void __attribute__((noreturn)) server_main(struct server *sv)
{
	for (;;) {
		struct pollfd pfd[2] = {
			{ .fd = sv->sock, .events = POLLIN },
			{ .fd = sv->uffd, .events = POLLIN },
		};
		struct freply rep;
		struct fcmd c;
		int fd;

		if (poll(pfd, sv->uffd >= 0 ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			_exit(1);
		}
		/* Faults first: a client waiting in one sends nothing. */
		if (sv->uffd >= 0 && pfd[1].revents)
			serve_uffd(sv);
		if (!pfd[0].revents)
			continue;
		if (recv_cmd(sv->sock, &c, &fd) < 0 || c.op == OP_QUIT)
			_exit(0);
		if (c.op != OP_UFFD && fd >= 0)
			close(fd);
		rep.status = execute(sv, &c, fd);
		if (send(sv->sock, &rep, sizeof(rep), MSG_NOSIGNAL) < 0)
			_exit(1);
	}
}

/* ---- the client's side ------------------------------------------------- */

int fserver_start(struct fserver *fs, size_t cap)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	pid_t parent = getpid();
	int sv[2];

	memset(fs, 0, sizeof(*fs));
	fs->sock = -1;
	fs->cap = cap;
	fs->ps = ps;
	fs->shared = mmap(NULL, cap * sizeof(uint64_t), PROT_READ | PROT_WRITE,
			  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fs->shared == MAP_FAILED)
		return -errno;
	/* Its own page: no sample store shares a cache line with them. */
	fs->futex = mmap(NULL, ps, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (fs->futex == MAP_FAILED)
		return -errno;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	fflush(NULL);
	fs->pid = fork();
	if (fs->pid < 0)
		return -errno;
	if (fs->pid == 0) {
		struct server s = {
			.sock = sv[1], .uffd = -1, .client = parent,
			.shared = fs->shared, .cap = cap, .ps = ps,
			.futex = fs->futex,
		};

		close(sv[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != s.client)
			_exit(0);
		s.src = aligned_alloc(ps, ps);
		s.page = aligned_alloc(ps, ps);
		s.window = aligned_alloc(ps, WINDOW_PAGES * ps);
		if (!s.src || !s.page || !s.window)
			_exit(1);
		memset(s.src, 0x5a, ps);
		memset(s.page, 0xa5, ps);
		memset(s.window, 0xa5, WINDOW_PAGES * ps);
		server_main(&s);
	}
	close(sv[1]);
	fs->sock = sv[0];
	/* Yama may forbid a child to read its parent: allow this one. */
	prctl(PR_SET_PTRACER, fs->pid, 0, 0, 0);
	return 0;
}

static int send_cmd(struct fserver *fs, const struct fcmd *c, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { (void *)c, sizeof(*c) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *cm;

		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(fs->sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

static int recv_reply(struct fserver *fs)
{
	struct freply rep;
	ssize_t n;

	do
		n = recv(fs->sock, &rep, sizeof(rep), 0);
	while (n < 0 && errno == EINTR);
	if (n != sizeof(rep))
		return n < 0 ? -errno : -ECONNRESET;
	return (int)rep.status;
}

/* A command and its answer: the ipc-rtt floor's round trip. */
static int call(struct fserver *fs, const struct fcmd *c, int fd)
{
	int err = send_cmd(fs, c, fd);

	return err ? err : recv_reply(fs);
}

void fserver_stop(struct fserver *fs)
{
	struct fcmd c = { .op = OP_QUIT };

	if (fs->sock >= 0) {
		(void)!send(fs->sock, &c, sizeof(c), MSG_NOSIGNAL);
		close(fs->sock);
		fs->sock = -1;
	}
	if (fs->pid > 0)
		waitpid(fs->pid, NULL, 0);
	fs->pid = 0;
	if (fs->shared && fs->shared != MAP_FAILED)
		munmap(fs->shared, fs->cap * sizeof(uint64_t));
	fs->shared = NULL;
	if (fs->futex && fs->futex != MAP_FAILED)
		munmap(fs->futex, fs->ps);
	fs->futex = NULL;
}

/*
 * The userfaultfd, made here and handed over as libhmmu does: the client
 * keeps no copy. Write-protect faults and unmap events, as hmmu asks for.
 */
static int give_uffd(struct fserver *fs)
{
	struct fcmd c = { .op = OP_UFFD };
	int fd, err;

	if (fs->have_uffd)
		return 0;
	fd = open_userfaultfd(UFFD_FEATURE_PAGEFAULT_FLAG_WP |
			      UFFD_FEATURE_EVENT_UNMAP);
	if (fd < 0)
		return fd;
	err = call(fs, &c, fd);
	close(fd);
	if (!err)
		fs->have_uffd = 1;
	return err;
}

static int reg(struct fserver *fs, void *addr, uint64_t len, uint64_t n,
	       uint64_t stride, uint32_t mode)
{
	struct fcmd c = { .op = OP_REGISTER, .mode = mode,
			  .addr = (uint64_t)(uintptr_t)addr, .len = len,
			  .n = n, .stride = stride };

	return call(fs, &c, -1);
}

/* Copy the server's samples [skip, n) into @r. */
static int take_shared(struct fserver *fs, uint64_t skip, uint64_t n,
		       uint64_t div, struct result *r)
{
	for (uint64_t i = skip; i < n; i++)
		if (samples_add(&r->s, fs->shared[i] / div) < 0)
			return -ENOMEM;
	return 0;
}

static int server_timed(struct fserver *fs, enum op op, uint64_t pages,
			uint64_t warm, struct result *r)
{
	uint64_t n = pages + warm;
	char *p = map_pages(n);
	struct fcmd c = { .op = op, .addr = (uint64_t)(uintptr_t)p, .n = n };
	int err = 0;

	if (!p)
		return -ENOMEM;
	if (op == OP_TIME_WP_4K)
		/* hmmud registers whole VMAs in write-protect mode, once. */
		err = reg(fs, p, n * fs->ps, 1, 0, UFFDIO_REGISTER_MODE_WP);
	touch_pages(p, n);
	if (!err)
		err = call(fs, &c, -1);
	if (!err)
		err = take_shared(fs, warm, n, 1, r);
	unmap_pages(p, n);
	return err;
}

static int client_fault(struct fserver *fs, int wp, uint64_t pages,
			uint64_t warm, struct result *r)
{
	uint64_t n = pages + warm;
	char *p = map_pages(n);
	int err;

	if (!p)
		return -ENOMEM;
	err = reg(fs, p, n * fs->ps, 1, 0,
		  wp ? UFFDIO_REGISTER_MODE_WP : UFFDIO_REGISTER_MODE_MISSING);
	if (!err && wp) {
		struct fcmd c = { .op = OP_PROTECT, .mode = 1,
				  .addr = (uint64_t)(uintptr_t)p,
				  .len = n * fs->ps };

		touch_pages(p, n);
		err = call(fs, &c, -1);
	}
	for (uint64_t i = 0; i < n && !err; i++) {
		volatile char *a = p + i * fs->ps;
		uint64_t t0, t1;

		t0 = now_ns();
		if (wp)
			*a = 2;
		else
			(void)*a;
		t1 = now_ns();
		if (i >= warm)
			err = samples_add(&r->s, t1 - t0);
	}
	unmap_pages(p, n);
	return err;
}

/* 1-page VMAs with a PROT_NONE page between each, as unmap-invalidate. */
char *map_separate_pages(size_t n)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	char *p = map_pages(2 * n);

	if (!p)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		if (mprotect(p + (2 * i + 1) * ps, ps, PROT_NONE) < 0) {
			unmap_pages(p, 2 * n);
			return NULL;
		}
	}
	return p;
}

static int unmap_floor(struct fserver *fs, uint64_t pages, uint64_t warm,
		       struct result *r)
{
	uint64_t n = pages + warm;
	char *p = map_separate_pages(n);
	int err;

	if (!p)
		return -ENOMEM;
	err = reg(fs, p, fs->ps, n, 2 * fs->ps, UFFDIO_REGISTER_MODE_WP);
	for (uint64_t i = 0; i < n; i++)
		p[2 * i * fs->ps] = 1;
	for (uint64_t i = 0; i < n && !err; i++) {
		uint64_t t0 = now_ns();

		if (munmap(p + 2 * i * fs->ps, fs->ps) < 0)
			err = -errno;
		if (i >= warm && !err)
			err = samples_add(&r->s, now_ns() - t0);
	}
	unmap_pages(p, 2 * n);
	return err;
}

static int anon_floor(uint64_t pages, uint64_t warm, struct result *r)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t n = pages + warm;
	char *p = map_pages(n);
	int err = 0;

	if (!p)
		return -ENOMEM;
	for (uint64_t i = 0; i < n && !err; i++) {
		volatile char *a = p + i * ps;
		uint64_t t0 = now_ns();

		*a = 1;
		if (i >= warm)
			err = samples_add(&r->s, now_ns() - t0);
	}
	unmap_pages(p, n);
	return err;
}

static int ping_floor(struct fserver *fs, uint64_t pages, uint64_t warm,
		      struct result *r)
{
	struct fcmd c = { .op = OP_PING };
	int err = 0;

	for (uint64_t i = 0; i < pages + warm && !err; i++) {
		uint64_t t0 = now_ns();

		err = call(fs, &c, -1);
		if (i >= warm && !err)
			err = samples_add(&r->s, now_ns() - t0);
	}
	return err;
}

static int bulk_floor(struct fserver *fs, const struct config *cfg,
		      struct result *r)
{
	uint64_t len = cfg->stream_mib << 20, npages = len / fs->ps;
	char *p = map_pages(npages);
	/* One more repetition first, not counted: it runs colder. */
	struct fcmd c = { .op = OP_TIME_PVM_BULK,
			  .addr = (uint64_t)(uintptr_t)p, .len = len,
			  .n = cfg->stream_reps + 1 };
	int err;

	if (!p)
		return -ENOMEM;
	memset(p, 3, len);
	err = call(fs, &c, -1);
	if (!err)
		err = take_shared(fs, 1, cfg->stream_reps + 1, npages, r);
	r->bytes = len;
	unmap_pages(p, npages);
	return err;
}

/*
 * rpc-fault: what device-fault does per sample, minus hmmu. Each sample a
 * fresh page the client wrote (it exists, neither protected nor read
 * before), in a VMA registered in write-protect mode once, as hmmud
 * registers it at the VMA's first fault; the server protects it, reads it
 * and writes it into the client's one reply buffer (touched, as
 * device-fault's), then replies. Timed in the client around the round
 * trip, as device-fault is around hmmu_device_read.
 */
static int rpc_fault_floor(struct fserver *fs, uint64_t pages, uint64_t warm,
			   struct result *r)
{
	uint64_t n = pages + warm;
	char *p = map_pages(n), *out = map_pages(1);
	int err = -ENOMEM;

	if (!p || !out)
		goto out;
	err = reg(fs, p, n * fs->ps, 1, 0, UFFDIO_REGISTER_MODE_WP);
	touch_pages(p, n);
	touch_pages(out, 1);
	for (uint64_t i = 0; i < n && !err; i++) {
		struct fcmd c = { .op = OP_RPC_FAULT,
				  .addr = (uint64_t)(uintptr_t)(p + i * fs->ps),
				  .dst = (uint64_t)(uintptr_t)out };
		uint64_t t0 = now_ns(), t1;

		err = call(fs, &c, -1);
		t1 = now_ns();
		if (!err && i >= warm)
			err = samples_add(&r->s, t1 - t0);
	}
out:
	unmap_pages(p, n);
	unmap_pages(out, 1);
	return err;
}

/*
 * window-16: at each request of the client (which waits for the answer, as
 * a client waits in hmmu_job_run while the accelerator faults), the server
 * protects a fresh window of WINDOW_PAGES written pages in one
 * UFFDIO_WRITEPROTECT and reads it in one process_vm_readv, timed in the
 * server around those two calls only.
 */
static int window_floor(struct fserver *fs, uint64_t pages, uint64_t warm,
			struct result *r)
{
	uint64_t n = pages + warm, win = WINDOW_PAGES * fs->ps;
	char *p = map_pages(n * WINDOW_PAGES);
	int err;

	if (!p)
		return -ENOMEM;
	if (n > fs->cap) {
		unmap_pages(p, n * WINDOW_PAGES);
		return -E2BIG;
	}
	err = reg(fs, p, n * win, 1, 0, UFFDIO_REGISTER_MODE_WP);
	touch_pages(p, n * WINDOW_PAGES);
	for (uint64_t i = 0; i < n && !err; i++) {
		struct fcmd c = { .op = OP_TIME_WINDOW,
				  .addr = (uint64_t)(uintptr_t)(p + i * win),
				  .len = win, .n = i };

		err = call(fs, &c, -1);
	}
	if (!err)
		err = take_shared(fs, warm, n, 1, r);
	unmap_pages(p, n * WINDOW_PAGES);
	return err;
}

/*
 * uffd-wp-async: the client's first write to a write-protected page under
 * UFFD_FEATURE_WP_ASYNC, which the kernel resolves alone (it clears the
 * protection and the write proceeds; PAGEMAP_SCAN can later say the page
 * was written). No reader takes part, so the userfaultfd stays in the
 * client: where it lives does not change the fault. Each sample a fresh
 * page; all are protected in one call before the timed loop, which is
 * the re-protection between samples, outside the timed region.
 */
static int wp_async_floor(uint64_t pages, uint64_t warm, struct result *r)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	uint64_t n = pages + warm;
	int fd = open_userfaultfd(UFFD_FEATURE_WP_ASYNC);
	char *p = NULL;
	int err = 0;

	if (fd == -EOPNOTSUPP || fd == -EINVAL) {
		/* Not a failure of the run: the floor has no figure here. */
		result_skip(r, "no figure: the kernel offers no "
			       "UFFD_FEATURE_WP_ASYNC (Linux 6.7 or later)");
		return 0;
	}
	if (fd < 0)
		return fd;
	p = map_pages(n);
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	touch_pages(p, n); /* populated: protecting skips empty PTEs */
	{
		struct uffdio_register rg = {
			.range = { .start = (uint64_t)(uintptr_t)p, .len = n * ps },
			.mode = UFFDIO_REGISTER_MODE_WP,
		};
		struct uffdio_writeprotect wp = {
			.range = rg.range, .mode = UFFDIO_WRITEPROTECT_MODE_WP,
		};

		if (ioctl(fd, UFFDIO_REGISTER, &rg) < 0 ||
		    ioctl(fd, UFFDIO_WRITEPROTECT, &wp) < 0)
			err = -errno;
	}
	for (uint64_t i = 0; i < n && !err; i++) {
		volatile char *a = p + i * ps;
		uint64_t t0 = now_ns(), t1;

		*a = 2;
		t1 = now_ns();
		if (i >= warm)
			err = samples_add(&r->s, t1 - t0);
	}
	unmap_pages(p, n);
	close(fd);
	return err;
}

/*
 * futex-rtt: a round trip over shared memory between the client and the
 * server's thread (another process): the client bumps the request word
 * and wakes the server (FUTEX_WAKE), then sleeps (FUTEX_WAIT) until the
 * reply word shows the same number; the server, asleep on the request
 * word, answers likewise. Always a wake-up each way, never a spin.
 */
static int futex_floor(struct fserver *fs, uint64_t pages, uint64_t warm,
		       struct result *r)
{
	const struct timespec limit = { 10, 0 };
	struct fcmd c = { .op = OP_FUTEX_RTT, .n = pages + warm };
	uint32_t *req = &fs->futex[0], *rep = &fs->futex[1];
	int err = send_cmd(fs, &c, -1);

	for (uint64_t i = 0; i < pages + warm && !err; i++) {
		uint32_t seq = ++fs->futex_seq;
		uint64_t t0 = now_ns();

		__atomic_store_n(req, seq, __ATOMIC_RELEASE);
		futex(req, FUTEX_WAKE, 1, NULL);
		/* A server gone for 10 s is one that died. */
		err = futex_wait_change(rep, seq - 1, &limit);
		if (!err && __atomic_load_n(rep, __ATOMIC_ACQUIRE) != seq)
			err = -EPROTO;
		if (!err && i >= warm)
			err = samples_add(&r->s, now_ns() - t0);
	}
	/*
	 * On an error the server gives up waiting after 10 s and answers;
	 * the run stops, and fserver_stop() then finds it back in poll().
	 */
	return err ? err : recv_reply(fs);
}

uint64_t warmup_of(uint64_t pages)
{
	uint64_t w = pages / 16;

	return w < 8 ? 8 : w > 256 ? 256 : w;
}

int floor_run(struct fserver *fs, const struct config *cfg, enum floor_id id,
	      struct result *r, uint64_t n)
{
	uint64_t w = warmup_of(n);
	int err = 0;

	if (id != F_ANON_FIRST_TOUCH && id != F_IPC_RTT &&
	    id != F_PVM_READ_4K && id != F_PVM_WRITE_4K &&
	    id != F_PVM_READ_BULK && id != F_UFFD_WP_ASYNC && id != F_FUTEX_RTT)
		err = give_uffd(fs);
	if (err)
		return err;
	switch (id) {
	case F_UFFD_MISSING:
		return client_fault(fs, 0, n, w, r);
	case F_UFFD_WP:
		return client_fault(fs, 1, n, w, r);
	case F_UFFD_UNMAP:
		return unmap_floor(fs, n, w, r);
	case F_PVM_READ_4K:
		return server_timed(fs, OP_TIME_PVM_READ, n, w, r);
	case F_PVM_WRITE_4K:
		return server_timed(fs, OP_TIME_PVM_WRITE, n, w, r);
	case F_WP_4K:
		return server_timed(fs, OP_TIME_WP_4K, n, w, r);
	case F_PVM_READ_BULK:
		return bulk_floor(fs, cfg, r);
	case F_ANON_FIRST_TOUCH:
		return anon_floor(n, w, r);
	case F_IPC_RTT:
		return ping_floor(fs, n, w, r);
	case F_RPC_FAULT:
		return rpc_fault_floor(fs, n, w, r);
	case F_WINDOW_16:
		return window_floor(fs, n, w, r);
	case F_UFFD_WP_ASYNC:
		return wp_async_floor(n, w, r);
	case F_FUTEX_RTT:
		return futex_floor(fs, n, w, r);
	default:
		return -EINVAL;
	}
}
