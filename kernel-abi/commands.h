/* SPDX-License-Identifier: MIT */
/* The /dev/hmm_dmirror ioctls and mmap, on libhmmu's public calls. */
#ifndef HMMU_SHIM_COMMANDS_H
#define HMMU_SHIM_COMMANDS_H

#include <stddef.h>
#include <sys/types.h>

#include "units.h"

/*
 * ioctl(@u's fd, @request, @arg) as the kernel's test device answers it:
 * 0, or -errno with *@arg untouched.
 */
int unit_ioctl(struct unit *u, unsigned long request, void *arg);

/*
 * mmap() of the device fd: as the kernel's driver, every page of the new
 * mapping present, zeroed, and mapped read-only until written. Returns the
 * mapping or MAP_FAILED with errno set.
 */
void *unit_mmap(struct unit *u, void *addr, size_t len, int prot, int flags,
		off_t off);

#endif
