/* SPDX-License-Identifier: MIT */
/*
 * hmmuctl: what the daemon holds, for a person at a terminal, for scripts
 * (--json) and for monitoring (metrics).
 *
 *   hmmuctl [--socket PATH] [--json] devices|processes|mirrors|stats
 *   hmmuctl [--socket PATH] metrics
 *   hmmuctl [--socket PATH] [--json] watch [-n SECONDS] [--count N]
 *   hmmuctl [--socket PATH] [--json] version
 *   hmmuctl --version | --help
 *
 * This file reads the options and runs the command; what is read from the
 * daemon is in snapshot.c, each way of showing it in a file of its own
 * (output.h).
 */
#include <hmmu/hmmu.h>

#include "hmmu_build_info.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "output.h"

/* watch's default interval, and the range it accepts. */
#define WATCH_INTERVAL_S 2.0
#define WATCH_INTERVAL_MIN_S 0.01
#define WATCH_INTERVAL_MAX_S 86400.0

static const char usage_lines[] =
	"usage: hmmuctl [--socket PATH] [--json] devices|processes|mirrors|stats\n"
	"       hmmuctl [--socket PATH] metrics\n"
	"       hmmuctl [--socket PATH] [--json] watch [-n SECONDS] [--count N]\n"
	"       hmmuctl [--socket PATH] [--json] version\n"
	"       hmmuctl --version | --help\n";

static int help(void)
{
	fputs(usage_lines, stdout);
	fputs("\n"
	      "What hmmud holds: for a person at a terminal, for scripts (--json)\n"
	      "and for monitoring (metrics).\n"
	      "\n"
	      "Commands:\n"
	      "  devices    the devices hmmud offers: name, model, memory, NUMA node, page size\n"
	      "  processes  the processes with registered mirrors: pid, uid, mirrors\n"
	      "  mirrors    the registered mirrors: pid, uid, device, pages the device holds\n"
	      "  stats      the daemon's counters: connections, faults, invalidations,\n"
	      "             migrations, releases, pages in device page tables and memory\n"
	      "  metrics    the counters and gauges, per device where they are kept so,\n"
	      "             in the Prometheus text format (hmmu_*; counters end in _total)\n"
	      "  watch      refresh processes, mirrors, device memory use and faults/s\n"
	      "             like top; without a terminal, frames follow one another,\n"
	      "             separated by a blank line; SIGINT or SIGTERM ends it\n"
	      "  version    hmmuctl's, libhmmu's and the daemon's versions\n"
	      "\n"
	      "Options:\n"
	      "  -s, --socket PATH       the daemon's socket (default: $HMMU_SOCKET, else\n"
	      "                          " HMMU_DEFAULT_SOCKET ")\n"
	      "  -j, --json              one JSON document on stdout instead of a table\n"
	      "                          (watch: one document per frame, one per line)\n"
	      "  -n, --interval SECONDS  watch: time between frames (default 2; fractions\n"
	      "                          allowed, 0.01 to 86400)\n"
	      "  -c, --count N           watch: stop after N frames (default: never)\n"
	      "  -V, --version           hmmuctl's version and commit, and libhmmu's version\n"
	      "  -h, --help              this help\n"
	      "\n"
	      "A user other than root sees its own processes and mirrors, and its own\n"
	      "share of the counters.\n"
	      "\n"
	      "Exit status: 0 on success, 1 if a call to hmmud (or writing the output)\n"
	      "failed, 2 on a usage error.\n",
	      stdout);
	return output_flush();
}

/* A usage error: the usage lines on stderr, exit status 2. */
static int usage(void)
{
	fputs(usage_lines, stderr);
	return 2;
}

