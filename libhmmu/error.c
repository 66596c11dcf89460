/* SPDX-License-Identifier: MIT */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static __thread char detail[HMMU_DETAIL_MAX];

void hmmu_set_detail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	/* A path or a reason may hold anything: the detail is for a terminal. */
	for (char *c = detail; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
}

void hmmu_clear_detail(void)
{
	detail[0] = '\0';
}

HMMU_EXPORT const char *hmmu_error_detail(void)
{
	return detail;
}
