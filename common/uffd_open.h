/* SPDX-License-Identifier: MIT */
/* Making a userfaultfd, the same way in the library, the daemon and tests. */
#ifndef HMMU_UFFD_OPEN_H
#define HMMU_UFFD_OPEN_H

#include <stdint.h>

/*
 * A new userfaultfd (O_CLOEXEC | O_NONBLOCK), before UFFDIO_API: through
 * the syscall, or through /dev/userfaultfd where the syscall is not allowed
 * (vm.unprivileged_userfaultfd=0 and no CAP_SYS_PTRACE). -EPERM when
 * neither is allowed. Never UFFD_USER_MODE_ONLY: hmmu needs faults taken in
 * kernel mode too (the daemon's copies, read(2) into a migrated buffer).
 */
int hmmu_uffd_open(void);

/* The features this kernel offers, asked on a throw-away fd. -errno. */
int hmmu_uffd_supported(uint64_t *features);

#endif
