/* SPDX-License-Identifier: MIT */
/*
 * The one decoder of the wire protocol: both ends run every message they
 * receive through hmmu_proto_check() before looking at a field.
 */
#include "proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

struct op_desc {
	const char *name;
	size_t request; /* exact payload size of a request */
	size_t reply;	/* minimum payload size of a successful reply */
	size_t request_ext; /* a request's long form, or 0 if none */
};

/* Designated: a field an op has no use for is 0 (clang's -Wextra). */
#define OP(n, req, rep) { .name = (n), .request = (req), .reply = (rep) }

static const struct op_desc ops[HMMU_OP_MAX_] = {
	[HMMU_OP_HELLO] = OP("hello", sizeof(struct hmmu_wire_hello),
			     sizeof(struct hmmu_wire_hello)),
	[HMMU_OP_DEVICE_COUNT] = OP("device-count", 0,
				    sizeof(struct hmmu_wire_count)),
	[HMMU_OP_DEVICE_INFO] = OP("device-info", sizeof(struct hmmu_wire_index),
				   sizeof(struct hmmu_wire_device_info)),
	[HMMU_OP_MIRROR_CREATE] = OP("mirror-create",
				     sizeof(struct hmmu_wire_device_name),
				     sizeof(struct hmmu_wire_mirror)),
	[HMMU_OP_MIRROR_REGISTER] = {
		.name = "mirror-register",
		.request = sizeof(struct hmmu_wire_register),
		.request_ext = sizeof(struct hmmu_wire_register_ext),
	},
	[HMMU_OP_MIRROR_UNREGISTER] = OP("mirror-unregister",
					 sizeof(struct hmmu_wire_mirror), 0),
	[HMMU_OP_MIRROR_DESTROY] = OP("mirror-destroy",
				      sizeof(struct hmmu_wire_mirror), 0),
	/* Counters come in any number: older daemons send fewer. */
	[HMMU_OP_STATS] = OP("stats", 0, sizeof(uint64_t)),
	[HMMU_OP_DEVICE_CMD] = OP("device-cmd",
				  sizeof(struct hmmu_wire_device_cmd),
				  sizeof(struct hmmu_wire_cmd_result)),
	[HMMU_OP_JOB] = OP("job", sizeof(struct hmmu_wire_job),
			   sizeof(struct hmmu_wire_job_result)),
	[HMMU_OP_LIST] = OP("list", sizeof(struct hmmu_wire_list),
			    sizeof(struct hmmu_wire_list_reply)),
	[HMMU_OP_QUEUE_CREATE] = OP("queue-create",
				    sizeof(struct hmmu_wire_queue_create),
				    sizeof(struct hmmu_wire_queue_reply)),
	[HMMU_OP_QUEUE_DESTROY] = OP("queue-destroy",
				     sizeof(struct hmmu_wire_queue_id), 0),
	[HMMU_OP_BUFFER_CREATE] = OP("buffer-create",
				     sizeof(struct hmmu_wire_buffer_create),
				     sizeof(struct hmmu_wire_buffer)),
	[HMMU_OP_BUFFER_DESTROY] = OP("buffer-destroy",
				      sizeof(struct hmmu_wire_buffer), 0),
	[HMMU_OP_DEVICE_CMD_BUFFER] = OP("device-cmd-buffer",
					 sizeof(struct hmmu_wire_device_cmd_buffer),
					 sizeof(struct hmmu_wire_cmd_result)),
	[HMMU_OP_FAILSAFE] = OP("failsafe", sizeof(struct hmmu_wire_mirror),
				sizeof(struct hmmu_wire_failsafe)),
	[HMMU_OP_MIRROR_RESTORE] = OP("mirror-restore",
				      sizeof(struct hmmu_wire_mirror_restore), 0),
	[HMMU_OP_BUFFER_RESTORE] = OP("buffer-restore",
				      sizeof(struct hmmu_wire_buffer), 0),
	[HMMU_OP_RESERVE_IDS] = OP("reserve-ids",
				   sizeof(struct hmmu_wire_reserve_ids), 0),
};

static const struct op_desc *op_desc(unsigned op)
{
	if (op == 0 || op >= HMMU_OP_MAX_)
		return NULL;
	return &ops[op];
}

