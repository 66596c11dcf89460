/* SPDX-License-Identifier: MIT */
/*
 * The driver API's services on a device of their own, no daemon: compute
 * threads started once, and work queued on a device whose model started
 * none (dmirror), which runs on the caller rather than crash hmmud.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hmmu/driver.h>
#include <stdatomic.h>

#include "core/command.h"
#include "core/device.h"
#include "core/mirror.h"

#include <stdlib.h>
#include <unistd.h>

struct flag_work {
	struct hmmu_work w; /* first: fn gets it */
	atomic_int ran;
};

static void set_flag(struct hmmu_work *w)
{
	atomic_store(&((struct flag_work *)w)->ran, 1);
}

Test(driver_services, work_on_a_device_without_threads_runs_on_the_caller)
{
	struct hmmu_device *dev;
	struct flag_work fw = { .w.fn = set_flag };

	cr_assert_eq(device_create("dmirror:name=d0", &dev), 0);
	hmmu_device_queue_work(dev, &fw.w);
	cr_assert_eq(atomic_load(&fw.ran), 1,
		     "the work had run when hmmu_device_queue_work() returned");
	device_destroy(dev);
}

Test(driver_services, compute_threads_start_once)
{
	struct hmmu_device *dev;

	cr_assert_eq(device_create("dmirror:name=d0", &dev), 0);
	cr_assert_eq(hmmu_device_threads_start(dev, 0), -EINVAL);
	cr_assert_eq(hmmu_device_threads_start(dev, 65), -EINVAL);
	cr_assert_eq(hmmu_device_threads_start(dev, 1), 0);
	cr_assert_eq(hmmu_device_threads_start(dev, 1), -EINVAL,
		     "a second start is refused, the first threads kept");
	device_destroy(dev);
}

static void check_stop_in_work(struct hmmu_work *w)
{
	atomic_store(&((struct flag_work *)w)->ran, 1);
}

Test(driver_services, inline_work_leaves_the_callers_context)
{
	struct hmmu_device *dev;
	struct flag_work fw = { .w.fn = check_stop_in_work };
	struct hmmu_mirror *m = calloc(1, sizeof(*m));
	struct command_ctx ctx;

	cr_assert_eq(device_create("dmirror:name=d0", &dev), 0);
	/* A command already past its deadline: hmmu_should_stop() says so. */
	command_enter(&ctx, m, 0, NULL);
	usleep(1000);
	cr_assert_eq(hmmu_should_stop(), -ETIMEDOUT);
	hmmu_device_queue_work(dev, &fw.w);
	cr_assert_eq(atomic_load(&fw.ran), 1);
	cr_assert_eq(hmmu_should_stop(), -ETIMEDOUT,
		     "the command's deadline still holds after inline work");
	command_leave();
	free(m);
	device_destroy(dev);
}

Test(driver_services, migrate_steps_refuse_a_null_mirror)
{
	uint8_t src[1] = { 0 }, discard[1];
	struct hmmu_migrate_vma args = {
		.start = 0x10000, .end = 0x11000, .src = src,
		.flags = HMMU_MIGRATE_VMA_SELECT_SYSTEM,
	};

	cr_assert_eq(hmmu_migrate_vma_setup(&args), -EINVAL);
	cr_assert_eq(hmmu_migrate_vma_pages(&args, discard), -EINVAL);
	cr_assert_eq(hmmu_migrate_vma_finalize(&args), -EINVAL);
}
