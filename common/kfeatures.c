/* SPDX-License-Identifier: MIT */
#include "kfeatures.h"
#include "uffd_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

int hmmu_probe_zero_page_on_read(void)
{
	long page = sysconf(_SC_PAGESIZE);
	struct page_region region;
	struct pm_scan_arg arg = {
		.size = sizeof(arg),
		.vec = (uint64_t)(uintptr_t)&region,
		.vec_len = 1,
		.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
		.return_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
	};
	volatile char *p;
	int fd, n, err;

	p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -errno;
	(void)p[0]; /* the read fault under test */
	fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
		goto out;
	}
	arg.start = (uint64_t)(uintptr_t)p;
	arg.end = arg.start + (uint64_t)page;
	n = ioctl(fd, PAGEMAP_SCAN, &arg);
	if (n < 0)
		err = errno == EINVAL || errno == ENOTTY ? -EOPNOTSUPP : -errno;
	else
		err = n == 1 && (region.categories & PAGE_IS_PFNZERO) ? 1 : 0;
	close(fd);
out:
	munmap((void *)p, (size_t)page);
	return err;
}
