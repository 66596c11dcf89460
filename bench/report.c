/* SPDX-License-Identifier: MIT */
#include "report.h"
#include "scaling.h"
#include "hmmu_build_info.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int measured(const struct result *r)
{
	return !r->skipped[0] && r->sum.count;
}

int target_met(const struct report *rp, enum class_id id)
{
	const struct class_def *d = &class_defs[id];
	double ratio = rp->classes[id].ratio;

	if (!d->target_op || !measured(&rp->classes[id]) || isnan(ratio))
		return -1;
	return d->target_op == '<' ? ratio <= d->target : ratio >= d->target;
}

static const char *floor_name(int floor)
{
	return floor == F_NONE ? "none" : floor_defs[floor].name;
}

/* Microseconds, 3 or 4 significant digits, into @buf. */
static const char *us(char *buf, size_t len, uint64_t ns)
{
	double v = (double)ns / 1000.0;

	if (v < 10)
		snprintf(buf, len, "%.2f", v);
	else if (v < 1000)
		snprintf(buf, len, "%.1f", v);
	else
		snprintf(buf, len, "%.0f", v);
	return buf;
}

/* ---- terminal ------------------------------------------------------------ */

static void row(FILE *f, const struct result *r, const char *floor,
		const char *ratio, const char *target)
{
	char b[7][16];

	if (!measured(r)) {
		fprintf(f, "%-22s  %s\n", r->name,
			r->skipped[0] ? r->skipped : "not measured");
		return;
	}
	fprintf(f, "%-22s %6" PRIu64 " %7s %7s %7s %7s %7s %8s", r->name,
		r->sum.count, us(b[0], 16, r->sum.min), us(b[1], 16, r->sum.p50),
		us(b[2], 16, r->sum.p90), us(b[3], 16, r->sum.p99),
		us(b[4], 16, r->sum.p999), us(b[5], 16, r->sum.max));
	if (r->gbps > 0)
		snprintf(b[6], 16, "%.2f", r->gbps);
	else
		strcpy(b[6], "");
	fprintf(f, " %6s", b[6]);
	if (floor)
		fprintf(f, "  %-18s %7s  %s", floor, ratio, target);
	fputc('\n', f);
}

void report_table(FILE *f, const struct report *rp)
{
	const struct config *cfg = rp->cfg;

	fprintf(f, "\nhmmu-bench: %" PRIu64 " samples a class, stream %" PRIu64
		" MiB x %u; %s; %ld CPUs, Linux %s\n\n",
		cfg->pages, cfg->stream_mib, cfg->stream_reps, rp->daemon,
		rp->cpus, rp->kernel);
	fprintf(f, "%-22s %6s %7s %7s %7s %7s %7s %8s %6s  %-18s %7s  %s\n",
		"class (us)", "count", "min", "p50", "p90", "p99", "p99.9",
		"max", "GB/s", "floor", "ratio", "target");
	for (int i = 0; i < NCLASSES; i++) {
		const struct class_def *d = &class_defs[i];
		const struct result *r = &rp->classes[i];
		char ratio[16] = "-", target[32] = "-";
		int met = target_met(rp, i);

		if (!isnan(r->ratio))
			snprintf(ratio, sizeof(ratio), "%.2fx", r->ratio);
		if (d->target_op)
			snprintf(target, sizeof(target), "%s %.2fx%s",
				 d->target_op == '<' ? "<=" : ">=", d->target,
				 met < 0 ? "" : met ? "  met" : "  MISSED");
		row(f, r, floor_name(d->floor), ratio, target);
	}
	fprintf(f, "\n%-22s %6s %7s %7s %7s %7s %7s %8s %6s\n", "floor (us)",
		"count", "min", "p50", "p90", "p99", "p99.9", "max", "GB/s");
	for (int i = 0; i < NFLOORS; i++)
		row(f, &rp->floors[i], NULL, NULL, NULL);
	fprintf(f,
		"\nTimes in microseconds; device-stream and pvm-read-bulk per 4 KiB "
		"page (one sample a repetition).\nratio: p50 over the floor's p50; "
		"device-stream: GB/s over the floor's GB/s. Derived floors add\n"
		"percentiles. What each line measures: docs/benchmark.md.\n");
}

