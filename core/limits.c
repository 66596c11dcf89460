/* SPDX-License-Identifier: MIT */
#include "limits.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct limits limits = {
	.connections = 1024,
	.connections_per_user = 256,
	.mirrors_per_user = 1024,
	.copy_bytes_per_user = 1024ull << 20,
	.devmem_percent_per_user = 50,
	.requests_per_connection = 32,
	.zaps_per_process = 64,
	.job_timeout_ms = 60000,
	.stop_timeout_ms = 20000,
	.copy_pool_bytes = 64ull << 20,
	.copy_pool_idle_ms = 10000,
	.queues_per_connection = 8,
	.queue_threads = 2,
	.buffers_per_user = 64,
	.buffer_bytes_per_user = 256ull << 20,
};

/*
 * Each connection costs the daemon up to about 8 fds (its socket and pidfd;
 * for its process a userfaultfd, a pidfd, /proc/PID/mem, maps and pagemap);
 * a few dozen more are the daemon's own.
 */
#define FDS_PER_CONNECTION 8
#define FDS_RESERVED 64

enum unit { AS_IS, MIB_TO_BYTES, SECONDS_TO_MS };

static const struct limit_desc {
	const char *name;
	size_t offset;
	int is64;
	uint64_t min, max; /* of VALUE, before conversion */
	enum unit unit;
	const char *help;
} descs[] = {
	{ "connections", offsetof(struct limits, connections), 0, 1, 1u << 20, AS_IS,
	  "open connections, all users together (default: from the fd limit)" },
	{ "connections-per-user", offsetof(struct limits, connections_per_user),
	  0, 1, 1u << 20, AS_IS, "open connections of one uid (256)" },
	{ "mirrors-per-user", offsetof(struct limits, mirrors_per_user), 0, 1,
	  1u << 24, AS_IS, "mirrors one uid may have created (1024)" },
	{ "copy-mib-per-user", offsetof(struct limits, copy_bytes_per_user), 1,
	  1, 1u << 24, MIB_TO_BYTES, "MiB of page copies in device page tables per uid (1024)" },
	{ "devmem-percent-per-user",
	  offsetof(struct limits, devmem_percent_per_user), 0, 1, 100, AS_IS,
	  "share of each device's memory one uid may hold (50)" },
	{ "requests-per-connection",
	  offsetof(struct limits, requests_per_connection), 0, 1, 4096, AS_IS,
	  "requests of one connection queued or running; more wait in its socket (32)" },
	{ "zaps-per-process", offsetof(struct limits, zaps_per_process), 0, 1,
	  1u << 16, AS_IS, "madvise discards of one process tracked page by page (64)" },
	{ "job-seconds", offsetof(struct limits, job_timeout_ms), 1, 1, 86400,
	  SECONDS_TO_MS, "longest a device command or job may run (60)" },
	{ "stop-seconds", offsetof(struct limits, stop_timeout_ms), 1, 1, 3600,
	  SECONDS_TO_MS, "longest a clean stop may take before hmmud exits anyway (20)" },
	{ "copy-pool-mib", offsetof(struct limits, copy_pool_bytes), 1, 0,
	  1u << 20, MIB_TO_BYTES,
	  "MiB of warm page copies kept for the next device fault, not "
	  "charged to anyone; 0 keeps none (64)" },
	{ "copy-pool-idle-seconds", offsetof(struct limits, copy_pool_idle_ms),
	  1, 1, 86400, SECONDS_TO_MS,
	  "seconds without a device fault after which the pool gives its "
	  "memory back (10)" },
	{ "queues-per-connection",
	  offsetof(struct limits, queues_per_connection), 0, 1, 1024, AS_IS,
	  "submission queues one connection may hold (8)" },
	{ "queue-threads", offsetof(struct limits, queue_threads), 0, 1, 64,
	  AS_IS, "threads serving the submission queues of all clients (2)" },
	{ "buffers-per-user", offsetof(struct limits, buffers_per_user), 0, 1,
	  1u << 16, AS_IS, "shared buffers (hmmu_buffer_create) one uid may hold (64)" },
	{ "buffer-mib-per-user", offsetof(struct limits, buffer_bytes_per_user),
	  1, 1, 1u << 20, MIB_TO_BYTES, "MiB of shared buffers one uid may hold (256)" },
};

void limits_init(uint64_t max_fds)
{
	uint64_t conns = max_fds > FDS_RESERVED + 16 * FDS_PER_CONNECTION ?
				 (max_fds - FDS_RESERVED) / FDS_PER_CONNECTION :
				 16;

	limits.connections = conns > (1u << 20) ? 1u << 20 : (unsigned)conns;
}

int limits_set(const char *assignment, FILE *err)
{
	const char *eq = strchr(assignment, '=');
	unsigned long long v;
	char *end;

	for (size_t i = 0; eq && i < sizeof(descs) / sizeof(descs[0]); i++) {
		const struct limit_desc *d = &descs[i];
		char *field = (char *)&limits + d->offset;

		if (strlen(d->name) != (size_t)(eq - assignment) ||
		    strncmp(assignment, d->name, (size_t)(eq - assignment)))
			continue;
		errno = 0;
		v = strtoull(eq + 1, &end, 10);
		if (errno || end == eq + 1 || *end || v < d->min || v > d->max) {
			fprintf(err, "hmmud: --limit %s takes a whole number from %llu to %llu\n",
				d->name, (unsigned long long)d->min,
				(unsigned long long)d->max);
			return -EINVAL;
		}
		if (d->unit == MIB_TO_BYTES)
			v <<= 20;
		else if (d->unit == SECONDS_TO_MS)
			v *= 1000;
		if (d->is64)
			*(uint64_t *)field = v;
		else
			*(unsigned *)field = (unsigned)v;
		return 0;
	}
	fprintf(err, "hmmud: --limit takes NAME=VALUE, with NAME one of:\n");
	limits_usage(err);
	return -EINVAL;
}

void limits_usage(FILE *f)
{
	for (size_t i = 0; i < sizeof(descs) / sizeof(descs[0]); i++)
		fprintf(f, "    %-24s %s\n", descs[i].name, descs[i].help);
}
