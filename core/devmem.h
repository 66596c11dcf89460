/* SPDX-License-Identifier: MIT */
/*
 * Device memory: a device's capacity, counted a page at a time. The pages
 * themselves live in each client process's device memory file
 * (failsafe.h), whose run for this device is placed on the device's NUMA
 * node; the pool only says how many may be in use at once. Running out is
 * -ENOMEM for whoever asked, never a crash.
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
 * node @node, or wherever the kernel likes if @node is -1. -ENOMEM,
 * -EINVAL past UINT32_MAX pages.
 */
int devmem_create(uint64_t bytes, int node, struct devmem **out);
void devmem_destroy(struct devmem *dm);

int devmem_take_page(struct devmem *dm); /* 0, or -ENOMEM when full */
void devmem_give_page(struct devmem *dm);

uint64_t devmem_pages_total(const struct devmem *dm);
uint64_t devmem_pages_used(struct devmem *dm);
int devmem_node(const struct devmem *dm);

#endif
