/* SPDX-License-Identifier: MIT */
#include "uffdio.h"

#include <errno.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <time.h>

enum uffdio_verdict uffdio_verdict(unsigned long request, int err)
{
	switch (err) {
	case 0:
		return UFFDIO_DONE;
	case UFFDIO_EXISTED:
		return request == UFFDIO_COPY ? UFFDIO_DONE : UFFDIO_FAILED;
	case -EAGAIN:
		return UFFDIO_AGAIN;
	case -ESRCH:
		return UFFDIO_GONE;
	case -ENOENT:
		return request == UFFDIO_COPY || request == UFFDIO_WRITEPROTECT ?
			       UFFDIO_GONE : UFFDIO_FAILED;
	case -ENOMEM:
	case -EINVAL:
		return request == UFFDIO_UNREGISTER ? UFFDIO_GONE : UFFDIO_FAILED;
	}
	return UFFDIO_FAILED;
}

int uffdio_register(int uffd, uint64_t start, uint64_t len, uint64_t mode)
{
	struct uffdio_register reg = {
		.range = { .start = start, .len = len },
		.mode = mode,
	};

	return ioctl(uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

int uffdio_unregister(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_UNREGISTER, &range) < 0 ? -errno : 0;
}

int uffdio_copy(int uffd, uint64_t dst, const void *src, uint64_t len,
		uint64_t mode)
{
	struct uffdio_copy copy = {
		.dst = dst,
		.src = (uint64_t)(uintptr_t)src,
		.len = len,
		.mode = mode,
	};

	if (ioctl(uffd, UFFDIO_COPY, &copy) == 0)
		return 0;
	/* A negative copy.copy is nothing copied; a partial one, EAGAIN. */
	return errno == EEXIST ? UFFDIO_EXISTED : -errno;
}

int uffdio_writeprotect(int uffd, uint64_t start, uint64_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
		.range = { .start = start, .len = len },
		.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	return ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) < 0 ? -errno : 0;
}

int uffdio_wake(int uffd, uint64_t start, uint64_t len)
{
	struct uffdio_range range = { .start = start, .len = len };

	return ioctl(uffd, UFFDIO_WAKE, &range) < 0 ? -errno : 0;
}

bool uffdio_try(struct uffdio_retry *r)
{
	if (r->tries >= UFFDIO_MAX_TRIES)
		return false;
	r->tries++;
	return true;
}

void uffdio_pause(void)
{
	struct timespec ts = { 0, 20000 };

	nanosleep(&ts, NULL);
}

bool uffdio_retry(struct uffdio_retry *r)
{
	if (!uffdio_try(r))
		return false;
	uffdio_pause();
	return true;
}
