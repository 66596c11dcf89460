/* SPDX-License-Identifier: MIT */
/* The C library's own versions of the calls the shim interposes. */
#ifndef HMMU_SHIM_REAL_CALLS_H
#define HMMU_SHIM_REAL_CALLS_H

#include <sys/types.h>

int real_close(int fd);
int real_ioctl(int fd, unsigned long request, void *arg);
void *real_mmap(void *addr, size_t len, int prot, int flags, int fd,
		off_t off);

#endif
