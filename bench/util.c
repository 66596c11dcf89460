/* SPDX-License-Identifier: MIT */
/* Memory, results, messages and the userfaultfd: helpers every part uses. */
#include "bench.h"
#include "meter.h"
#include "../common/kernel_uapi.h"
#include "../common/uffd_open.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

int progress_quiet;

static size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

/*
 * One PROT_NONE page on each side keeps the mapping its own VMA: no merge
 * with a neighbour, so userfaultfd registrations (the daemon registers
 * whole VMAs) cover exactly this mapping. No transparent huge pages: every
 * class and floor is about 4 KiB pages.
 */
void *map_pages(size_t npages)
{
	size_t ps = page_size();
	char *p = mmap(NULL, (npages + 2) * ps, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (mprotect(p + ps, npages * ps, PROT_READ | PROT_WRITE) < 0) {
		munmap(p, (npages + 2) * ps);
		return NULL;
	}
	madvise(p + ps, npages * ps, MADV_NOHUGEPAGE);
	return p + ps;
}

void unmap_pages(void *p, size_t npages)
{
	size_t ps = page_size();

	if (p)
		munmap((char *)p - ps, (npages + 2) * ps);
}

void touch_pages(void *p, size_t npages)
{
	size_t ps = page_size();

	for (size_t i = 0; i < npages; i++)
		((volatile char *)p)[i * ps] = (char)(i | 1);
}

void result_skip(struct result *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->skipped, sizeof(r->skipped), fmt, ap);
	va_end(ap);
}

void result_extra(struct result *r, const char *key, double value)
{
	for (unsigned i = 0; i < r->nextra; i++) {
		if (strcmp(r->extra[i].key, key) == 0) {
			r->extra[i].value = value;
			return;
		}
	}
	if (r->nextra == MAX_EXTRA)
		return;
	r->extra[r->nextra].key = key;
	r->extra[r->nextra].value = value;
	r->nextra++;
}

void result_finish(struct result *r, enum ratio_kind kind)
{
	samples_summarize(&r->s, &r->sum);
	r->gbps = 0;
	if (kind == RATIO_BANDWIDTH && r->sum.p50)
		/* Samples are ns per 4 KiB page: bytes per ns is GB/s. */
		r->gbps = (double)page_size() / (double)r->sum.p50;
}

void progress(const char *fmt, ...)
{
	va_list ap;

	if (progress_quiet)
		return;
	meter_clear();
	va_start(ap, fmt);
	fputs("hmmu-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void warnx_(const char *fmt, ...)
{
	va_list ap;

	meter_clear();
	va_start(ap, fmt);
	fputs("hmmu-bench: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

int open_userfaultfd(uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int fd = hmmu_uffd_open();

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	if ((api.features & features) != features) {
		close(fd);
		return -EOPNOTSUPP;
	}
	return fd;
}