/* A class's or floor's figure for the summary: "75.4 us", "0.51 GB/s". */
static const char *figure(char *buf, size_t len, const struct result *r,
			  enum ratio_kind kind)
{
	char v[16];

	if (kind == RATIO_BANDWIDTH)
		snprintf(buf, len, "%.2f GB/s", r->gbps);
	else
		snprintf(buf, len, "%s us", us(v, sizeof(v), r->sum.p50));
	return buf;
}

/*
 * The classes that have a target, each with its floor's figure of this
 * run, the ratio and the verdict. A class not run (--classes) has no row;
 * one that was run but could not be measured, or whose floor could not,
 * says why and gets no verdict: "missed" means measured and missed.
 */
void report_summary(FILE *f, const struct report *rp)
{
	unsigned rows = 0, judged = 0, met_count = 0, bandwidth = 0;
	char a[24], b[24];

	for (int i = 0; i < NCLASSES; i++) {
		const struct class_def *d = &class_defs[i];
		const struct result *r = &rp->classes[i];
		const struct result *fl =
			d->floor == F_NONE ? NULL : &rp->floors[d->floor];
		int met = target_met(rp, i);

		if (!d->target_op || !(rp->cfg->classes & (1u << i)))
			continue;
		if (!rows++)
			fprintf(f, "fault latency against the floor (the bare "
				   "kernel operation, same run):\n"
				   "  %-20s %9s  %-17s %9s  %7s  %s\n",
				"class", "p50", "floor", "p50", "ratio", "target");
		if (!measured(r)) {
			fprintf(f, "  %-20s no figure: %s\n", r->name,
				r->skipped[0] ? r->skipped : "not measured");
			continue;
		}
		bandwidth |= d->kind == RATIO_BANDWIDTH;
		fprintf(f, "  %-20s %9s  %-17s ", r->name,
			figure(a, sizeof(a), r, d->kind), floor_name(d->floor));
		if (met < 0) {
			const char *why = !fl		  ? "no floor" :
					  fl->skipped[0]  ? fl->skipped :
					  measured(fl)	  ? "no ratio: a zero figure" :
							    "not measured";

			/* A floor the kernel cannot give says "no figure" itself. */
			fprintf(f, "%s%s\n",
				strncmp(why, "no figure: ", 11) ? "no figure: " : "",
				why);
			continue;
		}
		judged++;
		met_count += met;
		fprintf(f, "%9s  %6.2fx  %s %.2fx  %s\n",
			figure(b, sizeof(b), fl, d->kind), r->ratio,
			d->target_op == '<' ? "<=" : ">=", d->target,
			met ? "met" : "missed");
	}
	if (!rows) {
		fprintf(f, "hmmu-bench: none of the classes run has a target "
			   "(see --classes)\n");
		return;
	}
	if (bandwidth)
		fprintf(f, "  (device-stream: GB/s, not p50; its ratio is GB/s "
			   "over the floor's)\n");
	fprintf(f, "%u of %u targets met; every class and floor: hmmu-bench "
		   "without --summary\n", met_count, judged);
}

/* ---- --clients ----------------------------------------------------------- */

/* "dmirror0 x2, dmirror1 x2": the devices the clients mirrored on. */
static void point_devices(FILE *f, const struct scaling *sc,
			  const struct scaling_point *pt)
{
	for (unsigned i = 0; i < sc->clients; i++) {
		unsigned n = 0, first = 1;

		for (unsigned k = 0; k < i && first; k++)
			first = strcmp(pt->c[k].device, pt->c[i].device) != 0;
		if (!first)
			continue;
		for (unsigned k = i; k < sc->clients; k++)
			n += strcmp(pt->c[k].device, pt->c[i].device) == 0;
		fprintf(f, "%s%s x%u", i ? ", " : "", pt->c[i].device, n);
	}
}

