/* SPDX-License-Identifier: MIT */
#include "harness.h"
#include "common/kfeatures.h"
#include "common/notify_wait.h"
#include "common/kernel_uapi.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

struct daemon_instance daemon_under_test;

void require_userfaultfd(void)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} required[] = {
		{ UFFD_FEATURE_PAGEFAULT_FLAG_WP, "write-protect faults" },
		{ UFFD_FEATURE_EVENT_REMAP, "mremap events" },
		{ UFFD_FEATURE_EVENT_REMOVE, "madvise events" },
		{ UFFD_FEATURE_EVENT_UNMAP, "munmap events" },
	};
	const struct kfeatures *kf = kfeatures();
	uint64_t features = kf->uffd_features;
	char missing[256] = "";
	int err = kf->uffd_open_err ? kf->uffd_open_err : kf->uffd_err;

	if (err == -EPERM || err == -ENOSYS)
		cr_skip_test("this process cannot create a userfaultfd (%s); "
			     "hmmu needs one (kernel with CONFIG_USERFAULTFD, "
			     "and root, /dev/userfaultfd access or "
			     "vm.unprivileged_userfaultfd=1)",
			     strerror(-err));
	if (err)
		cr_skip_test("UFFDIO_API fails (%s): this kernel's userfaultfd "
			     "is unusable for hmmu", strerror(-err));
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (features & required[i].bit)
			continue;
		if (missing[0])
			strcat(missing, ", ");
		strcat(missing, required[i].name);
	}
	/* Whatever HMMU_UFFD_REQUIRED_FEATURES may come to hold. */
	if (!missing[0] && (features & HMMU_UFFD_REQUIRED_FEATURES) !=
				   HMMU_UFFD_REQUIRED_FEATURES)
		snprintf(missing, sizeof(missing), "features %#llx",
			 (unsigned long long)(HMMU_UFFD_REQUIRED_FEATURES &
					      ~features));
	if (missing[0])
		cr_skip_test("this kernel's userfaultfd lacks what hmmu "
			     "requires: %s", missing);
}

/*
 * Which hmmud to run, and under what: $HMMU_TEST_HMMUD names another build
 * of it (a ThreadSanitizer one, say), $HMMU_TEST_DAEMON_PREFIX a command it
 * runs under (words split on blanks, e.g. a seccomp wrapper). The prefix
 * must exec its last arguments in the same process, so that the pid we wait
 * for is the daemon's.
 */
static const char *hmmud_path(void)
{
	const char *p = getenv("HMMU_TEST_HMMUD");

	return p && *p ? p : HMMUD_PATH;
}

static int add_prefix(const char **argv, int n, int max, char *words)
{
	for (char *save = NULL, *w = strtok_r(words, " \t", &save); w && n < max;
	     w = strtok_r(NULL, " \t", &save))
		argv[n++] = w;
	return n;
}

