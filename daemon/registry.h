/* SPDX-License-Identifier: MIT */
/*
 * The mirror registry: which processes have per-process state and which
 * mirrors are registered. It implements the lifecycle rules of the spec:
 * register once, unregister once, state created by the first registration
 * and torn down by the last, release on process death.
 *
 * Locking: one mutex, reg->lock, serialises every lifecycle change (register,
 * unregister, release) and guards the process table and the counts. Order:
 * mirror state_lock -> registry lock -> process lock. A lifecycle change
 * waits for the commands in flight on its own mirror (state_lock) before
 * it takes the registry lock, so a long command delays only its own
 * mirror's lifecycle, never another client's. Nothing that waits for a
 * client runs under the registry lock. The fault path and the event loop
 * never take it.
 */
#ifndef HMMUD_REGISTRY_H
#define HMMUD_REGISTRY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/proto.h"
#include "../core/peer.h"

struct account;
struct loop;
struct hmmu_mirror;
struct reply_reason;
struct process;

#define REGISTRY_BUCKETS 64

struct registry {
	pthread_mutex_t lock;
	struct process *table[REGISTRY_BUCKETS]; /* by pid */
	uint64_t processes;			 /* live per-process states */
	uint64_t mirrors;			 /* registered mirrors */
	uint64_t releases;			 /* releases on process death */
	struct loop *loop;			 /* may be NULL (unit tests) */
};

void registry_init(struct registry *r, struct loop *loop);
void registry_fini(struct registry *r);

/*
 * Register @m for its owner process. If the process has no state yet and
 * *@uffd is -1, returns HMMU_STATUS_NEED_UFFD and changes nothing. If it
 * uses *@uffd it sets it to -1 (the registry owns it now); otherwise the
 * caller still owns and closes it. @probe: the sender's two probe pages
 * (struct hmmu_wire_register), checked with a new state's userfaultfd.
 * Errors: -EBUSY (already registered), -ENOENT (the mirror was destroyed),
 * -EBADF/-EINVAL (not a usable userfaultfd, or not the sender's), -EPERM
 * (it does not serve kernel faults), -EFAULT (bad probe pages), -ESRCH (the
 * sender's address space is gone), -ENOMEM, or the device's. Says why
 * into @why (reason.h; may be NULL).
 */
int registry_register(struct registry *r, struct hmmu_mirror *m, int *uffd,
		      uint64_t probe, struct reply_reason *why);
/*
 * The same, in a coherence mode: @coarse for coarse-grained (core/
 * coherence.h), else fine-grained. The mode is the process's, set by the
 * registration that makes its state, from its userfaultfd's features:
 * -EINVAL if the fd does not match the mode asked (WP_ASYNC for coarse,
 * not WP_ASYNC for fine), -EOPNOTSUPP if coarse and the fd lacks
 * WP_UNPOPULATED or this kernel PAGEMAP_SCAN. While the state lives, a
 * mirror asking for the other mode gets -EBUSY and changes nothing.
 */
int registry_register_mode(struct registry *r, struct hmmu_mirror *m,
			   int *uffd, uint64_t probe, bool coarse,
			   struct reply_reason *why);

/* Unregister @m. -EINVAL if it is not registered. */
int registry_unregister(struct registry *r, struct hmmu_mirror *m);

/*
 * @m left its connection (MIRROR_DESTROY): unregister it if registered, and
 * make sure it can never be registered again.
 */
void registry_destroy(struct registry *r, struct hmmu_mirror *m);

/*
 * The owner of @m is gone (exited, crashed or disconnected): if @m is
 * registered, the device gets release, then the mirror is unregistered.
 * Returns 1 if it was registered, 0 if not.
 */
int registry_release(struct registry *r, struct hmmu_mirror *m);

/*
 * Fill the counters for @peer: its own process's, and daemon-wide figures
 * if it is root; a user who is not sees the figures of its own uid only
 * (@acct, its account), as LIST shows it only its own processes.
 */
void registry_stats(struct registry *r, const struct peer *peer,
		    struct account *acct, struct hmmu_wire_stats *out);

/*
 * Entries @start.. (at most @max) of the processes or the registered
 * mirrors @viewer may see (all if root, else its uid's). Returns how many
 * there are in all.
 */
uint32_t registry_list(struct registry *r, const struct peer *viewer,
		       unsigned what, uint32_t start,
		       struct hmmu_wire_list_entry *out, uint32_t max,
		       uint32_t *count);

/*
 * A successor's adopted state (restart.c): insert @p, with the @n ghosts
 * (placeholder mirrors of no connection, one per device) bound and
 * registered on it. On failure nothing is inserted or bound.
 */
int registry_adopt(struct registry *r, struct process *p,
		   struct hmmu_mirror *const *ghosts, unsigned n);
/*
 * MIRROR_RESTORE's registration: join the state held for @m's process,
 * never making one (-ESTALE if there is none), and take the pages of the
 * ghost of @m's device, if one is left.
 */
int registry_restore(struct registry *r, struct hmmu_mirror *m, bool coarse,
		     struct reply_reason *why);

/*
 * The state of @peer's process with a reference taken, or NULL. For the
 * fault path, which then works without the registry lock.
 */
struct process *registry_find_process(struct registry *r,
				      const struct peer *peer);

#endif
