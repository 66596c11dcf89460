/* SPDX-License-Identifier: MIT */
#include "reason.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void reason_init(struct reply_reason *r)
{
	pthread_mutex_init(&r->lock, NULL);
	r->err = 0;
	r->text[0] = '\0';
}

void reason_fini(struct reply_reason *r)
{
	pthread_mutex_destroy(&r->lock);
}

int reason_vset(struct reply_reason *r, int err, int replace, const char *fmt,
		va_list ap)
{
	if (!r || err >= 0)
		return err;
	pthread_mutex_lock(&r->lock);
	if (replace || r->err != err) {
		vsnprintf(r->text, sizeof(r->text), fmt, ap);
		r->err = r->text[0] ? err : 0;
	}
	pthread_mutex_unlock(&r->lock);
	return err;
}

int reason_set(struct reply_reason *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reason_vset(r, err, 1, fmt, ap);
	va_end(ap);
	return err;
}

int reason_default(struct reply_reason *r, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reason_vset(r, err, 0, fmt, ap);
	va_end(ap);
	return err;
}

const char *reason_for(const struct reply_reason *r, int status)
{
	return r && status < 0 && r->err == status ? r->text : NULL;
}

char *reason_escape(char *out, size_t size, const char *in)
{
	size_t n = 0;

	if (!size)
		return out;
	for (; *in; in++) {
		unsigned char c = (unsigned char)*in;
		int plain = c >= 0x20 && c < 0x7f && c != '\\';

		if (n + (plain ? 1 : 4) >= size)
			break;
		if (plain)
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, size - n, "\\x%02x", c);
	}
	out[n] = '\0';
	return out;
}
