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
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
#define MEMFD_NAME "hmmu-buffer"

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

void buffers_reserve_ids(struct session_buffers *t, uint64_t above)
{
	pthread_mutex_lock(&t->lock);
	if (t->next_id < above)
		t->next_id = above;
	pthread_mutex_unlock(&t->lock);
}

/* -EDQUOT: a buffer of @bytes is past the user's whole @limit. */
static int too_large(uint64_t bytes, uint64_t limit, struct reply_reason *why)
{
	return reason_set(why, -EDQUOT, "a buffer of %" PRIu64 " bytes is "
			  "larger than hmmud allows a user in all (--limit "
			  "buffer-mib-per-user=%" PRIu64 ")", bytes, limit >> 20);
}

/* Lock held: is @id one of the connection's buffers? */
static bool listed(const struct session_buffers *t, uint64_t id)
{
	for (const struct buffer *b = t->list; b; b = b->next)
		if (b->id == id)
			return true;
	return false;
}

/*
 * A sealed memfd of @bytes, mapped here: the fd (for the client only) in
 * *@fd, the mapping in *@local. 0 or -errno.
 */
static int make_memfd(uint64_t bytes, int *fd, char **local)
{
	int err;

	*fd = memfd_create(MEMFD_NAME, MFD_CLOEXEC | MFD_ALLOW_SEALING);
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
		err = too_large(bytes, limit, why);
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
	/*
	 * Past every id a BUFFER_RESTORE named, which may have been the
	 * largest there is: then the count wraps, and skips what is taken.
	 */
	do
		b->id = ++s->buffers.next_id;
	while (!b->id || listed(&s->buffers, b->id));
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

/*
 * Is @fd what make_memfd() would have made for @bytes? 0, or -EINVAL with
 * the reason set. A client's file is mapped and written by the daemon
 * only if nothing the client can do to it afterwards hurts the daemon
 * (docs/security.md, "Shared buffers"): tmpfs, so no access waits on a
 * disk or a FUSE server and none fails for want of huge pages (hugetlbfs
 * is another filesystem); sealed so that nobody can shrink it (SIGBUS in
 * the daemon), grow it or seal it against the daemon's writes; open
 * read-write, so that the daemon writes only where the client itself may;
 * and named as a buffer's memfd, a name only its maker chooses, so that
 * hmmud's other memfds (the device memory file, a queue's rings) are
 * never taken for one, however the client came by an open of them.
 */
static int check_memfd(int fd, uint64_t bytes, struct reply_reason *why)
{
	static const char want[] = "/memfd:" MEMFD_NAME " (deleted)";
	char path[64], name[sizeof(want) + 1];
	struct statfs fs;
	struct stat st;
	int flags, seals;
	ssize_t n;

	if (fstat(fd, &st) < 0 || fstatfs(fd, &fs) < 0)
		return reason_set(why, -EINVAL, "cannot stat the fd: %s",
				  strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, name, sizeof(name));
	if (!S_ISREG(st.st_mode) || fs.f_type != TMPFS_MAGIC ||
	    n != (ssize_t)sizeof(want) - 1 || memcmp(name, want, (size_t)n))
		return reason_set(why, -EINVAL, "the fd is not a buffer's "
				  "memfd: a buffer is restored from the one "
				  "hmmud gave for it");
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
		return reason_set(why, -EINVAL, "the memfd is not open for "
				  "reading and writing");
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0 || (seals & SEALS) != SEALS ||
	    (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
		return reason_set(why, -EINVAL, "the memfd's seals are %#x: "
				  "it needs shrink, grow and seal (%#x), and "
				  "none against writes", seals < 0 ? 0 : seals,
				  SEALS);
	if ((uint64_t)st.st_size != bytes)
		return reason_set(why, -EINVAL, "the memfd holds %lld bytes, "
				  "not %" PRIu64, (long long)st.st_size, bytes);
	return 0;
}

/* Lock held: list @b under the id it has; -EEXIST if that one is taken. */
static int list_as(struct session_buffers *t, struct buffer *b)
{
	if (listed(t, b->id))
		return -EEXIST;
	/* Later BUFFER_CREATEs go past it (buffer_create()). */
	if (t->next_id < b->id)
		t->next_id = b->id;
	b->next = t->list;
	t->list = b;
	return 0;
}

void buffer_restore(struct session *s, const struct hmmu_wire_hdr *req,
		    int fd, struct reply_reason *why)
{
	const struct hmmu_wire_buffer *w = (const void *)(req + 1);
	uint64_t bytes = w->bytes, limit = limits.buffer_bytes_per_user;
	struct buffer *b = NULL;
	bool taken;
	int err;

	/* What costs nothing first; the id's test again once mapped. */
	if (fd < 0) {
		err = reason_set(why, -EBADF, "buffer-restore needs the "
				 "buffer's memfd with it (SCM_RIGHTS)");
		goto out;
	}
	if (bytes % page_size()) {
		err = reason_set(why, -EINVAL, "%" PRIu64 " bytes is not a "
				 "whole number of pages", bytes);
		goto out;
	}
	if (bytes > limit) {
		err = too_large(bytes, limit, why);
		goto out;
	}
	err = check_memfd(fd, bytes, why);
	if (err)
		goto out;
	pthread_mutex_lock(&s->buffers.lock);
	taken = listed(&s->buffers, w->buffer);
	pthread_mutex_unlock(&s->buffers.lock);
	if (taken) {
		err = reason_set(why, -EEXIST, "buffer %" PRIu64 " exists on "
				 "this connection already", w->buffer);
		goto out;
	}
	err = account_add_buffer(s->acct, bytes);
	if (err) {
		reason_set(why, err, "this user's shared buffers reached "
			   "hmmud's limit of %u buffers or %" PRIu64 " MiB "
			   "(--limit buffers-per-user, buffer-mib-per-user)",
			   limits.buffers_per_user, limit >> 20);
		goto out;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		err = -ENOMEM;
	} else {
		/* Populated, as make_memfd() does: see there. */
		b->local = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
				MAP_SHARED | MAP_POPULATE, fd, 0);
		if (b->local == MAP_FAILED)
			err = -errno;
	}
	if (err) {
		reason_set(why, err, "hmmud could not map the memfd: %s",
			   strerror(-err));
		goto out_uncharge;
	}
	atomic_init(&b->refs, 1); /* the table's */
	b->id = w->buffer;
	b->bytes = bytes;
	/* Held before it is listed: a DESTROY may put it at once. */
	b->acct = s->acct;
	account_hold(b->acct);
	pthread_mutex_lock(&s->buffers.lock);
	err = list_as(&s->buffers, b);
	pthread_mutex_unlock(&s->buffers.lock);
	if (err) {
		/* Another restore of the id came meanwhile: the client's. */
		reason_set(why, err, "buffer %" PRIu64 " exists on this "
			   "connection already", w->buffer);
		/* Not punched, as buffer_put() would: the pages are its. */
		munmap(b->local, bytes);
		account_put(b->acct);
		goto out_uncharge;
	}
	/* The mapping keeps the file; request_finish() closes the fd. */
	session_reply(s, req, 0, NULL, NULL, 0);
	return;
out_uncharge:
	free(b);
	account_del_buffer(s->acct, bytes);
out:
	log_warn("client %d: restore buffer %" PRIu64 " of %" PRIu64
		 " bytes: %s%s%s", s->peer.pid, w->buffer, bytes,
		 strerror(-err), reason_for(why, err) ? ": " : "",
		 reason_for(why, err) ? reason_for(why, err) : "");
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
