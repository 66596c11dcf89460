/* SPDX-License-Identifier: MIT */
/*
 * exec_target: the program a test_security client execs into while its
 * requests to hmmud are still to be run. It maps a page of its own at
 * EXEC_TARGET_ADDR, fills it, collects the replies on the connection it
 * inherited (and, if asked, sends requests of its own on it), then tells
 * the test through a pipe what became of its page.
 *
 *   exec_target SOCK_FD REPORT_FD QUEUED [MIRROR SRC]
 *
 * QUEUED: replies to wait for, to requests the previous image sent.
 * MIRROR, SRC: send READ (device copy of SRC into our page), SNAPSHOT (into
 * our page) and WRITE (our second page onto our page) on mirror MIRROR.
 */
#ifndef HMMU_TEST_EXEC_TARGET_H
#define HMMU_TEST_EXEC_TARGET_H

#include <stdint.h>

/* Above ASan's shadow, below the usual mmap base: free in both images. */
#define EXEC_TARGET_ADDR 0x7e1000000000ull
#define EXEC_TARGET_FILL 0x5a	     /* the page the daemon must not reach */
#define EXEC_TARGET_SRC_FILL 0xee    /* our second page, source of our WRITE */
#define EXEC_TARGET_MAX_REPLIES 16
#define EXEC_TARGET_OWN_ID 900	     /* ids of the requests it sends itself */

struct exec_target_report {
	int32_t mapped;	  /* 1: its page is at EXEC_TARGET_ADDR */
	int32_t intact;	  /* 1: every byte of it is still EXEC_TARGET_FILL */
	int32_t eof;	  /* the daemon closed the connection */
	int32_t sent;	  /* requests it sent itself */
	int32_t send_err; /* errno of a failed send, if any */
	int32_t nreplies;
	uint8_t first[8]; /* its page's first bytes, for the failure message */
	uint64_t id[EXEC_TARGET_MAX_REPLIES];
	int32_t status[EXEC_TARGET_MAX_REPLIES];
};

#endif
