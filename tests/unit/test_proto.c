/* SPDX-License-Identifier: MIT */
/*
 * The wire protocol decoder, common/proto.c: what hmmu_proto_check() accepts
 * and, for everything it refuses, the exact errno it refuses it with, in both
 * directions (requests as the daemon sees them, replies as libhmmu does).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/proto.h"

#define HDR sizeof(struct hmmu_wire_hdr)

/* Room for any message, and for some that are too long. */
union msg {
	struct hmmu_wire_hdr hdr;
	unsigned char buf[2 * HMMU_MSG_MAX];
	uint64_t align;
};

static void *payload(union msg *m)
{
	return &m->hdr + 1;
}

/* A request header for @op with @plen bytes of zeroed payload; its length. */
static size_t request(union msg *m, unsigned op, size_t plen)
{
	memset(m, 0, sizeof(*m));
	m->hdr.magic = HMMU_PROTO_MAGIC;
	m->hdr.op = (uint16_t)op;
	m->hdr.len = (uint32_t)(HDR + plen);
	m->hdr.id = 42;
	return HDR + plen;
}

/* A reply header for @op, @status, with @plen bytes of zeroed payload. */
static size_t reply(union msg *m, unsigned op, int status, size_t plen)
{
	size_t n = request(m, op, plen);

	m->hdr.flags = HMMU_MSG_REPLY;
	m->hdr.status = status;
	return n;
}

/* A valid request of @op: the payload each op needs to pass. */
static size_t valid_request(union msg *m, unsigned op)
{
	size_t n = request(m, op, hmmu_proto_request_size(op));

	switch (op) {
	case HMMU_OP_HELLO:
		((struct hmmu_wire_hello *)payload(m))->version =
			HMMU_PROTO_VERSION;
		break;
	case HMMU_OP_MIRROR_CREATE:
		strcpy(((struct hmmu_wire_device_name *)payload(m))->name,
		       "dmirror0");
		break;
	case HMMU_OP_MIRROR_RESTORE: {
		struct hmmu_wire_mirror_restore *r = payload(m);

		r->mirror = 3;
		strcpy(r->device, "dmirror0");
		r->flags = HMMU_RESTORE_REGISTERED;
		break;
	}
	case HMMU_OP_DEVICE_CMD: {
		struct hmmu_wire_device_cmd *c = payload(m);

		c->mirror = 1;
		c->cmd = HMMU_CMD_READ;
		c->addr = 0x10000;
		c->npages = 1;
		c->buf = 0x20000;
		c->buf_len = 4096;
		break;
	}
	case HMMU_OP_LIST:
		((struct hmmu_wire_list *)payload(m))->what = HMMU_LIST_MIRRORS;
		break;
	case HMMU_OP_BUFFER_CREATE:
		((struct hmmu_wire_buffer_create *)payload(m))->bytes = 4096;
		break;
	case HMMU_OP_BUFFER_RESTORE: {
		struct hmmu_wire_buffer *b = payload(m);

		b->buffer = 5;
		b->bytes = 4096;
		break;
	}
	case HMMU_OP_DEVICE_CMD_BUFFER: {
		struct hmmu_wire_device_cmd_buffer *b = payload(m);

		b->cmd.mirror = 1;
		b->cmd.cmd = HMMU_CMD_READ;
		b->cmd.addr = 0x10000;
		b->cmd.npages = 1;
		b->cmd.buf = 0x20000;
		b->cmd.buf_len = 4096;
		b->buffer = 1;
		break;
	}
	case HMMU_OP_QUEUE_CREATE: {
		struct hmmu_wire_queue_create *q = payload(m);

		q->mirror = 1;
		q->entries = 64;
		break;
	}
	case HMMU_OP_JOB: {
		struct hmmu_wire_job *j = payload(m);

		j->mirror = 1;
		j->kind = HMMU_WIRE_JOB_SUM64;
		j->src = 0x10000;
		j->len = 8;
		break;
	}
	default:
		break;
	}
	return n;
}

