/* SPDX-License-Identifier: MIT */
/*
 * Devices: instances of a device model (include/hmmu/driver.h), made from
 * hmmud's --device specs, living as long as the daemon. This is the core's
 * side of a device: its model, its memory pool, its place, its compute
 * threads, and the calls through which the rest of the daemon reaches the
 * model, so that nothing outside core/ calls a model's ops directly.
 */
#ifndef HMMU_CORE_DEVICE_H
#define HMMU_CORE_DEVICE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <hmmu/driver.h>

#include "../common/proto.h"
#include "../lib/log.h"

struct devmem;
struct placement;
struct workers;

struct hmmu_device {
	char name[HMMU_NAME_MAX];
	const struct hmmu_driver_module *module;
	const struct hmmu_device_ops *ops; /* module->ops, never NULL */
	void *dl;		     /* dlopen handle of an out-of-tree model */
	uint64_t mem_bytes;
	int numa_node;
	struct devmem *mem;	/* device memory, where migrated pages live */
	struct placement *near; /* the CPUs of its node (NULL: no node) */
	struct workers *threads; /* compute threads, if the model asked */
	unsigned prefetch;	/* pages a device load fault brings in */
	unsigned fault_entries; /* its replayable fault buffer (0: none) */
	unsigned density_pct;	/* the buffer's density rule (0: none) */
	unsigned index;		/* its place among the daemon's devices */
	void *drvdata;		/* the model's */
	struct log_ratelimit log_rl; /* hmmu_log()'s */
	/* Errors and warnings hmmu_log() wrote: did create() say why it failed? */
	atomic_uint logged_problems;
};

/* Device memory of a device unless its spec says mem=SIZE. */
#define DEVICE_DEFAULT_MEM (256ull << 20)

/*
 * A --device spec, parsed and checked; nothing is created:
 *   MODEL:name=NAME[,mem=SIZE][,node=N][,model options...]
 *   model=/path/to/model.so,name=NAME[,...]   (an out-of-tree model)
 * name=, mem= and node= are the core's, in any order, each at most once;
 * SIZE takes a K, M or G suffix. The other options are the model's: a
 * model without create() takes none, and the others check theirs when
 * the device is created.
 */
struct device_spec {
	const struct hmmu_driver_module *module; /* in-tree; NULL: path */
	char *path;				 /* model=PATH, loaded later */
	char name[HMMU_NAME_MAX];
	uint64_t mem_bytes;
	int numa_node; /* -1: none; one that exists */
	char *options; /* the model's, "key=value,...", maybe "" */
};

/*
 * Parse @spec into @s, without creating anything (a node= is looked up
 * with hwloc). 0, or -EINVAL with one sentence naming the bad model, key
 * or value in @err (without the spec; the caller says which), or -ENOMEM.
 * Free @s with device_spec_free() after a success.
 */
int device_spec_parse(const char *spec, struct device_spec *s, char *err,
		      size_t len);
void device_spec_free(struct device_spec *s);

/*
 * Parse a --device spec and create the device. -EINVAL for what
 * device_spec_parse() refuses and for options the model does not know (its
 * create() says so); -ENOEXEC for a shared object that is not a model of
 * this HMMU_DRIVER_API_VERSION; -ENOMEM. One log line says which.
 */
int device_create(const char *spec, struct hmmu_device **out);
void device_destroy(struct hmmu_device *dev);

/* The model's name ("dmirror", or the module's own). */
const char *device_model(const struct hmmu_device *dev);

/*
 * A mirror's device side, under the registry lock (see registry.c):
 * bind when it is registered, release once if its process dies while it
 * is, unbind after it left the process's mirror list.
 */
int device_bind(struct hmmu_mirror *m);
void device_release(struct hmmu_mirror *m);
void device_unbind(struct hmmu_mirror *m);

/* A client's device command or job, on a worker: -EOPNOTSUPP if none. */
int device_command(struct hmmu_mirror *m, const struct hmmu_command *cmd,
		   struct hmmu_command_result *res);
int device_job(struct hmmu_mirror *m, const struct hmmu_job_desc *job,
	       struct hmmu_job_result *res);

/* Pages @m's device holds in its page table (HMMU_OP_LIST). */
uint64_t device_pages(struct hmmu_mirror *m);

/* In-tree models (devices/). */
extern const struct hmmu_driver_module hmmu_model_dmirror;
extern const struct hmmu_driver_module hmmu_model_accel;

#endif
