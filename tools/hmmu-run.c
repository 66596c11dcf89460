/* SPDX-License-Identifier: MIT */
/*
 * hmmu-run: run a program written for the kernel's HMM test device
 * (/dev/hmm_dmirror0..3) on hmmu, unmodified, the way umockdev-run or
 * fakeroot fake other kernel interfaces.
 *
 *   hmmu-run [--socket PATH | --private] [--hmmud PATH] [--] PROGRAM [ARGS...]
 *
 * The program runs with libhmmu-dmirror.so preloaded (ahead of any
 * LD_PRELOAD it had) and $HMMU_SOCKET naming the daemon: the one at
 * --socket, else at $HMMU_SOCKET or /run/hmmu/hmmud.sock if one answers
 * there, else a private hmmud that hmmu-run starts on a socket of its own
 * and stops when the program ends. Its exit status is the program's
 * (128 + N for a program killed by signal N).
 */
#include <hmmu/hmmu.h>

#include "hmmu_build_info.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "../common/notify_wait.h"

/* How long a private hmmud may take to listen, and to stop. */
#define START_TIMEOUT_MS 10000
#define STOP_TIMEOUT_S 30

static int usage(FILE *f)
{
	fprintf(f,
		"usage: hmmu-run [--socket PATH | --private] [--hmmud PATH] "
		"[--] PROGRAM [ARGS...]\n\n"
		"Run PROGRAM with /dev/hmm_dmirror0..3 emulated by hmmud.\n"
		"  --socket PATH  use the hmmud listening at PATH\n"
		"  --private      always start a private hmmud for PROGRAM\n"
		"  --hmmud PATH   the hmmud to start (default: $HMMU_HMMUD, or "
		"the one installed with hmmu-run)\n");
	return f == stdout ? 0 : 2;
}

/* The directory hmmu-run's own executable is in. */
static int self_dir(char *dir, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", dir, len - 1);
	char *slash;

	if (n < 0)
		return -errno;
	dir[n] = '\0';
	slash = strrchr(dir, '/');
	if (!slash)
		return -ENOENT;
	*slash = '\0';
	return 0;
}

/*
 * A file installed with hmmu-run: beside it in a build tree (@build_name),
 * else at @installed, relative to the directory of bin/ (so an install
 * tree may move). $@env overrides both.
 */
static int find_file(const char *env, const char *build_name,
		     const char *installed, char *out, size_t len)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];

	if (getenv(env) && *getenv(env)) {
		if (!realpath(getenv(env), out))
			return -errno;
		return 0;
	}
	if (self_dir(dir, sizeof(dir)))
		return -ENOENT;
	snprintf(path, sizeof(path), "%s/%s", dir, build_name);
	if (access(path, F_OK) != 0)
		snprintf(path, sizeof(path), "%s/../%s", dir, installed);
	if (strlen(path) >= len || !realpath(path, out))
		return -ENOENT;
	return 0;
}

static bool daemon_answers(const char *socket)
{
	struct hmmu *h;

	if (hmmu_connect(socket, &h))
		return false;
	hmmu_disconnect(h);
	return true;
}

struct private_daemon {
	char dir[64];
	char socket[96];
	char log[96];
	pid_t pid;
};

static int start_daemon(struct private_daemon *d, const char *hmmud)
{
	char notify[96];
	int nfd, log;

	strcpy(d->dir, "/tmp/hmmu-run-XXXXXX");
	if (!mkdtemp(d->dir)) {
		fprintf(stderr, "hmmu-run: mkdtemp: %s\n", strerror(errno));
		return -1;
	}
	snprintf(d->socket, sizeof(d->socket), "%s/hmmud.sock", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/hmmud.log", d->dir);
	snprintf(notify, sizeof(notify), "%s/notify", d->dir);
	nfd = hmmu_notify_listen(notify);
	log = open(d->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (nfd < 0 || log < 0) {
		fprintf(stderr, "hmmu-run: cannot set up %s\n", d->dir);
		return -1;
	}
	d->pid = fork();
	if (d->pid < 0) {
		fprintf(stderr, "hmmu-run: fork: %s\n", strerror(errno));
		return -1;
	}
	if (d->pid == 0) {
		/*
		 * Its own process group: a ^C at the terminal goes to the
		 * program, and the daemon outlives it to clean up after it.
		 * It never outlives hmmu-run.
		 */
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(log, STDOUT_FILENO);
		dup2(log, STDERR_FILENO);
		setenv("NOTIFY_SOCKET", notify, 1);
		execl(hmmud, hmmud, "--foreground", "--socket", d->socket,
		      "--socket-mode", "0600", "--log-level", "info",
		      (char *)NULL);
		fprintf(stderr, "hmmu-run: cannot run %s: %s\n", hmmud,
			strerror(errno));
		_exit(127);
	}
	close(log);
	if (!hmmu_notify_wait_ready(nfd, d->pid, START_TIMEOUT_MS)) {
		fprintf(stderr, "hmmu-run: %s did not start; its log: %s\n",
			hmmud, d->log);
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
		close(nfd);
		return -1;
	}
	close(nfd);
	return 0;
}

/* Stop the daemon; its log stays, and is named, if anything went wrong. */
static void stop_daemon(struct private_daemon *d, bool keep_log)
{
	int status = 0;

	if (d->pid > 0) {
		kill(d->pid, SIGTERM);
		for (int i = 0; i < STOP_TIMEOUT_S * 10; i++) {
			if (waitpid(d->pid, &status, WNOHANG) == d->pid)
				break;
			usleep(100 * 1000);
			if (i + 1 == STOP_TIMEOUT_S * 10) {
				kill(d->pid, SIGKILL);
				waitpid(d->pid, &status, 0);
			}
		}
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "hmmu-run: hmmud did not stop cleanly "
					"(status %#x)\n", status);
			keep_log = true;
		}
	}
	if (keep_log) {
		fprintf(stderr, "hmmu-run: hmmud's log: %s\n", d->log);
		return;
	}
	unlink(d->log);
	unlink(d->socket);
	snprintf(d->log, sizeof(d->log), "%s/notify", d->dir);
	unlink(d->log);
	rmdir(d->dir);
}

