/* SPDX-License-Identifier: MIT */
#include "fdstore.h"
#include "../lib/log.h"
#include "../lib/clock.h"

#include <errno.h>
#include <stdint.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* How long a message may wait for room in the manager's queue. */
#define SEND_WAIT_MS 1000

static bool enabled;

void fdstore_enable(void)
{
	/*
	 * systemd 254 and later say FileDescriptorStoreMax= here; for an
	 * older one, hmmud.service says it itself. A manager that keeps no
	 * fds (or a starter that only waits for READY=1) says nothing.
	 */
	const char *max = getenv("FDSTORE");

	enabled = getenv("NOTIFY_SOCKET") && max && atoi(max) > 0;
}

bool fdstore_enabled(void)
{
	return enabled;
}

/*
 * One sd_notify(3) message with @fd (or none if < 0). Not libsystemd's
 * sd_pid_notify_with_fds(): it sends blocking, and a datagram queue holds
 * 10 messages (net.unix.max_dgram_qlen), so a manager that reads slowly,
 * or not at all, would hold hmmud in sendmsg() with the registry lock
 * taken. Here a full queue is waited for SEND_WAIT_MS at most.
 */
static int notify(const char *state, int fd)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
	struct iovec iov = { .iov_base = (void *)state, .iov_len = strlen(state) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	socklen_t len;
	int s, err = 0;

	if (!path || (path[0] != '/' && path[0] != '@') ||
	    strlen(path) >= sizeof(addr.sun_path))
		return -EINVAL;
	memcpy(addr.sun_path, path, strlen(path));
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path));
	if (path[0] == '@')
		addr.sun_path[0] = '\0'; /* abstract */
	if (fd >= 0) {
		struct cmsghdr *c;

		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -errno;
	/*
	 * Connected: poll then says when the manager's queue has room. Room
	 * seen may be taken by another thread's message before ours: try
	 * again, until SEND_WAIT_MS have passed in all.
	 */
	if (connect(s, (struct sockaddr *)&addr, len) < 0)
		err = -errno;
	for (uint64_t deadline = monotonic_ms() + SEND_WAIT_MS; !err;) {
		struct pollfd p = { .fd = s, .events = POLLOUT };
		int64_t left = (int64_t)(deadline - monotonic_ms());

		if (sendmsg(s, &msg, MSG_NOSIGNAL) >= 0)
			break;
		err = -errno;
		if (err == -EINTR) {
			err = 0;
			continue;
		}
		if (err != -EAGAIN)
			break;
		if (left <= 0) {
			err = -ETIMEDOUT;
			break;
		}
		if (poll(&p, 1, (int)left) >= 0 || errno == EINTR)
			err = 0;
	}
	close(s);
	return err;
}

/* The manager is gone or keeps nothing: stop trying, and say so once. */
static void give_up(int err)
{
	enabled = false;
	log_info("no fd store (%s): a restart will not keep clients' state",
		 strerror(-err));
}

int fdstore_put(const char *name, int fd)
{
	char state[300];
	int err;

	if (!enabled)
		return -ENOTCONN;
	snprintf(state, sizeof(state), "FDSTORE=1\nFDNAME=%s", name);
	err = notify(state, fd);
	if (err)
		give_up(err);
	return err;
}

void fdstore_remove(const char *name)
{
	char state[300];
	int err;

	if (!enabled)
		return;
	snprintf(state, sizeof(state), "FDSTOREREMOVE=1\nFDNAME=%s", name);
	err = notify(state, -1);
	if (err)
		give_up(err);
}
