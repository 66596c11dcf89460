/* SPDX-License-Identifier: MIT */
/* The table of device models, and device creation from a --device spec. */
#include "device.h"
#include "devmem.h"
#include "../lib/placement.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const struct device_ops *const models[] = {
	&dmirror_ops,
	&accel_ops,
};

static const struct device_ops *find_model(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		if (strlen(models[i]->model) == len &&
		    memcmp(models[i]->model, name, len) == 0)
			return models[i];
	return NULL;
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

int device_create(const char *spec, struct hmmu_device **out)
{
	const char *colon = strchr(spec, ':');
	const struct device_ops *ops;
	struct hmmu_device *dev;
	char *args = NULL;
	int err;

	if (!colon)
		return -EINVAL;
	ops = find_model(spec, (size_t)(colon - spec));
	if (!ops)
		return -EINVAL;
	dev = calloc(1, sizeof(*dev));
	if (!dev)
		return -ENOMEM;
	dev->ops = ops;
	dev->numa_node = -1;
	dev->mem_bytes = DEVICE_DEFAULT_MEM;
	err = split_name(colon + 1, dev->name, &args);
	if (!err)
		err = take_common_options(args, &dev->mem_bytes, &dev->numa_node);
	/* hwloc checks the node exists and says which CPUs sit there. */
	if (!err)
		err = placement_create(&dev->numa_node, 1, &dev->near);
	if (!err)
		err = devmem_create(dev->mem_bytes, dev->numa_node, &dev->mem);
	if (!err) {
		err = ops->create(dev, args);
		if (err)
			devmem_destroy(dev->mem);
	}
	if (err)
		placement_destroy(dev->near);
	free(args);
	if (err) {
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
	dev->ops->destroy(dev);
	devmem_destroy(dev->mem);
	placement_destroy(dev->near);
	free(dev);
}
