/* SPDX-License-Identifier: MIT */
#include "vmas.h"
#include "process.h"
#include "client_mem.h"
#include "../common/kernel_uapi.h"
#include "../common/kfeatures.h"
#include "../common/page.h"

#include "reason.h"

#include <errno.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/vfs.h>

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

static struct vma vma_of_query(const struct procmap_query *q)
{
	return (struct vma){
		.start = q->vma_start,
		.end = q->vma_end,
		.read = q->vma_flags & PROCMAP_QUERY_VMA_READABLE,
		.write = q->vma_flags & PROCMAP_QUERY_VMA_WRITABLE,
		.shared = q->vma_flags & PROCMAP_QUERY_VMA_SHARED,
		.inode = q->inode,
	};
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
	*out = vma_of_query(&q);
	return 1;
}

/*
 * One line of /proc/PID/maps into @out: false if it is not one. *@name_at
 * is the offset of the mapping's name in @line (0: it has none).
 */
static bool parse_maps_line(const char *line, struct vma *out, int *name_at)
{
	unsigned long long s, e, off, inode;
	char perms[5], dev[16];
	int at = 0;

	if (sscanf(line, "%llx-%llx %4s %llx %15s %llu %n", &s, &e, perms, &off,
		   dev, &inode, &at) < 6)
		return false;
	*out = (struct vma){
		.start = s,
		.end = e,
		.read = perms[0] == 'r',
		.write = perms[1] == 'w',
		.shared = perms[3] == 's',
		.inode = inode,
	};
	*name_at = at;
	return true;
}

static int parse(struct vma_cursor *c, struct vma *out)
{
	char line[512];
	int name_at;

	if (!c->f) {
		int err = read_maps(c);

		if (err)
			return err;
	}
	while (fgets(line, sizeof(line), c->f))
		if (parse_maps_line(line, out, &name_at) && out->end > c->next)
			return 1;
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

/* ---- descriptions, for error messages ------------------------------------ */

static const struct {
	unsigned long magic;
	const char *name;
} filesystems[] = {
	{ EXT4_SUPER_MAGIC, "ext4" }, /* ext2 and ext3 too */
	{ XFS_SUPER_MAGIC, "xfs" },
	{ BTRFS_SUPER_MAGIC, "btrfs" },
	{ TMPFS_MAGIC, "tmpfs" },
	{ HUGETLBFS_MAGIC, "hugetlbfs" },
	{ NFS_SUPER_MAGIC, "nfs" },
	{ OVERLAYFS_SUPER_MAGIC, "overlay" },
	{ F2FS_SUPER_MAGIC, "f2fs" },
	{ SQUASHFS_MAGIC, "squashfs" },
	{ 0x65735546, "fuse" },
	{ 0x2fc12fc1, "zfs" },
};

/*
 * The filesystem of the file a VMA maps, through /proc/PID/map_files (which
 * needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE: without, it stays
 * unknown). By pid, unlike the rest of the core: only a message depends on
 * it.
 */
static void vma_fs(struct process *p, struct vma_info *i)
{
	char path[96];
	struct statfs st;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64,
		 p->pid, i->v.start, i->v.end);
	if (statfs(path, &st) < 0)
		return;
	for (size_t k = 0; k < sizeof(filesystems) / sizeof(filesystems[0]); k++)
		if ((unsigned long)st.f_type == filesystems[k].magic)
			snprintf(i->fs, sizeof(i->fs), "%s", filesystems[k].name);
	if (!i->fs[0])
		snprintf(i->fs, sizeof(i->fs), "fs %#lx", (unsigned long)st.f_type);
}

/* The maps file's line for @addr (or the next VMA): 1, 0 or -errno. */
static int info_from_maps(struct process *p, uint64_t addr, struct vma_info *i,
			  char *name, size_t size)
{
	struct vma_cursor c;
	char line[512];
	int r = 0;

	vma_cursor_init(&c, p, addr);
	r = read_maps(&c);
	while (!r && fgets(line, sizeof(line), c.f)) {
		int at;

		if (!parse_maps_line(line, &i->v, &at) || i->v.end <= addr)
			continue;
		line[strcspn(line, "\n")] = '\0';
		snprintf(name, size, "%s", at ? line + at : "");
		r = 1;
	}
	vma_cursor_done(&c);
	return r;
}

int vma_info(struct process *p, uint64_t addr, struct vma_info *i)
{
	char name[256] = "";
	struct procmap_query q = {
		.size = sizeof(q),
		.query_flags = PROCMAP_QUERY_COVERING_OR_NEXT_VMA,
		.query_addr = addr,
		.vma_name_addr = (uint64_t)(uintptr_t)name,
		.vma_name_size = sizeof(name),
	};
	int r = 1;

	memset(i, 0, sizeof(*i));
	if (p->maps_fd >= 0 && kfeatures()->procmap_query &&
	    ioctl(p->maps_fd, PROCMAP_QUERY, &q) == 0) {
		i->v = vma_of_query(&q);
		i->page_size = q.vma_page_size;
	} else if (p->maps_fd >= 0 && kfeatures()->procmap_query &&
		   errno == ENOENT) {
		return 0;
	} else {
		r = info_from_maps(p, addr, i, name, sizeof(name));
		if (r <= 0)
			return r;
	}
	{
		char safe[4 * sizeof(name)];
		size_t n = strlen(reason_escape(safe, sizeof(safe), name));

		/* The end of a long path says most: its file name. */
		if (n >= sizeof(i->name))
			snprintf(i->name, sizeof(i->name), "...%s",
				 safe + n - (sizeof(i->name) - 4));
		else
			memcpy(i->name, safe, n + 1);
	}
	if (i->v.inode)
		vma_fs(p, i);
	if (!strcmp(i->fs, "hugetlbfs") || i->page_size > page_size() ||
	    !strncmp(name, "/anon_hugepage", 14))
		i->kind = VMA_HUGETLB;
	else if (!i->v.inode)
		i->kind = name[0] == '[' && strcmp(name, "[heap]") &&
				  strcmp(name, "[stack]") &&
				  strncmp(name, "[anon:", 6) ?
			  VMA_SPECIAL : VMA_ANON;
	else if (!strcmp(i->fs, "tmpfs") || !strncmp(name, "/memfd:", 7) ||
		 !strncmp(name, "/dev/zero", 9) || !strncmp(name, "/SYSV", 5))
		i->kind = VMA_SHMEM;
	else
		i->kind = VMA_FILE;
	return r;
}

char *vma_describe(const struct vma_info *i, char *out, size_t size)
{
	switch (i->kind) {
	case VMA_ANON:
		snprintf(out, size, "%s anonymous memory%s%s%s",
			 i->v.shared ? "shared" : "private", i->name[0] ? " (" : "",
			 i->name, i->name[0] ? ")" : "");
		break;
	case VMA_SHMEM:
		snprintf(out, size, "shared memory %s", i->name);
		break;
	case VMA_HUGETLB:
		if (i->page_size)
			snprintf(out, size, "a hugetlb mapping (%" PRIu64
				 " kB pages)", i->page_size >> 10);
		else
			snprintf(out, size, "a hugetlb mapping");
		break;
	case VMA_FILE:
		snprintf(out, size, "a file-backed mapping of %s%s%s%s", i->name,
			 i->fs[0] ? " (" : "", i->fs, i->fs[0] ? ")" : "");
		break;
	case VMA_SPECIAL:
		snprintf(out, size, "the %s mapping", i->name);
		break;
	}
	return out;
}
