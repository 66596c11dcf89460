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

#include <errno.h>
#include <linux/futex.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/socket.h>
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
	OP_QUIT,
};

struct fcmd {
	uint32_t op;
	uint32_t mode;
	uint64_t addr, len, n, stride;
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
		};

		close(sv[0]);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != s.client)
			_exit(0);
		s.src = aligned_alloc(ps, ps);
		s.page = aligned_alloc(ps, ps);
		if (!s.src || !s.page)
			_exit(1);
		memset(s.src, 0x5a, ps);
		memset(s.page, 0xa5, ps);
		server_main(&s);
	}
	close(sv[1]);
	fs->sock = sv[0];
	/* Yama may forbid a child to read its parent: allow this one. */
	prctl(PR_SET_PTRACER, fs->pid, 0, 0, 0);
	return 0;
}

static int call(struct fserver *fs, const struct fcmd *c, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { (void *)c, sizeof(*c) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct freply rep;
	ssize_t n;

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
	if (sendmsg(fs->sock, &msg, MSG_NOSIGNAL) < 0)
		return -errno;
	do
		n = recv(fs->sock, &rep, sizeof(rep), 0);
	while (n < 0 && errno == EINTR);
	if (n != sizeof(rep))
		return n < 0 ? -errno : -ECONNRESET;
	return (int)rep.status;
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

/*
 * futex-rtt: a round trip over shared memory between two processes, each
 * side sleeping in FUTEX_WAIT and woken by the other's FUTEX_WAKE: the
 * least a queue (submission ring + doorbell, completion ring + wake-up)
 * can cost when both sides sleep. A minimal version, standalone (its own
 * forked server); the i11-floors branch adds the reference one.
 */
static int futex_floor(uint64_t pages, uint64_t warm, struct result *r)
{
	_Atomic uint32_t *w = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	_Atomic uint32_t *req, *rep;
	int err = 0, status;
	pid_t pid;

	if (w == MAP_FAILED)
		return -errno;
	req = w;
	rep = w + 16; /* its own cache line */
	pid = fork();
	if (pid < 0) {
		err = -errno;
		munmap((void *)w, 4096);
		return err;
	}
	if (pid == 0) {
		uint32_t seen = 0;

		for (;;) {
			uint32_t v = atomic_load(req);

			if (v == seen) {
				syscall(SYS_futex, req, FUTEX_WAIT, seen, NULL,
					NULL, 0);
				continue;
			}
			seen = v;
			if (v == UINT32_MAX)
				_exit(0);
			atomic_store(rep, v);
			syscall(SYS_futex, rep, FUTEX_WAKE, 1, NULL, NULL, 0);
		}
	}
	for (uint64_t i = 0; i < pages + warm; i++) {
		uint32_t v = (uint32_t)i + 1;
		uint64_t t0 = now_ns();

		atomic_store(req, v);
		syscall(SYS_futex, req, FUTEX_WAKE, 1, NULL, NULL, 0);
		while (atomic_load(rep) != v)
			syscall(SYS_futex, rep, FUTEX_WAIT, v - 1, NULL, NULL, 0);
		if (i >= warm && !err)
			err = samples_add(&r->s, now_ns() - t0);
	}
	atomic_store(req, UINT32_MAX);
	syscall(SYS_futex, req, FUTEX_WAKE, 1, NULL, NULL, 0);
	waitpid(pid, &status, 0);
	munmap((void *)w, 4096);
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

	if (id != F_ANON_FIRST_TOUCH && id != F_IPC_RTT && id != F_FUTEX_RTT &&
	    id != F_PVM_READ_4K && id != F_PVM_WRITE_4K &&
	    id != F_PVM_READ_BULK)
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
	case F_FUTEX_RTT:
		return futex_floor(n, w, r);
	default:
		return -EINVAL;
	}
}
