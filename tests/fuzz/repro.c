/* SPDX-License-Identifier: MIT */
/*
 * Reproducers for daemon bugs the fuzzers found, each a few messages long,
 * run against a hmmud already listening (ideally a -DHMMU_SANITIZE=ON one):
 *
 *   repro register-destroy SOCKET
 *	MIRROR_REGISTER and MIRROR_DESTROY of one mirror, in flight at once.
 *	When DESTROY's unregister runs before REGISTER's register, the
 *	destroyed mirror ends up registered on the process and freed by the
 *	REGISTER handler's last mirror_put(): the next invalidation walks
 *	freed memory (ASan: heap-use-after-free in process_invalidate_start).
 *   repro job-last-page SOCKET
 *	A SUM64 job over the last page of the address space: mmu_load()
 *	faults in [page, page + page size), which wraps to [page, 0), does
 *	nothing and retries for ever; a compute unit spins and the daemon no
 *	longer stops on SIGTERM.
 *   repro prepare-mremap SOCKET
 *	MIGRATE_PREPARE, then MIGRATE_FINISH of the same range sent, then the
 *	range moved by mremap, then a CPU write to it: FINISH replies 0, yet
 *	the write sleeps for ever (its fault is held as if the pages were
 *	still being migrated).
 *
 * Exit status: 1 if the bug showed, 0 if it did not, 2 on a setup error.
 */
#include "wire.h"
#include "common/uffd_open.h"
#include "common/kernel_uapi.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BATCH 64

static int sock;
static uint64_t next_id = 1;

static int conn(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		perror("repro: connect");
		exit(2);
	}
	return fd;
}

static void send_one(const union wire_msg *m, size_t n, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = (void *)m, .iov_len = n };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (fd >= 0) {
		struct cmsghdr *c;

		mh.msg_control = control.buf;
		mh.msg_controllen = sizeof(control.buf);
		c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) != (ssize_t)n) {
		perror("repro: send");
		exit(2);
	}
}

/* The reply to @id within @ms, into @r; its status, or -ETIMEDOUT. */
static int reply_to(uint64_t id, union wire_msg *r, int ms)
{
	for (;;) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, ms) != 1)
			return -ETIMEDOUT;
		n = recv(sock, r->buf, sizeof(r->buf), 0);
		if (n <= 0) {
			fprintf(stderr, "repro: the daemon hung up\n");
			exit(1);
		}
		if (r->hdr.id == id)
			return r->hdr.status;
	}
}

static int call(unsigned op, const void *p, size_t len, int fd,
		union wire_msg *r)
{
	union wire_msg m;
	uint64_t id = next_id++;

	send_one(&m, wire_request(&m, op, id, p, len), fd);
	return reply_to(id, r, 10000);
}

/* Devices: the name of the first one of @model. */
static void device_of(const char *model, char name[HMMU_NAME_MAX])
{
	union wire_msg r;
	unsigned n;

	call(HMMU_OP_DEVICE_COUNT, NULL, 0, -1, &r);
	n = ((struct hmmu_wire_count *)wire_payload(&r))->count;
	for (unsigned i = 0; i < n; i++) {
		struct hmmu_wire_index idx = { .index = i };
		struct hmmu_wire_device_info *info = wire_payload(&r);

		if (call(HMMU_OP_DEVICE_INFO, &idx, sizeof(idx), -1, &r) == 0 &&
		    strcmp(info->model, model) == 0) {
			memcpy(name, info->name, HMMU_NAME_MAX);
			return;
		}
	}
	fprintf(stderr, "repro: no %s device\n", model);
	exit(2);
}

/* A userfaultfd as libhmmu makes it. */
static int uffd_new(void)
{
	uint64_t supported = 0;
	struct uffdio_api api = { .api = UFFD_API };
	int fd;

	if (hmmu_uffd_supported(&supported) < 0 ||
	    (fd = hmmu_uffd_open()) < 0) {
		fprintf(stderr, "repro: no userfaultfd here\n");
		exit(2);
	}
	api.features = HMMU_UFFD_REQUIRED_FEATURES |
		       (supported & HMMU_UFFD_OPTIONAL_FEATURES &
			~(uint64_t)UFFD_FEATURE_EVENT_FORK);
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		perror("repro: UFFDIO_API");
		exit(2);
	}
	return fd;
}

