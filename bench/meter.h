/* SPDX-License-Identifier: MIT */
/*
 * The live progress line of a class: its name, samples done of the total,
 * what runs besides (its floor), and an ETA from the rate so far, e.g.
 *
 *   hmmu-bench: [1/9] device-fault 1536/4096 samples, ETA 3 s
 *   hmmu-bench: [1/9] device-fault 2048/4096 samples (floor pvm-read-4k+wp-4k), ETA 2 s
 *
 * Only on a terminal (stderr), redrawn in place with '\r' at most four
 * times a second, and erased when the class ends: nothing of it reaches a
 * pipe, a log, the table or the JSON.
 *
 * It must not weigh on what it reports. The classes call meter_tick()
 * between samples, never between the two clock reads of one; a tick is a
 * decrement, every METER_EVERY ticks a clock read, and a redraw (one write
 * to the terminal) at most every 250 ms.
 */
#ifndef HMMU_BENCH_METER_H
#define HMMU_BENCH_METER_H

#include "stats.h"

#include <stdint.h>

/* Ticks between two looks at the clock. */
#define METER_EVERY 16

/* The line is drawn only if stderr is a terminal; call once, first. */
void meter_init(void);

/*
 * Class @name starts, the @pos-th of @npos: @total samples (@unit: what
 * one is), counted as they come into @s (its result's samples). The line
 * shows once the class has run for 250 ms.
 */
void meter_begin(const char *name, unsigned pos, unsigned npos,
		 const struct samples *s, uint64_t total, const char *unit);
/* The class's floor @name is being measured now; NULL: the class again. */
void meter_floor(const char *name);
/* The class is done: the line is erased. */
void meter_end(void);
/* Erase the line before a message; the next redraw brings it back. */
void meter_clear(void);

/* meter_tick()'s slow path. */
void meter_update(void);
/* 0: no line (not a terminal, or no class running). */
extern unsigned meter_countdown;

static inline void meter_tick(void)
{
	if (meter_countdown && --meter_countdown == 0)
		meter_update();
}

#endif