void report_scaling(FILE *f, const struct report *rp)
{
	const struct scaling *sc = rp->scaling;
	const struct scaling_point *shown = NULL;

	fprintf(f, "\nhmmu-bench --clients %u: each client a process with its "
		"own connection, faulting\n%" PRIu64 " cold pages in turn for "
		"%.3g s a worker count", sc->clients, sc->pages, sc->seconds);
	if (sc->rounds > 1)
		fprintf(f, " (%u blocks of %.3g s, alternating)", sc->rounds,
			sc->seconds / sc->rounds);
	if (sc->queue)
		fprintf(f, ",\n%u reads in flight each, through a submission "
			"queue (hmmu_queue_read)", sc->queue);
	fprintf(f, ";\n%s; %ld CPUs, Linux %s\n\n", sc->daemon, rp->cpus,
		rp->kernel);
	fprintf(f, "%-8s %10s %12s %12s %10s %8s %8s\n", "workers", "faults/s",
		"client min", "client max", "faults", "window", "re-cold");
	for (unsigned i = 0; i < sc->npoints; i++) {
		const struct scaling_point *pt = &sc->pt[i];
		char w[16];

		if (pt->workers)
			snprintf(w, sizeof(w), "%u", pt->workers);
		else
			strcpy(w, "own");
		if (pt->skipped[0]) {
			fprintf(f, "%-8s  %s\n", w, pt->skipped);
			continue;
		}
		shown = pt;
		fprintf(f, "%-8s %10.0f %12.0f %12.0f %10" PRIu64 " %7.2fs %7.1f%%\n",
			w, pt->faults_per_sec, pt->min_per_client,
			pt->max_per_client, pt->faults, pt->seconds,
			100 * pt->recold_share);
	}
	if (shown) {
		fputs("\ndevices: ", f);
		point_devices(f, sc, shown);
		fputc('\n', f);
	}
	if (!isnan(sc->ratio))
		fprintf(f, "scaling, 2 workers over 1: %.2fx\n", sc->ratio);
	fprintf(f,
		"\nfaults/s: all clients' device faults over the window (start "
		"signal to the last\nclient's last read; summed over the "
		"blocks); client min/max: each client's own\nrate; re-cold: "
		"share of the clients' time spent making their buffers cold\n"
		"again. See docs/benchmark.md.\n");
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_number(FILE *f, double v)
{
	if (isnan(v) || isinf(v))
		fputs("null", f);
	else
		fprintf(f, "%.6g", v);
}

static void json_figures(FILE *f, const struct result *r)
{
	fprintf(f,
		"\"count\": %" PRIu64 ", \"min_ns\": %" PRIu64
		", \"p50_ns\": %" PRIu64 ", \"p90_ns\": %" PRIu64
		", \"p99_ns\": %" PRIu64 ", \"p999_ns\": %" PRIu64
		", \"max_ns\": %" PRIu64,
		r->sum.count, r->sum.min, r->sum.p50, r->sum.p90, r->sum.p99,
		r->sum.p999, r->sum.max);
	if (r->bytes) {
		fprintf(f, ", \"bytes\": %" PRIu64 ", \"gbps\": ", r->bytes);
		json_number(f, r->gbps);
	}
	for (unsigned i = 0; i < r->nextra; i++) {
		fprintf(f, ", \"%s\": ", r->extra[i].key);
		json_number(f, r->extra[i].value);
	}
}

/*
 * Open entry @i of a class or floor object with its name. A result that
 * was not measured gets its reason and a closed entry: returns 0. Else its
 * figures, with the entry left open for more: returns 1.
 */
static int json_entry(FILE *f, int i, const struct result *r)
{
	fprintf(f, "%s\n    ", i ? "," : "");
	json_string(f, r->name);
	fputs(": {", f);
	if (!measured(r)) {
		fputs("\"skipped\": ", f);
		json_string(f, r->skipped[0] ? r->skipped : "not measured");
		fputc('}', f);
		return 0;
	}
	json_figures(f, r);
	return 1;
}

static void json_scaling_point(FILE *f, const struct scaling *sc,
			       const struct scaling_point *pt)
{
	if (pt->skipped[0]) {
		fputs("{\"skipped\": ", f);
		json_string(f, pt->skipped);
		fputc('}', f);
		return;
	}
	fputs("{\"faults_per_sec\": ", f);
	json_number(f, pt->faults_per_sec);
	fputs(", \"per_client\": [", f);
	for (unsigned i = 0; i < sc->clients; i++) {
		fputs(i ? ", " : "", f);
		json_number(f, pt->rate[i]);
	}
	fputs("], \"per_client_min\": ", f);
	json_number(f, pt->min_per_client);
	fputs(", \"per_client_max\": ", f);
	json_number(f, pt->max_per_client);
	fprintf(f, ", \"faults\": %" PRIu64 ", \"reads\": %" PRIu64
		", \"window_s\": ", pt->faults, pt->reads);
	json_number(f, pt->seconds);
	fputs(", \"recold_share\": ", f);
	json_number(f, pt->recold_share);
	fputs(", \"devices\": [", f);
	for (unsigned i = 0; i < sc->clients; i++) {
		fputs(i ? ", " : "", f);
		json_string(f, pt->c[i].device);
	}
	fputs("]}", f);
}

static void json_scaling(FILE *f, const struct scaling *sc)
{
	fprintf(f, "  \"scaling\": {\"clients\": %u, \"seconds\": ",
		sc->clients);
	json_number(f, sc->seconds);
	fprintf(f, ", \"rounds\": %u, \"pages\": %" PRIu64 ", \"queue\": %u, "
		"\"daemon\": ", sc->rounds, sc->pages, sc->queue);
	json_string(f, sc->daemon);
	fputs(",\n    \"workers\": {", f);
	for (unsigned i = 0; i < sc->npoints; i++) {
		const struct scaling_point *pt = &sc->pt[i];

		if (pt->workers)
			fprintf(f, "%s\n      \"%u\": ", i ? "," : "",
				pt->workers);
		else
			fprintf(f, "%s\n      \"own\": ", i ? "," : "");
		json_scaling_point(f, sc, pt);
	}
	fputs("},\n    \"ratio_2_over_1\": ", f);
	json_number(f, sc->ratio);
	fputs("}", f);
}

/* "classes" and "floors", without the newline after the last. */
static void json_classes(FILE *f, const struct report *rp)
{
	fputs("  \"classes\": {", f);
	for (int i = 0; i < NCLASSES; i++) {
		const struct class_def *d = &class_defs[i];
		const struct result *r = &rp->classes[i];
		int met = target_met(rp, i);

		if (!json_entry(f, i, r))
			continue;
		fputs(", \"floor\": ", f);
		json_string(f, floor_name(d->floor));
		fputs(", \"ratio\": ", f);
		json_number(f, r->ratio);
		if (d->target_op) {
			fprintf(f, ", \"target\": {\"op\": \"%s\", \"ratio\": ",
				d->target_op == '<' ? "<=" : ">=");
			json_number(f, d->target);
			fprintf(f, ", \"met\": %s}",
				met < 0 ? "null" : met ? "true" : "false");
		}
		fputc('}', f);
	}
	fputs("\n  },\n  \"floors\": {", f);
	for (int i = 0; i < NFLOORS; i++) {
		const struct floor_def *d = &floor_defs[i];
		const struct result *r = &rp->floors[i];

		if (!json_entry(f, i, r))
			continue;
		if (d->of[0] != F_NONE) {
			fputs(", \"derived\": \"", f);
			for (int k = 0; k < 2 && d->of[k] != F_NONE; k++)
				fprintf(f, "%s%g x %s", k ? " + " : "",
					d->factor[k], floor_defs[d->of[k]].name);
			fputs(", percentile by percentile\"", f);
		}
		fputc('}', f);
	}
	fputs("\n  }", f);
}

int report_json(const char *path, const struct report *rp)
{
	const struct config *cfg = rp->cfg;
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	int err;

	if (!f) {
		err = -errno;
		warnx_("cannot write %s: %s", path, strerror(errno));
		return err;
	}
	/*
	 * "format": the layout of this document. 2: "version" became the
	 * version of hmmu-bench (it was the format, 1), "commit" came.
	 */
	fputs("{\n  \"format\": 2,\n  \"version\": ", f);
	json_string(f, HMMU_BUILD_VERSION);
	fputs(",\n  \"commit\": ", f);
	json_string(f, HMMU_BUILD_COMMIT);
	fprintf(f, ",\n  \"config\": {\"pages\": %" PRIu64
		", \"stream_mib\": %" PRIu64 ", \"stream_reps\": %u, "
		"\"page_size\": %zu, \"cpus\": %ld, \"kernel\": ",
		cfg->pages, cfg->stream_mib, cfg->stream_reps, rp->page,
		rp->cpus);
	json_string(f, rp->kernel);
	fputs(", \"daemon\": ", f);
	json_string(f, rp->daemon);
	fputc('}', f);
	if (rp->classes) {
		fputs(",\n", f);
		json_classes(f, rp);
	}
	if (rp->scaling) {
		fputs(",\n", f);
		json_scaling(f, rp->scaling);
	}
	fputs("\n}\n", f);
	err = ferror(f) ? -EIO : 0;
	if (f == stdout)
		fflush(f);
	else if (fclose(f) != 0)
		err = -EIO;
	if (err)
		warnx_("writing %s failed", path);
	return err;
}

/* ---- the plot ---------------------------------------------------------- */

/* Where step @i of @n starts on the "nines" scale: -log10(1 - i/n). */
static double nines(size_t i, size_t n)
{
	return i ? -log10(1.0 - (double)i / (double)n) : 0.0;
}

/*
 * The percentile curve of sorted samples, for gnuplot's "with steps": x on
 * a "nines" scale, x = -log10(1 - q) (0: the minimum, 1: p90, 2: p99, 3:
 * p99.9), y in us. Sample i is the nearest-rank quantile (the table's) for
 * q in (i/n, (i+1)/n]: a step from nines(i, n) to nines(i + 1, n). The
 * last one, the maximum, would end at q = 1, infinitely far right: it
 * ends at @top instead, the panel's "max", where every curve of the panel
 * ends whatever its count. At most ~700 steps, evenly spread on the scale
 * (each of the tail's is its own).
 */
static int write_curve(const char *path, const struct samples *s, double top)
{
	FILE *f = fopen(path, "w");
	double end = log10((double)s->n); /* where the maximum's step starts */
	size_t last = (size_t)-1;

	if (!f)
		return -errno;
	for (int k = 0; k <= 700; k++) {
		double q = 1.0 - pow(10.0, -end * k / 700.0);
		size_t i = (size_t)(q * (double)s->n);

		if (i >= s->n)
			i = s->n - 1;
		if (i == last)
			continue;
		last = i;
		fprintf(f, "%.5f %.4f\n", nines(i, s->n), (double)s->v[i] / 1000.0);
	}
	/* The maximum's step, whatever the rounding above reached. */
	if (last != s->n - 1)
		fprintf(f, "%.5f %.4f\n", nines(s->n - 1, s->n),
			(double)s->v[s->n - 1] / 1000.0);
	fprintf(f, "%.5f %.4f\n", top, (double)s->v[s->n - 1] / 1000.0);
	return fclose(f) ? -errno : 0;
}

/* @s single-quoted for gnuplot (a quote is doubled). */
static void gp_quoted(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputc('\'', f);
		fputc(*s, f);
	}
	fputc('\'', f);
}