static uint64_t mirror_create(const char *device)
{
	struct hmmu_wire_device_name name;
	union wire_msg r;

	memset(&name, 0, sizeof(name));
	memcpy(name.name, device, HMMU_NAME_MAX);
	if (call(HMMU_OP_MIRROR_CREATE, &name, sizeof(name), -1, &r) != 0) {
		fprintf(stderr, "repro: mirror create failed\n");
		exit(2);
	}
	return ((struct hmmu_wire_mirror *)wire_payload(&r))->mirror;
}

/* Register, with a userfaultfd if the daemon asks for one. */
static void mirror_register(uint64_t id)
{
	struct hmmu_wire_mirror mi = { .mirror = id };
	union wire_msg r;
	int st = call(HMMU_OP_MIRROR_REGISTER, &mi, sizeof(mi), -1, &r), fd;

	if (st == HMMU_STATUS_NEED_UFFD) {
		fd = uffd_new();
		st = call(HMMU_OP_MIRROR_REGISTER, &mi, sizeof(mi), fd, &r);
		close(fd);
	}
	if (st != 0) {
		fprintf(stderr, "repro: register failed: %s\n", strerror(-st));
		exit(2);
	}
}

static void hello(void)
{
	struct hmmu_wire_hello h = { .version = HMMU_PROTO_VERSION };
	union wire_msg r;

	if (call(HMMU_OP_HELLO, &h, sizeof(h), -1, &r) != 0) {
		fprintf(stderr, "repro: hello refused\n");
		exit(2);
	}
}

static int register_destroy(void)
{
	char dev[HMMU_NAME_MAX];
	long page = sysconf(_SC_PAGESIZE);
	char *buf = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *out = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct hmmu_wire_device_cmd read = {
		.cmd = HMMU_CMD_READ,
		.addr = (uint64_t)(uintptr_t)buf,
		.npages = 16,
		.buf = (uint64_t)(uintptr_t)out,
		.buf_len = 16 * (uint64_t)page,
	};
	union wire_msg r;

	hello();
	device_of("dmirror", dev);
	memset(buf, 1, 16 * page);
	/* A registered mirror that holds the buffer: writes to it fault. */
	read.mirror = mirror_create(dev);
	mirror_register(read.mirror);
	if (call(HMMU_OP_DEVICE_CMD, &read, sizeof(read), -1, &r) != 0) {
		fprintf(stderr, "repro: device read failed\n");
		return 2;
	}
	for (int i = 0; i < 200; i++) {
		struct hmmu_wire_stats *st = wire_payload(&r);
		uint64_t ids[BATCH], last = 0;
		union wire_msg m;

		for (int k = 0; k < BATCH; k++)
			ids[k] = mirror_create(dev);
		/* Each pair in flight at once: two workers take them. */
		for (int k = 0; k < BATCH; k++) {
			struct hmmu_wire_mirror mi = { .mirror = ids[k] };

			send_one(&m, wire_request(&m, HMMU_OP_MIRROR_REGISTER,
						  next_id++, &mi, sizeof(mi)), -1);
			send_one(&m, wire_request(&m, HMMU_OP_MIRROR_DESTROY,
						  last = next_id++, &mi,
						  sizeof(mi)), -1);
		}
		reply_to(last, &r, 10000);
		usleep(100000); /* the replies in between are dropped */
		if (call(HMMU_OP_STATS, NULL, 0, -1, &r) != 0)
			return 2;
		if (st->value[HMMU_STAT_MY_MIRRORS] <= 1)
			continue;
		printf("repro: round %d: every mirror but one was destroyed, yet "
		       "this process has %llu registered mirrors, should have "
		       "1\n", i,
		       (unsigned long long)st->value[HMMU_STAT_MY_MIRRORS]);
		/* A CPU write: the invalidation walks the freed mirror. */
		memset(buf, 2, 16 * page);
		printf("repro: wrote to the mirrored buffer; with ASan the "
		       "daemon reports a heap-use-after-free now\n");
		return 1;
	}
	printf("repro: no lost destroy in 200 rounds of %d\n", BATCH);
	return 0;
}

