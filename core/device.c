/* SPDX-License-Identifier: MIT */
/*
 * Devices: the table of models, device creation from a --device spec
 * (loading out-of-tree models), and the calls through which the daemon
 * reaches a model.
 */
#include "device.h"
#include "command.h"
#include "devmem.h"
#include "mirror.h"
#include "mmu.h"
#include "notifier.h"
#include "../common/page.h"
#include "../lib/log.h"
#include "../lib/placement.h"
#include "../lib/workers.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static const struct hmmu_driver_module *const models[] = {
	&hmmu_model_dmirror,
	&hmmu_model_accel,
};

static const struct hmmu_driver_module *find_model(const char *name,
						   size_t len)
{
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		if (strlen(models[i]->model) == len &&
		    memcmp(models[i]->model, name, len) == 0)
			return models[i];
	log_err("--device: no model \"%.*s\" (the models are dmirror and "
		"accel, or model=/path/to/model.so)", (int)len, name);
	return NULL;
}

/*
 * An out-of-tree model: a shared object exporting hmmu_driver_module,
 * built for this very driver API. Its symbols stay local (RTLD_LOCAL), and
 * it resolves the driver API's functions in hmmud (RTLD_NOW: a missing one
 * fails here, not at its first call).
 */
static int load_module(const char *path, void **dl,
		       const struct hmmu_driver_module **out)
{
	const struct hmmu_driver_module *mod;
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (!h) {
		log_err("--device model=%s: %s", path, dlerror());
		return -ENOEXEC;
	}
	mod = dlsym(h, "hmmu_driver_module");
	if (!mod) {
		log_err("--device model=%s: not an hmmu device model (no "
			"hmmu_driver_module; see HMMU_DRIVER_MODULE())", path);
		dlclose(h);
		return -ENOEXEC;
	}
	if (mod->api_version != HMMU_DRIVER_API_VERSION) {
		log_err("--device model=%s: built for driver API %u, hmmud "
			"has %u: rebuild it against this hmmud's hmmu/driver.h",
			path, mod->api_version, HMMU_DRIVER_API_VERSION);
		dlclose(h);
		return -ENOEXEC;
	}
	if (mod->struct_size < sizeof(*mod) || !mod->model || !*mod->model ||
	    !mod->ops) {
		log_err("--device model=%s: its hmmu_driver_module is not "
			"filled in (struct_size, model and ops): define it with "
			"HMMU_DRIVER_MODULE()", path);
		dlclose(h);
		return -ENOEXEC;
	}
	*dl = h;
	*out = mod;
	return 0;
}

