/* SPDX-License-Identifier: MIT */
#include "meter.h"
#include "bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define REDRAW_NS 250000000ull /* at most four redraws a second */
#define ETA_AFTER_NS 1000000000ull /* a rate over less says little */

unsigned meter_countdown;

static struct {
	int tty;		  /* stderr is a terminal */
	unsigned cols;		  /* its width; the line stays within it */
	const char *name;	  /* NULL: no class running */
	unsigned pos, npos;
	const struct samples *s;
	uint64_t total;
	const char *unit;
	const char *floor;	  /* being measured now, or NULL */
	uint64_t t0, last;	  /* the class's start, the last redraw */
	int drawn;		  /* columns on screen, to erase */
} m;

void meter_init(void)
{
	struct winsize ws;

	m.tty = isatty(STDERR_FILENO);
	m.cols = 80;
	if (m.tty && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col)
		m.cols = ws.ws_col;
}

/* "45 s", "2 min 05 s" */
static void duration(char *buf, size_t len, uint64_t ns)
{
	uint64_t s = (ns + 500000000ull) / 1000000000ull;

	if (s < 1)
		snprintf(buf, len, "<1 s");
	else if (s < 60)
		snprintf(buf, len, "%" PRIu64 " s", s);
	else
		snprintf(buf, len, "%" PRIu64 " min %02" PRIu64 " s", s / 60,
			 s % 60);
}

static void draw(uint64_t now)
{
	uint64_t done = m.s->n < m.total ? m.s->n : m.total;
	uint64_t elapsed = now - m.t0;
	char line[256], eta[32];
	int len;

	len = snprintf(line, sizeof(line), "hmmu-bench: [%u/%u] %s %" PRIu64
		       "/%" PRIu64 " %s", m.pos, m.npos, m.name, done, m.total,
		       m.unit);
	if (m.floor && len < (int)sizeof(line))
		len += snprintf(line + len, sizeof(line) - (size_t)len,
				" (floor %s)", m.floor);
	/* The rate so far, floor included: they alternate to the end. */
	if (done && done < m.total && elapsed >= ETA_AFTER_NS &&
	    len < (int)sizeof(line)) {
		duration(eta, sizeof(eta),
			 (uint64_t)((double)elapsed * (double)(m.total - done) /
				    (double)done));
		len += snprintf(line + len, sizeof(line) - (size_t)len,
				", ETA %s", eta);
	}
	if (len >= (int)sizeof(line))
		len = (int)sizeof(line) - 1;
	/* A line that wraps could not be redrawn with '\r'. */
	if (len > (int)m.cols - 1)
		len = (int)m.cols - 1;
	fprintf(stderr, "\r%.*s%*s", len, line,
		m.drawn > len ? m.drawn - len : 0, "");
	m.drawn = len > m.drawn ? len : m.drawn;
	m.last = now;
}

void meter_begin(const char *name, unsigned pos, unsigned npos,
		 const struct samples *s, uint64_t total, const char *unit)
{
	if (!m.tty)
		return;
	m.name = name;
	m.pos = pos;
	m.npos = npos;
	m.s = s;
	m.total = total;
	m.unit = unit;
	m.floor = NULL;
	m.t0 = m.last = now_ns();
	meter_countdown = METER_EVERY;
}

void meter_update(void)
{
	uint64_t now;

	if (!m.name)
		return;
	meter_countdown = METER_EVERY;
	now = now_ns();
	if (now - m.last >= REDRAW_NS)
		draw(now);
}

void meter_floor(const char *name)
{
	if (!m.name)
		return;
	m.floor = name;
	meter_update();
}

void meter_clear(void)
{
	if (!m.drawn)
		return;
	fprintf(stderr, "\r%*s\r", m.drawn, "");
	m.drawn = 0;
}

void meter_end(void)
{
	meter_clear();
	m.name = NULL;
	meter_countdown = 0;
}
