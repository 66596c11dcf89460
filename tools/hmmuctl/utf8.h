/* SPDX-License-Identifier: MIT */
/*
 * Names hmmuctl prints come from the daemon, and a device's name is
 * whatever --device said, bytes included. JSON and the Prometheus format
 * both require UTF-8: the writers keep valid sequences and replace any
 * other byte with U+FFFD.
 */
#ifndef HMMUCTL_UTF8_H
#define HMMUCTL_UTF8_H

#include <stddef.h>

/* U+FFFD REPLACEMENT CHARACTER, encoded. */
#define UTF8_REPLACEMENT "\xef\xbf\xbd"

/*
 * The length of the well-formed UTF-8 sequence that starts @s (at most
 * @len bytes, @len > 0), or 0 if it is not one: overlong forms, surrogates
 * and code points past U+10FFFF are not.
 */
size_t utf8_sequence(const char *s, size_t len);

#endif
