/* SPDX-License-Identifier: MIT */
/* The version of the library running, against the header's. */
#include "internal.h"

/*
 * hmmu.h states the version by hand, so that it stays one header a client
 * can read; CMake passes project(VERSION) here, and the two must agree.
 */
_Static_assert(HMMU_VERSION_MAJOR == HMMU_BUILD_VERSION_MAJOR &&
		       HMMU_VERSION_MINOR == HMMU_BUILD_VERSION_MINOR &&
		       HMMU_VERSION_PATCH == HMMU_BUILD_VERSION_PATCH,
	       "HMMU_VERSION_* in include/hmmu/hmmu.h differ from "
	       "project(VERSION) in CMakeLists.txt");

#define STR_(x) #x
#define STR(x) STR_(x)

/* Built from the numbers: tests/unit/test_abi.c checks HMMU_VERSION against it. */
static const char version[] = STR(HMMU_VERSION_MAJOR) "." STR(
	HMMU_VERSION_MINOR) "." STR(HMMU_VERSION_PATCH);

HMMU_EXPORT const char *hmmu_version(void)
{
	return version;
}
