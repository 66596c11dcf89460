/* SPDX-License-Identifier: MIT */
#include "probe.h"
#include "../common/kfeatures.h"
#include "../common/uffd_open.h"
#include "../common/uffd_uapi.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int probe_uffd_features(uint64_t *features)
{
	return hmmu_uffd_supported(features);
}

int probe_io_uring(void)
{
	struct io_uring ring;
	struct io_uring_probe *p;
	int ok;

	if (io_uring_queue_init(2, &ring, 0) < 0)
		return 0;
	p = io_uring_get_probe_ring(&ring);
	ok = p && io_uring_opcode_supported(p, IORING_OP_POLL_ADD) &&
	     io_uring_opcode_supported(p, IORING_OP_POLL_REMOVE);
	io_uring_free_probe(p);
	io_uring_queue_exit(&ring);
	return ok;
}

static const struct {
	uint64_t bit;
	const char *name;
	const char *what;
} uffd_features[] = {
	{ UFFD_FEATURE_PAGEFAULT_FLAG_WP, "wp", "write-protect faults (required)" },
	{ UFFD_FEATURE_EVENT_FORK, "event-fork", "fork events (clients with CAP_SYS_PTRACE)" },
	{ UFFD_FEATURE_EVENT_REMAP, "event-remap", "mremap events (required)" },
	{ UFFD_FEATURE_EVENT_REMOVE, "event-remove", "madvise events (required)" },
	{ UFFD_FEATURE_EVENT_UNMAP, "event-unmap", "munmap events (required)" },
	{ UFFD_FEATURE_MISSING_SHMEM, "missing-shmem", "missing faults on shmem" },
	{ UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "wp-shmem", "write-protect on shmem and hugetlbfs" },
	{ UFFD_FEATURE_WP_UNPOPULATED, "wp-unpopulated", "write-protect of untouched pages" },
	{ UFFD_FEATURE_POISON, "poison", "UFFDIO_POISON" },
	{ UFFD_FEATURE_WP_ASYNC, "wp-async", "asynchronous write-protect" },
	{ UFFD_FEATURE_MOVE, "move", "UFFDIO_MOVE" },
};

/* PROCMAP_QUERY (6.11): one VMA per ioctl instead of parsing maps. */
static int probe_procmap_query(void)
{
	struct {
		uint64_t size, query_flags, query_addr, out[6];
		uint32_t u32[4];
		uint64_t addrs[2];
	} q = { .size = sizeof(q), .query_flags = 0x10 /* covering or next */ };
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), ok;

	if (fd < 0)
		return 0;
	ok = ioctl(fd, _IOWR('f', 17, q), &q) == 0;
	close(fd);
	return ok;
}

int probe_print(FILE *f)
{
	uint64_t features = 0;
	int err = probe_uffd_features(&features), zero;

	if (err) {
		fprintf(f, "userfaultfd: unavailable (%s)\n",
			err == -EPERM ? "not permitted" : "error");
	} else {
		for (size_t i = 0; i < sizeof(uffd_features) / sizeof(uffd_features[0]); i++)
			fprintf(f, "userfaultfd %-15s %-4s %s\n",
				uffd_features[i].name,
				features & uffd_features[i].bit ? "yes" : "no",
				uffd_features[i].what);
	}
	fprintf(f, "io_uring    %-15s %-4s %s\n", "poll",
		probe_io_uring() ? "yes" : "no", "event loop (required)");
	zero = hmmu_probe_zero_page_on_read();
	fprintf(f, "mm          %-15s %-4s %s\n", "zero-page-read",
		zero < 0 ? "?" : zero ? "yes" : "no",
		"a read fault maps the shared zero page (snapshots report ZERO)");
	fprintf(f, "procfs      %-15s %-4s %s\n", "procmap-query",
		probe_procmap_query() ? "yes" : "no",
		"VMA lookups without parsing /proc/PID/maps");
	return err;
}
