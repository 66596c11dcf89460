/* SPDX-License-Identifier: MIT */
/*
 * The device model interface. A device is an instance of a model (dmirror,
 * accel) with a name; each registered mirror binds one device to one client
 * process. The daemon calls the ops below; a model implements them.
 *
 * Which thread calls what, and with which locks held (lock order in
 * docs/design.md):
 *
 *   create, destroy   required  main thread, before the loop starts / after
 *                               it stopped.
 *   attach            required  a worker, under the registry lock, when a
 *                               mirror is registered. Sets up the mirror's
 *                               device page table in m->dev_priv.
 *   invalidate        required  the loop thread (userfaultfd events, write
 *                               faults) or a worker, with the process's
 *                               mirror list read-locked. The device drops its
 *                               copies of [start, end) before returning. Must
 *                               not wait for the client.
 *   release           required  a worker or the loop thread, under the
 *                               registry lock, once per mirror when the
 *                               process exits or its connection closes with
 *                               the mirror still registered. detach follows.
 *   detach            required  under the registry lock, after the mirror
 *                               left the process's mirror list: drop every
 *                               page and free m->dev_priv. No op runs for
 *                               this mirror afterwards.
 *   command           optional  a worker, mirror registered: dmirror-style
 *                               commands (read, write, snapshot).
 *   job               optional  a worker, mirror registered: run an
 *                               accelerator job to completion.
 *   pages             optional  any thread, under the registry lock: how
 *                               many pages the device holds for @m.
 */
#ifndef HMMU_DEVICE_H
#define HMMU_DEVICE_H

#include <stdint.h>

#include "../common/proto.h"

struct hmmu_device;
struct hmmu_mirror;

struct device_ops {
	const char *model;
	int (*create)(struct hmmu_device *dev, const char *args);
	void (*destroy)(struct hmmu_device *dev);
	int (*attach)(struct hmmu_device *dev, struct hmmu_mirror *m);
	void (*invalidate)(struct hmmu_device *dev, struct hmmu_mirror *m, uint64_t start,
			   uint64_t end);
	void (*release)(struct hmmu_device *dev, struct hmmu_mirror *m);
	void (*detach)(struct hmmu_device *dev, struct hmmu_mirror *m);
	int (*command)(struct hmmu_device *dev, struct hmmu_mirror *m,
		       const struct hmmu_wire_device_cmd *cmd,
		       struct hmmu_wire_cmd_result *res);
	int (*job)(struct hmmu_device *dev, struct hmmu_mirror *m,
		   const struct hmmu_wire_job *job,
		   struct hmmu_wire_job_result *res);
	uint64_t (*pages)(struct hmmu_device *dev, struct hmmu_mirror *m);
};

struct devmem;
struct placement;

struct hmmu_device {
	char name[HMMU_NAME_MAX];
	const struct device_ops *ops;
	uint64_t mem_bytes;
	int numa_node;
	struct devmem *mem; /* device memory, where migrated pages live */
	struct placement *near; /* the CPUs of its node (NULL: no node) */
	unsigned index;	    /* its place among the daemon's devices */
	void *priv;	    /* the model's */
};

/* Device memory of a device unless its spec says mem=SIZE. */
#define DEVICE_DEFAULT_MEM (256ull << 20)

/*
 * Parse "MODEL:name=NAME[,mem=SIZE][,node=N][,model options...]" and create
 * the device. SIZE takes a K, M or G suffix. Unknown models, names that are
 * empty or too long, bad sizes, nodes that do not exist and options the
 * model does not know give -EINVAL.
 */
int device_create(const char *spec, struct hmmu_device **out);
void device_destroy(struct hmmu_device *dev);

extern const struct device_ops dmirror_ops;
extern const struct device_ops accel_ops;

#endif
