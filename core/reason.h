/* SPDX-License-Identifier: MIT */
/*
 * Why a request failed, in one sentence for the client: the reason an error
 * reply carries (HMMU_MSG_REASON, docs/protocol.md §2), which libhmmu hands
 * to hmmu_error_detail(). One per request, owned by it. A device command or
 * job points its context at it (command.h), so that the core and the device
 * model say why where they decide an error, on the request's worker or on a
 * compute unit; the registry gets it as an argument.
 *
 * A reason is kept with the errno it explains and sent only with a reply of
 * that status: a failure that some caller handled, or turned into another
 * errno, never reaches the client under the wrong one.
 *
 * Reasons are read by whoever calls hmmu_error_detail(): never put bytes a
 * client chose into one but through reason_escape().
 */
#ifndef HMMUD_REASON_H
#define HMMUD_REASON_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>

#include "../common/proto.h"

struct reply_reason {
	pthread_mutex_t lock; /* the compute units of one job share it */
	int err;	      /* the status it explains; 0 for none */
	char text[HMMU_REASON_MAX];
};

void reason_init(struct reply_reason *r);
void reason_fini(struct reply_reason *r);

/* Say why @err; the last one said wins. Returns @err. @r may be NULL. */
__attribute__((format(printf, 3, 4))) int
reason_set(struct reply_reason *r, int err, const char *fmt, ...);
/* The same, unless a reason for @err was said already. */
__attribute__((format(printf, 3, 4))) int
reason_default(struct reply_reason *r, int err, const char *fmt, ...);
int reason_vset(struct reply_reason *r, int err, int replace, const char *fmt,
		va_list ap);

/* The reason for a reply of @status, or NULL. Once nobody sets it any more. */
const char *reason_for(const struct reply_reason *r, int status);

/*
 * @in as safe text in @out (@size bytes): printable ASCII as it is, any
 * other byte and the backslash as \xNN; cut short to fit. Returns @out.
 */
char *reason_escape(char *out, size_t size, const char *in);

#endif
