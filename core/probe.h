/* SPDX-License-Identifier: MIT */
/*
 * What the running kernel offers, asked of the kernel itself (never guessed
 * from a version): one probe per feature, all in this file.
 */
#ifndef HMMUD_PROBE_H
#define HMMUD_PROBE_H

#include <stdint.h>
#include <stdio.h>

/*
 * The userfaultfd features this kernel supports, from UFFDIO_API on a
 * throw-away fd (an fd accepts UFFDIO_API only once). -errno if no
 * userfaultfd can be made here.
 */
int probe_uffd_features(uint64_t *features);

/* 1 if io_uring works here and has multishot poll, 0 if not. */
int probe_io_uring(void);

/* "hmmud --check": one line per feature. Returns 0, or -errno. */
int probe_print(FILE *f);

#endif