void daemon_start_args(const char *const *extra)
{
	struct daemon_instance *d = &daemon_under_test;
	const char *argv[48];
	static char prefix[512];
	char notify[128];
	int n = 0, nfd;

	require_userfaultfd();
	strcpy(d->dir, "/tmp/hmmu-test-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->socket, sizeof(d->socket), "%s/hmmud.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/hmmud.log", d->dir);
	snprintf(notify, sizeof(notify), "%s/notify", d->dir);
	nfd = hmmu_notify_listen(notify);
	cr_assert_geq(nfd, 0, "notify socket: %s", strerror(-nfd));

	snprintf(prefix, sizeof(prefix), "%s",
		 getenv("HMMU_TEST_DAEMON_PREFIX") ? getenv("HMMU_TEST_DAEMON_PREFIX") : "");
	n = add_prefix(argv, n, 16, prefix);
	argv[n++] = hmmud_path();
	argv[n++] = "--foreground";
	argv[n++] = "--socket";
	argv[n++] = d->socket;
	argv[n++] = "--log-level";
	argv[n++] = "debug";
	for (int i = 0; extra && extra[i] && n < 47; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	d->pid = fork();
	cr_assert(d->pid >= 0);
	if (d->pid == 0) {
		int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		/* Never outlive the test, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fd, 2);
		dup2(fd, 1);
		/* The daemon gets none of the test runner's fds. */
		close_range(3, ~0u, 0);
		setenv("NOTIFY_SOCKET", notify, 1);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	/*
	 * The daemon says READY=1 on $NOTIFY_SOCKET once it listens, as under
	 * systemd. Waiting for that, rather than probing the socket, leaves
	 * no probe connection behind to skew a test's first counts.
	 */
	if (!hmmu_notify_wait_ready(nfd, d->pid, 10000)) {
		int status = 0;

		close(nfd);
		/* Dead already (a bad option, a seccomp kill), or hung. */
		if (waitpid(d->pid, &status, WNOHANG) != d->pid) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, NULL, 0);
			d->pid = 0;
			cr_assert_fail("hmmud did not get ready in 10 s; see %s",
				       d->log);
		}
		d->pid = 0;
		cr_assert_fail("hmmud exited before it was ready (status %#x); "
			       "see %s", status, d->log);
	}
	close(nfd);
	setenv("HMMU_SOCKET", d->socket, 1);
}

void daemon_start(void)
{
	daemon_start_args(NULL);
}

void daemon_start_open_to_all(void)
{
	const char *args[] = { "--socket-mode", "0666", NULL };

	daemon_start_args(args);
}

void daemon_remove_dir(void)
{
	char cmd[160];

	if (getenv("HMMU_TEST_KEEP") || !daemon_under_test.dir[0])
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", daemon_under_test.dir);
	(void)!system(cmd);
}

void daemon_stop(void)
{
	struct daemon_instance *d = &daemon_under_test;
	int status = 0;
	char cmd[512];

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	cr_assert_eq(waitpid(d->pid, &status, 0), d->pid);
	d->pid = 0;
	/*
	 * A clean stop: no crash, and under ASan no leak (LSan exits 23).
	 * Criterion 2.4 only warns about a failure in a test's teardown, so
	 * this says it in words that ctest looks for (FAIL_REGULAR_EXPRESSION
	 * in tests/CMakeLists.txt), and aborts.
	 */
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(cmd, sizeof(cmd), "cat %s >&2", d->log);
		(void)!system(cmd);
		fprintf(stderr, "hmmud did not stop cleanly (status %#x)\n", status);
		abort();
	}
	daemon_remove_dir();
}

struct hmmu *connect_or_die(void)
{
	struct hmmu *h = NULL;
	int err = hmmu_connect(daemon_under_test.socket, &h);

	cr_assert_eq(err, 0, "hmmu_connect: %s", strerror(-err));
	return h;
}

struct hmmu_mirror *mirror_registered(struct hmmu *h, const char *device)
{
	struct hmmu_mirror *m = NULL;
	int err;

	err = hmmu_mirror_create(h, device, &m);
	cr_assert_eq(err, 0, "mirror_create(%s): %s", device, strerror(-err));
	err = hmmu_mirror_register(m);
	cr_assert_eq(err, 0, "mirror_register(%s): %s %s", device,
		     strerror(-err), hmmu_error_detail());
	return m;
}

struct hmmu_stats stats_of(struct hmmu *h)
{
	struct hmmu_stats st;
	int n = hmmu_stats(h, &st, sizeof(st));

	cr_assert_eq(n, (int)sizeof(st), "hmmu_stats: %s",
		     n < 0 ? strerror(-n) : "a short fill");
	return st;
}

int daemon_log_count(const char *needle)
{
	FILE *f = fopen(daemon_under_test.log, "r");
	char line[1024];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, needle))
			n++;
	fclose(f);
	return n;
}

static int smaps_scan(const void *addr, const char *flag, int any)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	unsigned long s, e;
	char line[512];
	int in_vma = any, found = 0;

	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f)) {
		/* A VMA's first line: "start-end perms ..." */
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
			if (!any)
				in_vma = (unsigned long)addr >= s &&
					 (unsigned long)addr < e;
			continue;
		}
		if (in_vma && strncmp(line, "VmFlags:", 8) == 0) {
			char *p = line + 8;

			if (any) {
				if (strstr(p, " uf") || strstr(p, " uw"))
					found = 1;
			} else if (strstr(p, flag)) {
				found = 1;
			}
		}
	}
	fclose(f);
	return found;
}

int smaps_has_uffd_flags(void)
{
	return smaps_scan(NULL, NULL, 1);
}

int smaps_vma_has_flag(const void *addr, const char *flag)
{
	char f[8];

	snprintf(f, sizeof(f), " %s", flag);
	return smaps_scan(addr, f, 0);
}

int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	cr_assert_not_null(dir);
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}
