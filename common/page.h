/* SPDX-License-Identifier: MIT */
/*
 * The host page size, in one place. getpagesize() reads a value the
 * dynamic loader set before main(): no system call and no lazily set
 * static that two threads could race on.
 */
#ifndef HMMU_PAGE_H
#define HMMU_PAGE_H

#include <stdint.h>
#include <unistd.h>

static inline uint64_t page_size(void)
{
	return (uint64_t)getpagesize();
}

static inline uint64_t page_down(uint64_t a)
{
	return a & ~(page_size() - 1);
}

/* Rounds up; the caller checks for wrap-around where @a comes from a client. */
static inline uint64_t page_up(uint64_t a)
{
	return (a + page_size() - 1) & ~(page_size() - 1);
}

#endif
