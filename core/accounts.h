/* SPDX-License-Identifier: MIT */
/*
 * What each user (uid) holds in the daemon, checked against limits.h, and
 * each user's own event counters (what STATS shows a user who is not
 * root). One account per uid with a connection or a process here; a
 * session, a mirror and a process each hold a reference to their owner's.
 */
#ifndef HMMUD_ACCOUNTS_H
#define HMMUD_ACCOUNTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "counters.h"

#define ACCOUNT_MAX_DEVICES 64

struct account {
	uid_t uid;
	/* Under the accounts' lock. */
	unsigned refs;
	unsigned connections;
	unsigned mirrors;
	unsigned buffers;      /* shared buffers, and their bytes */
	uint64_t buffer_bytes;
	struct account *next;
	/* Lock-free. */
	atomic_uint_fast64_t copy_pages;
	atomic_uint_fast64_t devmem_pages[ACCOUNT_MAX_DEVICES];
	struct counters counted; /* this user's share of the daemon's */
};

/* @uid's account, with a reference; NULL if out of memory. */
struct account *account_get(uid_t uid);
void account_hold(struct account *a);
void account_put(struct account *a);

/* Open connections, all users, and one more for @a: -EDQUOT/-EUSERS. */
int account_connect(struct account *a);
/* @a's open connections now (its count changes under the accounts' lock). */
unsigned account_connections(struct account *a);
void account_disconnect(struct account *a);

/* One more mirror of @a: -EDQUOT past mirrors-per-user. */
int account_add_mirror(struct account *a);
/* One more mirror past any limit: a successor's placeholders (restart.c). */
void account_force_mirror(struct account *a);
void account_del_mirror(struct account *a);

/* One more shared buffer of @bytes: -EDQUOT past either limit. */
int account_add_buffer(struct account *a, uint64_t bytes);
void account_del_buffer(struct account *a, uint64_t bytes);

/* @n page copies more: false past copy-mib-per-user. */
bool account_charge_copies(struct account *a, uint64_t n);
void account_uncharge_copies(struct account *a, uint64_t n);

/* One page of device @dev (of @total pages): false past its share. */
bool account_charge_devmem(struct account *a, unsigned dev, uint64_t total);
void account_uncharge_devmem(struct account *a, unsigned dev);
/* Charge a page that is in device memory already (adopted), past any limit. */
void account_force_devmem(struct account *a, unsigned dev);

/* Count an event daemon-wide and for its user (@a may be NULL). */
#define account_count(a, field, n)                                             \
	do {                                                                   \
		struct account *a_ = (a);                                      \
		counter_add(&counters.field, (n));                             \
		if (a_)                                                        \
			counter_add(&a_->counted.field, (n));                  \
	} while (0)

/* Sum of a's device memory pages, all devices. */
uint64_t account_devmem_pages(struct account *a);

#endif
