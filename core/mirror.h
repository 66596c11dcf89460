/* SPDX-License-Identifier: MIT */
/*
 * A mirror: one device bound to one client process (the kernel's struct
 * hmm_mirror). Created unregistered by a connection, which owns it; the
 * registry moves it between unregistered and registered.
 */
#ifndef HMMUD_MIRROR_H
#define HMMUD_MIRROR_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mmu.h"
#include "peer.h"

struct hmmu_interval_notifier;

struct account;
struct hmmu_device;
struct process;

struct hmmu_mirror {
	uint64_t id;	    /* scoped to the owning connection */
	struct hmmu_device *dev; /* devices live as long as the daemon */
	struct peer owner;  /* the process that created it (borrowed pidfd) */
	struct account *acct; /* its user's: one mirror counted, a reference */
	atomic_uint refs;   /* the connection's table + each user in flight */

	/*
	 * state_lock: held for write while the mirror is registered,
	 * unregistered or released, and taken *before* the registry lock:
	 * waiting here for a command in flight on this mirror never holds up
	 * another client's lifecycle. Held for read by a device command for
	 * its whole run, so that unregister waits for commands in flight
	 * (rule 6) and a command never sees a half-changed mirror. Never taken
	 * on the loop thread.
	 */
	pthread_rwlock_t state_lock;
	bool registered;      /* state_lock + registry lock */
	/*
	 * dead: destroyed, or its connection is gone. Set under state_lock,
	 * never cleared: a mirror that left its connection can never be
	 * registered again, whoever still holds a reference to it.
	 */
	bool dead;
	/*
	 * A successor's placeholder for an adopted process's device pages
	 * (daemon/restart.c), owned by no connection: registry lock. Cleared
	 * by the restored mirror that takes its pages.
	 */
	bool ghost;
	atomic_int cancel; /* 0, or why its commands must stop (command.h) */
	struct process *proc; /* while registered: the process's state */
	void *drvdata;	      /* the model's (hmmu_mirror_set_drvdata()) */
	/* The device page table the core keeps for it, while registered. */
	struct dev_mmu mmu;
	/*
	 * The model's interval notifiers: read-held while an invalidation
	 * calls them (inside the process lock), write-held to insert or
	 * remove one.
	 */
	pthread_rwlock_t notifier_lock;
	struct hmmu_interval_notifier *notifiers;

	struct hmmu_mirror *proc_next;    /* proc->mirrors, under proc->lock */
	struct hmmu_mirror *session_next; /* owner connection's list */
};

/* @acct: the owner's account, which the mirror is charged to (held). */
struct hmmu_mirror *mirror_new(uint64_t id, struct hmmu_device *dev,
			  const struct peer *owner, struct account *acct);
void mirror_get(struct hmmu_mirror *m);
/* Drop a reference; the last one frees (the mirror must be unregistered). */
void mirror_put(struct hmmu_mirror *m);

#endif
