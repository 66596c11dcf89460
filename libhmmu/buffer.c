/* SPDX-License-Identifier: MIT */
/*
 * Shared buffers: memory the daemon makes and maps, handed to us as a
 * sealed memfd, so that a device read into it is one copy
 * (daemon/buffers.h). We keep the memfd: after a restart the reconnection
 * hands it to the successor (BUFFER_RESTORE, reconnect.c), and the buffer
 * goes on at the same address with what it held.
 */
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void unlink_buffer(struct hmmu *h, struct hmmu_buffer *b)
{
	hmmu_lock_settled(h);
	for (struct hmmu_buffer **pp = &h->buffers; *pp; pp = &(*pp)->next) {
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
}

/*
 * Lost at a restart, to a successor older than BUFFER_RESTORE or one that
 * refused it (reconnect.c): the buffer is no more (docs/protocol.md §11).
 * Detail set.
 */
static bool buffer_dead(const struct hmmu_buffer *b)
{
	if (!atomic_load(&b->lost))
		return false;
	if (b->refused[0])
		hmmu_set_detail("%s; make it anew", b->refused);
	else
		hmmu_set_detail(HMMU_BUFFER_LOST_DETAIL);
	return true;
}

static void destroy_call(struct hmmu *h, uint64_t id)
{
	struct hmmu_wire_buffer req = { .buffer = id };

	hmmu_call(h, HMMU_OP_BUFFER_DESTROY, &req, sizeof(req), -1, NULL, 0);
}

/*
 * BUFFER_CREATE, and our mapping of its memfd: 0 with the memfd in b->fd
 * and the reconnection count of the reply in *@restarts, or -errno.
 */
static int create_once(struct hmmu *h, size_t bytes, struct hmmu_buffer *b,
		       unsigned *restarts)
{
	struct hmmu_wire_buffer_create req = { .bytes = bytes };
	struct hmmu_wire_buffer rep = { 0, 0 };
	int fd = -1, err;
	struct pending p = { .op = HMMU_OP_BUFFER_CREATE, .req = &req,
			     .req_len = sizeof(req), .fd = -1, .out = &rep,
			     .cap = sizeof(rep), .fds = &fd, .nfds = 1 };

	/* A successful reply without its memfd is -EPROTO. */
	err = hmmu_request(h, &p);
	if (err == -EOPNOTSUPP)
		hmmu_set_detail("this hmmud has no shared buffers: it is older "
				"than this libhmmu (%s)", HMMU_VERSION);
	if (!err && rep.bytes < bytes) {
		destroy_call(h, rep.buffer);
		err = -EPROTO;
	}
	if (!err) {
		b->addr = mmap(NULL, rep.bytes, PROT_READ | PROT_WRITE,
			       MAP_SHARED, fd, 0);
		if (b->addr == MAP_FAILED) {
			err = -errno;
			destroy_call(h, rep.buffer);
		}
	}
	if (err) {
		if (fd >= 0)
			close(fd);
		return err < 0 ? err : -EPROTO;
	}
	b->fd = fd;
	b->id = rep.buffer;
	b->bytes = rep.bytes;
	*restarts = p.restarts;
	return 0;
}

HMMU_EXPORT int hmmu_buffer_create(struct hmmu *h, size_t bytes, void **addr,
				   struct hmmu_buffer **out)
{
	struct hmmu_buffer *b;
	unsigned restarts;
	int err;

	hmmu_clear_detail();
	if (!h || !addr || !out || !bytes)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (;;) {
		err = create_once(h, bytes, b, &restarts);
		if (err) {
			free(b);
			return err;
		}
		hmmu_lock_settled(h);
		if (restarts == h->restarts)
			break;
		/*
		 * Made by a daemon that restarted before the buffer was
		 * listed, so the reconnection did not make it again: it is
		 * no more. Make one anew, as hmmu_mirror_create() does.
		 */
		pthread_mutex_unlock(&h->lock);
		munmap(b->addr, b->bytes);
		close(b->fd);
	}
	/* Listed in the same breath: a restart now makes it again. */
	b->h = h;
	b->next = h->buffers;
	h->buffers = b;
	pthread_mutex_unlock(&h->lock);
	*addr = b->addr;
	*out = b;
	return 0;
}

HMMU_EXPORT void hmmu_buffer_destroy(struct hmmu_buffer *b)
{
	if (!b)
		return;
	unlink_buffer(b->h, b);
	/*
	 * In a child of the process that made it, the buffer is the parent's:
	 * the child lets go of its own mapping, memfd and handle, and says
	 * nothing. Nor to a daemon that never made it (an older successor,
	 * whose buffer of that id would be another).
	 */
	if (getpid() == b->h->pid && !atomic_load(&b->lost))
		destroy_call(b->h, b->id);
	munmap(b->addr, b->bytes);
	close(b->fd);
	free(b);
}

struct hmmu_buffer *hmmu_buffer_find(struct hmmu *h, const void *buf,
				     uint64_t len, uint64_t *offset)
{
	uintptr_t a = (uintptr_t)buf;
	struct hmmu_buffer *b;

	pthread_mutex_lock(&h->lock);
	for (b = h->buffers; b; b = b->next) {
		uintptr_t base = (uintptr_t)b->addr;

		if (a >= base && a - base <= b->bytes &&
		    len <= b->bytes - (a - base)) {
			*offset = a - base;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
	return b;
}

/* The command into [offset, offset + its pages) of @b. */
int hmmu_buffer_cmd(struct hmmu_mirror *m, struct hmmu_cmd *c,
		    struct hmmu_buffer *b, uint64_t offset)
{
	uint64_t len = c->npages * (uint64_t)sysconf(_SC_PAGESIZE);
	struct hmmu_wire_device_cmd_buffer req;
	struct hmmu_wire_cmd_result rep = { 0, 0 };
	int err = hmmu_check_range(c);

	if (err)
		return err;
	if (buffer_dead(b))
		return -ESHUTDOWN;
	if (offset > b->bytes || len > b->bytes - offset) {
		hmmu_set_detail("%llu pages at offset %llu do not fit in the "
				"buffer of %zu bytes",
				(unsigned long long)c->npages,
				(unsigned long long)offset, b->bytes);
		return -EINVAL;
	}
	req = (struct hmmu_wire_device_cmd_buffer){
		.cmd = {
			.mirror = m->id,
			.cmd = HMMU_CMD_READ,
			.addr = c->addr,
			.npages = c->npages,
			.buf = (uint64_t)(uintptr_t)(b->addr + offset),
			.buf_len = len,
		},
		.buffer = b->id,
		.offset = offset,
	};
	err = hmmu_call(m->h, HMMU_OP_DEVICE_CMD_BUFFER, &req, sizeof(req), -1,
			&rep, sizeof(rep));
	/* Sent again after a restart to a successor that lost the buffer. */
	if (err == -ENOENT && buffer_dead(b))
		err = -ESHUTDOWN;
	c->cpages = rep.cpages;
	c->faults = rep.faults;
	return err;
}

HMMU_EXPORT int hmmu_device_read_buffer(struct hmmu_mirror *m,
					struct hmmu_cmd *c,
					struct hmmu_buffer *b, size_t offset)
{
	hmmu_clear_detail();
	if (!m || !c || !b)
		return -EINVAL;
	if (b->h != m->h) {
		hmmu_set_detail("the buffer belongs to another connection than "
				"the mirror's");
		return -EINVAL;
	}
	return hmmu_buffer_cmd(m, c, b, offset);
}

void hmmu_buffers_free(struct hmmu *h)
{
	struct hmmu_buffer *b;

	while ((b = h->buffers)) {
		h->buffers = b->next;
		munmap(b->addr, b->bytes);
		close(b->fd);
		free(b);
	}
}