/* The fixed-size ops: every request op with a payload. */
static const unsigned sized_ops[] = {
	HMMU_OP_HELLO,		   HMMU_OP_DEVICE_INFO,
	HMMU_OP_MIRROR_CREATE,	   HMMU_OP_MIRROR_REGISTER,
	HMMU_OP_MIRROR_UNREGISTER, HMMU_OP_MIRROR_DESTROY,
	HMMU_OP_DEVICE_CMD,	   HMMU_OP_JOB,
	HMMU_OP_LIST,		   HMMU_OP_QUEUE_CREATE,
	HMMU_OP_QUEUE_DESTROY,
};

#define NR_SIZED_OPS (sizeof(sized_ops) / sizeof(sized_ops[0]))

Test(proto, valid_request_of_every_op_is_accepted)
{
	union msg m;

	for (unsigned op = 1; op < HMMU_OP_MAX_; op++) {
		size_t n = valid_request(&m, op);

		cr_expect_eq(hmmu_proto_check(&m, n, 0), 0, "op %s",
			     hmmu_proto_op_name(op));
	}
}

Test(proto, request_sizes_match_the_wire_structs)
{
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_HELLO),
		     sizeof(struct hmmu_wire_hello));
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_DEVICE_COUNT), 0);
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_DEVICE_INFO),
		     sizeof(struct hmmu_wire_index));
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_MIRROR_CREATE),
		     sizeof(struct hmmu_wire_device_name));
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_MIRROR_REGISTER),
		     sizeof(struct hmmu_wire_register));
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_STATS), 0);
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_DEVICE_CMD),
		     sizeof(struct hmmu_wire_device_cmd));
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_NONE), 0);
	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_MAX_), 0);
	cr_expect_not(hmmu_proto_op_known(HMMU_OP_NONE));
	cr_expect_not(hmmu_proto_op_known(HMMU_OP_MAX_));
	cr_expect_str_eq(hmmu_proto_op_name(0xffff), "unknown");
}

Test(proto, wrong_magic_is_eproto)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_DEVICE_COUNT);

	m.hdr.magic = 0x48484d55; /* "HMMU" the wrong way round */
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EPROTO);
	n = reply(&m, HMMU_OP_DEVICE_COUNT, 0, sizeof(struct hmmu_wire_count));
	m.hdr.magic = 0;
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO);
}

Test(proto, reply_flag_on_a_request_is_eproto)
{
	union msg m;

	for (unsigned op = 1; op < HMMU_OP_MAX_; op++) {
		size_t n = valid_request(&m, op);

		m.hdr.flags = HMMU_MSG_REPLY;
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EPROTO, "op %s",
			     hmmu_proto_op_name(op));
	}
}

Test(proto, unknown_flag_is_eproto)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_STATS);

	m.hdr.flags = 0x2;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EPROTO);
	n = reply(&m, HMMU_OP_STATS, 0, sizeof(uint64_t));
	m.hdr.flags = HMMU_MSG_REPLY | 0x8000;
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO);
}

Test(proto, request_read_as_reply_is_eproto)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_DEVICE_INFO);

	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO);
}

Test(proto, nonzero_status_in_request_is_eproto)
{
	static const int32_t statuses[] = { 1, -1, -EINVAL, INT32_MIN };
	union msg m;

	for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
		size_t n = valid_request(&m, HMMU_OP_DEVICE_INFO);

		m.hdr.status = statuses[i];
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EPROTO, "status %d",
			     statuses[i]);
	}
}

Test(proto, unknown_op_is_eopnotsupp)
{
	static const unsigned bad_ops[] = { HMMU_OP_NONE, HMMU_OP_MAX_, 0xffff };
	union msg m;

	for (size_t i = 0; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		size_t n = request(&m, bad_ops[i], 0);

		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EOPNOTSUPP,
			     "request op %#x", bad_ops[i]);
		n = request(&m, bad_ops[i], 8);
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EOPNOTSUPP,
			     "request op %#x with payload", bad_ops[i]);
	}
	/* Replies: op NONE has its own rule (below); the others are unknown. */
	for (size_t i = 1; i < sizeof(bad_ops) / sizeof(bad_ops[0]); i++) {
		size_t n = reply(&m, bad_ops[i], -EINVAL, 0);

		cr_expect_eq(hmmu_proto_check(&m, n, 1), -EOPNOTSUPP,
			     "reply op %#x", bad_ops[i]);
	}
}

