/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target for the wire decoder, common/proto.c. Every input is
 * checked both ways (as a request, as a reply) from an exact-size heap copy,
 * so ASan sees any read past the message. Beyond "does not crash", the
 * result must agree with the header rules of docs/protocol.md §6, which are
 * restated here independently of the decoder; the op tables must agree with
 * each other. A disagreement aborts, and libFuzzer keeps the input.
 *
 * Only the decoder's own tables (request and reply sizes, op names) are
 * taken from common/proto.c, so a protocol change that keeps the documented
 * rules needs no change here.
 */
#include "common/proto.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR sizeof(struct hmmu_wire_hdr)

static void fail(const char *what, const void *msg, size_t len, int reply,
		 int got, int want)
{
	fprintf(stderr, "fuzz_proto: %s: %zu-byte %s, hmmu_proto_check() "
		"says %d, want %d\n", what, len, reply ? "reply" : "request",
		got, want);
	for (size_t i = 0; i < len && i < 64; i++)
		fprintf(stderr, "%02x%s", ((const unsigned char *)msg)[i],
			i % 16 == 15 ? "\n" : " ");
	fputc('\n', stderr);
	abort();
}

/*
 * The documented checks (docs/protocol.md §6) as a model. Returns 1 and
 * the errno in *want when the header rules decide; 0 when the message
 * reaches the request payload rules (check 9), whose only failure is
 * -EINVAL.
 */
static int model(const void *msg, size_t len, int reply, int *want)
{
	struct hmmu_wire_hdr h;
	size_t payload;

	if (len < HDR) {
		*want = -EMSGSIZE;
		return 1;
	}
	memcpy(&h, msg, sizeof(h));
	if (len > HMMU_MSG_MAX || h.len != len) {
		*want = -EMSGSIZE;
		return 1;
	}
	if (h.magic != HMMU_PROTO_MAGIC ||
	    (reply ? h.flags != HMMU_MSG_REPLY &&
			     h.flags != (HMMU_MSG_REPLY | HMMU_MSG_REASON) :
		     h.flags != 0)) {
		*want = -EPROTO;
		return 1;
	}
	payload = len - HDR;
	/* A reason: status < 0, 1 to 199 bytes and a NUL, zeros to 8. */
	if (reply && (h.flags & HMMU_MSG_REASON)) {
		const unsigned char *text = (const unsigned char *)msg + HDR;
		size_t n = 0, wire;

		while (n < payload && n < HMMU_REASON_MAX && text[n])
			n++;
		if (h.status >= 0 || n == 0 || n == payload ||
		    n == HMMU_REASON_MAX) {
			*want = -EPROTO;
			return 1;
		}
		wire = (n + 8) / 8 * 8;
		if (wire > payload) {
			*want = -EMSGSIZE;
			return 1;
		}
		for (size_t i = n; i < wire; i++) {
			if (text[i]) {
				*want = -EPROTO;
				return 1;
			}
		}
		payload -= wire;
	}
	if (reply && h.op == HMMU_OP_NONE) {
		*want = h.status < 0 && payload == 0 ? 0 : -EPROTO;
		return 1;
	}
	if (h.op == HMMU_OP_NONE || h.op >= HMMU_OP_MAX_) {
		*want = -EOPNOTSUPP;
		return 1;
	}
	if (!reply) {
		if (h.status != 0) {
			*want = -EPROTO;
			return 1;
		}
		/* A registration also has a long form (its coherence mode). */
		if (payload != hmmu_proto_request_size(h.op) &&
		    !(h.op == HMMU_OP_MIRROR_REGISTER &&
		      payload == sizeof(struct hmmu_wire_register_ext))) {
			*want = -EMSGSIZE;
			return 1;
		}
		return 0;
	}
	if (h.status < 0)
		*want = payload == 0 ||
				payload >= hmmu_proto_reply_min_size(h.op) ?
			0 : -EMSGSIZE;
	else
		*want = payload >= hmmu_proto_reply_min_size(h.op) ? 0 :
								      -EMSGSIZE;
	return 1;
}

static void check_one(const void *msg, size_t len, int reply)
{
	int got = hmmu_proto_check(msg, len, reply), want = 0;

	if (got != hmmu_proto_check(msg, len, reply))
		fail("not deterministic", msg, len, reply, got, got);
	if (model(msg, len, reply, &want)) {
		if (got != want)
			fail("disagrees with docs/protocol.md §6", msg, len,
			     reply, got, want);
	} else if (got != 0 && got != -EINVAL) {
		fail("payload rules may only say -EINVAL", msg, len, reply,
		     got, -EINVAL);
	}
}

/* The op tables: names, sizes and "known" tell one story. */
static void check_op(unsigned op)
{
	const char *name = hmmu_proto_op_name(op);
	int known = hmmu_proto_op_known(op);

	if (!name || strnlen(name, 64) == 64)
		goto bad;
	if (known != (op != HMMU_OP_NONE && op < HMMU_OP_MAX_))
		goto bad;
	if (!known && (hmmu_proto_request_size(op) ||
		       hmmu_proto_reply_min_size(op) ||
		       strcmp(name, "unknown") != 0))
		goto bad;
	if (known && strcmp(name, "unknown") == 0)
		goto bad;
	if (HDR + hmmu_proto_request_size(op) > HMMU_MSG_MAX ||
	    HDR + hmmu_proto_reply_min_size(op) > HMMU_MSG_MAX)
		goto bad;
	return;
bad:
	fprintf(stderr, "fuzz_proto: op %u: inconsistent tables (name %s, "
		"known %d, request %zu, reply %zu)\n", op, name ? name : "NULL",
		known, hmmu_proto_request_size(op),
		hmmu_proto_reply_min_size(op));
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int tables_checked;
	unsigned char *msg;

	if (!tables_checked) {
		for (unsigned op = 0; op <= HMMU_OP_MAX_ + 1; op++)
			check_op(op);
		check_op(0xffff);
		check_op(~0u);
		tables_checked = 1;
	}
	/* malloc(0) may return NULL; one byte is room enough for none. */
	msg = malloc(size ? size : 1);
	if (!msg)
		return 0;
	memcpy(msg, data, size);
	check_one(msg, size, 0);
	check_one(msg, size, 1);
	if (memcmp(msg, data, size) != 0) {
		fprintf(stderr, "fuzz_proto: the decoder wrote to its input\n");
		abort();
	}
	if (size >= HDR) {
		uint16_t op;

		memcpy(&op, msg + 4, sizeof(op));
		check_op(op);
	}
	/* Whatever four bytes of the input say, as an op number. */
	if (size >= 4) {
		uint32_t op;

		memcpy(&op, msg + size - 4, sizeof(op));
		check_op(op);
	}
	free(msg);
	return 0;
}
