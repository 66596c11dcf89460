/* SPDX-License-Identifier: MIT */
/*
 * The text tables, for a person at a terminal. Their layout is what
 * hmmuctl has always printed; scripts should read --json instead.
 */
#include "output.h"

#include "hmmu_build_info.h"

#include <inttypes.h>
#include <string.h>

#include "utf8.h"

const char *text_name(char out[64], const char *name, size_t max)
{
	size_t len = strnlen(name, max), o = 0;

	/*
	 * A device's name is whatever --device said: keep escape sequences
	 * and bytes that are not UTF-8 away from the terminal.
	 */
	for (size_t i = 0; i < len && o < 63;) {
		unsigned char c = (unsigned char)name[i];
		size_t n = utf8_sequence(name + i, len - i);
		bool c1 = n == 2 && c == 0xc2 && (unsigned char)name[i + 1] < 0xa0;

		if (n == 0 || c < 0x20 || c == 0x7f || c1 || o + n > 63) {
			out[o++] = '?';
			i += n ? n : 1;
			continue;
		}
		memcpy(out + o, name + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
	return out;
}

const char *text_bytes(char out[32], uint64_t bytes)
{
	static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
	double v = (double)bytes;
	unsigned u = 0;

	if (bytes < 1024) {
		snprintf(out, 32, "%" PRIu64 " B", bytes);
		return out;
	}
	for (v /= 1024; v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0]);
	     v /= 1024)
		u++;
	snprintf(out, 32, "%.1f %s", v, units[u]);
	return out;
}

void text_devices(FILE *f, const struct snapshot *s)
{
	char name[64], model[64];

	fprintf(f, "%-12s %-10s %12s %5s %9s\n", "NAME", "MODEL", "MEMORY",
		"NODE", "PAGE");
	for (unsigned i = 0; i < s->ndevices; i++) {
		const struct hmmu_device_info *d = &s->devices[i];

		fprintf(f, "%-12s %-10s %10" PRIu64 "Mi %5d %9u\n",
			text_name(name, d->name, sizeof(d->name)),
			text_name(model, d->model, sizeof(d->model)),
			d->mem_bytes >> 20, d->numa_node, d->page_size);
	}
}

static void more(FILE *f, unsigned shown, unsigned all)
{
	if (shown < all)
		fprintf(f, "... %u more\n", all - shown);
}

void text_process_rows(FILE *f, const struct snapshot *s, unsigned rows)
{
	unsigned n = s->nprocesses;

	/* The last row says how many did not fit. */
	if (n > rows)
		n = rows > 1 ? rows - 1 : 0;
	fprintf(f, "%-8s %-6s %7s\n", "PID", "UID", "MIRRORS");
	for (unsigned i = 0; i < n; i++)
		fprintf(f, "%-8d %-6u %7u\n", s->processes[i].pid,
			s->processes[i].uid, s->processes[i].mirrors);
	more(f, n, s->nprocesses);
}

void text_mirror_rows(FILE *f, const struct snapshot *s, unsigned rows)
{
	unsigned n = s->nmirrors;
	char name[64];

	if (n > rows)
		n = rows > 1 ? rows - 1 : 0;
	fprintf(f, "%-8s %-6s %-12s %12s\n", "PID", "UID", "DEVICE",
		"DEVICE PAGES");
	for (unsigned i = 0; i < n; i++) {
		const struct hmmu_mirror_info *m = &s->mirrors[i];

		fprintf(f, "%-8d %-6u %-12s %12" PRIu64 "\n", m->pid, m->uid,
			text_name(name, m->device, sizeof(m->device)),
			m->device_pages);
	}
	more(f, n, s->nmirrors);
}

void text_processes(FILE *f, const struct snapshot *s)
{
	text_process_rows(f, s, UINT32_MAX);
}

void text_mirrors(FILE *f, const struct snapshot *s)
{
	text_mirror_rows(f, s, UINT32_MAX);
}

void text_stats(FILE *f, const struct snapshot *s)
{
	for (size_t i = 0; i < stat_field_count; i++) {
		const struct stat_field *sf = &stat_fields[i];
		uint64_t v;

		/* Counters an older daemon does not keep are left out. */
		if (stat_value(s, sf, &v))
			fprintf(f, "%-20s %" PRIu64 "%s\n", sf->label, v,
				sf->suffix);
	}
}

void text_version(FILE *f, const struct snapshot *s)
{
	char name[64];

	fprintf(f, "hmmuctl  %s (git %s)\n", HMMU_BUILD_VERSION,
		HMMU_BUILD_COMMIT);
	fprintf(f, "libhmmu  %s\n", hmmu_version());
	fprintf(f, "hmmud    %s\n",
		*s->daemon_version ?
			text_name(name, s->daemon_version, sizeof(name) - 1) :
			"(did not say: older than 0.1.0's protocol 3)");
}
