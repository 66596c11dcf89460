/* SPDX-License-Identifier: MIT */
/*
 * A client's VMAs, one after the other from an address on. With
 * PROCMAP_QUERY (Linux 6.11) each is one ioctl on the process's
 * /proc/PID/maps, however many VMAs the process has; before that, the file
 * is parsed, which costs a read of every VMA below the address too.
 */
#ifndef HMMUD_VMAS_H
#define HMMUD_VMAS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct process;

struct vma {
	uint64_t start, end;
	bool read, write, shared;
	uint64_t inode; /* 0 for anonymous memory */
};

struct vma_cursor {
	struct process *p;
	uint64_t next; /* the next VMA ends above this */
	FILE *f;       /* the fallback's copy of the maps file, as a stream */
	char *text;    /* that copy */
};

void vma_cursor_init(struct vma_cursor *c, struct process *p, uint64_t addr);
/* The next VMA: 1 if found, 0 past the last one, -ESRCH if the process is gone. */
int vma_next(struct vma_cursor *c, struct vma *out);
void vma_cursor_done(struct vma_cursor *c);

#endif
