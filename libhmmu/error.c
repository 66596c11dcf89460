/* SPDX-License-Identifier: MIT */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

static __thread char detail[256];

void hmmu_set_detail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
}

void hmmu_clear_detail(void)
{
	detail[0] = '\0';
}

HMMU_EXPORT const char *hmmu_error_detail(void)
{
	return detail;
}
