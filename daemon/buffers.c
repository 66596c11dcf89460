/* SPDX-License-Identifier: MIT */
#include "buffers.h"
#include "session.h"
#include "../common/page.h"
#include "../common/proto.h"
#include "../core/accounts.h"
#include "../core/command.h"
#include "../core/limits.h"
#include "../core/reason.h"
#include "../lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)

void buffers_init(struct session_buffers *t)
{
	pthread_mutex_init(&t->lock, NULL);
	t->list = NULL;
	t->next_id = 0;
}

void buffer_put(struct buffer *b)
{
	if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) != 1)
		return;
	/*
	 * Punch the pages out first: a client may keep its mapping (or the
	 * fd) past the end of the buffer, but then it holds nothing the
	 * daemon paid for: its next touch faults a zero page of its own.
	 */
	if (madvise(b->local, b->bytes, MADV_REMOVE) < 0)
		log_warn("buffer of %" PRIu64 " bytes: MADV_REMOVE: %s",
			 b->bytes, strerror(errno));
	munmap(b->local, b->bytes);
	account_del_buffer(b->acct, b->bytes);
	account_put(b->acct);
	free(b);
}

void buffers_fini(struct session_buffers *t)
{
	struct buffer *b;

	pthread_mutex_lock(&t->lock);
	while ((b = t->list)) {
		t->list = b->next;
		buffer_put(b);
	}
	pthread_mutex_unlock(&t->lock);
	pthread_mutex_destroy(&t->lock);
}

/*
 * A sealed memfd of @bytes, mapped here: the fd (for the client only) in
 * *@fd, the mapping in *@local. 0 or -errno.
 */
static int make_memfd(uint64_t bytes, int *fd, char **local)
{
	int err;

	*fd = memfd_create("hmmu-buffer", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (*fd < 0)
		return -errno;
	if (ftruncate(*fd, (off_t)bytes) < 0 ||
	    fcntl(*fd, F_ADD_SEALS, SEALS) < 0)
		goto fail;
	/*
	 * Populated now: the reads into it then cost the copy and nothing
	 * else, and the memory is the daemon's from the start (charged to
	 * this user's buffer-mib-per-user).
	 */
	*local = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_POPULATE, *fd, 0);
	if (*local == MAP_FAILED)
		goto fail;
	return 0;
fail:
	err = -errno;
	close(*fd);
	return err;
}

void buffer_create(struct session *s, const struct hmmu_wire_hdr *req,
		   struct reply_reason *why)
{
	const struct hmmu_wire_buffer_create *w = (const void *)(req + 1);
	uint64_t bytes = w->bytes, limit = limits.buffer_bytes_per_user;
	struct hmmu_wire_buffer rep;
	struct buffer *b = NULL;
	int fd = -1, err;

	/* Rounded up without wrapping: past the limit is past it anyway. */
	if (bytes > limit) {
		err = reason_set(why, -EDQUOT, "a buffer of %" PRIu64 " bytes "
				 "is larger than hmmud allows a user in all "
				 "(--limit buffer-mib-per-user=%" PRIu64 ")",
				 bytes, limit >> 20);
		goto out;
	}
	bytes = page_up(bytes);
	err = account_add_buffer(s->acct, bytes);
	if (err) {
		log_warn("client %d: its user holds as many shared buffers as "
			 "allowed (--limit buffers-per-user, buffer-mib-per-user)",
			 s->peer.pid);
		reason_set(why, err, "this user's shared buffers reached "
			   "hmmud's limit of %u buffers or %" PRIu64 " MiB "
			   "(--limit buffers-per-user, buffer-mib-per-user): "
			   "destroy some", limits.buffers_per_user, limit >> 20);
		goto out;
	}
	b = calloc(1, sizeof(*b));
	err = b ? make_memfd(bytes, &fd, &b->local) : -ENOMEM;
	if (err) {
		account_del_buffer(s->acct, bytes);
		if (err != -ENOMEM)
			log_warn("client %d: a shared buffer of %" PRIu64
				 " bytes: %s", s->peer.pid, bytes,
				 strerror(-err));
		reason_set(why, err, "hmmud could not make a shared buffer of "
			   "%" PRIu64 " bytes: %s", bytes, strerror(-err));
		free(b);
		b = NULL;
		goto out;
	}
	atomic_init(&b->refs, 1); /* the table's */
	b->bytes = bytes;
	b->acct = s->acct;
	account_hold(b->acct);
	pthread_mutex_lock(&s->buffers.lock);
	b->id = ++s->buffers.next_id;
	b->next = s->buffers.list;
	s->buffers.list = b;
	pthread_mutex_unlock(&s->buffers.lock);

