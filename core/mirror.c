/* SPDX-License-Identifier: MIT */
#include "mirror.h"
#include "accounts.h"

#include <assert.h>
#include <stdlib.h>

struct hmmu_mirror *mirror_new(uint64_t id, struct hmmu_device *dev,
			  const struct peer *owner, struct account *acct)
{
	struct hmmu_mirror *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->id = id;
	m->dev = dev;
	m->owner = *owner;
	m->acct = acct;
	if (acct)
		account_hold(acct);
	atomic_init(&m->refs, 1);
	pthread_rwlock_init(&m->state_lock, NULL);
	pthread_rwlock_init(&m->notifier_lock, NULL);
	return m;
}

void mirror_get(struct hmmu_mirror *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
}

void mirror_put(struct hmmu_mirror *m)
{
	if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1)
		return;
	assert(!m->registered);
	if (m->acct) {
		account_del_mirror(m->acct);
		account_put(m->acct);
	}
	pthread_rwlock_destroy(&m->notifier_lock);
	pthread_rwlock_destroy(&m->state_lock);
	free(m);
}