size_t hmmu_proto_request_size(unsigned op)
{
	const struct op_desc *d = op_desc(op);

	return d ? d->request : 0;
}

size_t hmmu_proto_reply_min_size(unsigned op)
{
	const struct op_desc *d = op_desc(op);

	return d ? d->reply : 0;
}

size_t hmmu_proto_reply_size(const void *msg)
{
	const struct hmmu_wire_hdr *h = msg;
	const struct hmmu_wire_device_cmd *c = (const void *)(h + 1);

	if (h->op == HMMU_OP_DEVICE_CMD &&
	    (c->cmd == HMMU_CMD_MIGRATE_PREPARE ||
	     c->cmd == HMMU_CMD_EXCLUSIVE_PREPARE))
		return sizeof(struct hmmu_wire_prepare_result);
	return hmmu_proto_reply_min_size(h->op);
}

int hmmu_proto_op_known(unsigned op)
{
	return op_desc(op) != NULL;
}

const char *hmmu_proto_op_name(unsigned op)
{
	const struct op_desc *d = op_desc(op);

	return d ? d->name : "unknown";
}

static int name_is_valid(const char name[HMMU_NAME_MAX])
{
	size_t n = strnlen(name, HMMU_NAME_MAX);

	if (n == 0 || n == HMMU_NAME_MAX)
		return 0;
	/* Bytes after the terminator must be zero: no hidden payload. */
	for (size_t i = n; i < HMMU_NAME_MAX; i++)
		if (name[i])
			return 0;
	return 1;
}

/* Fail with @err, saying why into @why if the caller wants it. */
__attribute__((format(printf, 4, 5))) static int fail(int err, char *why,
						       size_t size,
						       const char *fmt, ...)
{
	va_list ap;

	if (size) {
		va_start(ap, fmt);
		vsnprintf(why, size, fmt, ap);
		va_end(ap);
	}
	return err;
}