static int have_gnuplot(void)
{
	return system("command -v gnuplot >/dev/null 2>&1") == 0;
}

/* The nines axis up to the largest sample count of the panel. */
static void nines_axis(FILE *gp, double top)
{
	static const struct {
		const char *label;
		double x;
	} tics[] = { { "min", 0 }, { "50", 0.30103 }, { "90", 1 },
		     { "99", 2 },  { "99.9", 3 },	 { "99.99", 4 },
		     { "99.999", 5 } };
	const char *sep = "";

	fprintf(gp, "set xrange [0:%.4f]\nset xtics (", top);
	for (size_t i = 0; i < sizeof(tics) / sizeof(tics[0]); i++) {
		if (tics[i].x > top - 0.15)
			break;
		fprintf(gp, "%s'%s' %.5f", sep, tics[i].label, tics[i].x);
		sep = ", ";
	}
	fprintf(gp, "%s'max' %.4f)\n", sep, top);
}

/* The class's floor, if it was measured. */
static const struct result *measured_floor(const struct report *rp,
					   enum class_id id)
{
	int floor = class_defs[id].floor;

	return floor != F_NONE && measured(&rp->floors[floor]) ?
		       &rp->floors[floor] : NULL;
}

/*
 * The right end of a latency panel, "max": one step beyond the start of
 * the maximum's step of its curve with the most samples (N), as wide as
 * the step before it, log10(2N). A curve with fewer samples reaches its
 * maximum sooner and stays there: with n samples, all q past 1 - 1/n are
 * the maximum.
 */