static int job_last_page(void)
{
	char dev[HMMU_NAME_MAX];
	struct hmmu_wire_job j = {
		.kind = HMMU_WIRE_JOB_SUM64,
		.src = 0xfffffffffffff000ull,
		.len = 1,
	};
	union wire_msg r;
	int st;

	hello();
	device_of("accel", dev);
	j.mirror = mirror_create(dev);
	mirror_register(j.mirror);
	send_one(&r, wire_request(&r, HMMU_OP_JOB, 99, &j, sizeof(j)), -1);
	st = reply_to(99, &r, 5000);
	if (st == -ETIMEDOUT) {
		printf("repro: no reply to a SUM64 at %#llx in 5 s: a compute "
		       "unit spins in mmu_load()\n", (unsigned long long)j.src);
		return 1;
	}
	printf("repro: the job ended: %d (%s)\n", st, strerror(-st));
	return 0;
}

static char *volatile write_at;

static void *writer(void *arg)
{
	(void)arg;
	write_at[0] = 7;
	return NULL;
}

static int prepare_mremap(void)
{
	char dev[HMMU_NAME_MAX];
	long page = sysconf(_SC_PAGESIZE);
	char *mem = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *buf = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *to = mmap(NULL, 8 * page, PROT_NONE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct hmmu_wire_device_cmd d = {
		.cmd = HMMU_CMD_MIGRATE_PREPARE,
		.addr = (uint64_t)(uintptr_t)mem,
		.npages = 8,
		.buf = (uint64_t)(uintptr_t)buf,
		.buf_len = 8,
	};
	union wire_msg r;
	struct timespec until;
	pthread_t t;
	int st;

	hello();
	device_of("dmirror", dev);
	memset(mem, 1, 8 * page);
	d.mirror = mirror_create(dev);
	mirror_register(d.mirror);
	st = call(HMMU_OP_DEVICE_CMD, &d, sizeof(d), -1, &r);
	if (st != 0) {
		fprintf(stderr, "repro: prepare: %d\n", st);
		return 2;
	}
	/* Nothing discarded: FINISH rolls the migration back. */
	d.cmd = HMMU_CMD_MIGRATE_FINISH;
	send_one(&r, wire_request(&r, HMMU_OP_DEVICE_CMD, 77, &d, sizeof(d)),
		 -1);
	if (mremap(mem, 8 * page, 8 * page, MREMAP_MAYMOVE | MREMAP_FIXED,
		   to) == MAP_FAILED) {
		perror("repro: mremap");
		return 2;
	}
	write_at = to;
	pthread_create(&t, NULL, writer, NULL);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += 5;
	st = pthread_timedjoin_np(t, NULL, &until);
	printf("repro: FINISH: status %d\n", reply_to(77, &r, 10000));
	if (st != 0) {
		printf("repro: a CPU write to a moved page still sleeps after "
		       "5 s, FINISH done: the migration never settles\n");
		return 1;
	}
	printf("repro: the write went through\n");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: repro register-destroy|job-last-page|"
			"prepare-mremap SOCKET\n");
		return 2;
	}
	sock = conn(argv[2]);
	if (strcmp(argv[1], "register-destroy") == 0)
		return register_destroy();
	if (strcmp(argv[1], "job-last-page") == 0)
		return job_last_page();
	if (strcmp(argv[1], "prepare-mremap") == 0)
		return prepare_mremap();
	fprintf(stderr, "repro: unknown bug %s\n", argv[1]);
	return 2;
}
