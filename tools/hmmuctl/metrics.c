/* SPDX-License-Identifier: MIT */
/*
 * hmmuctl metrics: the daemon's counters and gauges in the Prometheus text
 * exposition format (version 0.0.4), for node_exporter's textfile
 * collector or any scraper that runs a command.
 *
 * The rules kept here: each family is a HELP and a TYPE line followed by
 * all of its samples, and appears once; names are [a-zA-Z_:][a-zA-Z0-9_:]*
 * (ours are fixed, hmmu_...), counters end in _total, units are base units
 * in the name (_bytes); label values escape backslash, double quote and
 * line feed, and HELP text backslash and line feed. Device names are
 * whatever --device said: bytes that are not UTF-8 become U+FFFD, as the
 * format is UTF-8.
 */
#include "output.h"

#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "utf8.h"

/* @s (at most @max bytes) escaped for a HELP line, or a label value. */
static void put_escaped(FILE *f, const char *s, size_t max, bool label)
{
	size_t len = strnlen(s, max);

	for (size_t i = 0; i < len;) {
		size_t n = utf8_sequence(s + i, len - i);

		if (s[i] == '\\')
			fputs("\\\\", f);
		else if (s[i] == '\n')
			fputs("\\n", f);
		else if (s[i] == '"' && label)
			fputs("\\\"", f);
		else if (n == 0)
			fputs(UTF8_REPLACEMENT, f);
		else
			fwrite(s + i, 1, n, f);
		i += n ? n : 1;
	}
}

static void family(FILE *f, const char *name, enum stat_kind kind,
		   const char *help)
{
	fprintf(f, "# HELP %s ", name);
	put_escaped(f, help, SIZE_MAX, false);
	fprintf(f, "\n# TYPE %s %s\n", name,
		kind == STAT_COUNTER ? "counter" : "gauge");
}

static void label(FILE *f, const char *name, const char *value, size_t max,
		  bool first)
{
	fprintf(f, "%s%s=\"", first ? "{" : ",", name);
	put_escaped(f, value, max, true);
	fputc('"', f);
}

static void device_sample(FILE *f, const char *metric,
			  const struct hmmu_device_info *d, uint64_t v)
{
	fputs(metric, f);
	label(f, "device", d->name, sizeof(d->name), true);
	fprintf(f, "} %" PRIu64 "\n", v);
}

/* One gauge per device; what() gives each device's value. */
static void device_family(FILE *f, const struct snapshot *s,
			  const char *metric, const char *help,
			  uint64_t (*what)(const struct snapshot *s,
					   const struct hmmu_device_info *d))
{
	if (s->ndevices == 0)
		return; /* a family with no sample says nothing */
	family(f, metric, STAT_GAUGE, help);
	for (unsigned i = 0; i < s->ndevices; i++)
		device_sample(f, metric, &s->devices[i], what(s, &s->devices[i]));
}

static uint64_t device_memory(const struct snapshot *s,
			      const struct hmmu_device_info *d)
{
	(void)s;
	return d->mem_bytes;
}

static uint64_t device_page_size(const struct snapshot *s,
				 const struct hmmu_device_info *d)
{
	(void)s;
	return d->page_size;
}

static uint64_t device_mirrors(const struct snapshot *s,
			       const struct hmmu_device_info *d)
{
	unsigned mirrors;
	uint64_t pages;

	snapshot_device_use(s, d->name, &mirrors, &pages);
	return mirrors;
}

static uint64_t device_mirror_pages(const struct snapshot *s,
				    const struct hmmu_device_info *d)
{
	unsigned mirrors;
	uint64_t pages;

	snapshot_device_use(s, d->name, &mirrors, &pages);
	return pages;
}

void metrics_write(FILE *f, const struct snapshot *s)
{
	/* The daemon counts pages of this host's page size. */
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);

	for (size_t i = 0; i < stat_field_count; i++) {
		const struct stat_field *sf = &stat_fields[i];
		uint64_t v;

		if (!stat_value(s, sf, &v))
			continue; /* an older daemon does not keep it */
		family(f, sf->metric, sf->kind, sf->help);
		fprintf(f, "%s %" PRIu64 "\n", sf->metric,
			sf->pages_to_bytes ? v * page : v);
	}

	if (s->ndevices) {
		family(f, "hmmu_device_info", STAT_GAUGE,
		       "The devices hmmud offers, with their model and NUMA node (-1: none); always 1.");
		for (unsigned i = 0; i < s->ndevices; i++) {
			const struct hmmu_device_info *d = &s->devices[i];
			char node[16];

			snprintf(node, sizeof(node), "%d", d->numa_node);
			fputs("hmmu_device_info", f);
			label(f, "device", d->name, sizeof(d->name), true);
			label(f, "model", d->model, sizeof(d->model), false);
			label(f, "numa_node", node, sizeof(node), false);
			fputs("} 1\n", f);
		}
	}
	device_family(f, s, "hmmu_device_memory_bytes",
		      "Device memory of each device.", device_memory);
	device_family(f, s, "hmmu_device_page_size_bytes",
		      "Page size of each device.", device_page_size);
	device_family(f, s, "hmmu_device_mirrors",
		      "Registered mirrors on each device.", device_mirrors);
	device_family(f, s, "hmmu_device_mirror_pages",
		      "Pages each device holds in its page table for registered mirrors.",
		      device_mirror_pages);
}
