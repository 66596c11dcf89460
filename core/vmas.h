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

/* What kind of memory a VMA maps, as far as userfaultfd is concerned. */
enum vma_kind {
	VMA_ANON,    /* private or shared anonymous memory, [heap], [stack] */
	VMA_SHMEM,   /* shmem: memfd, tmpfs, System V, MAP_SHARED anonymous */
	VMA_HUGETLB, /* hugetlbfs pages, MAP_HUGETLB */
	VMA_FILE,    /* a file on any other filesystem */
	VMA_SPECIAL, /* [vvar], [vdso], a device's mapping */
};

/* A VMA as a person would want it described; for error messages. */
struct vma_info {
	struct vma v;
	enum vma_kind kind;
	uint64_t page_size; /* of its pages; 0 if unknown */
	char name[64];	    /* path or [name], escaped, its end if long; "" for none */
	char fs[16];	    /* filesystem of a file ("ext4"); "" if unknown */
};

/*
 * The VMA holding @addr, or the next one above it: 1 if found, 0 if none,
 * -errno. Slow (a query, a statfs): for error paths only.
 */
int vma_info(struct process *p, uint64_t addr, struct vma_info *out);
/* "a file-backed mapping of /data/f (ext4)", and the like, into @out. */
char *vma_describe(const struct vma_info *i, char *out, size_t size);

#endif
