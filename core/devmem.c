/* SPDX-License-Identifier: MIT */
#include "devmem.h"
#include "../common/page.h"

#include <errno.h>
#include <numa.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct devmem {
	char *base;
	uint64_t npages;
	size_t bytes;
	int numa; /* allocated with libnuma (else mmap) */
	pthread_mutex_t lock; /* protects free_list, nfree */
	uint32_t *free_list;  /* a stack of free page numbers */
	uint64_t nfree;
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
	dm->bytes = (size_t)(dm->npages * page_size());
	pthread_mutex_init(&dm->lock, NULL);
	if (dm->npages) {
		/* Lazily backed: the pool costs memory only as it fills. */
		if (node >= 0 && numa_available() >= 0) {
			dm->base = numa_alloc_onnode(dm->bytes, node);
			dm->numa = 1;
		} else {
			dm->base = mmap(NULL, dm->bytes, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS |
						MAP_NORESERVE,
					-1, 0);
			if (dm->base == MAP_FAILED)
				dm->base = NULL;
		}
		dm->free_list = malloc(dm->npages * sizeof(uint32_t));
		if (!dm->base || !dm->free_list) {
			devmem_destroy(dm);
			return -ENOMEM;
		}
		/* Lowest pages on top: they are handed out first. */
		for (uint64_t i = 0; i < dm->npages; i++)
			dm->free_list[i] = (uint32_t)(dm->npages - 1 - i);
		dm->nfree = dm->npages;
	}
	*out = dm;
	return 0;
}

void devmem_destroy(struct devmem *dm)
{
	if (!dm)
		return;
	if (dm->base && dm->numa)
		numa_free(dm->base, dm->bytes);
	else if (dm->base)
		munmap(dm->base, dm->bytes);
	free(dm->free_list);
	pthread_mutex_destroy(&dm->lock);
	free(dm);
}

void *devmem_alloc_page(struct devmem *dm)
{
	void *page = NULL;

	pthread_mutex_lock(&dm->lock);
	if (dm->nfree)
		page = dm->base + (uint64_t)dm->free_list[--dm->nfree] *
					  page_size();
	pthread_mutex_unlock(&dm->lock);
	return page;
}

void devmem_free_page(struct devmem *dm, void *page)
{
	uint64_t n = (uint64_t)((char *)page - dm->base) / page_size();

	pthread_mutex_lock(&dm->lock);
	dm->free_list[dm->nfree++] = (uint32_t)n;
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
	used = dm->npages - dm->nfree;
	pthread_mutex_unlock(&dm->lock);
	return used;
}
