/* SPDX-License-Identifier: MIT */
/*
 * A client for tests of hmmuctl: it registers a mirror on each DEVICE,
 * prints "ready PID" once they all are, then keeps the counters moving
 * until SIGTERM or SIGINT: every 10 ms it writes a page from the CPU (an
 * invalidation, and a CPU fault once the page is write-protected) and
 * reads it through each mirror (a device fault). It exits 0 after
 * destroying its mirrors; 77 if this machine gives it no userfaultfd hmmu
 * can use.
 *
 * usage: faulting_client SOCKET DEVICE...
 */
#include <hmmu/hmmu.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define NPAGES 4
#define MAX_MIRRORS 8

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static int die(const char *what, int err)
{
	const char *detail = hmmu_error_detail();

	fprintf(stderr, "faulting_client: %s: %s%s%s\n", what, strerror(-err),
		*detail ? ": " : "", detail);
	return 1;
}

int main(int argc, char **argv)
{
	struct hmmu_mirror *m[MAX_MIRRORS];
	struct sigaction sa = { .sa_handler = on_stop };
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	int nmirrors = argc - 2, err;
	struct hmmu *h;
	char *mem, *buf;

	if (argc < 3 || nmirrors > MAX_MIRRORS) {
		fprintf(stderr, "usage: faulting_client SOCKET DEVICE...\n");
		return 2;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	mem = mmap(NULL, NPAGES * page, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	buf = malloc(NPAGES * page);
	if (mem == MAP_FAILED || !buf)
		return die("memory", -ENOMEM);
	memset(mem, 1, NPAGES * page);

	err = hmmu_connect(argv[1], &h);
	if (err)
		return die("connect", err);
	for (int i = 0; i < nmirrors; i++) {
		err = hmmu_mirror_create(h, argv[i + 2], &m[i]);
		if (err)
			return die(argv[i + 2], err);
		err = hmmu_mirror_register(m[i]);
		/* No userfaultfd for this user, or not with what hmmu needs. */
		if (err == -EPERM || err == -EOPNOTSUPP) {
			die(argv[i + 2], err);
			return 77;
		}
		if (err)
			return die(argv[i + 2], err);
	}
	printf("ready %d\n", (int)getpid());
	fflush(stdout);

	for (unsigned long n = 0; !stop; n++) {
		mem[0] = (char)n;
		for (int i = 0; i < nmirrors && !stop; i++) {
			struct hmmu_cmd c = { .addr = (uintptr_t)mem,
					      .npages = NPAGES };

			err = hmmu_device_read(m[i], &c, buf);
			if (err)
				return die("device read", err);
			if (buf[0] != (char)n) {
				fprintf(stderr, "faulting_client: device read stale data\n");
				return 1;
			}
		}
		nanosleep(&pause, NULL);
	}
	for (int i = 0; i < nmirrors; i++)
		hmmu_mirror_destroy(m[i]);
	hmmu_disconnect(h);
	free(buf);
	return 0;
}
