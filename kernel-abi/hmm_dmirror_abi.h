/* SPDX-License-Identifier: MIT */
/*
 * The ioctl ABI of the kernel's HMM test device (/dev/hmm_dmirror0..3,
 * lib/test_hmm.c), stated from its published facts: the sizes, numbers and
 * values a program built against the kernel's lib/test_hmm_uapi.h uses.
 * Byte for byte, so that such a program runs unmodified on hmmu.
 */
#ifndef HMMU_HMM_DMIRROR_ABI_H
#define HMMU_HMM_DMIRROR_ABI_H

#include <linux/ioctl.h>
#include <linux/types.h>

/*
 * One command: the device works on [addr, addr + npages pages) of the
 * caller's address space; ptr is the caller's buffer for the data (READ,
 * WRITE, and the read-back of the migrations) or the page states
 * (SNAPSHOT). The device fills cpages (pages done) and faults (fault
 * rounds) on success only.
 */
struct hmm_dmirror_cmd {
	__u64 addr;
	__u64 ptr;
	__u64 npages;
	__u64 cpages;
	__u64 faults;
};

#define HMM_DMIRROR_READ _IOWR('H', 0x00, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_WRITE _IOWR('H', 0x01, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_SYS _IOWR('H', 0x03, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_SNAPSHOT _IOWR('H', 0x04, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_EXCLUSIVE _IOWR('H', 0x05, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_CHECK_EXCLUSIVE _IOWR('H', 0x06, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_RELEASE _IOWR('H', 0x07, struct hmm_dmirror_cmd)
/* Newer kernels only; hmmu answers it with ENOTTY. */
#define HMM_DMIRROR_FLAGS _IOWR('H', 0x08, struct hmm_dmirror_cmd)

/* The bytes of a SNAPSHOT, one per page. */
enum {
	HMM_DMIRROR_PROT_ERROR = 0xFF,
	HMM_DMIRROR_PROT_NONE = 0x00,
	HMM_DMIRROR_PROT_READ = 0x01,
	HMM_DMIRROR_PROT_WRITE = 0x02,
	HMM_DMIRROR_PROT_PMD = 0x04,
	HMM_DMIRROR_PROT_PUD = 0x08,
	HMM_DMIRROR_PROT_ZERO = 0x10,
	HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20,
	HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30,
	HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40,
	HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50,
};

/* The device nodes: units 0 and 1 device-private, 2 and 3 coherent. */
#define HMM_DMIRROR_PATH_PREFIX "/dev/hmm_dmirror"
#define HMM_DMIRROR_UNITS 4
#define HMM_DMIRROR_PRIVATE_UNITS 2

_Static_assert(sizeof(struct hmm_dmirror_cmd) == 40, "the kernel's size");
_Static_assert(HMM_DMIRROR_READ == 0xc0284800, "the kernel's number");
_Static_assert(HMM_DMIRROR_RELEASE == 0xc0284807, "the kernel's number");

#endif
