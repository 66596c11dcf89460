/* SPDX-License-Identifier: MIT */
/*
 * The service manager's file descriptor store (sd_notify(3): FDSTORE=1,
 * FDNAME=, FDSTOREREMOVE=1), through which hmmud hands its clients' state
 * to a successor after a crash (restart.c). systemd, or tests/supervisor's
 * hmmu-supervise, keeps each fd under its name until it is removed, and
 * passes them all to the next instance (LISTEN_FDNAMES).
 */
#ifndef HMMUD_FDSTORE_H
#define HMMUD_FDSTORE_H

#include <stdbool.h>

/*
 * Use the store from now on, if the manager says it keeps one: $FDSTORE
 * (its FileDescriptorStoreMax=) is set and not 0. A store that refuses an
 * fd (no listener, or a queue full for a second) is given up for good:
 * fdstore_enabled() turns false.
 */
void fdstore_enable(void);
bool fdstore_enabled(void);

/*
 * Keep @fd under @name (printable ASCII, no ':', at most 255 bytes). 0, or
 * -errno (logged, rate-limited): the fd is then not kept.
 */
int fdstore_put(const char *name, int fd);
/* Forget every fd kept under @name. */
void fdstore_remove(const char *name);

#endif