/* Take "name=X" out of the option list; the rest goes to the model. */
static int split_name(const char *opts, char name[HMMU_NAME_MAX], char **rest)
{
	const char *p = opts, *end;
	size_t len;

	if (strncmp(p, "name=", 5) != 0)
		return -EINVAL;
	p += 5;
	end = strchr(p, ',');
	len = end ? (size_t)(end - p) : strlen(p);
	if (len == 0 || len >= HMMU_NAME_MAX)
		return -EINVAL;
	memcpy(name, p, len);
	name[len] = '\0';
	*rest = strdup(end ? end + 1 : "");
	return *rest ? 0 : -ENOMEM;
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	unsigned shift = 0;

	if (end == s)
		return -EINVAL;
	switch (*end) {
	case 'K': case 'k': shift = 10; end++; break;
	case 'M': case 'm': shift = 20; end++; break;
	case 'G': case 'g': shift = 30; end++; break;
	}
	if (*end || v > (1ull << 40) >> shift)
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

/*
 * Take the options every device has (mem=, node=) out of @args, in place;
 * what is left is the model's.
 */
static int take_common_options(char *args, uint64_t *mem, int *node)
{
	char *out = args, *opt, *save = NULL;
	int err = 0;

	for (opt = strtok_r(args, ",", &save); opt && !err;
	     opt = strtok_r(NULL, ",", &save)) {
		if (strncmp(opt, "mem=", 4) == 0) {
			err = parse_size(opt + 4, mem);
		} else if (strncmp(opt, "node=", 5) == 0) {
			char *end;
			long n = strtol(opt + 5, &end, 10);

			if (*end || end == opt + 5 || n < 0 || n > 4095)
				err = -EINVAL;
			*node = (int)n;
		} else {
			size_t len = strlen(opt);

			if (out != args)
				*out++ = ',';
			memmove(out, opt, len);
			out += len;
		}
	}
	*out = '\0';
	return err;
}

/*
 * "MODEL:rest" or "model=PATH,rest": the model, and where its options
 * (name= first) begin.
 */
static int find_module(const char *spec, void **dl,
		       const struct hmmu_driver_module **mod, const char **rest)
{
	const char *colon = strchr(spec, ':');

	if (strncmp(spec, "model=", 6) == 0) {
		const char *comma = strchr(spec, ',');
		char *path;
		int err;

		if (!comma || comma == spec + 6)
			return -EINVAL;
		path = strndup(spec + 6, (size_t)(comma - spec - 6));
		if (!path)
			return -ENOMEM;
		err = load_module(path, dl, mod);
		free(path);
		*rest = comma + 1;
		return err;
	}
	if (!colon)
		return -EINVAL;
	*mod = find_model(spec, (size_t)(colon - spec));
	*rest = colon + 1;
	return *mod ? 0 : -EINVAL;
}

int device_create(const char *spec, struct hmmu_device **out)
{
	struct hmmu_device *dev = calloc(1, sizeof(*dev));
	const char *rest = NULL;
	char *args = NULL;
	int err;

	if (!dev)
		return -ENOMEM;
	dev->numa_node = -1;
	dev->mem_bytes = DEVICE_DEFAULT_MEM;
	dev->prefetch = 1;
	pthread_mutex_init(&dev->log_rl.lock, NULL);
	err = find_module(spec, &dev->dl, &dev->module, &rest);
	if (!err) {
		dev->ops = dev->module->ops;
		err = split_name(rest, dev->name, &args);
	}
	if (!err)
		err = take_common_options(args, &dev->mem_bytes, &dev->numa_node);
	/* hwloc checks the node exists and says which CPUs sit there. */
	if (!err)
		err = placement_create(&dev->numa_node, 1, &dev->near);
	if (!err)
		err = devmem_create(dev->mem_bytes, dev->numa_node, &dev->mem);
	if (!err && dev->ops->create) {
		err = dev->ops->create(dev, args);
		if (err && dev->threads)
			workers_stop(dev->threads);
	}
	free(args);
	if (err) {
		devmem_destroy(dev->mem);
		placement_destroy(dev->near);
		if (dev->dl)
			dlclose(dev->dl);
		free(dev);
		return err;
	}
	*out = dev;
	return 0;
}

void device_destroy(struct hmmu_device *dev)
{
	if (!dev)
		return;
	if (dev->ops->destroy)
		dev->ops->destroy(dev);
	if (dev->threads)
		workers_stop(dev->threads);
	devmem_destroy(dev->mem);
	placement_destroy(dev->near);
	if (dev->dl)
		dlclose(dev->dl);
	pthread_mutex_destroy(&dev->log_rl.lock);
	free(dev);
}

const char *device_model(const struct hmmu_device *dev)
{
	return dev->module->model;
}

int device_bind(struct hmmu_mirror *m)
{
	int err = mmu_init(&m->mmu, m, m->dev->prefetch);

	if (err)
		return err;
	if (m->dev->ops->bind) {
		err = m->dev->ops->bind(m);
		if (err) {
			notifier_remove_all(m);
			mmu_fini(&m->mmu);
		}
	}
	return err;
}

void device_release(struct hmmu_mirror *m)
{
	notifier_release(m);
	if (m->dev->ops->release)
		m->dev->ops->release(m);
}

void device_unbind(struct hmmu_mirror *m)
{
	if (m->dev->ops->unbind)
		m->dev->ops->unbind(m);
	/* A model that forgot one leaves no notifier pointing at freed memory. */
	notifier_remove_all(m);
	mmu_fini(&m->mmu);
	m->drvdata = NULL;
}

int device_command(struct hmmu_mirror *m, const struct hmmu_command *cmd,
		   struct hmmu_command_result *res)
{
	uint64_t end = cmd->addr + cmd->npages * page_size();

	/* What driver.h promises a model: a page-aligned range of user space. */
	if (cmd->addr % page_size())
		return command_fail(-EINVAL, "address %#" PRIx64 " is not "
				    "page-aligned: use mmap() or "
				    "aligned_alloc(%" PRIu64 ", ...)",
				    cmd->addr, page_size());
	if (cmd->npages > HMMU_COMMAND_MAX_PAGES || end < cmd->addr ||
	    end > HMMU_VA_LIMIT)
		return command_fail(-EINVAL, "%" PRIu64 " pages at %#" PRIx64
				    " reach past the top of user space",
				    cmd->npages, cmd->addr);
	if (!m->dev->ops->command)
		return command_fail(-EOPNOTSUPP, "device %s (model %s) takes "
				    "no device commands, only jobs "
				    "(hmmu_job_run())", m->dev->name,
				    device_model(m->dev));
	return m->dev->ops->command(m, cmd, res);
}

int device_job(struct hmmu_mirror *m, const struct hmmu_job_desc *job,
	       struct hmmu_job_result *res)
{
	if (!m->dev->ops->job)
		return command_fail(-EOPNOTSUPP, "device %s (model %s) runs no "
				    "jobs, only device commands "
				    "(hmmu_device_read() and the like)",
				    m->dev->name, device_model(m->dev));
	return m->dev->ops->job(m, job, res);
}

uint64_t device_pages(struct hmmu_mirror *m)
{
	return mmu_pages(&m->mmu);
}