static double panel_top(const struct report *rp, enum class_id id)
{
	const struct result *fl = measured_floor(rp, id);
	size_t n = rp->classes[id].s.n;
	double top;

	if (fl && fl->s.n > n)
		n = fl->s.n;
	top = log10(2.0 * (double)n);
	return top < 0.5 ? 0.5 : top;
}

static void plot_panel(FILE *gp, const char *dir, const struct report *rp,
		       enum class_id id)
{
	const struct class_def *d = &class_defs[id];
	const struct result *r = &rp->classes[id];
	const struct result *fl = measured_floor(rp, id);
	int met = target_met(rp, id);
	char p50[16], fp50[16];

	if (d->kind == RATIO_BANDWIDTH) {
		fprintf(gp, "set title \"%s: %.2f GB/s", r->name, r->gbps);
		if (!isnan(r->ratio))
			fprintf(gp, ", %.2fx the floor", r->ratio);
		if (met >= 0)
			fprintf(gp, " (target >= %.2fx: %s)", d->target,
				met ? "met" : "MISSED");
		fprintf(gp, "\"\n"
			    "unset logscale y\nset style fill solid 0.7\n"
			    "set boxwidth 0.5\nset yrange [0:*]\n"
			    "set xrange [-0.6:1.6]\nset ylabel 'GB/s (p50 of the repetitions)'\n"
			    "set xlabel ''\n"
			    "set xtics ('%s' 0, 'floor: %s' 1)\n",
			r->name, fl ? fl->name : "(none)");
		if (fl && d->target_op)
			fprintf(gp, "set arrow from -0.6,%.4f to 1.6,%.4f nohead "
				    "dt 3 lw 2 lc rgb '#cc0000'\n",
				d->target * fl->gbps, d->target * fl->gbps);
		fprintf(gp, "plot '-' using 1:2:3 with boxes lc rgb variable "
			    "notitle\n0 %.4f %d\n1 %.4f %d\ne\nunset arrow\n",
			r->gbps, 0x1f5fa8, fl ? fl->gbps : 0.0, 0x888888);
		return;
	}
	fprintf(gp, "set logscale y\nset yrange [*:*]\nset style fill empty\n"
		    "set ylabel 'latency (us)'\nset xlabel 'percentile'\n");
	nines_axis(gp, panel_top(rp, id));
	fprintf(gp, "set title \"%s: p50 %s us", r->name,
		us(p50, sizeof(p50), r->sum.p50));
	if (fl && !isnan(r->ratio))
		fprintf(gp, ", %.2fx the floor", r->ratio);
	if (met >= 0)
		fprintf(gp, " (target <= %.2fx: %s)", d->target,
			met ? "met" : "MISSED");
	fprintf(gp, "\"\nplot '%s/c%d.dat' using 1:2 with steps lw 2 "
		    "lc rgb '#1f5fa8' title '%s (p50 %s us)'",
		dir, id, r->name, p50);
	if (fl)
		fprintf(gp, ", '%s/f%d-c%d.dat' using 1:2 with steps lw 2 dt 2 "
			    "lc rgb '#888888' title 'floor: %s (p50 %s us)'",
			dir, d->floor, id, fl->name, us(fp50, sizeof(fp50), fl->sum.p50));
	if (fl && d->target_op)
		fprintf(gp, ", %.4f with lines dt 3 lw 2 lc rgb '#cc0000' "
			    "title 'target for p50: %.2fx the floor p50'",
			d->target * (double)fl->sum.p50 / 1000.0, d->target);
	fputc('\n', gp);
}

