/* SPDX-License-Identifier: MIT */
/*
 * What a client becomes after exec (see exec_target.h): a new image, which
 * never registered anything, on the connection the old one left open.
 */
#include "exec_target.h"
#include "common/proto.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Long enough for the old image's slowest request to come out. */
#define WAIT_MS 30000

static int sock;
static long page;

static int send_cmd(uint64_t id, uint64_t mirror, uint32_t cmd, uint64_t addr,
		    uint64_t buf, uint64_t buf_len)
{
	struct {
		struct hmmu_wire_hdr hdr;
		struct hmmu_wire_device_cmd cmd;
	} m = {
		.hdr = { .magic = HMMU_PROTO_MAGIC,
			 .op = HMMU_OP_DEVICE_CMD,
			 .len = sizeof(m),
			 .id = id },
		.cmd = { .mirror = mirror,
			 .cmd = cmd,
			 .addr = addr,
			 .npages = 1,
			 .buf = buf,
			 .buf_len = buf_len },
	};

	return send(sock, &m, sizeof(m), MSG_NOSIGNAL) == sizeof(m) ? 0 : errno;
}

static long ms_since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Replies until @want came, the daemon hung up, or WAIT_MS passed. */
static void collect(struct exec_target_report *r, int want)
{
	struct timespec t0;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (r->nreplies < want && r->nreplies < EXEC_TARGET_MAX_REPLIES) {
		struct pollfd p = { .fd = sock, .events = POLLIN };
		union {
			struct hmmu_wire_hdr hdr;
			char buf[HMMU_MSG_MAX];
		} in;
		long left = WAIT_MS - ms_since(&t0);
		ssize_t n;

		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		n = recv(sock, in.buf, sizeof(in.buf), MSG_DONTWAIT);
		if (n <= 0) {
			r->eof = n == 0 || errno == ECONNRESET;
			return;
		}
		if ((size_t)n < sizeof(in.hdr))
			continue;
		r->id[r->nreplies] = in.hdr.id;
		r->status[r->nreplies] = in.hdr.status;
		r->nreplies++;
	}
}

int main(int argc, char **argv)
{
	struct exec_target_report r = { 0 };
	int report, queued;
	unsigned char *mine;

	if (argc != 4 && argc != 6)
		return 2;
	sock = atoi(argv[1]);
	report = atoi(argv[2]);
	queued = atoi(argv[3]);
	page = sysconf(_SC_PAGESIZE);

	/* First thing: the page the old image's requests aim at exists now. */
	mine = mmap((void *)(uintptr_t)EXEC_TARGET_ADDR, 2 * (size_t)page,
		    PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	r.mapped = mine == (void *)(uintptr_t)EXEC_TARGET_ADDR;
	if (r.mapped) {
		memset(mine, EXEC_TARGET_FILL, (size_t)page);
		memset(mine + page, EXEC_TARGET_SRC_FILL, (size_t)page);
	}

	if (r.mapped && argc == 6) {
		uint64_t mirror = strtoull(argv[4], NULL, 0);
		uint64_t src = strtoull(argv[5], NULL, 0);
		uint64_t at = (uintptr_t)mine;

		const struct {
			uint32_t cmd;
			uint64_t addr, buf, buf_len;
		} own[] = {
			/* The device's copy of the old image's page, into ours. */
			{ HMMU_CMD_READ, src, at, (uint64_t)page },
			/* Our page's state, into our page. */
			{ HMMU_CMD_SNAPSHOT, at, at, 1 },
			/* Our second page, onto our page. */
			{ HMMU_CMD_WRITE, at, at + (uint64_t)page, (uint64_t)page },
		};

		for (int i = 0; i < 3 && !r.send_err; i++) {
			r.send_err = send_cmd(EXEC_TARGET_OWN_ID + (uint64_t)i,
					      mirror, own[i].cmd, own[i].addr,
					      own[i].buf, own[i].buf_len);
			r.sent += !r.send_err;
		}
	}
	collect(&r, queued + r.sent);
	/* A request the daemon was still running when it hung up, if any. */
	usleep(100000);

	if (r.mapped) {
		r.intact = 1;
		for (long i = 0; i < page; i++)
			if (mine[i] != EXEC_TARGET_FILL)
				r.intact = 0;
		memcpy(r.first, mine, sizeof(r.first));
	}
	return write(report, &r, sizeof(r)) == sizeof(r) ? 0 : 3;
}
