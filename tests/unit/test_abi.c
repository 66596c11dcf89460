/* SPDX-License-Identifier: MIT */
/*
 * The ABI of <hmmu/hmmu.h>, pinned: the size and every offset of each
 * public struct, the values of the public enums, the version macros
 * against hmmu_version() and project(VERSION), and the size versioning of
 * hmmu_stats() against a stand-in daemon that knows all, or fewer, counters.
 * A change that moves a field fails here; appending one to struct
 * hmmu_stats fails here too, until the new field is pinned below.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hmmu/hmmu.h>

#include "common/proto.h"

#define FIELD(type, field, off, size)                                          \
	do {                                                                   \
		cr_expect_eq(offsetof(struct type, field), (size_t)(off),      \
			     #type "." #field " at %zu, not " #off,            \
			     offsetof(struct type, field));                    \
		cr_expect_eq(sizeof(((struct type *)0)->field), (size_t)(size),\
			     #type "." #field " is %zu bytes, not " #size,     \
			     sizeof(((struct type *)0)->field));               \
	} while (0)

#define SIZE(type, size)                                                       \
	cr_expect_eq(sizeof(struct type), (size_t)(size),                      \
		     "struct " #type " is %zu bytes, not " #size,              \
		     sizeof(struct type))

Test(abi, hmmu_device_info_layout_is_fixed)
{
	SIZE(hmmu_device_info, 80);
	FIELD(hmmu_device_info, name, 0, 32);
	FIELD(hmmu_device_info, model, 32, 32);
	FIELD(hmmu_device_info, mem_bytes, 64, 8);
	FIELD(hmmu_device_info, numa_node, 72, 4);
	FIELD(hmmu_device_info, page_size, 76, 4);
}

Test(abi, hmmu_cmd_layout_is_fixed)
{
	SIZE(hmmu_cmd, 32);
	FIELD(hmmu_cmd, addr, 0, 8);
	FIELD(hmmu_cmd, npages, 8, 8);
	FIELD(hmmu_cmd, cpages, 16, 8);
	FIELD(hmmu_cmd, faults, 24, 8);
}

Test(abi, hmmu_job_layout_is_fixed)
{
	SIZE(hmmu_job, 72);
	FIELD(hmmu_job, kind, 0, 4);
	FIELD(hmmu_job, reserved, 4, 4);
	FIELD(hmmu_job, dst, 8, 8);
	FIELD(hmmu_job, src, 16, 8);
	FIELD(hmmu_job, len, 24, 8);
	FIELD(hmmu_job, value, 32, 8);
	FIELD(hmmu_job, next_offset, 40, 4);
	FIELD(hmmu_job, value_offset, 44, 4);
	FIELD(hmmu_job, result, 48, 8);
	FIELD(hmmu_job, faults, 56, 8);
	FIELD(hmmu_job, elapsed_ns, 64, 8);
}

Test(abi, hmmu_stats_layout_is_fixed)
{
	SIZE(hmmu_stats, 176);
	FIELD(hmmu_stats, processes, 0, 8);
	FIELD(hmmu_stats, mirrors, 8, 8);
	FIELD(hmmu_stats, my_state, 16, 4);
	FIELD(hmmu_stats, my_mirrors, 20, 4);
	FIELD(hmmu_stats, device_faults, 24, 8);
	FIELD(hmmu_stats, cpu_faults, 32, 8);
	FIELD(hmmu_stats, invalidations, 40, 8);
	FIELD(hmmu_stats, migrated_to_device, 48, 8);
	FIELD(hmmu_stats, migrated_to_system, 56, 8);
	FIELD(hmmu_stats, releases, 64, 8);
	FIELD(hmmu_stats, sessions, 72, 8);
	FIELD(hmmu_stats, device_pages, 80, 8);
	FIELD(hmmu_stats, device_mem_pages, 88, 8);
	FIELD(hmmu_stats, fault_batches, 96, 8);
	FIELD(hmmu_stats, fault_entries, 104, 8);
	FIELD(hmmu_stats, fault_duplicates, 112, 8);
	FIELD(hmmu_stats, fault_blocks, 120, 8);
	FIELD(hmmu_stats, fault_runs, 128, 8);
	FIELD(hmmu_stats, density_fetches, 136, 8);
	FIELD(hmmu_stats, fault_window_pages, 144, 8);
	FIELD(hmmu_stats, fault_density_pct, 152, 8);
	FIELD(hmmu_stats, fault_batch_max, 160, 8);
	FIELD(hmmu_stats, fault_block_pages, 168, 8);
	/* The first version is what 0.1 shipped, whatever is appended later. */
	cr_expect_eq(HMMU_STATS_SIZE_VER0, 96);
}

