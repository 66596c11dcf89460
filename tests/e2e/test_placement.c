/* SPDX-License-Identifier: MIT */
/*
 * Devices placed on a NUMA node (--device ...,node=N): the device memory is
 * allocated on that node (libnuma: mbind, set_mempolicy) and the threads
 * that serve it are bound near it (hwloc: sched_setaffinity). The devices
 * say which node they are on, and serve migration and jobs from there.
 * Node 0 exists on every NUMA kernel, with one node or many.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <sys/stat.h>

static void start_on_node0(void)
{
	static const char *const args[] = {
		"--device", "dmirror:name=near0,node=0",
		"--device", "accel:name=nearacc0,node=0",
		NULL,
	};
	struct stat st;

	if (stat("/sys/devices/system/node/node0", &st) != 0)
		cr_skip_test("no NUMA node 0 in sysfs (a kernel without "
			     "CONFIG_NUMA): devices cannot be placed");
	daemon_start_args(args);
}

TestSuite(placement, .init = start_on_node0, .fini = daemon_stop,
	  .timeout = 120);

Test(placement, devices_report_node0)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_device_info info;
	int n = hmmu_device_count(f.h), seen = 0;

	cr_assert_eq(n, 2);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(hmmu_device_info(f.h, (unsigned)i, &info), 0);
		cr_expect_eq(info.numa_node, 0, "%s on node %d", info.name,
			     info.numa_node);
		seen++;
	}
	cr_expect_eq(seen, 2);
	fixture_close(&f);
}

Test(placement, node0_device_memory_holds_migrated_pages)
{
	struct fixture f = fixture_open("near0");
	size_t n = 16;
	unsigned char *p = map_filled(n, 9), *buf = xmalloc(n * page_size());
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = n };

	cr_assert_eq(hmmu_migrate_to_device(f.m, &c), 0);
	cr_expect_eq(c.cpages, n);
	cr_expect_eq(stats_of(f.h).device_mem_pages, n);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = n };
	cr_assert_eq(hmmu_device_read(f.m, &c, buf), 0);
	/* Not compared with p: a CPU read would bring the pages back. */
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(buf[i * page_size() + 17], filled_byte(i, 9),
			     "device read, page %zu", i);
	c = (struct hmmu_cmd){ .addr = (uintptr_t)p, .npages = n };
	cr_assert_eq(hmmu_migrate_to_system(f.m, &c), 0);
	cr_expect_eq(c.cpages, n);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(p[i * page_size() + 17], filled_byte(i, 9),
			     "back in system memory, page %zu", i);
	free(buf);
	fixture_close(&f);
}

Test(placement, node0_accelerator_runs_jobs)
{
	struct fixture f = fixture_open("nearacc0");
	size_t n = 8 * page_size() / 8;
	uint64_t *v = map_rw(8), expect = 0;
	struct hmmu_job job = { .kind = HMMU_JOB_SUM64,
				.src = (uintptr_t)v, .len = n };

	for (size_t i = 0; i < n; i++)
		expect += v[i] = i * 11 + 2;
	cr_assert_eq(hmmu_job_run(f.m, &job), 0);
	cr_expect_eq(job.result, expect);
	fixture_close(&f);
}
