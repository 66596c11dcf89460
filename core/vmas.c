/* SPDX-License-Identifier: MIT */
#include "vmas.h"
#include "process.h"
#include "client_mem.h"
#include "../common/kernel_uapi.h"
#include "../common/kfeatures.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

void vma_cursor_init(struct vma_cursor *c, struct process *p, uint64_t addr)
{
	c->p = p;
	c->next = addr;
	c->f = NULL;
	c->text = NULL;
}

void vma_cursor_done(struct vma_cursor *c)
{
	if (c->f)
		fclose(c->f);
	free(c->text);
	c->f = NULL;
	c->text = NULL;
}

/*
 * The whole maps file of the address space we hold (never /proc/PID/maps
 * opened anew: the pid may name another image by now), read from offset 0
 * with pread so that cursors on other threads do not move each other.
 */
static int read_maps(struct vma_cursor *c)
{
	size_t len = 0, cap = 16384;
	char *buf = malloc(cap);
	ssize_t n;

	while (buf && (n = pread(c->p->maps_fd, buf + len, cap - len - 1,
				 (off_t)len)) > 0) {
		len += (size_t)n;
		if (cap - len - 1 == 0) {
			char *more = realloc(buf, cap * 2);

			if (!more)
				break;
			buf = more;
			cap *= 2;
		}
	}
	if (!buf || n < 0 || (len == 0 && !client_mm_alive(c->p))) {
		free(buf);
		return -ESRCH;
	}
	buf[len] = '\0';
	c->text = buf;
	c->f = fmemopen(buf, len + 1, "r");
	return c->f ? 0 : -ENOMEM;
}

/* 1 found, 0 none, -ENOTTY if the kernel has no PROCMAP_QUERY. */
static int query(struct vma_cursor *c, struct vma *out)
{
	struct procmap_query q = {
		.size = sizeof(q),
		.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
		.query_addr = c->next,
	};

	if (c->p->maps_fd < 0 || !kfeatures()->procmap_query)
		return -ENOTTY;
	if (ioctl(c->p->maps_fd, PROCMAP_QUERY, &q) < 0) {
		if (errno == ENOENT)
			return 0;
		return errno == ENOTTY || errno == EINVAL ? -ENOTTY : -ESRCH;
	}
	*out = (struct vma){
		.start = q.vma_start,
		.end = q.vma_end,
		.read = q.vma_flags & PROCMAP_QUERY_VMA_READABLE,
		.write = q.vma_flags & PROCMAP_QUERY_VMA_WRITABLE,
		.shared = q.vma_flags & PROCMAP_QUERY_VMA_SHARED,
		.inode = q.inode,
	};
	return 1;
}

static int parse(struct vma_cursor *c, struct vma *out)
{
	unsigned long long s, e, off, inode;
	char line[512], perms[5], dev[16];

	if (!c->f) {
		int err = read_maps(c);

		if (err)
			return err;
	}
	while (fgets(line, sizeof(line), c->f)) {
		if (sscanf(line, "%llx-%llx %4s %llx %15s %llu", &s, &e, perms,
			   &off, dev, &inode) != 6 || e <= c->next)
			continue;
		*out = (struct vma){
			.start = s,
			.end = e,
			.read = perms[0] == 'r',
			.write = perms[1] == 'w',
			.shared = perms[3] == 's',
			.inode = inode,
		};
		return 1;
	}
	return 0;
}

int vma_next(struct vma_cursor *c, struct vma *out)
{
	int r = c->f ? -ENOTTY : query(c, out);

	if (r == -ENOTTY)
		r = parse(c, out);
	if (r == 1)
		c->next = out->end;
	return r;
}
