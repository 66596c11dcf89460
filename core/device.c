/* SPDX-License-Identifier: MIT */
/*
 * Devices: the table of models, device creation from a --device spec
 * (loading out-of-tree models), and the calls through which the daemon
 * reaches a model.
 */
#include "device.h"
#include "counters.h"
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
#include <stdarg.h>
#include <stdio.h>
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

#define SIZE_HELP "a number of bytes, with an optional K, M or G suffix " \
		  "(powers of 1024), such as 512M, at most 1T"

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	/* strtoull takes "-1" as a huge number: digits only. */
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
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

static int parse_node(const char *s, int *out)
{
	char *end;
	long n;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	n = strtol(s, &end, 10);
	if (errno || *end || n > 4095)
		return -EINVAL;
	*out = (int)n;
	return 0;
}

/* @err, formatted; always -EINVAL, what a bad spec returns. */
__attribute__((format(printf, 3, 4))) static int
spec_error(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/*
 * One option of the spec: the core's (name=, mem=, node=) into @s, any
 * other appended to s->options for the model. @seen: which of the core's
 * were given, so that a second one is an error, not a silent override.
 */
static int take_option(struct device_spec *s, const char *opt, unsigned *seen,
		       char *err, size_t len)
{
	static const char *const keys[] = { "name", "mem", "node" };
	const char *eq = strchr(opt, '=');
	size_t klen = eq ? (size_t)(eq - opt) : strlen(opt);
	const char *v = eq ? eq + 1 : NULL;
	unsigned k;

	if (!*opt)
		return spec_error(err, len, "an empty option (two commas, or "
				  "one at the end?)");
	for (k = 0; k < 3; k++)
		if (strlen(keys[k]) == klen && memcmp(opt, keys[k], klen) == 0)
			break;
	if (k == 3) {
		size_t used = strlen(s->options);

		if (used)
			s->options[used++] = ',';
		strcpy(s->options + used, opt);
		return 0;
	}
	if (*seen & (1u << k))
		return spec_error(err, len, "%s= is given twice", keys[k]);
	*seen |= 1u << k;
	if (!v)
		return spec_error(err, len, "%s has no value (want %s=...)",
				  keys[k], keys[k]);
	switch (k) {
	case 0:
		if (!*v)
			return spec_error(err, len, "name= is empty");
		if (strlen(v) >= HMMU_NAME_MAX)
			return spec_error(err, len, "name '%s' is too long (at "
					  "most %u characters)", v,
					  HMMU_NAME_MAX - 1);
		strcpy(s->name, v);
		return 0;
	case 1:
		if (parse_size(v, &s->mem_bytes))
			return spec_error(err, len, "mem=%s: not a size; want "
					  SIZE_HELP, v);
		return 0;
	default:
		if (parse_node(v, &s->numa_node))
			return spec_error(err, len, "node=%s: not a NUMA node "
					  "number (0 to 4095)", v);
		return 0;
	}
}

/* "MODEL:" or "model=PATH,": the model, and where the options begin. */
static int take_model(struct device_spec *s, const char *spec,
		      const char **opts, char *err, size_t len)
{
	const char *colon = strchr(spec, ':');

	if (strncmp(spec, "model=", 6) == 0) {
		const char *comma = strchr(spec, ',');
		size_t plen = comma ? (size_t)(comma - spec - 6) : strlen(spec + 6);

		if (plen == 0)
			return spec_error(err, len, "model= names no file (want "
					  "model=/path/to/model.so,name=NAME)");
		s->path = strndup(spec + 6, plen);
		if (!s->path)
			return -ENOMEM;
		*opts = comma ? comma + 1 : spec + 6 + plen;
		return 0;
	}
	if (!colon) {
		if (find_model(spec, strlen(spec)))
			return spec_error(err, len, "no name= (want %s:name=NAME"
					  "[,KEY=VALUE...])", spec);
		return spec_error(err, len, "want MODEL:name=NAME[,KEY=VALUE..."
				  "] (models: dmirror, accel), or model=/path/"
				  "to/model.so,name=NAME[,...]");
	}
	s->module = find_model(spec, (size_t)(colon - spec));
	if (!s->module)
		return spec_error(err, len, "unknown device model '%.*s' "
				  "(models: dmirror, accel, or model=/path/to/"
				  "model.so)", (int)(colon - spec), spec);
	*opts = colon + 1;
	return 0;
}

int device_spec_parse(const char *spec, struct device_spec *s, char *err,
		      size_t len)
{
	const char *opts = NULL;
	char *copy = NULL, *opt, *next;
	unsigned seen = 0;
	int ret;

	memset(s, 0, sizeof(*s));
	s->numa_node = -1;
	s->mem_bytes = DEVICE_DEFAULT_MEM;
	ret = take_model(s, spec, &opts, err, len);
	if (!ret) {
		copy = strdup(opts);
		/* The model's options are at most as long as all of them. */
		s->options = calloc(1, strlen(opts) + 1);
		if (!copy || !s->options)
			ret = -ENOMEM;
	}
	/* strsep, not strtok: an empty option is an error, not skipped. */
	for (next = copy; !ret && next;) {
		opt = strsep(&next, ",");
		ret = take_option(s, opt, &seen, err, len);
	}
	free(copy);
	if (!ret && !s->name[0])
		ret = spec_error(err, len, "no name= (every device needs one: "
				 "name=NAME)");
	/* A model without create() takes no options of its own. */
	if (!ret && s->module && !s->module->ops->create && s->options[0])
		ret = spec_error(err, len, "unknown option '%.*s' (model %s "
				 "takes name=, mem= and node=)",
				 (int)strcspn(s->options, ","), s->options,
				 s->module->model);
	if (!ret && s->numa_node >= 0) {
		struct placement *pl;

		/* hwloc says which nodes there are; nothing is bound here. */
		ret = placement_create(&s->numa_node, 1, &pl);
		placement_destroy(pl);
		if (ret == -EINVAL)
			spec_error(err, len, "node=%d: this machine has no NUMA "
				   "node %d", s->numa_node, s->numa_node);
	}
	if (ret == -ENOMEM)
		snprintf(err, len, "%s", strerror(ENOMEM));
	if (ret)
		device_spec_free(s);
	return ret;
}

void device_spec_free(struct device_spec *s)
{
	free(s->path);
	free(s->options);
	s->path = NULL;
	s->options = NULL;
}

/*
 * The model's create() said nothing: say which options it refused. A model
 * that logged an error or warning of its own already said it better.
 */
static void create_failed(struct hmmu_device *dev, const char *spec,
			  const char *options, unsigned logged, int err)
{
	if (atomic_load(&dev->logged_problems) != logged)
		return;
	if (*options)
		log_err("--device '%s': model %s refused its options '%s': %s",
			spec, dev->module->model, options, strerror(-err));
	else
		log_err("--device '%s': model %s cannot create the device: %s",
			spec, dev->module->model, strerror(-err));
}

/* Raise *@c to @v (devices are created one at a time, on the main thread). */
static void raise_to(atomic_uint_fast64_t *c, uint64_t v)
{
	if (counter_read(c) < v)
		atomic_store(c, v);
}

/* What a device holds besides its model's state and threads. */
static void device_free(struct hmmu_device *dev)
{
	devmem_destroy(dev->mem);
	placement_destroy(dev->near);
	if (dev->dl)
		dlclose(dev->dl);
	pthread_mutex_destroy(&dev->log_rl.lock);
	free(dev);
}

/* A device with a fault buffer: its rule shows in the stats (hmmuctl stats). */
static void fault_rule_publish(const struct hmmu_device *dev)
{
	raise_to(&counters.fault_window_pages, dev->prefetch);
	raise_to(&counters.fault_density_pct, dev->density_pct);
}

int device_create(const char *spec, struct hmmu_device **out)
{
	struct hmmu_device *dev;
	struct device_spec s;
	char why[256];
	unsigned logged;
	int err;

	err = device_spec_parse(spec, &s, why, sizeof(why));
	if (err) {
		log_err("--device '%s': %s", spec, why);
		return err;
	}
	dev = calloc(1, sizeof(*dev));
	if (!dev) {
		device_spec_free(&s);
		return -ENOMEM;
	}
	strcpy(dev->name, s.name);
	dev->numa_node = s.numa_node;
	dev->mem_bytes = s.mem_bytes;
	dev->prefetch = 1;
	dev->fault_entries = 0;
	dev->density_pct = 0;
	pthread_mutex_init(&dev->log_rl.lock, NULL);
	dev->module = s.module;
	err = s.path ? load_module(s.path, &dev->dl, &dev->module) : 0;
	/* hwloc says which CPUs sit at the node (it exists: checked above). */
	if (!err)
		err = placement_create(&dev->numa_node, 1, &dev->near);
	if (!err)
		err = devmem_create(dev->mem_bytes, dev->numa_node, &dev->mem);
	if (err && err != -ENOEXEC)
		log_err("--device '%s': %s", spec, strerror(-err));
	if (!err) {
		dev->ops = dev->module->ops;
		logged = atomic_load(&dev->logged_problems);
		err = dev->ops->create ? dev->ops->create(dev, s.options) : 0;
		if (err) {
			create_failed(dev, spec, s.options, logged, err);
			if (dev->threads)
				workers_stop(dev->threads);
		}
	}
	device_spec_free(&s);
	if (!err && dev->fault_entries)
		fault_rule_publish(dev);
	if (err) {
		device_free(dev);
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
	device_free(dev);
}

const char *device_model(const struct hmmu_device *dev)
{
	return dev->module->model;
}

int device_bind(struct hmmu_mirror *m)
{
	int err = mmu_init(&m->mmu, m, m->dev->prefetch, m->dev->fault_entries,
			   m->dev->density_pct);

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