Test(abi, hmmu_process_info_layout_is_fixed)
{
	SIZE(hmmu_process_info, 16);
	FIELD(hmmu_process_info, pid, 0, 4);
	FIELD(hmmu_process_info, uid, 4, 4);
	FIELD(hmmu_process_info, mirrors, 8, 4);
	FIELD(hmmu_process_info, reserved, 12, 4);
}

Test(abi, hmmu_mirror_info_layout_is_fixed)
{
	SIZE(hmmu_mirror_info, 48);
	FIELD(hmmu_mirror_info, pid, 0, 4);
	FIELD(hmmu_mirror_info, uid, 4, 4);
	FIELD(hmmu_mirror_info, device, 8, 32);
	FIELD(hmmu_mirror_info, device_pages, 40, 8);
}

Test(abi, enum_values_are_fixed)
{
	/* test_hmm's snapshot values (HMM_DMIRROR_PROT_*). */
	cr_expect_eq(HMMU_PAGE_NONE, 0x00);
	cr_expect_eq(HMMU_PAGE_READ, 0x01);
	cr_expect_eq(HMMU_PAGE_WRITE, 0x02);
	cr_expect_eq(HMMU_PAGE_HUGE, 0x04);
	cr_expect_eq(HMMU_PAGE_ZERO, 0x10);
	cr_expect_eq(HMMU_PAGE_DEV_LOCAL, 0x20);
	cr_expect_eq(HMMU_PAGE_DEV_REMOTE, 0x30);
	cr_expect_eq(HMMU_PAGE_ERROR, 0xff);
	cr_expect_eq(HMMU_JOB_FILL, 1);
	cr_expect_eq(HMMU_JOB_COPY, 2);
	cr_expect_eq(HMMU_JOB_SUM64, 3);
	cr_expect_eq(HMMU_JOB_LIST_SUM, 4);
}

Test(abi, version_macros_match_the_library_and_the_build)
{
	char numbers[32];

	snprintf(numbers, sizeof(numbers), "%d.%d.%d", HMMU_VERSION_MAJOR,
		 HMMU_VERSION_MINOR, HMMU_VERSION_PATCH);
	cr_expect_str_eq(HMMU_VERSION, numbers);
	cr_assert_not_null(hmmu_version());
	cr_expect_str_eq(hmmu_version(), HMMU_VERSION,
			 "the library says %s, its header %s", hmmu_version(),
			 HMMU_VERSION);
	cr_expect_str_eq(HMMU_VERSION, HMMU_PROJECT_VERSION,
			 "hmmu.h says %s, project(VERSION) %s", HMMU_VERSION,
			 HMMU_PROJECT_VERSION);
}

Test(abi, stats_has_tells_which_fields_were_filled)
{
	cr_expect(HMMU_STATS_HAS(96, device_mem_pages));
	cr_expect_not(HMMU_STATS_HAS(95, device_mem_pages));
	cr_expect(HMMU_STATS_HAS(24, my_mirrors));
	cr_expect_not(HMMU_STATS_HAS(20, my_mirrors));
	cr_expect_not(HMMU_STATS_HAS(-EINVAL, processes));
}

/* ---- hmmu_stats() against a stand-in daemon ------------------------------ */

/* A daemon that answers HELLO, and STATS with counters 1, 2, ... ncounters. */
struct fake_daemon {
	char dir[64];
	char path[108];
	int listen_fd;
	unsigned ncounters;
	pthread_t thread;
};

static void answer(int fd, const struct hmmu_wire_hdr *req,
		   const struct fake_daemon *d)
{
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} out;
	uint64_t *values = (uint64_t *)(&out.hdr + 1);
	size_t len = 0;

	memset(&out, 0, sizeof(out));
	if (req->op == HMMU_OP_HELLO) {
		struct hmmu_wire_hello hello = { .version = HMMU_PROTO_VERSION };

		memcpy(&out.hdr + 1, &hello, sizeof(hello));
		len = sizeof(hello);
	} else if (req->op == HMMU_OP_STATS) {
		for (unsigned i = 0; i < d->ncounters; i++)
			values[i] = i + 1;
		len = d->ncounters * sizeof(uint64_t);
	}
	out.hdr = (struct hmmu_wire_hdr){
		.magic = HMMU_PROTO_MAGIC,
		.op = req->op,
		.flags = HMMU_MSG_REPLY,
		.len = (uint32_t)(sizeof(out.hdr) + len),
		.status = len ? 0 : -EOPNOTSUPP,
		.id = req->id,
	};
	(void)!send(fd, out.buf, sizeof(out.hdr) + len, MSG_NOSIGNAL);
}

static void *serve(void *arg)
{
	struct fake_daemon *d = arg;
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} in;
	int fd = accept(d->listen_fd, NULL, NULL);
	ssize_t n;

	if (fd < 0)
		return NULL;
	while ((n = recv(fd, in.buf, sizeof(in.buf), 0)) >= (ssize_t)sizeof(in.hdr))
		answer(fd, &in.hdr, d);
	close(fd);
	return NULL;
}