Test(proto, length_field_disagreeing_with_received_length_is_emsgsize)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_DEVICE_INFO);

	m.hdr.len = (uint32_t)n + 1;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EMSGSIZE);
	m.hdr.len = (uint32_t)n - 1;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EMSGSIZE);
	m.hdr.len = 0;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EMSGSIZE);
	m.hdr.len = UINT32_MAX;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EMSGSIZE);

	n = reply(&m, HMMU_OP_DEVICE_COUNT, 0, sizeof(struct hmmu_wire_count));
	m.hdr.len = (uint32_t)n + 8;
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE);
}

Test(proto, truncated_payload_of_each_fixed_size_op_is_emsgsize)
{
	union msg m;

	for (size_t i = 0; i < NR_SIZED_OPS; i++) {
		unsigned op = sized_ops[i];
		size_t full = valid_request(&m, op);

		/* One byte short, and no payload at all. */
		m.hdr.len = (uint32_t)full - 1;
		cr_expect_eq(hmmu_proto_check(&m, full - 1, 0), -EMSGSIZE,
			     "op %s, one byte short", hmmu_proto_op_name(op));
		m.hdr.len = HDR;
		cr_expect_eq(hmmu_proto_check(&m, HDR, 0), -EMSGSIZE,
			     "op %s, no payload", hmmu_proto_op_name(op));
	}
}

Test(proto, oversized_payload_of_each_op_is_emsgsize)
{
	union msg m;

	for (unsigned op = 1; op < HMMU_OP_MAX_; op++) {
		size_t full = valid_request(&m, op);

		m.hdr.len = (uint32_t)full + 1;
		cr_expect_eq(hmmu_proto_check(&m, full + 1, 0), -EMSGSIZE,
			     "op %s, one byte more", hmmu_proto_op_name(op));
		m.hdr.len = (uint32_t)full + 8;
		/* MIRROR_REGISTER has a long form, 8 bytes longer (below). */
		cr_expect_eq(hmmu_proto_check(&m, full + 8, 0),
			     op == HMMU_OP_MIRROR_REGISTER ? 0 : -EMSGSIZE,
			     "op %s, eight bytes more", hmmu_proto_op_name(op));
		m.hdr.len = (uint32_t)full + 16;
		cr_expect_eq(hmmu_proto_check(&m, full + 16, 0), -EMSGSIZE,
			     "op %s, sixteen bytes more", hmmu_proto_op_name(op));
	}
}

Test(proto, register_long_form_checks_flags_and_reserved)
{
	union msg m;
	size_t full = valid_request(&m, HMMU_OP_MIRROR_REGISTER) + 8;
	struct hmmu_wire_register_ext *x = (void *)(&m.hdr + 1);

	m.hdr.len = (uint32_t)full;
	x->flags = HMMU_REGISTER_COARSE;
	cr_expect_eq(hmmu_proto_check(&m, full, 0), 0);
	x->flags = 2;
	cr_expect_eq(hmmu_proto_check(&m, full, 0), -EINVAL, "unknown flag");
	x->flags = HMMU_REGISTER_COARSE;
	x->reserved = 1;
	cr_expect_eq(hmmu_proto_check(&m, full, 0), -EINVAL, "reserved");
}

Test(proto, message_shorter_than_header_is_emsgsize)
{
	union msg m;

	valid_request(&m, HMMU_OP_DEVICE_COUNT);
	for (size_t n = 0; n < HDR; n++) {
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EMSGSIZE,
			     "request of %zu bytes", n);
		cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE,
			     "reply of %zu bytes", n);
	}
}

Test(proto, message_longer_than_msg_max_is_emsgsize)
{
	union msg m;

	/* Consistent len field, otherwise valid header: size alone refuses. */
	request(&m, HMMU_OP_DEVICE_COUNT, HMMU_MSG_MAX + 1 - HDR);
	cr_expect_eq(hmmu_proto_check(&m, HMMU_MSG_MAX + 1, 0), -EMSGSIZE);
	reply(&m, HMMU_OP_STATS, 0, HMMU_MSG_MAX + 8 - HDR);
	cr_expect_eq(hmmu_proto_check(&m, HMMU_MSG_MAX + 8, 1), -EMSGSIZE);
	/* Exactly HMMU_MSG_MAX is allowed (a stats reply that large). */
	reply(&m, HMMU_OP_STATS, 0, HMMU_MSG_MAX - HDR);
	cr_expect_eq(hmmu_proto_check(&m, HMMU_MSG_MAX, 1), 0);
}

