/* SPDX-License-Identifier: MIT */
/*
 * One client process of --clients. It connects on its own, mirrors itself
 * on one dmirror device (client i on the (i mod count)-th the daemon
 * offers), maps and writes a buffer of --pages pages, says it is ready,
 * and once the start signal comes (end of file on the start pipe) reads
 * one cold page at a time through the device until the common deadline.
 *
 * Each timed read must be a real device fault, like one sample of the
 * device-fault class: a populated page the device does not hold. Once the
 * whole buffer has been read, it is made cold again with one
 * madvise(MADV_DONTNEED) and a CPU write of every page:
 *  - the madvise is one REMOVE event for the daemon, which drops the
 *    device copies of the whole range at once;
 *  - the zap leaves no userfaultfd marker on anonymous memory, and hmmu
 *    registers it for write-protect faults only, so the CPU writes that
 *    follow are plain first touches the kernel serves alone, without the
 *    daemon (a CPU write to each still-mirrored page would instead be one
 *    write-protect fault per page in hmmud's event loop, the very thread
 *    every client's requests go through).
 * That pass is counted in the window (and reported as recold_ns): it is
 * the client's own CPU time, a few microseconds a page.
 */
#include "client.h"
#include "bench.h"

#include <errno.h>
#include <hmmu/hmmu.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* One write each, from many clients into one pipe: atomic. */
_Static_assert(sizeof(struct client_msg) <= PIPE_BUF,
	       "a client's message must fit in one atomic pipe write");

static int send_msg(int fd, const struct client_msg *msg)
{
	ssize_t n;

	do
		n = write(fd, msg, sizeof(*msg));
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)sizeof(*msg) ? 0 : -EIO;
}

/* The (index mod count)-th dmirror device of the daemon, into @name. */
static int pick_dmirror(struct hmmu *h, unsigned index, char name[32])
{
	char names[8][32];
	unsigned count = 0;
	int n = hmmu_device_count(h);

	if (n < 0)
		return n;
	for (int i = 0; i < n && count < 8; i++) {
		struct hmmu_device_info info;

		if (hmmu_device_info(h, (unsigned)i, &info) < 0 ||
		    strcmp(info.model, "dmirror"))
			continue;
		snprintf(names[count++], 32, "%s", info.name);
	}
	if (!count)
		return -ENODEV;
	memcpy(name, names[index % count], 32);
	return 0;
}

/* Drop the device's copies of the whole buffer, then repopulate it. */
static int recold(char *buf, uint64_t pages, size_t ps)
{
	if (madvise(buf, pages * ps, MADV_DONTNEED) < 0)
		return -errno;
	touch_pages(buf, pages);
	return 0;
}

static int read_page(struct hmmu_mirror *m, const char *addr, char *out,
		     struct hmmu_cmd *c)
{
	*c = (struct hmmu_cmd){ .addr = (uint64_t)(uintptr_t)addr,
				.npages = 1 };
	return hmmu_device_read(m, c, out);
}

static int wait_start(int fd)
{
	char ch;
	ssize_t n;

	do
		n = read(fd, &ch, 1);
	while (n < 0 && errno == EINTR);
	/* Only the end of file starts; the sweep writes nothing. */
	return n == 0 ? 0 : -EIO;
}

/* Fault until the deadline; counts into @msg. */
static int fault_loop(struct hmmu_mirror *m, char *buf, char *out,
		      uint64_t pages, size_t ps, uint64_t deadline,
		      struct client_msg *msg)
{
	uint64_t i = 0, t;
	int err = 0;

	while (!err && (t = now_ns()) < deadline) {
		struct hmmu_cmd c;

		if (i == pages) {
			err = recold(buf, pages, ps);
			msg->recold_ns += now_ns() - t;
			msg->recolds++;
			i = 0;
			continue;
		}
		err = read_page(m, buf + i * ps, out, &c);
		if (err)
			break;
		msg->reads++;
		msg->faults += c.faults;
		if (!c.faults)
			msg->warm_reads++;
		i++;
	}
	msg->end_ns = now_ns();
	return err;
}

/*
 * As fault_loop(), with up to @depth reads in flight through a submission
 * queue, each on its own page of the buffer and into its own page of
 * @out. The buffer is made cold again only once every read of the pass
 * has completed.
 */
