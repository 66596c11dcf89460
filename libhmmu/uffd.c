/* SPDX-License-Identifier: MIT */
/*
 * The process's userfaultfd. libhmmu makes it, with the events the daemon
 * needs, and hands it over with the first registration of the process; it
 * keeps no copy, so the daemon alone decides when it goes away, until the
 * first migration: from then on the connection holds a dup the daemon
 * sends back (failsafe.c), to bring device pages home if the daemon dies.
 */
#include "internal.h"
#include "../common/uffd_open.h"
#include "../common/kernel_uapi.h"

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
	int fd = hmmu_uffd_open();

	if (fd == -EPERM)
		hmmu_set_detail("this process may not create a userfaultfd: "
				FIX_PERMISSION);
	return fd;
}

static int try_api(int fd, uint64_t features)
{
	struct uffdio_api api = { .api = UFFD_API, .features = features };

	return ioctl(fd, UFFDIO_API, &api) < 0 ? -errno : 0;
}

int hmmu_uffd_create(int *out, int coarse)
{
	uint64_t supported, want;
	int fd, err;

	err = hmmu_uffd_supported(&supported);
	if (err == -EPERM)
		hmmu_set_detail("this process may not create a userfaultfd: "
				FIX_PERMISSION);
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
	if (coarse) {
		/*
		 * Asynchronous write-protect: a CPU write clears the page's
		 * protection in the kernel and goes on; hmmud collects the
		 * written pages with PAGEMAP_SCAN, which works only where
		 * empty PTEs can carry markers (WP_UNPOPULATED).
		 */
		uint64_t need = UFFD_FEATURE_WP_ASYNC |
				UFFD_FEATURE_WP_UNPOPULATED;

		if ((supported & need) != need) {
			hmmu_set_detail("coarse-grained coherence needs "
					"userfaultfd's asynchronous write-protect "
					"(UFFD_FEATURE_WP_ASYNC, Linux 6.7 or "
					"newer), which this kernel lacks");
			return -EOPNOTSUPP;
		}
		want |= need;
	}

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