Test(proto, reserved_fields_nonzero_are_einval)
{
	union msg m;
	size_t n;

	n = valid_request(&m, HMMU_OP_HELLO);
	((struct hmmu_wire_hello *)payload(&m))->reserved = 1;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "hello");

	n = valid_request(&m, HMMU_OP_DEVICE_INFO);
	((struct hmmu_wire_index *)payload(&m))->reserved = 0x80000000u;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "device-info");

	n = valid_request(&m, HMMU_OP_DEVICE_CMD);
	((struct hmmu_wire_device_cmd *)payload(&m))->reserved = 1;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "device-cmd");
}

Test(proto, device_name_empty_is_einval)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_MIRROR_CREATE);

	memset(payload(&m), 0, HMMU_NAME_MAX);
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL);
}

Test(proto, device_name_unterminated_is_einval)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_MIRROR_CREATE);

	memset(payload(&m), 'a', HMMU_NAME_MAX);
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL);
	/* The longest valid name: 31 bytes and the NUL. */
	((char *)payload(&m))[HMMU_NAME_MAX - 1] = '\0';
	cr_expect_eq(hmmu_proto_check(&m, n, 0), 0);
}

Test(proto, device_name_with_garbage_after_nul_is_einval)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_MIRROR_CREATE);
	char *name = payload(&m);

	name[HMMU_NAME_MAX - 1] = 'x';
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "last byte");
	name[HMMU_NAME_MAX - 1] = '\0';
	name[strlen("dmirror0") + 1] = 'x';
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "right after the NUL");
}

Test(proto, device_cmd_with_bad_cmd_or_npages_is_einval)
{
	static const struct {
		uint32_t cmd;
		uint64_t npages;
		int err;
	} cases[] = {
		{ 0, 1, -EINVAL },
		{ HMMU_CMD_MAX_, 1, -EINVAL },
		{ UINT32_MAX, 1, -EINVAL },
		{ HMMU_CMD_READ, 0, -EINVAL },
		{ HMMU_CMD_READ, HMMU_CMD_MAX_PAGES + 1, -EINVAL },
		{ HMMU_CMD_WRITE, UINT64_MAX, -EINVAL },
		/* The edges that pass. */
		{ HMMU_CMD_SNAPSHOT, HMMU_CMD_MAX_PAGES, 0 },
		{ HMMU_CMD_WRITE, 1, 0 },
	};
	union msg m;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = valid_request(&m, HMMU_OP_DEVICE_CMD);
		struct hmmu_wire_device_cmd *c = payload(&m);

		c->cmd = cases[i].cmd;
		c->npages = cases[i].npages;
		cr_expect_eq(hmmu_proto_check(&m, n, 0), cases[i].err,
			     "cmd %u npages %llu", cases[i].cmd,
			     (unsigned long long)cases[i].npages);
	}
}

Test(proto, success_reply_shorter_than_op_minimum_is_emsgsize)
{
	union msg m;

	for (unsigned op = 1; op < HMMU_OP_MAX_; op++) {
		size_t min = hmmu_proto_reply_min_size(op);
		size_t n;

		n = reply(&m, op, 0, min);
		cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "op %s, minimum",
			     hmmu_proto_op_name(op));
		/* A positive status is a signal, not an error: same rule. */
		n = reply(&m, op, HMMU_STATUS_NEED_UFFD, min);
		cr_expect_eq(hmmu_proto_check(&m, n, 1), 0,
			     "op %s, positive status", hmmu_proto_op_name(op));
		if (!min)
			continue;
		n = reply(&m, op, 0, min - 1);
		cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE,
			     "op %s, one byte short", hmmu_proto_op_name(op));
		n = reply(&m, op, 0, 0);
		cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE,
			     "op %s, empty", hmmu_proto_op_name(op));
	}
}

