/* SPDX-License-Identifier: MIT */
/*
 * Building wire messages and judging what the daemon must answer to them,
 * for the fuzzers. Everything is derived from common/proto.h and its
 * decoder: request sizes come from hmmu_proto_request_size(), so a payload
 * that grows a field at its end still builds (the new field is zero).
 */
#ifndef HMMU_FUZZ_WIRE_H
#define HMMU_FUZZ_WIRE_H

#include "common/proto.h"

#include <stddef.h>
#include <stdint.h>

#define WIRE_HDR sizeof(struct hmmu_wire_hdr)
/* Room for the longest message we send: some are longer than the maximum. */
#define WIRE_BUF_MAX 4096u

union wire_msg {
	struct hmmu_wire_hdr hdr;
	unsigned char buf[WIRE_BUF_MAX];
	uint64_t align;
};

static inline void *wire_payload(union wire_msg *m)
{
	return &m->hdr + 1;
}

/*
 * A request of @op: header, then @len bytes of @p, zero-filled (or cut) to
 * the op's request size. Returns the message length.
 */
size_t wire_request(union wire_msg *m, unsigned op, uint64_t id,
		    const void *p, size_t len);

/* A request of @op with plausible contents that the decoder accepts. */
size_t wire_sample_request(union wire_msg *m, unsigned op, uint64_t id);

/*
 * A reply of @op with @status and the op's minimum payload (none for a
 * failed one if @bare), with plausible contents.
 */
size_t wire_sample_reply(union wire_msg *m, unsigned op, uint64_t id,
			 int status, int bare);

/*
 * What the daemon must answer to one message, judged from its bytes, its
 * control data and the connection's handshake state alone
 * (docs/protocol.md §2, §3, §6). Every message gets exactly one reply
 * unless the daemon hangs up.
 */
struct wire_verdict {
	unsigned op;	/* the reply's op */
	uint64_t id;	/* the reply's id */
	int status;	/* when exact */
	int exact;	/* 1: status is known; 0: the handler decides */
	int hello_ok;	/* a HELLO that completes the handshake */
	int hangup;	/* a HELLO of another version: reply, then EOF */
	int handler;	/* reaches the op's handler */
};

/*
 * @n bytes of @msg as sent (the daemon sees at most HMMU_MSG_MAX of them),
 * with @nfds fds in SCM_RIGHTS, @foreign set if the credentials name
 * another pid than the connecting process's.
 */
void wire_judge(const void *msg, size_t n, int nfds, int foreign,
		int hello_done, struct wire_verdict *v);

/* Is this status one a reply to @op may carry at all? */
int wire_status_sane(unsigned op, int status);

#endif
