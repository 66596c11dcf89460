/* SPDX-License-Identifier: MIT */
/*
 * An out-of-tree device model, loaded by hmmud from a shared object:
 * examples/device-copy-engine, built against the installed tree by
 * tests/packaging/out_of_tree_model.sh, which runs this with
 * HMMU_TEST_MODEL naming the model. The engine caches source pages behind
 * an interval notifier; what it reports (pages from its cache, pages it
 * faulted in) shows whether it saw coherent data and its invalidations.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <hmmu/driver.h>
#include <hmmu/hmmu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#define NPAGES 8

static void start_with_model(void)
{
	static char spec[512];
	const char *model = getenv("HMMU_TEST_MODEL");
	const char *args[] = { "--device", spec, "--device",
			       "dmirror:name=dmirror0", NULL };

	if (!model)
		cr_skip_test("HMMU_TEST_MODEL is not set: "
			     "tests/packaging/out_of_tree_model.sh sets it");
	snprintf(spec, sizeof(spec), "model=%s,name=copy0", model);
	daemon_start_args(args);
}

TestSuite(out_of_tree, .init = start_with_model, .fini = daemon_stop,
	  .timeout = 120);

/* Copy src to dst on the engine; its cache hits and its faults. */
static void copy(struct hmmu_mirror *m, char *dst, char *src,
		 uint64_t *hits, uint64_t *faults)
{
	struct hmmu_job job = {
		.kind = HMMU_JOB_COPY,
		.dst = (uintptr_t)dst,
		.src = (uintptr_t)src,
		.len = NPAGES * page_size(),
	};
	int err = hmmu_job_run(m, &job);

	cr_assert_eq(err, 0, "copy job: %s", strerror(-err));
	*hits = job.result;
	*faults = job.faults;
}

static void fill(char *p, int seed)
{
	for (size_t i = 0; i < NPAGES * page_size(); i++)
		p[i] = (char)(seed + i / page_size() * 7 + i % 251);
}

Test(out_of_tree, the_model_is_listed_under_its_own_name)
{
	struct fixture f = fixture_open(NULL);
	struct hmmu_device_info info;

	cr_assert_eq(hmmu_device_count(f.h), 2);
	cr_assert_eq(hmmu_device_info(f.h, 0, &info), 0);
	cr_assert_str_eq(info.name, "copy0");
	cr_assert_str_eq(info.model, "copy-engine");
	fixture_close(&f);
}

Test(out_of_tree, copies_what_the_cpu_wrote_and_caches_the_source)
{
	struct fixture f = fixture_open("copy0");
	char *src = map_rw(NPAGES), *dst = map_rw(NPAGES);
	uint64_t hits, faults;

	fill(src, 1);
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(faults, NPAGES, "a cold cache faults every page in");
	cr_assert_eq(hits, 0);
	cr_assert_eq(memcmp(dst, src, NPAGES * page_size()), 0);

	memset(dst, 0, NPAGES * page_size());
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(hits, NPAGES, "nothing changed: all from the cache");
	cr_assert_eq(faults, 0);
	cr_assert_eq(memcmp(dst, src, NPAGES * page_size()), 0);
	fixture_close(&f);
}

Test(out_of_tree, a_cpu_write_reaches_the_engine_through_its_notifier)
{
	struct fixture f = fixture_open("copy0");
	char *src = map_rw(NPAGES), *dst = map_rw(NPAGES);
	uint64_t hits, faults;

	fill(src, 2);
	copy(f.m, dst, src, &hits, &faults);
	/* One page, after the engine cached it. */
	src[3 * page_size() + 100] = 'W';
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(faults, 1, "only the written page was invalidated");
	cr_assert_eq(hits, NPAGES - 1);
	cr_assert_eq(dst[3 * page_size() + 100], 'W',
		     "the engine saw the new byte");
	cr_assert_eq(memcmp(dst, src, NPAGES * page_size()), 0);
	fixture_close(&f);
}

Test(out_of_tree, a_discard_reaches_the_engine_and_reads_as_zeros)
{
	struct fixture f = fixture_open("copy0");
	char *src = map_rw(NPAGES), *dst = map_rw(NPAGES);
	char zeros[4096] = { 0 };
	uint64_t hits, faults;

	fill(src, 3);
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(madvise(src + 5 * page_size(), page_size(),
			     MADV_DONTNEED), 0);
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(faults, 1, "the discarded page was invalidated");
	cr_assert_eq(memcmp(dst + 5 * page_size(), zeros,
			    page_size() < sizeof(zeros) ? page_size() :
							  sizeof(zeros)),
		     0);
	fixture_close(&f);
}