Test(proto, error_reply_with_empty_payload_is_accepted)
{
	union msg m;

	for (unsigned op = 1; op < HMMU_OP_MAX_; op++) {
		size_t n = reply(&m, op, -EINVAL, 0);

		cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "op %s",
			     hmmu_proto_op_name(op));
	}
}

Test(proto, error_reply_with_full_payload_is_accepted_partial_is_emsgsize)
{
	union msg m;
	size_t n;

	/* Version mismatch: the daemon's version rides along. */
	n = reply(&m, HMMU_OP_HELLO, -EPROTONOSUPPORT,
		  sizeof(struct hmmu_wire_hello));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0);
	n = reply(&m, HMMU_OP_DEVICE_CMD, -EFAULT,
		  sizeof(struct hmmu_wire_cmd_result));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0);
	n = reply(&m, HMMU_OP_HELLO, -EPROTONOSUPPORT, 4);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE);
}

Test(proto, none_reply_accepted_only_with_negative_status_and_no_payload)
{
	union msg m;
	size_t n;

	n = reply(&m, HMMU_OP_NONE, -EPROTO, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "-EPROTO, empty");
	n = reply(&m, HMMU_OP_NONE, -EMSGSIZE, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "-EMSGSIZE, empty");

	n = reply(&m, HMMU_OP_NONE, 0, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "status 0");
	n = reply(&m, HMMU_OP_NONE, HMMU_STATUS_NEED_UFFD, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "positive status");
	n = reply(&m, HMMU_OP_NONE, -EPROTO, 8);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "with a payload");
	/* And never as a request, where op NONE is just an unknown op. */
	n = request(&m, HMMU_OP_NONE, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EOPNOTSUPP, "as a request");
}

Test(proto, stats_reply_with_more_counters_than_known_is_accepted)
{
	union msg m;
	size_t n;

	n = reply(&m, HMMU_OP_STATS, 0,
		  sizeof(struct hmmu_wire_stats) + 4 * sizeof(uint64_t));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "newer daemon");
	n = reply(&m, HMMU_OP_STATS, 0, sizeof(struct hmmu_wire_stats));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "same daemon");
	n = reply(&m, HMMU_OP_STATS, 0, sizeof(uint64_t));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "older daemon");
	n = reply(&m, HMMU_OP_STATS, 0, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE, "no counter");
}

Test(proto, job_with_bad_kind_or_reserved_is_einval)
{
	static const uint32_t kinds[] = { 0, HMMU_WIRE_JOB_MAX_, 0xffffffffu };
	union msg m;
	size_t n;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		n = valid_request(&m, HMMU_OP_JOB);
		((struct hmmu_wire_job *)payload(&m))->kind = kinds[i];
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "kind %u",
			     kinds[i]);
	}
	n = valid_request(&m, HMMU_OP_JOB);
	((struct hmmu_wire_job *)payload(&m))->reserved = 1;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL);
}

Test(proto, list_of_unknown_kind_is_einval)
{
	static const uint32_t whats[] = { 0, HMMU_LIST_MAX_, 0xffffffffu };
	union msg m;

	for (size_t i = 0; i < sizeof(whats) / sizeof(whats[0]); i++) {
		size_t n = valid_request(&m, HMMU_OP_LIST);

		((struct hmmu_wire_list *)payload(&m))->what = whats[i];
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "what %u",
			     whats[i]);
	}
}

Test(proto, buffer_restore_of_id_or_bytes_0_is_einval)
{
	union msg m;
	size_t n = valid_request(&m, HMMU_OP_BUFFER_RESTORE);

	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_BUFFER_RESTORE),
		     sizeof(struct hmmu_wire_buffer));
	cr_expect_eq(hmmu_proto_reply_min_size(HMMU_OP_BUFFER_RESTORE), 0);
	((struct hmmu_wire_buffer *)payload(&m))->buffer = 0;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "id 0");
	n = valid_request(&m, HMMU_OP_BUFFER_RESTORE);
	((struct hmmu_wire_buffer *)payload(&m))->bytes = 0;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "0 bytes");
	/* Every other value is the daemon's to judge, with the memfd. */
	n = valid_request(&m, HMMU_OP_BUFFER_RESTORE);
	((struct hmmu_wire_buffer *)payload(&m))->buffer = UINT64_MAX;
	((struct hmmu_wire_buffer *)payload(&m))->bytes = 1;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), 0);
}

