/* SPDX-License-Identifier: MIT */
/*
 * The one policy for the UFFDIO_* ioctls (core/uffdio.h): what each errno
 * means, the retry bound, and, on a real userfaultfd of this process, that
 * the kernel answers the way the policy expects.
 */
#include "core/uffdio.h"
#include "common/kernel_uapi.h"
#include "common/uffd_open.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static const unsigned long every_call[] = {
	UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_COPY, UFFDIO_WRITEPROTECT,
	UFFDIO_WAKE,
};

#define NCALLS (sizeof(every_call) / sizeof(every_call[0]))

Test(uffdio, eagain_means_retry_for_every_call)
{
	for (size_t i = 0; i < NCALLS; i++)
		cr_expect_eq(uffdio_verdict(every_call[i], -EAGAIN), UFFDIO_AGAIN);
}

Test(uffdio, esrch_means_gone_for_every_call)
{
	for (size_t i = 0; i < NCALLS; i++)
		cr_expect_eq(uffdio_verdict(every_call[i], -ESRCH), UFFDIO_GONE);
}

Test(uffdio, eexist_from_copy_is_done)
{
	cr_expect_eq(uffdio_verdict(UFFDIO_COPY, UFFDIO_EXISTED), UFFDIO_DONE);
	cr_expect_eq(uffdio_verdict(UFFDIO_COPY, 0), UFFDIO_DONE);
}

Test(uffdio, enoent_is_gone_for_copy_and_writeprotect_only)
{
	cr_expect_eq(uffdio_verdict(UFFDIO_COPY, -ENOENT), UFFDIO_GONE);
	cr_expect_eq(uffdio_verdict(UFFDIO_WRITEPROTECT, -ENOENT), UFFDIO_GONE);
	cr_expect_eq(uffdio_verdict(UFFDIO_REGISTER, -ENOENT), UFFDIO_FAILED);
}

Test(uffdio, unregister_of_a_dying_or_unmapped_range_is_gone)
{
	cr_expect_eq(uffdio_verdict(UFFDIO_UNREGISTER, -ENOMEM), UFFDIO_GONE);
	cr_expect_eq(uffdio_verdict(UFFDIO_UNREGISTER, -EINVAL), UFFDIO_GONE);
	/* Registering memory userfaultfd cannot protect is an error. */
	cr_expect_eq(uffdio_verdict(UFFDIO_REGISTER, -EINVAL), UFFDIO_FAILED);
	cr_expect_eq(uffdio_verdict(UFFDIO_REGISTER, -ENOMEM), UFFDIO_FAILED);
}

Test(uffdio, other_errors_are_failures)
{
	cr_expect_eq(uffdio_verdict(UFFDIO_COPY, -EFAULT), UFFDIO_FAILED);
	cr_expect_eq(uffdio_verdict(UFFDIO_WRITEPROTECT, -EINVAL), UFFDIO_FAILED);
}

Test(uffdio, retry_gives_up_after_the_one_bound)
{
	struct uffdio_retry r = { 0 };
	unsigned n = 0;

	while (uffdio_try(&r))
		n++;
	cr_expect_eq(n, UFFDIO_MAX_TRIES);
	cr_expect(!uffdio_retry(&r), "no pause once the bound is reached");
}

/* ---- on a real userfaultfd ------------------------------------------------ */

static int uffd = -1;
static size_t page;

static void uffd_setup(void)
{
	struct uffdio_api api = { .api = UFFD_API,
				  .features = UFFD_FEATURE_PAGEFAULT_FLAG_WP };

	page = (size_t)sysconf(_SC_PAGESIZE);
	uffd = hmmu_uffd_open();
	if (uffd < 0)
		cr_skip_test("no userfaultfd here: %s", strerror(-uffd));
	cr_assert_eq(ioctl(uffd, UFFDIO_API, &api), 0, "UFFDIO_API: %s",
		     strerror(errno));
}

static void uffd_teardown(void)
{
	if (uffd >= 0)
		close(uffd);
	uffd = -1;
}

static char *populated_page(void)
{
	char *p = mmap(NULL, page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(p, MAP_FAILED);
	p[0] = 1; /* before registering: nobody would serve the fault after */
	return p;
}

Test(uffdio, copy_into_a_present_page_is_existed,
     .init = uffd_setup, .fini = uffd_teardown)
{
	char *p = populated_page();
	static char src[65536] __attribute__((aligned(4096)));
	int err;

	cr_assert_eq(uffdio_register(uffd, (uintptr_t)p, page,
				     UFFDIO_REGISTER_MODE_MISSING), 0);
	err = uffdio_copy(uffd, (uintptr_t)p, src, page, 0);
	cr_expect_eq(err, UFFDIO_EXISTED, "copy: %d", err);
	cr_expect_eq(uffdio_verdict(UFFDIO_COPY, err), UFFDIO_DONE);
	cr_expect_eq(p[0], 1, "the page kept its contents");
	cr_expect_eq(uffdio_wake(uffd, (uintptr_t)p, page), 0);
	cr_expect_eq(uffdio_unregister(uffd, (uintptr_t)p, page), 0);
	munmap(p, page);
}

Test(uffdio, writeprotect_of_an_unmapped_range_is_gone,
     .init = uffd_setup, .fini = uffd_teardown)
{
	char *p = populated_page();
	int err;

	cr_assert_eq(uffdio_register(uffd, (uintptr_t)p, page,
				     UFFDIO_REGISTER_MODE_WP), 0);
	cr_expect_eq(uffdio_writeprotect(uffd, (uintptr_t)p, page, true), 0);
	cr_expect_eq(uffdio_writeprotect(uffd, (uintptr_t)p, page, false), 0);
	munmap(p, page);
	err = uffdio_writeprotect(uffd, (uintptr_t)p, page, true);
	cr_expect_eq(uffdio_verdict(UFFDIO_WRITEPROTECT, err), UFFDIO_GONE,
		     "write-protect after munmap: %s", strerror(-err));
	err = uffdio_unregister(uffd, (uintptr_t)p, page);
	cr_expect(err == 0 ||
		  uffdio_verdict(UFFDIO_UNREGISTER, err) == UFFDIO_GONE,
		  "unregister after munmap: %s", strerror(-err));
}
