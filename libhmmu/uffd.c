/* SPDX-License-Identifier: MIT */
/*
 * The process's userfaultfd. libhmmu makes it, with the events the daemon
 * needs, and hands it over with the first registration of the process; it
 * keeps no copy, so the daemon alone decides when it goes away.
 */
#include "internal.h"
#include "../common/uffd_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define FIX_PERMISSION                                                         \
	"give this user read-write access to /dev/userfaultfd, or set "       \
	"sysctl vm.unprivileged_userfaultfd=1"

static int open_uffd(void)
{
	int fd, dev;

	fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd >= 0)
		return fd;
	if (errno != EPERM)
		return -errno;
	/*
	 * Not allowed through the syscall (vm.unprivileged_userfaultfd=0 and
	 * no CAP_SYS_PTRACE). /dev/userfaultfd grants the same by file
	 * permission. UFFD_USER_MODE_ONLY is no way out: the daemon's own
	 * reads of this process's memory must be able to fault.
	 */
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		hmmu_set_detail("this process may not create a userfaultfd: "
				FIX_PERMISSION);
		return -EPERM;
	}
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return fd >= 0 ? fd : -errno;
}

/* UFFDIO_API is accepted once per fd: ask on a throw-away one first. */
static int supported_features(uint64_t *features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = 0 };
	int fd = open_uffd(), err = 0;

	if (fd < 0)
		return fd;
	if (ioctl(fd, UFFDIO_API, &api) < 0)
		err = -errno;
	*features = api.features;
	close(fd);
	return err;
}

static int try_api(int fd, uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	return ioctl(fd, UFFDIO_API, &api) < 0 ? -errno : 0;
}

int hmmu_uffd_create(int *out)
{
	uint64_t supported, want;
	int fd, err;

	err = supported_features(&supported);
	if (err)
		return err;
	if ((supported & HMMU_UFFD_REQUIRED_FEATURES) !=
	    HMMU_UFFD_REQUIRED_FEATURES) {
		hmmu_set_detail("this kernel's userfaultfd lacks write-protect "
				"or the unmap/remove/remap events hmmu needs");
		return -EOPNOTSUPP;
	}
	want = HMMU_UFFD_REQUIRED_FEATURES |
	       (supported & HMMU_UFFD_OPTIONAL_FEATURES);

	fd = open_uffd();
	if (fd < 0)
		return fd;
	err = try_api(fd, want);
	if (err == -EPERM && (want & UFFD_FEATURE_EVENT_FORK)) {
		/* Fork events need CAP_SYS_PTRACE; do without them. */
		close(fd);
		fd = open_uffd();
		if (fd < 0)
			return fd;
		err = try_api(fd, want & ~(uint64_t)UFFD_FEATURE_EVENT_FORK);
	}
	if (err) {
		close(fd);
		return err;
	}
	*out = fd;
	return 0;
}