Test(proto, reserve_ids_past_the_bound_is_einval)
{
	static const uint64_t ok[] = { 0, 1, HMMU_RESERVE_IDS_MAX };
	static const uint64_t bad[] = { HMMU_RESERVE_IDS_MAX + 1, 1ull << 63,
					UINT64_MAX };
	union msg m;
	size_t n;

	cr_expect_eq(hmmu_proto_request_size(HMMU_OP_RESERVE_IDS),
		     sizeof(struct hmmu_wire_reserve_ids));
	cr_expect_eq(sizeof(struct hmmu_wire_reserve_ids), 8);
	cr_expect_eq(hmmu_proto_reply_min_size(HMMU_OP_RESERVE_IDS), 0);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		n = valid_request(&m, HMMU_OP_RESERVE_IDS);
		((struct hmmu_wire_reserve_ids *)payload(&m))->above = ok[i];
		cr_expect_eq(hmmu_proto_check(&m, n, 0), 0, "%llu",
			     (unsigned long long)ok[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = valid_request(&m, HMMU_OP_RESERVE_IDS);
		((struct hmmu_wire_reserve_ids *)payload(&m))->above = bad[i];
		cr_expect_eq(hmmu_proto_check(&m, n, 0), -EINVAL, "%llu",
			     (unsigned long long)bad[i]);
	}
}

/* ---- reasons (protocol 3) ------------------------------------------------- */

/*
 * An error reply of @op with the reason @text, then @plen bytes of zeroed
 * payload; its length.
 */
static size_t reply_with_reason(union msg *m, unsigned op, int status,
				const char *text, size_t plen)
{
	size_t wire = HMMU_REASON_WIRE_SIZE(strlen(text));
	size_t n = reply(m, op, status, wire + plen);

	m->hdr.flags |= HMMU_MSG_REASON;
	memcpy(payload(m), text, strlen(text));
	return n;
}

Test(proto, error_reply_with_reason_is_accepted_and_its_payload_follows)
{
	union msg m;
	struct hmmu_wire_cmd_result *res;
	size_t n;

	n = reply_with_reason(&m, HMMU_OP_MIRROR_REGISTER, -EBUSY,
			      "mirror 1 is registered already", 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "reason alone");
	cr_expect_str_eq(hmmu_proto_reason(&m), "mirror 1 is registered already");
	cr_expect_eq(hmmu_proto_payload_offset(&m), HDR + 32);

	n = reply_with_reason(&m, HMMU_OP_DEVICE_CMD, -EFAULT, "seven!",
			      sizeof(*res));
	res = (void *)(m.buf + hmmu_proto_payload_offset(&m));
	res->cpages = 3;
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "reason and result");
	cr_expect_eq(hmmu_proto_payload_offset(&m), HDR + 8, "7 bytes and NUL");
	cr_expect_eq(((struct hmmu_wire_cmd_result *)(m.buf + HDR + 8))->cpages,
		     3);

	/* The longest: HMMU_REASON_MAX - 1 characters, and a full PREPARE. */
	{
		char longest[HMMU_REASON_MAX];

		memset(longest, 'x', sizeof(longest) - 1);
		longest[sizeof(longest) - 1] = '\0';
		n = reply_with_reason(&m, HMMU_OP_DEVICE_CMD, -ENOMEM, longest,
				      sizeof(struct hmmu_wire_prepare_result));
		cr_expect_leq(n, HMMU_MSG_MAX);
		cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "longest reason");
	}

	n = reply_with_reason(&m, HMMU_OP_NONE, -EMSGSIZE, "too long", 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "NONE with a reason");

	n = reply(&m, HMMU_OP_STATS, -EINVAL, 0);
	cr_expect_null(hmmu_proto_reason(&m), "no flag, no reason");
	cr_expect_eq(hmmu_proto_payload_offset(&m), HDR);
}

