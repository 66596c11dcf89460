/* SPDX-License-Identifier: MIT */
/* The table of device models, and device creation from a --device spec. */
#include "device.h"

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

int device_create(const char *spec, struct device **out)
{
	const char *colon = strchr(spec, ':');
	const struct device_ops *ops;
	struct device *dev;
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
	err = split_name(colon + 1, dev->name, &args);
	if (!err)
		err = ops->create(dev, args);
	free(args);
	if (err) {
		free(dev);
		return err;
	}
	*out = dev;
	return 0;
}

void device_destroy(struct device *dev)
{
	if (!dev)
		return;
	dev->ops->destroy(dev);
	free(dev);
}