static int check_request_payload(unsigned op, const void *p, size_t len,
				 char *why, size_t size)
{
	switch (op) {
	case HMMU_OP_MIRROR_REGISTER: {
		const struct hmmu_wire_register_ext *x = p;

		if (len < sizeof(*x))
			return 0;
		if (x->reserved || (x->flags & ~HMMU_REGISTER_FLAGS_))
			return fail(-EINVAL, why, size, "mirror-register: "
				    "unknown flags %#x, or reserved is not 0",
				    x->flags);
		return 0;
	}
	case HMMU_OP_HELLO: {
		const struct hmmu_wire_hello *h = p;

		return h->reserved ? fail(-EINVAL, why, size,
					  "hello: reserved is not 0") : 0;
	}
	case HMMU_OP_DEVICE_INFO: {
		const struct hmmu_wire_index *i = p;

		return i->reserved ? fail(-EINVAL, why, size,
					  "device-info: reserved is not 0") : 0;
	}
	case HMMU_OP_MIRROR_CREATE: {
		const struct hmmu_wire_device_name *n = p;

		return name_is_valid(n->name) ? 0 :
			fail(-EINVAL, why, size,
			     "mirror-create: the device name must be 1 to %u "
			     "bytes, then NUL bytes to the end",
			     HMMU_NAME_MAX - 1);
	}
	case HMMU_OP_MIRROR_RESTORE: {
		const struct hmmu_wire_mirror_restore *r = p;

		if (!r->mirror || r->reserved ||
		    (r->flags & ~HMMU_RESTORE_FLAGS_))
			return fail(-EINVAL, why, size, "mirror-restore: the "
				    "mirror id is 0, flags %#x are unknown, or "
				    "reserved is not 0", r->flags);
		return name_is_valid(r->device) ? 0 :
			fail(-EINVAL, why, size,
			     "mirror-restore: the device name must be 1 to %u "
			     "bytes, then NUL bytes to the end",
			     HMMU_NAME_MAX - 1);
	}
	case HMMU_OP_DEVICE_CMD: {
		const struct hmmu_wire_device_cmd *c = p;

		if (c->reserved)
			return fail(-EINVAL, why, size,
				    "device-cmd: reserved is not 0");
		if (c->cmd == 0 || c->cmd >= HMMU_CMD_MAX_)
			return fail(-EINVAL, why, size,
				    "device-cmd: no command number %u", c->cmd);
		if (c->npages == 0 || c->npages > HMMU_CMD_MAX_PAGES)
			return fail(-EINVAL, why, size,
				    "device-cmd: npages must be 1 to %llu",
				    HMMU_CMD_MAX_PAGES);
		/* The map comes back in the reply: no buffer, few pages. */
		if ((c->cmd == HMMU_CMD_MIGRATE_PREPARE ||
		     c->cmd == HMMU_CMD_EXCLUSIVE_PREPARE) &&
		    (c->npages > HMMU_PREPARE_MAX_PAGES || c->buf || c->buf_len))
			return fail(-EINVAL, why, size,
				    "device-cmd: a prepare takes at most %u "
				    "pages and no buffer",
				    HMMU_PREPARE_MAX_PAGES);
		return 0;
	}
	case HMMU_OP_BUFFER_CREATE: {
		const struct hmmu_wire_buffer_create *b = p;

		return b->bytes ? 0 : fail(-EINVAL, why, size,
					   "buffer-create: bytes is 0");
	}
	case HMMU_OP_BUFFER_DESTROY: {
		const struct hmmu_wire_buffer *b = p;

		return b->bytes ? fail(-EINVAL, why, size,
				       "buffer-destroy: bytes is not 0") : 0;
	}
	case HMMU_OP_BUFFER_RESTORE: {
		const struct hmmu_wire_buffer *b = p;

		return b->buffer && b->bytes ? 0 :
			fail(-EINVAL, why, size, "buffer-restore: the buffer "
			     "id or bytes is 0");
	}
	case HMMU_OP_RESERVE_IDS: {
		const struct hmmu_wire_reserve_ids *r = p;

		return r->above <= HMMU_RESERVE_IDS_MAX ? 0 :
			fail(-EINVAL, why, size, "reserve-ids: %llu is past "
			     "the largest floor, %llu",
			     (unsigned long long)r->above,
			     HMMU_RESERVE_IDS_MAX);
	}
	case HMMU_OP_DEVICE_CMD_BUFFER: {
		const struct hmmu_wire_device_cmd_buffer *b = p;
		int err = check_request_payload(HMMU_OP_DEVICE_CMD, &b->cmd,
						sizeof(b->cmd), why, size);

		if (err)
			return err;
		/* A device read into the buffer; nothing else, yet. */
		return b->cmd.cmd == HMMU_CMD_READ ? 0 :
			fail(-EINVAL, why, size, "device-cmd-buffer: command %u "
			     "is not a read", b->cmd.cmd);
	}
	case HMMU_OP_LIST: {
		const struct hmmu_wire_list *l = p;

		return l->what == 0 || l->what >= HMMU_LIST_MAX_ ?
			fail(-EINVAL, why, size, "list: no list number %u",
			     l->what) : 0;
	}
	case HMMU_OP_QUEUE_CREATE: {
		const struct hmmu_wire_queue_create *q = p;

		if (q->reserved)
			return fail(-EINVAL, why, size,
				    "queue-create: reserved is not 0");
		if (q->entries == 0 || q->entries > HMMU_QUEUE_MAX_ENTRIES)
			return fail(-EINVAL, why, size,
				    "queue-create: entries must be 1 to %u",
				    HMMU_QUEUE_MAX_ENTRIES);
		return 0;
	}
	case HMMU_OP_JOB: {
		const struct hmmu_wire_job *j = p;

		if (j->reserved)
			return fail(-EINVAL, why, size, "job: reserved is not 0");
		if (j->kind == 0 || j->kind >= HMMU_WIRE_JOB_MAX_)
			return fail(-EINVAL, why, size, "job: no job kind %u",
				    j->kind);
		return 0;
	}
	default:
		return 0;
	}
}

/*
 * A reason's wire size (checks the flag's rules), or -errno. Only replies
 * with status < 0 carry one; its NUL comes within HMMU_REASON_MAX bytes,
 * and the padding after it is there and zero.
 */