static int __attribute__((format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("hmmuctl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return usage();
}

int fail(const char *what, int err)
{
	const char *detail = hmmu_error_detail();

	fprintf(stderr, "hmmuctl: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	return 1;
}

int output_flush(void)
{
	int err = fflush(stdout) == EOF ? errno : ferror(stdout) ? EIO : 0;

	if (!err)
		return 0;
	fprintf(stderr, "hmmuctl: write to standard output: %s\n", strerror(err));
	return 1;
}

static bool parse_interval(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end || errno || !isfinite(v) ||
	    v < WATCH_INTERVAL_MIN_S || v > WATCH_INTERVAL_MAX_S)
		return false;
	*out = v;
	return true;
}

static bool parse_count(const char *s, unsigned long *out)
{
	char *end;
	unsigned long v;

	/* strtoul() would take "-1" as ULONG_MAX. */
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (*end || errno || v == 0)
		return false;
	*out = v;
	return true;
}

struct command {
	const char *name;
	unsigned parts; /* enum snapshot_part: what it reads */
	void (*text)(FILE *f, const struct snapshot *s);
	void (*json)(struct json *j, const struct snapshot *s);
};

static const struct command commands[] = {
	{ "devices", SNAP_DEVICES, text_devices, json_devices },
	{ "processes", SNAP_PROCESSES, text_processes, json_processes },
	{ "mirrors", SNAP_MIRRORS, text_mirrors, json_mirrors },
	{ "stats", SNAP_STATS, text_stats, json_stats },
	/* The format is already for machines: no --json. */
	{ "metrics", SNAP_STATS | SNAP_DEVICES | SNAP_MIRRORS, metrics_write,
	  NULL },
	/* watch_run() reads and shows its own. */
	{ "watch", SNAP_ALL, NULL, NULL },
	{ "version", SNAP_VERSION, text_version, json_version },
};

static int show(struct hmmu *h, const struct command *c, bool json)
{
	struct snapshot s;
	int err = snapshot_take(h, c->parts, &s);

	if (err) {
		err = fail(s.failed, err);
		snapshot_free(&s);
		return err;
	}
	if (json) {
		struct json j;

		json_init(&j, stdout, 2);
		c->json(&j, &s);
		json_finish(&j);
	} else {
		c->text(stdout, &s);
	}
	snapshot_free(&s);
	return output_flush();
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "interval", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'c' },
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct watch_options watch = { .interval_s = WATCH_INTERVAL_S };
	bool json = false, version = false, watch_options = false;
	const struct command *command = NULL;
	struct hmmu *h;
	int c, err, ret;

	opterr = 0; /* its messages would name argv[0], not hmmuctl */
	while ((c = getopt_long(argc, argv, ":s:jn:c:Vh", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			watch.socket = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'n':
			if (!parse_interval(optarg, &watch.interval_s))
				return usage_error("--interval: '%s' is not a number of seconds from %g to %g",
						   optarg, WATCH_INTERVAL_MIN_S,
						   WATCH_INTERVAL_MAX_S);
			watch_options = true;
			break;
		case 'c':
			if (!parse_count(optarg, &watch.count))
				return usage_error("--count: '%s' is not a whole number above 0",
						   optarg);
			watch_options = true;
			break;
		case 'V':
			version = true;
			break;
		case 'h':
			return help();
		case ':':
			return usage_error("option '%s' needs an argument",
					   argv[optind - 1]);
		default:
			if (optopt)
				return usage_error("unknown option '-%c'", optopt);
			return usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
	if (version) {
		printf("hmmuctl %s (%s), libhmmu %s\n", HMMU_BUILD_VERSION,
		       HMMU_BUILD_COMMIT, hmmu_version());
		return output_flush();
	}
	if (optind == argc)
		return usage_error("no command given");
	if (optind < argc - 1)
		return usage_error("one command at a time: '%s' after '%s'",
				   argv[optind + 1], argv[optind]);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[optind], commands[i].name) == 0)
			command = &commands[i];
	if (!command)
		return usage_error("unknown command '%s'", argv[optind]);
	if (json && strcmp(command->name, "metrics") == 0)
		return usage_error("metrics has no --json (its format is Prometheus text; --json stats has the counters)");
	if (watch_options && strcmp(command->name, "watch") != 0)
		return usage_error("--interval and --count are options of watch");
	watch.json = json;

	err = hmmu_connect(watch.socket, &h);
	if (err)
		return fail("connect", err);
	if (strcmp(command->name, "watch") == 0)
		ret = watch_run(h, &watch);
	else
		ret = show(h, command, json);
	hmmu_disconnect(h);
	return ret;
}
