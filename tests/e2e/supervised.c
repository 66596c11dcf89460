/* SPDX-License-Identifier: MIT */
#include "supervised.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000

struct supervised supervised;

const char *supervised_hmmud_path(void)
{
	const char *p = getenv("HMMU_TEST_HMMUD");

	return p && *p ? p : HMMUD_PATH;
}

void supervised_cleanup(void)
{
	char cmd[128];

	/* Only after a failed assertion is it still running. */
	if (supervised.pid > 0) {
		kill(supervised.pid, SIGTERM);
		waitpid(supervised.pid, NULL, 0);
		supervised.pid = 0;
	}
	if (supervised.dir[0] && !getenv("HMMU_TEST_KEEP")) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", supervised.dir);
		(void)!system(cmd);
	}
	supervised.dir[0] = '\0';
}

void supervised_prepare(void)
{
	struct supervised *s = &supervised;

	if (s->dir[0])
		return;
	strcpy(s->dir, "/tmp/hmmu-sup-XXXXXX");
	cr_assert_not_null(mkdtemp(s->dir));
	snprintf(s->run, sizeof(s->run), "%s/run", s->dir);
	snprintf(s->log, sizeof(s->log), "%s/events.log", s->dir);
	snprintf(s->state, sizeof(s->state), "%s/state", s->dir);
	snprintf(s->out, sizeof(s->out), "%s/out", s->dir);
	snprintf(s->sock, sizeof(s->sock), "%s/hmmud.sock", s->dir);
}

void supervised_start(const char *const *sup, const char *const *svc)
{
	const char *argv[64];
	int n = 0, out;

	supervised_prepare();
	argv[n++] = SUPERVISE_PATH;
	argv[n++] = "--dir";
	argv[n++] = supervised.run;
	argv[n++] = "--log";
	argv[n++] = supervised.log;
	argv[n++] = "--state";
	argv[n++] = supervised.state;
	while (*sup && n < 40)
		argv[n++] = *sup++;
	argv[n++] = "--";
	while (*svc && n < 63)
		argv[n++] = *svc++;
	argv[n] = NULL;

	/* Its output and the service's: the sanitizers' reports land here. */
	out = open(supervised.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		   0644);
	cr_assert_geq(out, 0);
	supervised.pid = fork();
	cr_assert_geq(supervised.pid, 0);
	if (supervised.pid == 0) {
		/* Never outlive the test: it stops its service as on SIGTERM. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(out, 1);
		dup2(out, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(out);
}

const char *supervised_slurp(const char *path)
{
	static char *buf;
	static size_t cap;
	size_t len = 1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	/* The whole file, however long a crash loop made it. */
	for (;;) {
		ssize_t n;

		if (!buf || cap - len < 4096) {
			cap = cap ? cap * 2 : 65536;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		n = fd >= 0 ? read(fd, buf + len, cap - len - 1) : 0;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (fd >= 0)
		close(fd);
	buf[0] = '\n';
	buf[len] = '\0';
	return buf;
}

void supervised_wait_state(const char *want)
{
	struct timespec tick = { 0, 10 * 1000 * 1000 };
	char line[128];

	for (int waited = 0; waited < WAIT_MS; waited += 10) {
		const char *state = supervised_slurp(supervised.state);
		const char *w = want;
		bool all = true;

		while (all && *w) {
			size_t len = strcspn(w, "\n");

			snprintf(line, sizeof(line), "\n%.*s\n", (int)len, w);
			all = strstr(state, line) != NULL;
			w += len + (w[len] == '\n');
		}
		if (all)
			return;
		cr_assert_eq(waitpid(supervised.pid, NULL, WNOHANG), 0,
			     "hmmu-supervise exited; see %s", supervised.log);
		nanosleep(&tick, NULL);
	}
	fprintf(stderr, "state:%s", supervised_slurp(supervised.state));
	fprintf(stderr, "log:%s", supervised_slurp(supervised.log));
	cr_assert_fail("state never showed\n%s", want);
}

int supervised_state_value(const char *key)
{
	char pattern[64];
	const char *p;

	snprintf(pattern, sizeof(pattern), "\n%s=", key);
	p = strstr(supervised_slurp(supervised.state), pattern);
	cr_assert_not_null(p, "no %s in the state file", key);
	return atoi(p + strlen(pattern));
}

bool supervised_logged(const char *what)
{
	return strstr(supervised_slurp(supervised.log), what) != NULL;
}

void supervised_crash_and_wait(int restarts)
{
	char want[64];

	cr_assert_eq(kill(supervised.pid, SIGUSR1), 0);
	snprintf(want, sizeof(want), "restarts=%d\nready=1", restarts);
	supervised_wait_state(want);
}

void supervised_stop(void)
{
	int status;
	const char *out;

	cr_assert_eq(kill(supervised.pid, SIGTERM), 0);
	cr_assert_eq(waitpid(supervised.pid, &status, 0), supervised.pid);
	supervised.pid = 0;
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "hmmu-supervise: status %#x; log:%s", status,
		  supervised_slurp(supervised.log));
	cr_assert(supervised_logged("stop: SIGTERM to pid="));
	cr_assert(supervised_logged("status=exited/0"), "log:%s",
		  supervised_slurp(supervised.log));
	out = supervised_slurp(supervised.out);
	cr_assert_null(strstr(out, "Sanitizer"), "%s", out);
	cr_assert_null(strstr(out, "runtime error"), "%s", out);
}
