/* SPDX-License-Identifier: MIT */
#include "harness.h"
#include "common/kfeatures.h"
#include "common/notify_wait.h"
#include "common/kernel_uapi.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct daemon_instance daemon_under_test;

/*
 * What the test declared the daemon may log, and how far its log has been
 * judged. Each test runs in a process of its own: this starts empty.
 */
#define EXPECTED_MAX 64
static char expected[EXPECTED_MAX][160];
static int nexpected;
static long log_judged;

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

/* The daemon's temporary directory goes, unless $HMMU_TEST_KEEP. */
static void remove_dir(void)
{
	char cmd[160];

	if (!daemon_under_test.dir[0])
		return;
	if (!getenv("HMMU_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", daemon_under_test.dir);
		(void)!system(cmd);
	}
	daemon_under_test.dir[0] = '\0';
}

/*
 * A test that skips (cr_skip_test) never gets to its .fini in Criterion
 * 2.4: stop its daemon and remove its directory when its process exits.
 * Not in a child that forked from the test and calls exit().
 */
static pid_t daemon_owner;

static void daemon_reap_at_exit(void)
{
	struct daemon_instance *d = &daemon_under_test;

	if (getpid() != daemon_owner || d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
	remove_dir();
}

void journal_stream_env(int fd, char *out, size_t size)
{
	struct stat st;

	cr_assert_eq(fstat(fd, &st), 0);
	snprintf(out, size, "JOURNAL_STREAM=%llu:%llu",
		 (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
}

void daemon_start_args(const char *const *extra)
{
	struct daemon_instance *d = &daemon_under_test;
	const char *argv[48];
	static char prefix[512];
	char notify[128], journal[64];
	int n = 0, nfd, log;

	require_userfaultfd();
	strcpy(d->dir, "/tmp/hmmu-test-XXXXXX");
	cr_assert_not_null(mkdtemp(d->dir));
	snprintf(d->socket, sizeof(d->socket), "%s/hmmud.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/hmmud.log", d->dir);
	snprintf(notify, sizeof(notify), "%s/notify", d->dir);
	nfd = hmmu_notify_listen(notify);
	cr_assert_geq(nfd, 0, "notify socket: %s", strerror(-nfd));
	/*
	 * Its stderr is the log. $JOURNAL_STREAM names that file, as systemd
	 * names the journal's stream: hmmud then starts each line with its
	 * level, which daemon_log_unexpected() reads.
	 */
	log = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert_geq(log, 0, "%s: %s", d->log, strerror(errno));
	journal_stream_env(log, journal, sizeof(journal));
	log_judged = 0;

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
		/* Never outlive the test, however it ends. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(log, 2);
		dup2(log, 1);
		/* The daemon gets none of the test runner's fds. */
		close_range(3, ~0u, 0);
		setenv("NOTIFY_SOCKET", notify, 1);
		putenv(journal);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(log);
	if (daemon_owner != getpid()) {
		daemon_owner = getpid();
		atexit(daemon_reap_at_exit);
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

void daemon_dir_open_to_all(void)
{
	cr_assert_eq(chmod(daemon_under_test.dir, 0755), 0, "chmod %s: %s",
		     daemon_under_test.dir, strerror(errno));
}

/* ---- the daemon's log --------------------------------------------------- */

void expect_daemon_log(const char *fmt, ...)
{
	char what[sizeof(expected[0])];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	for (int i = 0; i < nexpected; i++)
		if (strcmp(expected[i], what) == 0)
			return;
	cr_assert_lt(nexpected, EXPECTED_MAX,
		     "more than %d expect_daemon_log()", EXPECTED_MAX);
	strcpy(expected[nexpected++], what);
}

/*
 * Is this line an error or a warning that nobody declared? hmmud's logger
 * starts a line with "<N>hmmud: ", N its syslog level (3 error, 4 warning);
 * a line "hmmud: ..." without one it wrote outside its logger (about its
 * options or environment, before the logger was set up), and counts as a
 * warning. Other lines are not hmmud's (a wrapper's, a sanitizer's, whose
 * reports also make its exit status fail) and are not judged here.
 */
static int unexpected(const char *line)
{
	const char *msg = line;

	if (line[0] == '<' && line[1] >= '0' && line[1] <= '7' &&
	    line[2] == '>') {
		if (line[1] > '4')
			return 0;
		msg = line + 3;
	}
	if (strncmp(msg, "hmmud: ", 7) != 0)
		return 0;
	for (int i = 0; i < nexpected; i++)
		if (strstr(msg, expected[i]))
			return 0;
	return 1;
}

int daemon_log_unexpected(const char *path, long *offset, char *report,
			  size_t size)
{
	FILE *f = fopen(path, "r");
	size_t used = 0;
	char line[1024];
	int n = 0;

	if (size)
		report[0] = '\0';
	if (!f)
		return 0;
	if (fseek(f, *offset, SEEK_SET) == 0) {
		while (fgets(line, sizeof(line), f)) {
			size_t len = strlen(line);

			/* Still being written: judged next time, whole. */
			if (line[len - 1] != '\n' && len < sizeof(line) - 1)
				break;
			*offset += (long)len;
			if (!unexpected(line))
				continue;
			n++;
			if (used + len + 3 < size) {
				snprintf(report + used, size - used, "  %s%s",
					 line,
					 line[len - 1] == '\n' ? "" : "\n");
				used = strlen(report);
			}
		}
	}
	fclose(f);
	return n;
}

#define UNEXPECTED_LOG "hmmud logged what the test did not expect"
#define UNEXPECTED_HOW "declare what the test provokes with expect_daemon_log()"

void daemon_log_check(void)
{
	char report[2048];
	int n;

	if (!daemon_under_test.dir[0])
		return;
	n = daemon_log_unexpected(daemon_under_test.log, &log_judged, report,
				  sizeof(report));
	if (n)
		cr_assert_fail(UNEXPECTED_LOG " (%d lines; " UNEXPECTED_HOW
			       "):\n%s", n, report);
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

/* ---- stopping ------------------------------------------------------------ */

void daemon_remove_dir(void)
{
	daemon_log_check();
	remove_dir();
}

void daemon_stop(void)
{
	struct daemon_instance *d = &daemon_under_test;
	char cmd[512], report[4096];
	int status = 0, n;

	if (d->pid <= 0)
		return;
	kill(d->pid, SIGTERM);
	cr_assert_eq(waitpid(d->pid, &status, 0), d->pid);
	d->pid = 0;
	/*
	 * A clean stop: no crash, and under ASan no leak (LSan exits 23);
	 * then nothing in the log, to its last line, that the test did not
	 * expect. Criterion 2.4 only warns about a failure in a test's
	 * teardown, so this says it in words that ctest looks for
	 * (FAIL_REGULAR_EXPRESSION in tests/CMakeLists.txt), and aborts:
	 * criterion_main.c fails a test whose teardown did not finish.
	 */
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(cmd, sizeof(cmd), "cat %s >&2", d->log);
		(void)!system(cmd);
		fprintf(stderr, "hmmud did not stop cleanly (status %#x)\n", status);
		abort();
	}
	n = daemon_log_unexpected(d->log, &log_judged, report, sizeof(report));
	if (n) {
		fprintf(stderr, UNEXPECTED_LOG " (%d lines; " UNEXPECTED_HOW
			"; the log is %s):\n%s", n, d->log, report);
		abort();
	}
	daemon_remove_dir();
}

void daemon_kill(void)
{
	struct daemon_instance *d = &daemon_under_test;
	int status = 0;

	cr_assert_gt(d->pid, 0, "no daemon to kill");
	cr_assert_eq(kill(d->pid, SIGKILL), 0);
	cr_assert_eq(waitpid(d->pid, &status, 0), d->pid);
	d->pid = 0;
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "hmmud ended otherwise than by the SIGKILL (status %#x)",
		  status);
	daemon_remove_dir();
}

void daemon_restart(const char *const *extra)
{
	daemon_log_check();
	daemon_stop();
	daemon_start_args(extra);
}

/* ---- the fixture --------------------------------------------------------- */

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

struct fixture fixture_open(const char *device)
{
	struct fixture f = { .h = connect_or_die() };

	if (device)
		f.m = mirror_registered(f.h, device);
	return f;
}

int fixture_try_open(struct fixture *f, const char *device)
{
	int err;

	*f = (struct fixture){ 0 };
	err = hmmu_connect(daemon_under_test.socket, &f->h);
	if (err || !device)
		return err;
	err = hmmu_mirror_create(f->h, device, &f->m);
	return err ? err : hmmu_mirror_register(f->m);
}

void fixture_close(struct fixture *f)
{
	hmmu_mirror_destroy(f->m);
	f->m = NULL;
	/* The daemon survived the test, and serves this connection still. */
	stats_of(f->h);
	hmmu_disconnect(f->h);
	f->h = NULL;
	daemon_log_check();
}
