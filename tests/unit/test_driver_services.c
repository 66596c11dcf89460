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

#include "core/device.h"

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
