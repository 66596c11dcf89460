/* SPDX-License-Identifier: MIT */
#include "devmem.h"
#include "../common/page.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

struct devmem {
	uint64_t npages;
	int node;
	pthread_mutex_t lock; /* protects used */
	uint64_t used;
};

int devmem_create(uint64_t bytes, int node, struct devmem **out)
{
	struct devmem *dm = calloc(1, sizeof(*dm));

	if (!dm)
		return -ENOMEM;
	dm->npages = bytes / page_size();
	if (dm->npages > UINT32_MAX) {
		free(dm);
		return -EINVAL;
	}
	dm->node = node;
	pthread_mutex_init(&dm->lock, NULL);
	*out = dm;
	return 0;
}

void devmem_destroy(struct devmem *dm)
{
	if (!dm)
		return;
	pthread_mutex_destroy(&dm->lock);
	free(dm);
}

int devmem_take_page(struct devmem *dm)
{
	int err = -ENOMEM;

	pthread_mutex_lock(&dm->lock);
	if (dm->used < dm->npages) {
		dm->used++;
		err = 0;
	}
	pthread_mutex_unlock(&dm->lock);
	return err;
}

void devmem_give_page(struct devmem *dm)
{
	pthread_mutex_lock(&dm->lock);
	dm->used--;
	pthread_mutex_unlock(&dm->lock);
}

uint64_t devmem_pages_total(const struct devmem *dm)
{
	return dm->npages;
}

uint64_t devmem_pages_used(struct devmem *dm)
{
	uint64_t used;

	pthread_mutex_lock(&dm->lock);
	used = dm->used;
	pthread_mutex_unlock(&dm->lock);
	return used;
}

int devmem_node(const struct devmem *dm)
{
	return dm->node;
}
