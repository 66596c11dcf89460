/* SPDX-License-Identifier: MIT */
/*
 * sockfuzz: the driver (sockfuzz.c) starts hmmud and forks clients; each
 * client (sockfuzz_client.c) is a child process that talks to the daemon.
 * They share one MAP_SHARED page of counters and findings, so that what a
 * client counted survives its SIGKILL.
 */
#ifndef HMMU_SOCKFUZZ_H
#define HMMU_SOCKFUZZ_H

#include "common/proto.h"

#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#define FUZZ_MAX_DEVICES 16
#define FUZZ_MAX_FINDINGS 32
#define FUZZ_FINDING_TEXT 1536

/* Counters the clients add to, the driver reports. */
enum fuzz_counter {
	FC_CONNECTIONS,
	FC_MESSAGES,
	FC_VALID,	/* valid requests */
	FC_MUTATED,	/* mutated valid messages */
	FC_RANDOM,	/* random bytes */
	FC_FDS,		/* fds sent in SCM_RIGHTS */
	FC_UFFDS,	/* of which userfaultfds */
	FC_FOREIGN,	/* messages with another process's credentials */
	FC_REPLIES,
	FC_REGISTERED,	/* MIRROR_REGISTER that succeeded */
	FC_DEVICE_CMDS,
	FC_JOBS,
	FC_MIGRATIONS,	/* PREPARE ... FINISH rounds */
	FC_MEM_OPS,	/* CPU-side changes to mirrored memory */
	FC_FORKS,	/* grandchildren */
	FC_HANGUPS,	/* connections the daemon closed, besides HELLO's */
	FC_UNANSWERED,	/* requests left without a reply when a client died */
	FC_NR_
};

struct fuzz_finding {
	uint64_t client;
	char text[FUZZ_FINDING_TEXT];
};

struct fuzz_shared {
	_Atomic uint64_t count[FC_NR_];
	/* What the driver learned at start: the daemon's devices. */
	unsigned ndevices;
	char devices[FUZZ_MAX_DEVICES][HMMU_NAME_MAX];
	char models[FUZZ_MAX_DEVICES][HMMU_NAME_MAX];
	/* Protocol findings of the clients. */
	_Atomic unsigned nfindings;
	struct fuzz_finding findings[FUZZ_MAX_FINDINGS];
};

struct fuzz_client_args {
	struct fuzz_shared *shared;
	const char *socket;
	const char *trace;	/* this client's trace file, or NULL */
	uint64_t index;
	uint64_t seed;
	int reply_timeout_ms;
	int avoid_known; /* keep away from the known bugs below */
};

/*
 * Known daemon bugs that --avoid-known keeps away from, so that a long run
 * gets past them (remove a rule when its bug is fixed):
 *
 *  - MIRROR_REGISTER and MIRROR_DESTROY of one mirror in flight at once:
 *    the destroyed mirror can end up registered and freed, a
 *    use-after-free on the next invalidation. The client never has both
 *    in flight for one id.
 *  - A job whose device loads reach the last page of the 64-bit address
 *    space: mmu_load() spins for ever (page + page size wraps to 0). The
 *    client sends no JOB with an address in the top 16 MiB, and no
 *    LIST_SUM: the pointers it follows are whatever device writes left in
 *    memory, ~0 among them.
 *  - A client that dies between MIGRATE_PREPARE (its pages discarded) and
 *    MIGRATE_FINISH, with device writes into those pages in flight: now
 *    and then a worker stays blocked in process_vm_writev on a fault the
 *    daemon holds for ever, and the daemon stops serving. The client
 *    never leaves a migration of its own unfinished on purpose (random
 *    PREPAREs, and deaths, may still do it, more rarely).
 *  - mremap of pages whose migration is not settled yet (FINISH sent, its
 *    reply not back): when the loop sees the REMAP event before the
 *    FINISH call, the DP_MIGRATING entries move to the new addresses,
 *    FINISH settles nothing at the old ones, and every later write to the
 *    moved pages is held for ever (repro prepare-mremap). The client moves
 *    or unmaps memory only with no PREPARE or FINISH in flight.
 */

/* The client: runs in a forked child, never returns. */
void fuzz_client_main(const struct fuzz_client_args *a)
	__attribute__((noreturn));

/* xoshiro256**, seeded with splitmix64: reproducible from one u64. */
struct fuzz_rng {
	uint64_t s[4];
};

void fuzz_rng_seed(struct fuzz_rng *r, uint64_t seed);
uint64_t fuzz_rng_next(struct fuzz_rng *r);
/* Uniform in [0, n); 0 if n is 0. */
uint64_t fuzz_rng_below(struct fuzz_rng *r, uint64_t n);
/* 1 with probability num/den. */
int fuzz_rng_chance(struct fuzz_rng *r, unsigned num, unsigned den);
/* The seed of client @index of a run seeded @seed. */
uint64_t fuzz_client_seed(uint64_t seed, uint64_t index);

#endif