int report_plot(const char *path, const struct report *rp)
{
	char dir[] = "/tmp/hmmu-bench-plot-XXXXXX", file[128], cmd[256];
	int panels = 0, rows, err = 0;
	FILE *gp;

	if (!rp->classes) {
		warnx_("plot: no class was run");
		return -1;
	}
	if (!have_gnuplot()) {
		warnx_("gnuplot is not installed (Debian: apt-get install "
		       "gnuplot-nox): no plot written to %s", path);
		return 1;
	}
	if (!mkdtemp(dir)) {
		warnx_("plot: %s", strerror(errno));
		return -1;
	}
	for (int i = 0; i < NCLASSES; i++) {
		const struct class_def *d = &class_defs[i];
		struct result *r = &rp->classes[i];
		const struct result *fl = measured_floor(rp, i);

		if (!measured(r))
			continue;
		panels++;
		if (d->kind == RATIO_BANDWIDTH)
			continue;
		/*
		 * A floor several classes share gets a file per panel: its
		 * maximum's step ends at that panel's top.
		 */
		snprintf(file, sizeof(file), "%s/c%d.dat", dir, i);
		err = err ? err : write_curve(file, &r->s, panel_top(rp, i));
		if (fl) {
			snprintf(file, sizeof(file), "%s/f%d-c%d.dat", dir,
				 d->floor, i);
			err = err ? err : write_curve(file, &fl->s,
						      panel_top(rp, i));
		}
	}
	snprintf(file, sizeof(file), "%s/plot.gp", dir);
	gp = err ? NULL : fopen(file, "w");
	if (!gp || !panels) {
		warnx_("plot: %s", panels ? strerror(errno) : "nothing measured");
		err = -1;
		goto out;
	}
	rows = (panels + 1) / 2;
	fprintf(gp, "set terminal pngcairo size 1400,%d font 'sans,10'\n"
		    "set output ", 60 + 360 * rows);
	gp_quoted(gp, path);
	fprintf(gp, "\nset grid\nset key top left\n"
		    "set multiplot layout %d,2 title \"hmmu-bench: each fault class "
		    "(solid) against its floor, the bare kernel operation "
		    "(dashed); %ld CPUs, Linux %s\"\n",
		rows, rp->cpus, rp->kernel);
	for (int i = 0; i < NCLASSES; i++)
		if (measured(&rp->classes[i]))
			plot_panel(gp, dir, rp, i);
	fputs("unset multiplot\n", gp);
	if (fclose(gp)) {
		err = -1;
		goto out;
	}
	snprintf(cmd, sizeof(cmd), "gnuplot %s/plot.gp", dir);
	if (system(cmd) != 0) {
		warnx_("gnuplot failed; its script is kept in %s", dir);
		return -1;
	}
out:
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	(void)!system(cmd);
	return err ? -1 : 0;
}
