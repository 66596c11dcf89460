/* SPDX-License-Identifier: MIT */
/*
 * hmmuctl watch: what the daemon holds, refreshed like top. Each frame
 * reads a whole snapshot; the rates (faults/s...) are the counters' growth
 * since the previous frame over the CLOCK_MONOTONIC time between the two
 * reads of the counters, so a slow frame does not skew them. The first
 * frame has no rates yet.
 *
 * On a terminal each frame replaces the last (cursor home, clear screen)
 * and the lists are cut to the window's height; otherwise frames follow
 * one another, a blank line between them, whole, so that they can be
 * logged and tested. With --json, each frame is one JSON document on one
 * line (JSON Lines).
 *
 * SIGINT and SIGTERM end it after the frame being drawn, with status 0.
 * The handler resets itself: a second signal kills hmmuctl at once, should
 * a call to a hung daemon never return.
 */
#include "output.h"

#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void catch_stop(void)
{
	struct sigaction sa = { .sa_handler = on_stop, .sa_flags = SA_RESETHAND };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static double seconds(const struct timespec *ts)
{
	return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return seconds(&ts);
}

/*
 * Sleep until @deadline (CLOCK_MONOTONIC seconds) or a stop signal. The
 * signals are blocked but inside ppoll(), which unblocks them atomically:
 * one that comes after the check and before the wait still ends the wait.
 */
static void wait_until(double deadline)
{
	sigset_t stop, old;

	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	sigprocmask(SIG_BLOCK, &stop, &old);
	while (!stop_signal) {
		double left = deadline - now();
		struct timespec ts;

		if (left <= 0)
			break;
		ts.tv_sec = (time_t)left;
		ts.tv_nsec = (long)((left - (double)ts.tv_sec) * 1e9);
		ppoll(NULL, 0, &ts, &old);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

/* Counter @f's growth per second from @prev to @cur; NAN if unknown. */
static double rate(const struct stat_field *f, const struct snapshot *prev,
		   const struct snapshot *cur)
{
	double elapsed;
	uint64_t a, b;

	if (!f || !prev || !stat_value(prev, f, &a) || !stat_value(cur, f, &b))
		return NAN;
	elapsed = seconds(&cur->stats_at) - seconds(&prev->stats_at);
	if (elapsed <= 0)
		return NAN;
	/* Counters never go back; if one did, count from zero, as Prometheus. */
	return (double)(b >= a ? b - a : b) / elapsed;
}

static const char *rate_text(char out[32], double r)
{
	if (isnan(r))
		snprintf(out, 32, "-");
	else
		snprintf(out, 32, "%.1f", r);
	return out;
}

static uint64_t stat_or_zero(const struct snapshot *s, const char *key)
{
	const struct stat_field *f = stat_field_find(key);
	uint64_t v = 0;

	if (f)
		stat_value(s, f, &v);
	return v;
}

static const char *socket_shown(const struct watch_options *o)
{
	const char *env = getenv("HMMU_SOCKET");

	if (o->socket)
		return o->socket;
	return env && *env ? env : HMMU_DEFAULT_SOCKET;
}

/* Rows of the terminal on stdout, 0 if unknown. */
static unsigned terminal_rows(void)
{
	struct winsize ws;

	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0)
		return 0;
	return ws.ws_row;
}

static void text_device_use(FILE *f, const struct snapshot *s)
{
	char name[64], model[64], mem[32];

	fprintf(f, "%-12s %-10s %10s %5s %8s %13s\n", "DEVICE", "MODEL",
		"MEMORY", "NODE", "MIRRORS", "DEVICE PAGES");
	for (unsigned i = 0; i < s->ndevices; i++) {
		const struct hmmu_device_info *d = &s->devices[i];
		unsigned mirrors;
		uint64_t pages;

		snapshot_device_use(s, d->name, &mirrors, &pages);
		fprintf(f, "%-12s %-10s %10s %5d %8u %13" PRIu64 "\n",
			text_name(name, d->name, sizeof(d->name)),
			text_name(model, d->model, sizeof(d->model)),
			text_bytes(mem, d->mem_bytes), d->numa_node, mirrors,
			pages);
	}
}

/* Lines of a text frame besides the process and mirror rows. */
#define FRAME_FIXED_LINES 12

static void text_frame(FILE *f, const struct watch_options *o,
		       const struct snapshot *prev, const struct snapshot *cur,
		       unsigned rows)
{
	char clock[16], r1[32], r2[32], r3[32], used[32], total[32];
	uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE), mem = 0;
	unsigned process_rows = UINT32_MAX, mirror_rows = UINT32_MAX;
	time_t t = time(NULL);
	struct tm tm;

	if (!localtime_r(&t, &tm) || !strftime(clock, sizeof(clock), "%H:%M:%S", &tm))
		snprintf(clock, sizeof(clock), "?");
	for (unsigned i = 0; i < cur->ndevices; i++)
		mem += cur->devices[i].mem_bytes;

	fprintf(f, "hmmud %s  %s  every %gs\n", socket_shown(o), clock,
		o->interval_s);
	fprintf(f, "connections %" PRIu64 "  processes %" PRIu64
		   "  mirrors %" PRIu64 "  releases %" PRIu64 "\n",
		stat_or_zero(cur, "connections"), stat_or_zero(cur, "processes"),
		stat_or_zero(cur, "mirrors"), stat_or_zero(cur, "releases"));
	fprintf(f, "faults/s: device %s  cpu %s   invalidations/s: %s\n",
		rate_text(r1, rate(stat_field_find("device_faults"), prev, cur)),
		rate_text(r2, rate(stat_field_find("cpu_faults"), prev, cur)),
		rate_text(r3, rate(stat_field_find("invalidations"), prev, cur)));
	fprintf(f, "migrated pages/s: to device %s  to system %s\n",
		rate_text(r1, rate(stat_field_find("migrated_to_device_pages"),
				   prev, cur)),
		rate_text(r2, rate(stat_field_find("migrated_to_system_pages"),
				   prev, cur)));
	fprintf(f, "device memory: %s of %s used by migrated pages; "
		   "%" PRIu64 " pages in device page tables\n",
		text_bytes(used, stat_or_zero(cur, "device_mem_pages") * page),
		text_bytes(total, mem), stat_or_zero(cur, "device_pages"));

	if (rows) {
		/* What the window has room for, a third of it for processes. */
		unsigned fixed = FRAME_FIXED_LINES + cur->ndevices;
		unsigned room = rows > fixed + 2 ? rows - fixed : 2;

		process_rows = room / 3 ? room / 3 : 1;
		if (process_rows > cur->nprocesses)
			process_rows = cur->nprocesses ? cur->nprocesses : 1;
		mirror_rows = room > process_rows ? room - process_rows : 1;
	}
	fputc('\n', f);
	text_device_use(f, cur);
	fputc('\n', f);
	text_process_rows(f, cur, process_rows);
	fputc('\n', f);
	text_mirror_rows(f, cur, mirror_rows);
}

static void json_frame(FILE *f, const struct snapshot *prev,
		       const struct snapshot *cur)
{
	char when[32], key[64];
	time_t t = time(NULL);
	struct json j;
	struct tm tm;

	if (!gmtime_r(&t, &tm) ||
	    !strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
		when[0] = '\0';
	json_init(&j, f, 0);
	json_begin_object(&j);
	json_member_string(&j, "time", when, sizeof(when));
	json_key(&j, "elapsed_s");
	if (prev)
		json_double(&j, seconds(&cur->stats_at) - seconds(&prev->stats_at), 3);
	else
		json_null(&j);
	json_key(&j, "rates");
	json_begin_object(&j);
	for (size_t i = 0; i < stat_field_count; i++) {
		if (stat_fields[i].kind != STAT_COUNTER)
			continue;
		snprintf(key, sizeof(key), "%s_per_s", stat_fields[i].key);
		json_key(&j, key);
		json_double(&j, rate(&stat_fields[i], prev, cur), 3);
	}
	json_end_object(&j);
	json_key(&j, "stats");
	json_begin_object(&j);
	json_stats_members(&j, cur);
	json_end_object(&j);
	json_key(&j, "devices");
	json_begin_array(&j);
	for (unsigned i = 0; i < cur->ndevices; i++) {
		unsigned mirrors;
		uint64_t pages;

		snapshot_device_use(cur, cur->devices[i].name, &mirrors, &pages);
		json_begin_object(&j);
		json_device_members(&j, &cur->devices[i]);
		json_member_uint(&j, "mirrors", mirrors);
		json_member_uint(&j, "device_pages", pages);
		json_end_object(&j);
	}
	json_end_array(&j);
	json_key(&j, "processes");
	json_process_array(&j, cur);
	json_key(&j, "mirrors");
	json_mirror_array(&j, cur);
	json_end_object(&j);
	json_finish(&j);
}

int watch_run(struct hmmu *h, const struct watch_options *o)
{
	bool tty = !o->json && isatty(STDOUT_FILENO);
	struct snapshot prev, cur;
	bool have_prev = false;
	double next = now();
	int ret = 0;

	catch_stop();
	memset(&prev, 0, sizeof(prev));
	for (unsigned long frame = 0; !o->count || frame < o->count; frame++) {
		int err;

		if (frame)
			wait_until(next);
		if (stop_signal)
			break;
		err = snapshot_take(h, SNAP_ALL, &cur);
		if (err) {
			ret = fail(cur.failed, err);
			snapshot_free(&cur);
			break;
		}
		if (o->json) {
			json_frame(stdout, have_prev ? &prev : NULL, &cur);
		} else {
			if (tty)
				fputs("\033[H\033[2J", stdout);
			else if (frame)
				fputc('\n', stdout);
			text_frame(stdout, o, have_prev ? &prev : NULL, &cur,
				   tty ? terminal_rows() : 0);
		}
		snapshot_free(&prev);
		prev = cur;
		have_prev = true;
		ret = output_flush();
		if (ret)
			break;
		/* Keep the beat; after a frame slower than it, start anew. */
		next += o->interval_s;
		if (next < now())
			next = now();
	}
	snapshot_free(&prev);
	return ret;
}