Test(out_of_tree, a_new_registration_starts_with_an_empty_cache)
{
	struct fixture f = fixture_open("copy0");
	char *src = map_rw(NPAGES), *dst = map_rw(NPAGES);
	uint64_t hits, faults;

	fill(src, 4);
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(hmmu_mirror_unregister(f.m), 0);
	cr_assert_eq(hmmu_mirror_register(f.m), 0);
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(faults, NPAGES, "unbind freed the cache, bind made a new one");
	cr_assert_eq(memcmp(dst, src, NPAGES * page_size()), 0);
	fixture_close(&f);
}

Test(out_of_tree, commands_the_model_lacks_are_not_supported)
{
	struct fixture f = fixture_open("copy0");
	char *p = map_rw(1);
	struct hmmu_cmd c = { .addr = (uintptr_t)p, .npages = 1 };
	char buf[4096];
	struct hmmu_job sum = { .kind = HMMU_JOB_SUM64, .src = (uintptr_t)p,
				.len = 1 };

	expect_daemon_log("on copy0: %s", strerror(EOPNOTSUPP));
	cr_assert_eq(hmmu_device_read(f.m, &c, buf), -EOPNOTSUPP);
	cr_assert_eq(hmmu_job_run(f.m, &sum), -EOPNOTSUPP);
	fixture_close(&f);
}

/*
 * dmirror0 migrates pages the engine holds: the discard that completes the
 * migration reaches the engine's notifier as HMMU_NOTIFY_MIGRATE, owned by
 * dmirror0 (the engine logs each event that drops pages), and the engine's
 * next copy faults them in again, from dmirror0's memory.
 */
Test(out_of_tree, a_migration_to_another_device_reaches_the_engine)
{
	struct fixture f = fixture_open("copy0");
	struct hmmu_mirror *d = mirror_registered(f.h, "dmirror0");
	char *src = map_rw(NPAGES), *dst = map_rw(NPAGES);
	struct hmmu_cmd c = { .addr = (uintptr_t)src, .npages = NPAGES };
	char needle[64];
	uint64_t hits, faults;

	fill(src, 5);
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(hmmu_migrate_to_device(d, &c), 0);
	cr_assert_eq(c.cpages, NPAGES);
	snprintf(needle, sizeof(needle), "copy0: event %d dropped",
		 HMMU_NOTIFY_MIGRATE);
	cr_assert_geq(daemon_log_count(needle), 1,
		      "the engine heard of the migration as such");
	memset(dst, 0, NPAGES * page_size());
	copy(f.m, dst, src, &hits, &faults);
	cr_assert_eq(faults, NPAGES, "every migrated page was invalidated");
	cr_assert_eq(memcmp(dst, src, NPAGES * page_size()), 0);
	hmmu_mirror_destroy(d);
	fixture_close(&f);
}

/*
 * The engine takes page copies, which need userfaultfd: a file on a disk
 * filesystem cannot be tracked, and hmmud tells the client so, naming the
 * file and the fix (hmmu_error_detail()).
 */
Test(out_of_tree, a_copy_from_a_disk_file_names_the_file_userfaultfd_cannot_track)
{
	struct fixture f = fixture_open("copy0");
	char dir[] = "hmmu-copy-XXXXXX", cwd[256], path[300], at[32];
	char *dst = map_rw(NPAGES), *src;
	const char *tail;
	struct hmmu_job job = { .kind = HMMU_JOB_COPY, .len = NPAGES * page_size() };
	struct statfs st;
	int fd, err;

	cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/%s/src", cwd, dir);
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
	cr_assert_eq(ftruncate(fd, NPAGES * page_size()), 0);
	cr_assert_eq(fstatfs(fd, &st), 0);
	src = mmap(NULL, NPAGES * page_size(), PROT_READ, MAP_SHARED, fd, 0);
	cr_assert_neq(src, MAP_FAILED);
	job.src = (uintptr_t)src;
	job.dst = (uintptr_t)dst;
	err = hmmu_job_run(f.m, &job);
	munmap(src, NPAGES * page_size());
	close(fd);
	unlink(path);
	rmdir(dir);
	if (err == 0 || st.f_type == TMPFS_MAGIC)
		cr_skip_test("the build directory's filesystem (magic %#lx) is "
			     "one userfaultfd can track",
			     (unsigned long)st.f_type);
	cr_expect_eq(err, -EPERM, "%d (%s)", err, strerror(-err));
	snprintf(at, sizeof(at), "%#lx", (unsigned long)(uintptr_t)src);
	tail = strlen(path) > 40 ? path + strlen(path) - 40 : path;
	cr_expect(strstr(hmmu_error_detail(), at) &&
			  strstr(hmmu_error_detail(), "file-backed mapping of") &&
			  strstr(hmmu_error_detail(), tail) &&
			  strstr(hmmu_error_detail(), "userfaultfd cannot track") &&
			  strstr(hmmu_error_detail(), "memfd"),
		  "the address, the file and the fix: '%s'",
		  hmmu_error_detail());
	fixture_close(&f);
}
