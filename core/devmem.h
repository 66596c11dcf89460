/* SPDX-License-Identifier: MIT */
/*
 * Device memory: a device's own pool of pages, where migrated pages live.
 * The pool is allocated with libnuma on the NUMA node the device is
 * configured on (the caller has checked that it exists), and handed out a page at
 * a time. Running out is -ENOMEM for whoever asked, never a crash.
 *
 * Thread-safe: one mutex inside, a leaf lock.
 */
#ifndef HMMU_DEVMEM_H
#define HMMU_DEVMEM_H

#include <stddef.h>
#include <stdint.h>

struct devmem;

/*
 * A pool of @bytes (rounded down to pages; 0 gives an empty pool) on NUMA
 * node @node, or wherever the kernel likes if @node is -1. -ENOMEM.
 */
int devmem_create(uint64_t bytes, int node, struct devmem **out);
void devmem_destroy(struct devmem *dm);

void *devmem_alloc_page(struct devmem *dm); /* NULL when full */
void devmem_free_page(struct devmem *dm, void *page);

uint64_t devmem_pages_total(const struct devmem *dm);
uint64_t devmem_pages_used(struct devmem *dm);

#endif
