/* SPDX-License-Identifier: MIT */
/*
 * Shared buffers (hmmu_buffer_create() in hmmu.h): memory the daemon makes,
 * maps, and hands to one connection's client as a memfd, so that a device
 * read into it is one copy, from the client's pages into the daemon's own
 * mapping of the buffer, like io_uring's registered buffers.
 *
 * Safety (docs/security.md, "Shared buffers"): the daemon creates the
 * memfd and seals its size (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)
 * before the client sees it, so no client can truncate it under the
 * daemon's mapping (which would be SIGBUS in the daemon). It keeps no fd,
 * only the mapping. A buffer belongs to the connection that made it (ids
 * are scoped to it), is bounded by --limit buffers-per-user and
 * buffer-mib-per-user, and is freed with the connection. When it is freed
 * the daemon punches its pages out (MADV_REMOVE), so that what a client
 * may keep mapped afterwards holds no memory charged to the daemon.
 *
 * After a restart (BUFFER_RESTORE, protocol.md §11) the client hands the
 * memfd back, and the successor maps it under the id the client names,
 * once it checked that the file is what make_memfd() makes: a memfd of
 * that name and size, open read-write, sealed as above and not against
 * writes. It is charged and freed as a buffer it made.
 *
 * Lifetime: the connection's table holds one reference, each command
 * running into the buffer one more; the mapping goes with the last.
 */
#ifndef HMMUD_BUFFERS_H
#define HMMUD_BUFFERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

struct account;
struct reply_reason;
struct session;
struct hmmu_wire_hdr;
struct hmmu_wire_device_cmd_buffer;

struct buffer {
	atomic_uint refs;
	uint64_t id;	  /* scoped to the connection */
	uint64_t bytes;	  /* whole pages */
	char *local;	  /* the daemon's mapping */
	struct account *acct; /* its user's, charged with its bytes */
	struct buffer *next;
};

/* A connection's buffers. */
struct session_buffers {
	pthread_mutex_t lock; /* protects list and next_id; a leaf lock */
	struct buffer *list;
	uint64_t next_id;
};

void buffers_init(struct session_buffers *t);
/* The connection is gone: every buffer it still has goes (worker). */
void buffers_fini(struct session_buffers *t);

/*
 * RESERVE_IDS: every buffer BUFFER_CREATE makes on this connection from now
 * on has an id above @above (at most HMMU_RESERVE_IDS_MAX); a lower one
 * changes nothing.
 */
void buffers_reserve_ids(struct session_buffers *t, uint64_t above);

/*
 * BUFFER_CREATE and BUFFER_DESTROY of @s, on a worker: each replies
 * itself. @req is the checked message.
 */
void buffer_create(struct session *s, const struct hmmu_wire_hdr *req,
		   struct reply_reason *why);
void buffer_destroy(struct session *s, const struct hmmu_wire_hdr *req,
		    struct reply_reason *why);
/*
 * BUFFER_RESTORE of @s, after a restart (protocol.md §11): the buffer the
 * client names, mapped from the memfd @fd that came with the request (-1:
 * none), which stays the caller's to close. Replies itself.
 */
void buffer_restore(struct session *s, const struct hmmu_wire_hdr *req,
		    int fd, struct reply_reason *why);

/*
 * For a DEVICE_CMD_BUFFER of @s, after command_enter(): the buffer it
 * names, checked against the command, with a reference in *@out, and the
 * command's DMA window set (command_dma_set()). 0, or -ENOENT (no such
 * buffer on this connection) or -EINVAL (the range does not lie in it),
 * with the reason set.
 */
int buffer_command_begin(struct session *s,
			 const struct hmmu_wire_device_cmd_buffer *w,
			 struct buffer **out);
void buffer_put(struct buffer *b);

#endif