Test(proto, reason_on_a_success_or_a_request_is_eproto)
{
	union msg m;
	size_t n;

	n = reply_with_reason(&m, HMMU_OP_DEVICE_COUNT, 0, "fine",
			      sizeof(struct hmmu_wire_count));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "status 0");
	n = reply_with_reason(&m, HMMU_OP_MIRROR_REGISTER,
			      HMMU_STATUS_NEED_UFFD, "send it", 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "positive status");
	n = valid_request(&m, HMMU_OP_DEVICE_COUNT);
	m.hdr.flags = HMMU_MSG_REASON;
	cr_expect_eq(hmmu_proto_check(&m, n, 0), -EPROTO, "request");
}

Test(proto, reason_empty_unterminated_or_badly_padded_is_refused)
{
	char longer[HMMU_REASON_MAX + 8];
	union msg m;
	size_t n;

	n = reply_with_reason(&m, HMMU_OP_MIRROR_REGISTER, -EBUSY, "", 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "empty");

	/* No NUL in the payload at all. */
	n = reply(&m, HMMU_OP_MIRROR_REGISTER, -EBUSY, 16);
	m.hdr.flags |= HMMU_MSG_REASON;
	memset(payload(&m), 'a', 16);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "unterminated");

	/* A NUL only past HMMU_REASON_MAX bytes. */
	memset(longer, 'y', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	n = reply_with_reason(&m, HMMU_OP_MIRROR_REGISTER, -EBUSY, longer, 0);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "too long");

	n = reply_with_reason(&m, HMMU_OP_MIRROR_REGISTER, -EBUSY, "abc", 0);
	((char *)payload(&m))[6] = 'z';
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "padding not zero");

	/* The padding cut off: 5 bytes of "abcd" and NUL, no more. */
	n = reply(&m, HMMU_OP_MIRROR_REGISTER, -EBUSY, 5);
	m.hdr.flags |= HMMU_MSG_REASON;
	memcpy(payload(&m), "abcd", 5);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE, "no padding");

	/* A reason, then part of a result: as without the reason. */
	n = reply_with_reason(&m, HMMU_OP_DEVICE_CMD, -EFAULT, "abc", 8);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EMSGSIZE, "half a result");
	n = reply_with_reason(&m, HMMU_OP_NONE, -EPROTO, "abc", 8);
	cr_expect_eq(hmmu_proto_check(&m, n, 1), -EPROTO, "NONE with a payload");
}

Test(proto, check_why_says_what_is_wrong)
{
	char why[128] = "";
	union msg m;
	size_t n = request(&m, HMMU_OP_DEVICE_INFO, 4);

	cr_expect_eq(hmmu_proto_check_why(&m, n, 0, why, sizeof(why)),
		     -EMSGSIZE);
	cr_expect(strstr(why, "device-info") && strstr(why, "4 bytes") &&
			  strstr(why, "takes 8"),
		  "'%s'", why);
	n = valid_request(&m, HMMU_OP_DEVICE_CMD);
	((struct hmmu_wire_device_cmd *)payload(&m))->npages = 0;
	cr_expect_eq(hmmu_proto_check_why(&m, n, 0, why, sizeof(why)), -EINVAL);
	cr_expect(strstr(why, "npages"), "'%s'", why);
	/* No room asked for: nothing written, same answer. */
	cr_expect_eq(hmmu_proto_check_why(&m, n, 0, NULL, 0), -EINVAL);
}

Test(proto, hello_reply_of_any_version_starts_with_the_version)
{
	union msg m;
	size_t n;

	/* Protocol 2's, 8 bytes, still reads: libhmmu names the version. */
	n = reply(&m, HMMU_OP_HELLO, -EPROTONOSUPPORT,
		  sizeof(struct hmmu_wire_hello));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "version 2's mismatch");
	n = reply(&m, HMMU_OP_HELLO, 0, sizeof(struct hmmu_wire_hello_reply));
	cr_expect_eq(hmmu_proto_check(&m, n, 1), 0, "version 3's");
	cr_expect_eq(offsetof(struct hmmu_wire_hello_reply, version),
		     offsetof(struct hmmu_wire_hello, version));
	cr_expect_eq(offsetof(struct hmmu_wire_hello_reply, release),
		     sizeof(struct hmmu_wire_hello));
}
