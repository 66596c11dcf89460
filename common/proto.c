/* SPDX-License-Identifier: MIT */
/*
 * The one decoder of the wire protocol: both ends run every message they
 * receive through hmmu_proto_check() before looking at a field.
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

struct op_desc {
	const char *name;
	size_t request; /* exact payload size of a request */
	size_t reply;	/* minimum payload size of a successful reply */
};

static const struct op_desc ops[HMMU_OP_MAX_] = {
	[HMMU_OP_HELLO] = { "hello", sizeof(struct hmmu_wire_hello),
			    sizeof(struct hmmu_wire_hello) },
	[HMMU_OP_DEVICE_COUNT] = { "device-count", 0,
				   sizeof(struct hmmu_wire_count) },
	[HMMU_OP_DEVICE_INFO] = { "device-info", sizeof(struct hmmu_wire_index),
				  sizeof(struct hmmu_wire_device_info) },
	[HMMU_OP_MIRROR_CREATE] = { "mirror-create",
				    sizeof(struct hmmu_wire_device_name),
				    sizeof(struct hmmu_wire_mirror) },
	[HMMU_OP_MIRROR_REGISTER] = { "mirror-register",
				      sizeof(struct hmmu_wire_register), 0 },
	[HMMU_OP_MIRROR_UNREGISTER] = { "mirror-unregister",
					sizeof(struct hmmu_wire_mirror), 0 },
	[HMMU_OP_MIRROR_DESTROY] = { "mirror-destroy",
				     sizeof(struct hmmu_wire_mirror), 0 },
	/* Counters come in any number: older daemons send fewer. */
	[HMMU_OP_STATS] = { "stats", 0, sizeof(uint64_t) },
	[HMMU_OP_DEVICE_CMD] = { "device-cmd",
				 sizeof(struct hmmu_wire_device_cmd),
				 sizeof(struct hmmu_wire_cmd_result) },
	[HMMU_OP_JOB] = { "job", sizeof(struct hmmu_wire_job),
			  sizeof(struct hmmu_wire_job_result) },
	[HMMU_OP_LIST] = { "list", sizeof(struct hmmu_wire_list),
			   sizeof(struct hmmu_wire_list_reply) },
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

static int check_request_payload(unsigned op, const void *p)
{
	switch (op) {
	case HMMU_OP_HELLO: {
		const struct hmmu_wire_hello *h = p;

		return h->reserved ? -EINVAL : 0;
	}
	case HMMU_OP_DEVICE_INFO: {
		const struct hmmu_wire_index *i = p;

		return i->reserved ? -EINVAL : 0;
	}
	case HMMU_OP_MIRROR_CREATE: {
		const struct hmmu_wire_device_name *n = p;

		return name_is_valid(n->name) ? 0 : -EINVAL;
	}
	case HMMU_OP_DEVICE_CMD: {
		const struct hmmu_wire_device_cmd *c = p;

		if (c->reserved || c->cmd == 0 || c->cmd >= HMMU_CMD_MAX_)
			return -EINVAL;
		if (c->npages == 0 || c->npages > HMMU_CMD_MAX_PAGES)
			return -EINVAL;
		/* The map comes back in the reply: no buffer, few pages. */
		if ((c->cmd == HMMU_CMD_MIGRATE_PREPARE ||
		     c->cmd == HMMU_CMD_EXCLUSIVE_PREPARE) &&
		    (c->npages > HMMU_PREPARE_MAX_PAGES || c->buf || c->buf_len))
			return -EINVAL;
		return 0;
	}
	case HMMU_OP_LIST: {
		const struct hmmu_wire_list *l = p;

		return l->what == 0 || l->what >= HMMU_LIST_MAX_ ? -EINVAL : 0;
	}
	case HMMU_OP_JOB: {
		const struct hmmu_wire_job *j = p;

		if (j->reserved || j->kind == 0 || j->kind >= HMMU_WIRE_JOB_MAX_)
			return -EINVAL;
		return 0;
	}
	default:
		return 0;
	}
}

int hmmu_proto_check(const void *msg, size_t len, int reply)
{
	const struct hmmu_wire_hdr *h = msg;
	const struct op_desc *d;
	size_t payload;

	if (len < sizeof(*h))
		return -EMSGSIZE;
	if (len > HMMU_MSG_MAX || h->len != len)
		return -EMSGSIZE;
	if (h->magic != HMMU_PROTO_MAGIC)
		return -EPROTO;
	if (h->flags != (reply ? HMMU_MSG_REPLY : 0))
		return -EPROTO;
	/* The daemon answers a message it could not decode with op NONE. */
	if (reply && h->op == HMMU_OP_NONE)
		return h->status < 0 && len == sizeof(*h) ? 0 : -EPROTO;
	d = op_desc(h->op);
	if (!d)
		return -EOPNOTSUPP;

	payload = len - sizeof(*h);
	if (!reply) {
		if (h->status != 0)
			return -EPROTO;
		if (payload != d->request)
			return -EMSGSIZE;
		return check_request_payload(h->op, h + 1);
	}

	/* A failed reply may carry no payload (or, for hello, the version). */
	if (h->status < 0)
		return payload == 0 || payload >= d->reply ? 0 : -EMSGSIZE;
	if (payload < d->reply)
		return -EMSGSIZE;
	return 0;
}