static long reason_size(const struct hmmu_wire_hdr *h, size_t payload,
			char *why, size_t size)
{
	const char *text = (const char *)(h + 1);
	size_t n, wire;

	if (!(h->flags & HMMU_MSG_REASON))
		return 0;
	if (h->status >= 0)
		return fail(-EPROTO, why, size, "a reason on a reply of status %d",
			    h->status);
	n = strnlen(text, payload < HMMU_REASON_MAX ? payload : HMMU_REASON_MAX);
	if (n == 0 || n == payload || n == HMMU_REASON_MAX)
		return fail(-EPROTO, why, size, "a reason that is empty or not "
			    "NUL-terminated within %u bytes", HMMU_REASON_MAX);
	wire = HMMU_REASON_WIRE_SIZE(n);
	if (wire > payload)
		return fail(-EMSGSIZE, why, size, "a reason without its padding");
	for (size_t i = n; i < wire; i++)
		if (text[i])
			return fail(-EPROTO, why, size,
				    "a reason padded with non-zero bytes");
	return (long)wire;
}

int hmmu_proto_check_why(const void *msg, size_t len, int reply, char *why,
			 size_t size)
{
	const struct hmmu_wire_hdr *h = msg;
	const struct op_desc *d;
	size_t payload;
	long rs;

	if (len < sizeof(*h))
		return fail(-EMSGSIZE, why, size,
			    "%zu bytes, shorter than the %zu-byte header", len,
			    sizeof(*h));
	if (len > HMMU_MSG_MAX)
		return fail(-EMSGSIZE, why, size, "%zu bytes, longer than %u",
			    len, HMMU_MSG_MAX);
	if (h->len != len)
		return fail(-EMSGSIZE, why, size,
			    "its len field says %u bytes, %zu came", h->len,
			    len);
	if (h->magic != HMMU_PROTO_MAGIC)
		return fail(-EPROTO, why, size, "wrong magic %#x: not hmmu's",
			    h->magic);
	if (reply ? (h->flags & ~HMMU_MSG_REASON) != HMMU_MSG_REPLY :
		    h->flags != 0)
		return fail(-EPROTO, why, size, "flags %#x in a %s", h->flags,
			    reply ? "reply" : "request");
	payload = len - sizeof(*h);
	rs = reply ? reason_size(h, payload, why, size) : 0;
	if (rs < 0)
		return (int)rs;
	payload -= (size_t)rs;
	/* The daemon answers a message it could not decode with op NONE. */
	if (reply && h->op == HMMU_OP_NONE)
		return h->status < 0 && payload == 0 ? 0 :
			fail(-EPROTO, why, size, "a NONE reply of status %d "
			     "with %zu bytes of payload", h->status, payload);
	d = op_desc(h->op);
	if (!d)
		return fail(-EOPNOTSUPP, why, size,
			    "op %u is unknown to this hmmu (version %u)", h->op,
			    HMMU_PROTO_VERSION);

	if (!reply) {
		if (h->status != 0)
			return fail(-EPROTO, why, size,
				    "%s: status %d in a request", d->name,
				    h->status);
		if (payload != d->request &&
		    (!d->request_ext || payload != d->request_ext))
			return fail(-EMSGSIZE, why, size,
				    "%s: %zu bytes of payload, the op takes %zu",
				    d->name, payload, d->request);
		return check_request_payload(h->op, h + 1, payload, why, size);
	}

	/* A failed reply may carry no payload (or, for hello, the version). */
	if (h->status < 0)
		return payload == 0 || payload >= d->reply ? 0 :
			fail(-EMSGSIZE, why, size,
			     "%s: error reply of %zu bytes of payload", d->name,
			     payload);
	if (payload < d->reply)
		return fail(-EMSGSIZE, why, size,
			    "%s: reply of %zu bytes of payload, at least %zu "
			    "expected", d->name, payload, d->reply);
	return 0;
}

int hmmu_proto_check(const void *msg, size_t len, int reply)
{
	return hmmu_proto_check_why(msg, len, reply, NULL, 0);
}

const char *hmmu_proto_reason(const void *msg)
{
	const struct hmmu_wire_hdr *h = msg;

	return h->flags & HMMU_MSG_REASON ? (const char *)(h + 1) : NULL;
}

size_t hmmu_proto_payload_offset(const void *msg)
{
	const char *reason = hmmu_proto_reason(msg);

	return sizeof(struct hmmu_wire_hdr) +
	       (reason ? HMMU_REASON_WIRE_SIZE(strlen(reason)) : 0);
}
