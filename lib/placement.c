/* SPDX-License-Identifier: MIT */
#include "placement.h"
#include "log.h"

#include <errno.h>
#include <hwloc.h>
#include <stdlib.h>
#include <string.h>

struct placement {
	hwloc_topology_t topo;
	hwloc_bitmap_t cpus;
	char list[64];
};

int placement_create(const int *nodes, unsigned n, struct placement **out)
{
	struct placement *pl;
	int any = 0;

	*out = NULL;
	for (unsigned i = 0; i < n; i++)
		any |= nodes[i] >= 0;
	if (!any)
		return 0;
	pl = calloc(1, sizeof(*pl));
	if (!pl)
		return -ENOMEM;
	if (hwloc_topology_init(&pl->topo) < 0) {
		free(pl);
		return -ENOMEM;
	}
	if (hwloc_topology_load(pl->topo) < 0 ||
	    !(pl->cpus = hwloc_bitmap_alloc())) {
		placement_destroy(pl);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < n; i++) {
		hwloc_obj_t node;

		if (nodes[i] < 0)
			continue;
		node = hwloc_get_numanode_obj_by_os_index(pl->topo,
							  (unsigned)nodes[i]);
		if (!node) {
			placement_destroy(pl);
			return -EINVAL;
		}
		hwloc_bitmap_or(pl->cpus, pl->cpus, node->cpuset);
	}
	hwloc_bitmap_list_snprintf(pl->list, sizeof(pl->list), pl->cpus);
	*out = pl;
	return 0;
}

void placement_destroy(struct placement *pl)
{
	if (!pl)
		return;
	if (pl->cpus)
		hwloc_bitmap_free(pl->cpus);
	hwloc_topology_destroy(pl->topo);
	free(pl);
}

void placement_bind_self(void *arg)
{
	struct placement *pl = arg;

	if (pl && hwloc_set_cpubind(pl->topo, pl->cpus, HWLOC_CPUBIND_THREAD) < 0)
		log_warn("cannot bind a thread to cpus %s: %s", pl->list,
			 strerror(errno));
}

const char *placement_cpus(const struct placement *pl)
{
	return pl ? pl->list : "any";
}