static int queued_loop(struct hmmu_mirror *m, char *buf, char *out,
		       uint64_t pages, size_t ps, unsigned depth,
		       uint64_t deadline, struct client_msg *msg)
{
	struct hmmu_cqe cqe[64];
	struct hmmu_queue *q;
	uint64_t next = 0, t;
	unsigned inflight = 0, slot = 0;
	int err = hmmu_queue_create(m, depth, &q);

	if (err)
		return err;
	while (!err && ((t = now_ns()) < deadline || inflight)) {
		while (t < deadline && inflight < depth && next < pages && !err) {
			struct hmmu_cmd c = {
				.addr = (uint64_t)(uintptr_t)(buf + next * ps),
				.npages = 1,
			};

			err = hmmu_queue_read(q, &c, out + slot * ps, next);
			slot = (slot + 1) % depth;
			next++;
			inflight++;
		}
		if (!err && inflight)
			err = hmmu_queue_submit(q) < 0 ? -EIO : 0;
		if (!err && inflight) {
			int n = hmmu_queue_wait(q, cqe, 64, 1, -1);

			if (n < 0)
				err = n;
			for (int i = 0; i < n && !err; i++) {
				err = cqe[i].status;
				msg->reads++;
				msg->faults += cqe[i].faults;
				if (!cqe[i].faults)
					msg->warm_reads++;
			}
			if (n > 0)
				inflight -= (unsigned)n;
		}
		if (!err && !inflight && next == pages && now_ns() < deadline) {
			t = now_ns();
			err = recold(buf, pages, ps);
			msg->recold_ns += now_ns() - t;
			msg->recolds++;
			next = 0;
		}
	}
	msg->end_ns = now_ns();
	hmmu_queue_destroy(q);
	return err;
}

int client_main(const struct client_args *a)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE);
	struct client_msg msg = { .index = (int32_t)a->index,
				  .phase = CLIENT_READY };
	struct hmmu_mirror *m = NULL;
	struct hmmu *h = NULL;
	unsigned outs = a->queue ? a->queue : 1;
	char *buf = map_pages(a->pages), *out = map_pages(outs);
	const char *what = "map the buffer";
	struct hmmu_cmd c;
	int err = -ENOMEM;

	if (!buf || !out)
		goto fail;
	touch_pages(buf, a->pages);
	touch_pages(out, outs);
	what = "connect";
	err = hmmu_connect(a->socket, &h);
	if (err)
		goto fail;
	what = "find a dmirror device";
	err = pick_dmirror(h, a->index, msg.device);
	if (err)
		goto fail;
	what = "mirror";
	err = hmmu_mirror_create(h, msg.device, &m);
	if (!err)
		err = hmmu_mirror_register(m);
	if (err)
		goto fail;
	/*
	 * Warm-up, not timed: the first device fault in the buffer also
	 * registers its VMA with the userfaultfd. Then all of it cold.
	 */
	what = "warm up";
	err = read_page(m, buf, out, &c);
	if (!err) {
		msg.setup_faults = c.faults;
		err = recold(buf, a->pages, ps);
	}
	if (err)
		goto fail;
	err = send_msg(a->result_fd, &msg);
	if (!err)
		err = wait_start(a->start_fd);
	if (err) {
		/* The sweep is gone or gave up: nobody to tell. */
		hmmu_disconnect(h);
		return 1;
	}

	msg.phase = CLIENT_DONE;
	what = "read";
	if (a->queue)
		err = queued_loop(m, buf, out, a->pages, ps, a->queue,
				  a->start->deadline_ns, &msg);
	else
		err = fault_loop(m, buf, out, a->pages, ps,
				 a->start->deadline_ns, &msg);
	if (err)
		goto fail;
	err = send_msg(a->result_fd, &msg);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	unmap_pages(buf, a->pages);
	unmap_pages(out, outs);
	return err ? 1 : 0;

fail:
	warnx_("client %u: %s: %s %s", a->index, what, strerror(-err),
	       hmmu_error_detail());
	msg.err = err;
	send_msg(a->result_fd, &msg);
	hmmu_mirror_destroy(m);
	hmmu_disconnect(h);
	unmap_pages(buf, a->pages);
	unmap_pages(out, outs);
	return 1;
}
