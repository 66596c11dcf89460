/* SPDX-License-Identifier: MIT */
#include "uffd_open.h"
#include "kernel_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int hmmu_uffd_open(void)
{
	int fd, dev;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	if (errno != EPERM)
		return -errno;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0)
		return -EPERM;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		fd = -errno;
	close(dev);
	return fd;
}

int hmmu_uffd_supported(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = hmmu_uffd_open(), err = 0;

	if (fd < 0)
		return fd;
	/* UFFDIO_API is accepted once per fd: this one is thrown away. */
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		err = -errno;
	*features = api.features;
	close(fd);
	return err;
}
