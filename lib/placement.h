/* SPDX-License-Identifier: MIT */
/*
 * Where threads run: near the devices' memory. hwloc finds the CPUs of the
 * NUMA nodes the devices are configured on; threads that serve those
 * devices (request workers, compute units) are bound there. Devices on no
 * particular node (node -1) ask for no binding.
 */
#ifndef HMMUD_PLACEMENT_H
#define HMMUD_PLACEMENT_H

struct placement;

/*
 * The CPUs of @nodes (entries < 0 are skipped). *@out is NULL when there
 * is nothing to bind to. -EINVAL for a node that does not exist.
 */
int placement_create(const int *nodes, unsigned n, struct placement **out);
void placement_destroy(struct placement *pl);

/* Bind the calling thread; a workers_start() on_start hook. NULL: nothing. */
void placement_bind_self(void *pl);

/* "0-3" or "any". */
const char *placement_cpus(const struct placement *pl);

#endif
