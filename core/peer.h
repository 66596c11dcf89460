/* SPDX-License-Identifier: MIT */
/*
 * Who a client is, as the kernel told us at connect time (SO_PEERCRED and a
 * pidfd), never as the client says. The pid_ino tells two processes that
 * reused one pid apart (pidfs inode numbers are unique for the boot). Before
 * pidfs (6.9, kfeatures()->pidfs) every pidfd shares one inode: the registry
 * then tells them apart only by the old address space being gone
 * (client_mm_alive()).
 */
#ifndef HMMUD_PEER_H
#define HMMUD_PEER_H

#include <stdint.h>
#include <sys/types.h>

struct peer {
	pid_t pid; /* thread group id */
	uid_t uid;
	gid_t gid;
	int pidfd;	  /* owned by the connection */
	uint64_t pid_ino; /* st_ino of the pidfd */
};

#endif
