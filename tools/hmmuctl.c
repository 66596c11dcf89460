/* SPDX-License-Identifier: MIT */
/*
 * hmmuctl: what the daemon holds, for a person at a terminal.
 *
 *   hmmuctl [--socket PATH] devices|processes|mirrors|stats
 */
#include <hmmu/hmmu.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static int usage(FILE *f)
{
	fprintf(f, "usage: hmmuctl [--socket PATH] devices|processes|mirrors|stats\n");
	return f == stdout ? 0 : 2;
}

static int fail(const char *what, int err)
{
	const char *detail = hmmu_error_detail();

	fprintf(stderr, "hmmuctl: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	return 1;
}

static int show_devices(struct hmmu *h)
{
	int n = hmmu_device_count(h);

	if (n < 0)
		return fail("device count", n);
	printf("%-12s %-10s %12s %5s %9s\n", "NAME", "MODEL", "MEMORY", "NODE",
	       "PAGE");
	for (int i = 0; i < n; i++) {
		struct hmmu_device_info d;
		int err = hmmu_device_info(h, (unsigned)i, &d);

		if (err)
			return fail("device info", err);
		printf("%-12s %-10s %10" PRIu64 "Mi %5d %9u\n", d.name, d.model,
		       d.mem_bytes >> 20, d.numa_node, d.page_size);
	}
	return 0;
}

#define LIST_MAX 4096

static int show_processes(struct hmmu *h)
{
	static struct hmmu_process_info p[LIST_MAX];
	int n = hmmu_list_processes(h, p, LIST_MAX);

	if (n < 0)
		return fail("list processes", n);
	printf("%-8s %-6s %7s\n", "PID", "UID", "MIRRORS");
	for (int i = 0; i < n && i < LIST_MAX; i++)
		printf("%-8d %-6u %7u\n", p[i].pid, p[i].uid, p[i].mirrors);
	return 0;
}

static int show_mirrors(struct hmmu *h)
{
	static struct hmmu_mirror_info m[LIST_MAX];
	int n = hmmu_list_mirrors(h, m, LIST_MAX);

	if (n < 0)
		return fail("list mirrors", n);
	printf("%-8s %-6s %-12s %12s\n", "PID", "UID", "DEVICE", "DEVICE PAGES");
	for (int i = 0; i < n && i < LIST_MAX; i++)
		printf("%-8d %-6u %-12s %12" PRIu64 "\n", m[i].pid, m[i].uid,
		       m[i].device, m[i].device_pages);
	return 0;
}

static int show_stats(struct hmmu *h)
{
	struct hmmu_stats s;
	int err = hmmu_stats(h, &s, sizeof(s));

	if (err < 0)
		return fail("stats", err);
	printf("connections          %" PRIu64 "\n", s.sessions);
	printf("processes            %" PRIu64 "\n", s.processes);
	printf("mirrors              %" PRIu64 "\n", s.mirrors);
	printf("device pages         %" PRIu64 " (copies in device page tables)\n",
	       s.device_pages);
	printf("device memory pages  %" PRIu64 " (migrated)\n", s.device_mem_pages);
	printf("device faults        %" PRIu64 "\n", s.device_faults);
	printf("cpu faults           %" PRIu64 "\n", s.cpu_faults);
	printf("invalidations        %" PRIu64 "\n", s.invalidations);
	printf("migrated to device   %" PRIu64 " pages\n", s.migrated_to_device);
	printf("migrated to system   %" PRIu64 " pages\n", s.migrated_to_system);
	printf("releases             %" PRIu64 "\n", s.releases);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *socket_path = NULL;
	struct hmmu *h;
	int c, err, ret;

	while ((c = getopt_long(argc, argv, "s:h", longopts, NULL)) != -1) {
		if (c == 's')
			socket_path = optarg;
		else
			return usage(c == 'h' ? stdout : stderr);
	}
	if (optind != argc - 1)
		return usage(stderr);
	static const struct {
		const char *name;
		int (*show)(struct hmmu *h);
	} commands[] = {
		{ "devices", show_devices },
		{ "processes", show_processes },
		{ "mirrors", show_mirrors },
		{ "stats", show_stats },
	};
	int (*show)(struct hmmu *h) = NULL;

	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			show = commands[i].show;
	if (!show)
		return usage(stderr);

	err = hmmu_connect(socket_path, &h);
	if (err)
		return fail("connect", err);
	ret = show(h);
	hmmu_disconnect(h);
	return ret;
}