static void fake_start(struct fake_daemon *d, unsigned ncounters)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	cr_assert_leq(ncounters, HMMU_STAT_NR_ + 4u);
	strcpy(d->dir, "/tmp/hmmu-abi-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->path, sizeof(d->path), "%s/sock", d->dir);
	strcpy(addr.sun_path, d->path);
	d->ncounters = ncounters;
	d->listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	cr_assert_geq(d->listen_fd, 0);
	cr_assert_eq(bind(d->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	cr_assert_eq(listen(d->listen_fd, 1), 0);
	cr_assert_eq(pthread_create(&d->thread, NULL, serve, d), 0);
}

static void fake_stop(struct fake_daemon *d)
{
	pthread_join(d->thread, NULL);
	close(d->listen_fd);
	unlink(d->path);
	rmdir(d->dir);
}

/* The struct of a caller built against a newer header: ours, and more. */
struct padded {
	struct hmmu_stats st;
	unsigned char tail[16];
};

static int untouched(const void *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (((const unsigned char *)p)[i] != 0xa5)
			return 0;
	return 1;
}

Test(stats_size, a_newer_caller_learns_how_much_was_filled)
{
	struct fake_daemon d;
	struct padded out;
	struct hmmu *h;
	int n;

	fake_start(&d, HMMU_STAT_NR_);
	cr_assert_eq(hmmu_connect(d.path, &h), 0);
	memset(&out, 0xa5, sizeof(out));
	n = hmmu_stats(h, &out.st, sizeof(out));
	hmmu_disconnect(h);
	fake_stop(&d);

	cr_assert_eq(n, (int)sizeof(struct hmmu_stats));
	cr_expect(untouched(out.tail, sizeof(out.tail)),
		  "bytes past the returned size were written");
	cr_expect_eq(out.st.processes, 1);
	cr_expect_eq(out.st.mirrors, 2);
	cr_expect_eq(out.st.my_state, 3);
	cr_expect_eq(out.st.my_mirrors, 4);
	cr_expect_eq(out.st.device_faults, 5);
	cr_expect_eq(out.st.migrated_to_system, 9);
	cr_expect_eq(out.st.device_mem_pages, 13);
}

Test(stats_size, an_older_daemon_fills_only_the_counters_it_knows)
{
	struct fake_daemon d;
	struct hmmu_stats st;
	struct hmmu *h;
	int n;

	fake_start(&d, 5); /* up to device_faults */
	cr_assert_eq(hmmu_connect(d.path, &h), 0);
	memset(&st, 0xa5, sizeof(st));
	n = hmmu_stats(h, &st, sizeof(st));
	hmmu_disconnect(h);
	fake_stop(&d);

	cr_assert_eq(n, (int)offsetof(struct hmmu_stats, cpu_faults));
	cr_expect(HMMU_STATS_HAS(n, device_faults));
	cr_expect_not(HMMU_STATS_HAS(n, cpu_faults));
	cr_expect_eq(st.device_faults, 5);
	cr_expect(untouched((char *)&st + n, sizeof(st) - (size_t)n),
		  "fields the daemon did not send were written");
}

Test(stats_size, a_newer_daemon_fills_only_what_the_library_knows)
{
	struct fake_daemon d;
	struct padded out;
	struct hmmu *h;
	int n;

	fake_start(&d, HMMU_STAT_NR_ + 4);
	cr_assert_eq(hmmu_connect(d.path, &h), 0);
	memset(&out, 0xa5, sizeof(out));
	n = hmmu_stats(h, &out.st, sizeof(out));
	hmmu_disconnect(h);
	fake_stop(&d);

	cr_assert_eq(n, (int)sizeof(struct hmmu_stats));
	cr_expect_eq(out.st.device_mem_pages, 13);
	cr_expect(untouched(out.tail, sizeof(out.tail)));
}

Test(stats_size, a_size_below_the_first_version_is_einval)
{
	struct fake_daemon d;
	struct hmmu_stats st;
	struct hmmu *h;

	fake_start(&d, HMMU_STAT_NR_);
	cr_assert_eq(hmmu_connect(d.path, &h), 0);
	memset(&st, 0xa5, sizeof(st));
	cr_expect_eq(hmmu_stats(h, &st, HMMU_STATS_SIZE_VER0 - 1), -EINVAL);
	cr_expect_eq(hmmu_stats(h, &st, 0), -EINVAL);
	/* The classic slip: the size of the pointer. */
	cr_expect_eq(hmmu_stats(h, &st, sizeof(&st)), -EINVAL);
	cr_expect_eq(hmmu_stats(h, NULL, sizeof(st)), -EINVAL);
	cr_expect_eq(hmmu_stats(NULL, &st, sizeof(st)), -EINVAL);
	cr_expect(untouched(&st, sizeof(st)));
	hmmu_disconnect(h);
	fake_stop(&d);
}