/* LD_PRELOAD: the shim first, then whatever the user preloads. */
static int set_preload(const char *shim)
{
	const char *old = getenv("LD_PRELOAD");
	size_t len = strlen(shim) + (old ? strlen(old) : 0) + 2;
	char *v = malloc(len);
	int err;

	if (!v)
		return -1;
	snprintf(v, len, "%s%s%s", shim, old && *old ? ":" : "",
		 old ? old : "");
	err = setenv("LD_PRELOAD", v, 1);
	free(v);
	return err;
}

static pid_t program_pid;

/* hmmu-run stays to clean up: the program gets the signal instead. */
static void forward_signal(int sig)
{
	if (program_pid > 0)
		kill(program_pid, sig);
}

static int run_program(char **argv)
{
	struct sigaction sa = { .sa_handler = forward_signal };
	int status;

	program_pid = fork();
	if (program_pid < 0) {
		fprintf(stderr, "hmmu-run: fork: %s\n", strerror(errno));
		return 127;
	}
	if (program_pid == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "hmmu-run: %s: %s\n", argv[0], strerror(errno));
		_exit(errno == ENOENT ? 127 : 126);
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* The terminal sends these to the program, in our process group. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	while (waitpid(program_pid, &status, 0) < 0)
		if (errno != EINTR)
			return 127;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "private", no_argument, NULL, 'p' },
		{ "hmmud", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	struct private_daemon d = { .pid = 0 };
	const char *socket = NULL, *hmmud_opt = NULL;
	char shim[PATH_MAX], hmmud[PATH_MAX];
	bool private = false;
	int c, status;

	while ((c = getopt_long(argc, argv, "+", options, NULL)) != -1) {
		switch (c) {
		case 's':
			socket = optarg;
			break;
		case 'p':
			private = true;
			break;
		case 'd':
			hmmud_opt = optarg;
			break;
		case 'h':
			return usage(stdout);
		case 'V':
			printf("hmmu-run %s (%s), libhmmu %s\n", HMMU_BUILD_VERSION,
			       HMMU_BUILD_COMMIT, hmmu_version());
			return 0;
		default:
			return usage(stderr);
		}
	}
	if (optind >= argc || (socket && private))
		return usage(stderr);
	if (find_file("HMMU_DMIRROR_SHIM", "libhmmu-dmirror.so",
		      HMMU_RUN_SHIM_PATH, shim, sizeof(shim))) {
		fprintf(stderr, "hmmu-run: cannot find libhmmu-dmirror.so "
				"(set $HMMU_DMIRROR_SHIM)\n");
		return 127;
	}

	if (socket) {
		if (!daemon_answers(socket)) {
			fprintf(stderr, "hmmu-run: no hmmud answers at %s\n",
				socket);
			return 127;
		}
	} else if (!private && daemon_answers(NULL)) {
		socket = getenv("HMMU_SOCKET") && *getenv("HMMU_SOCKET") ?
				 getenv("HMMU_SOCKET") : HMMU_DEFAULT_SOCKET;
	} else {
		if (hmmud_opt)
			setenv("HMMU_HMMUD", hmmud_opt, 1);
		if (find_file("HMMU_HMMUD", "hmmud", HMMU_RUN_HMMUD_PATH, hmmud,
			      sizeof(hmmud))) {
			fprintf(stderr, "hmmu-run: cannot find hmmud "
					"(use --hmmud PATH)\n");
			return 127;
		}
		if (start_daemon(&d, hmmud))
			return 127;
		socket = d.socket;
	}

	if (setenv("HMMU_SOCKET", socket, 1) || set_preload(shim)) {
		fprintf(stderr, "hmmu-run: setenv: %s\n", strerror(errno));
		status = 127;
	} else {
		status = run_program(argv + optind);
	}
	if (d.pid)
		stop_daemon(&d, status != 0);
	return status;
}