	rep = (struct hmmu_wire_buffer){ .buffer = b->id, .bytes = bytes };
	/*
	 * Not sent: the connection is going; its teardown frees the buffer
	 * with the others.
	 */
	session_reply_fds(s, req, &rep, sizeof(rep), &fd, 1);
	close(fd); /* the client has its own; the mapping keeps the file */
	return;
out:
	session_reply(s, req, err, reason_for(why, err), NULL, 0);
}

/* @id out of the table, with the table's reference; NULL if none. */
static struct buffer *take(struct session_buffers *t, uint64_t id)
{
	struct buffer *b = NULL;

	pthread_mutex_lock(&t->lock);
	for (struct buffer **pp = &t->list; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			b = *pp;
			*pp = b->next;
			break;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return b;
}

static struct buffer *find(struct session_buffers *t, uint64_t id)
{
	struct buffer *b;

	pthread_mutex_lock(&t->lock);
	for (b = t->list; b; b = b->next)
		if (b->id == id)
			break;
	if (b)
		atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	pthread_mutex_unlock(&t->lock);
	return b;
}

void buffer_destroy(struct session *s, const struct hmmu_wire_hdr *req,
		    struct reply_reason *why)
{
	const struct hmmu_wire_buffer *w = (const void *)(req + 1);
	struct buffer *b = take(&s->buffers, w->buffer);
	int err = 0;

	if (b)
		buffer_put(b); /* the table's; a command running keeps its own */
	else
		err = reason_set(why, -ENOENT, "no buffer %" PRIu64 " on this "
				 "connection: it was destroyed, or never "
				 "created on it", w->buffer);
	session_reply(s, req, err, reason_for(why, err), NULL, 0);
}

int buffer_command_begin(struct session *s,
			 const struct hmmu_wire_device_cmd_buffer *w,
			 struct buffer **out)
{
	const struct hmmu_wire_device_cmd *c = &w->cmd;
	struct buffer *b = find(&s->buffers, w->buffer);
	uint64_t src_len = c->npages * page_size(); /* npages <= 2^20 */

	if (!b)
		return command_fail(-ENOENT, "no buffer %" PRIu64 " on this "
				    "connection: it was destroyed, or never "
				    "created on it", w->buffer);
	/* Each test on its own, so that no sum of the client's can wrap. */
	if (w->offset > b->bytes || c->buf_len > b->bytes - w->offset ||
	    c->buf_len < src_len) {
		buffer_put(b);
		return command_fail(-EINVAL, "%" PRIu64 " bytes at offset %"
				    PRIu64 " of buffer %" PRIu64 " (%" PRIu64
				    " bytes) do not lie in it, or do not hold "
				    "%" PRIu64 " pages", c->buf_len, w->offset,
				    w->buffer, b->bytes, c->npages);
	}
	/* A read from the buffer's own pages into it would copy onto itself. */
	if (c->buf + c->buf_len > c->buf && c->addr < c->buf + c->buf_len &&
	    c->buf < c->addr + src_len) {
		buffer_put(b);
		return command_fail(-EINVAL, "the device read of %#" PRIx64
				    " overlaps its own destination in buffer %"
				    PRIu64, c->addr, w->buffer);
	}
	command_dma_set(c->buf, c->buf_len, b->local + w->offset);
	*out = b;
	return 0;
}
