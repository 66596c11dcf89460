/* SPDX-License-Identifier: MIT */
#include "wire.h"

#include <errno.h>
#include <string.h>

size_t wire_request(union wire_msg *m, unsigned op, uint64_t id,
		    const void *p, size_t len)
{
	size_t plen = hmmu_proto_request_size(op);

	memset(m, 0, WIRE_HDR + plen);
	m->hdr.magic = HMMU_PROTO_MAGIC;
	m->hdr.op = (uint16_t)op;
	m->hdr.len = (uint32_t)(WIRE_HDR + plen);
	m->hdr.id = id;
	if (p)
		memcpy(wire_payload(m), p, len < plen ? len : plen);
	return WIRE_HDR + plen;
}

size_t wire_sample_request(union wire_msg *m, unsigned op, uint64_t id)
{
	switch (op) {
	case HMMU_OP_HELLO: {
		struct hmmu_wire_hello h = { .version = HMMU_PROTO_VERSION };

		return wire_request(m, op, id, &h, sizeof(h));
	}
	case HMMU_OP_DEVICE_INFO: {
		struct hmmu_wire_index i = { .index = 0 };

		return wire_request(m, op, id, &i, sizeof(i));
	}
	case HMMU_OP_MIRROR_CREATE: {
		struct hmmu_wire_device_name n = { .name = "dmirror0" };

		return wire_request(m, op, id, &n, sizeof(n));
	}
	case HMMU_OP_MIRROR_REGISTER: {
		struct hmmu_wire_register reg = { .mirror = 1 };

		return wire_request(m, op, id, &reg, sizeof(reg));
	}
	case HMMU_OP_MIRROR_UNREGISTER:
	case HMMU_OP_MIRROR_DESTROY: {
		struct hmmu_wire_mirror mi = { .mirror = 1 };

		return wire_request(m, op, id, &mi, sizeof(mi));
	}
	case HMMU_OP_DEVICE_CMD: {
		struct hmmu_wire_device_cmd c = {
			.mirror = 1,
			.cmd = HMMU_CMD_READ,
			.addr = 0x10000,
			.npages = 1,
			.buf = 0x20000,
			.buf_len = 4096,
		};

		return wire_request(m, op, id, &c, sizeof(c));
	}
	case HMMU_OP_JOB: {
		struct hmmu_wire_job j = {
			.mirror = 1,
			.kind = HMMU_WIRE_JOB_FILL,
			.dst = 0x10000,
			.len = 4096,
			.value = 0x5a5a5a5a5a5a5a5aull,
		};

		return wire_request(m, op, id, &j, sizeof(j));
	}
	case HMMU_OP_LIST: {
		struct hmmu_wire_list l = { .what = HMMU_LIST_PROCESSES };

		return wire_request(m, op, id, &l, sizeof(l));
	}
	default:
		/* DEVICE_COUNT, STATS, and ops newer than this file. */
		return wire_request(m, op, id, NULL, 0);
	}
}

size_t wire_sample_reply(union wire_msg *m, unsigned op, uint64_t id,
			 int status, int bare)
{
	size_t plen = status < 0 && bare ? 0 : hmmu_proto_reply_min_size(op);

	memset(m, 0, WIRE_HDR + plen);
	m->hdr.magic = HMMU_PROTO_MAGIC;
	m->hdr.op = (uint16_t)op;
	m->hdr.flags = HMMU_MSG_REPLY;
	m->hdr.len = (uint32_t)(WIRE_HDR + plen);
	m->hdr.status = status;
	m->hdr.id = id;
	if (op == HMMU_OP_HELLO && plen)
		((struct hmmu_wire_hello *)wire_payload(m))->version =
			HMMU_PROTO_VERSION;
	if (op == HMMU_OP_DEVICE_COUNT && plen)
		((struct hmmu_wire_count *)wire_payload(m))->count = 3;
	return WIRE_HDR + plen;
}

void wire_judge(const void *msg, size_t n, int nfds, int foreign,
		int hello_done, struct wire_verdict *v)
{
	/* The daemon receives at most HMMU_MSG_MAX bytes and sees the rest cut. */
	size_t seen = n < HMMU_MSG_MAX ? n : HMMU_MSG_MAX;
	struct hmmu_wire_hdr h = { 0 };
	int sound = 0, err = 0;

	memset(v, 0, sizeof(*v));
	if (seen >= WIRE_HDR) {
		memcpy(&h, msg, sizeof(h));
		sound = h.magic == HMMU_PROTO_MAGIC && h.flags == 0;
	}
	/* §2: how much of a header a reply may echo. */
	v->op = HMMU_OP_NONE;
	v->id = 0;
	if (sound) {
		v->id = h.id;
		if (hmmu_proto_op_known(h.op))
			v->op = h.op;
	}

	/* §6: control data, length, decoder, fd, handshake; first one wins. */
	if (foreign)
		err = -EPERM;
	else if (nfds > 1)
		err = -EINVAL;
	if (!err && n > HMMU_MSG_MAX)
		err = -EMSGSIZE;
	if (!err)
		err = hmmu_proto_check(msg, n, 0);
	if (!err && nfds > 0 && h.op != HMMU_OP_MIRROR_REGISTER &&
	    h.op != HMMU_OP_BUFFER_RESTORE)
		err = -EINVAL;
	if (!err && !hello_done && h.op != HMMU_OP_HELLO)
		err = -EPROTO;
	if (err) {
		v->status = err;
		v->exact = 1;
		return;
	}

	/* §3: the handshake. */
	if (h.op == HMMU_OP_HELLO) {
		const struct hmmu_wire_hello *req =
			(const void *)((const char *)msg + WIRE_HDR);
		uint32_t version;

		memcpy(&version, &req->version, sizeof(version));
		v->exact = 1;
		if (hello_done) {
			v->status = -EPROTO;
		} else if (version != HMMU_PROTO_VERSION) {
			v->status = -EPROTONOSUPPORT;
			v->hangup = 1;
		} else {
			v->status = 0;
			v->hello_ok = 1;
		}
		return;
	}
	v->handler = 1;
}

int wire_status_sane(unsigned op, int status)
{
	if (status == 0)
		return 1;
	if (status == HMMU_STATUS_NEED_UFFD)
		return op == HMMU_OP_MIRROR_REGISTER;
	return status < 0 && status >= -4095;
}
