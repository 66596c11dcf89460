/* SPDX-License-Identifier: MIT */
/*
 * hmmud: the hmmu daemon. Sets up the listening socket (its own, or the one
 * systemd passes), the devices, the worker pool and the event loop, then
 * serves until SIGTERM or SIGINT.
 */
#include "../core/copy_pool.h"
#include "../core/counters.h"
#include "daemon.h"
#include "../core/limits.h"
#include "../lib/log.h"
#include "../lib/placement.h"
#include "../common/kfeatures.h"
#include "queue.h"
#include "session.h"
#include "../lib/workers.h"
#include "restart.h"
#include "../core/device.h"
#include "../core/devmem.h"
#include "../core/failsafe.h"
#include "../core/journal.h"
#include "../core/accounts.h"
#include "hmmu_build_info.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/hmmu/hmmud.sock"
#define MAX_DEVICES 64

static const char *const default_devices[] = {
	"dmirror:name=dmirror0",
	"dmirror:name=dmirror1",
	"accel:name=acc0",
};

struct options {
	const char *socket_path; /* absolute: a detached daemon is at "/" */
	mode_t socket_mode;
	const char *socket_group; /* NULL: "hmmu" if that group exists */
	const char *devices[MAX_DEVICES];
	unsigned ndevices;
	unsigned workers;
	unsigned adopt_grace_ms;
	int foreground;
	int check;
	const char *log_level;
	const char *log_file; /* the log, once ready; NULL: stderr or syslog */
};

/* Usage errors: bad options, bad --device specs (main()'s exit status 2). */
#define EXIT_USAGE 2

/*
 * One worker per CPU, two at least: workers mostly wait on the client or
 * the kernel, and more threads than CPUs only add wake-up latency.
 */
static unsigned default_workers(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 2 ? 2 : n > 64 ? 64 : (unsigned)n;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: hmmud [--socket PATH] [--device SPEC]... [--workers N]\n"
		"             [--limit NAME=VALUE]... [--foreground]\n"
		"             [--log-level error|warning|info|debug] [--log-file FILE]\n"
		"       hmmud --check | --version | --help\n"
		"\n"
		"  --socket PATH   listen on PATH (default " DEFAULT_SOCKET
		"; under\n"
		"                  systemd socket activation, the passed socket)\n"
		"  --device SPEC   offer a device, MODEL:name=NAME[,opt=val...]\n"
		"                  (MODEL: dmirror or accel), or an out-of-tree\n"
		"                  model, model=/path/model.so,name=NAME[,...];\n"
		"                  default: dmirror0, dmirror1 and accel acc0\n"
		"  --socket-mode M who may connect, as an octal file mode (default 0660)\n"
		"  --socket-group G the socket's group (default: hmmu, if it exists)\n"
		"  --workers N     request worker threads (default: one per CPU)\n"
		"  --adopt-grace MS under a manager with an fd store, keep clients'\n"
		"                  state there, and after a restart wait MS for each\n"
		"                  client to reconnect (default 10000; 0: keep none)\n"
		"  --limit NAME=N  bound what one client or user may make hmmud spend:\n");
	limits_usage(f);
	fprintf(f,
		"  --foreground    do not detach (always so under systemd)\n"
		"  --log-file FILE once listening, log to FILE (appended) instead of\n"
		"                  stderr, or of syslog for a daemon that detached\n"
		"  --check         print what the running kernel offers and what this\n"
		"                  process may do, with how to fix what is missing;\n"
		"                  exit 1 if hmmud cannot run here\n"
		"  --version       print the version and the git commit built\n"
		"\n"
		"Exit status: 0, 1 if hmmud failed, 2 for a usage error (a bad\n"
		"option or --device spec).\n");
}

static int absolute_socket_path(struct options *o);

static int parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "device", required_argument, NULL, 'd' },
		{ "workers", required_argument, NULL, 'w' },
		{ "adopt-grace", required_argument, NULL, 'A' },
		{ "limit", required_argument, NULL, 'L' },
		{ "socket-mode", required_argument, NULL, 'M' },
		{ "socket-group", required_argument, NULL, 'G' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "log-file", required_argument, NULL, 'F' },
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->workers = default_workers();
	o->adopt_grace_ms = 10000; /* restart.h */
	o->socket_mode = 0660;
	while ((c = getopt_long(argc, argv, "s:d:w:fl:ch", longopts, NULL)) !=
	       -1) {
		switch (c) {
		case 'L':
			if (limits_set(optarg, stderr) < 0)
				return -EINVAL;
			break;
		case 'A': {
			char *end;
			unsigned long ms = strtoul(optarg, &end, 10);

			if (*end || end == optarg || ms > 3600000) {
				fprintf(stderr, "hmmud: --adopt-grace takes 0 to 3600000 (ms)\n");
				return -EINVAL;
			}
			o->adopt_grace_ms = (unsigned)ms;
			break;
		}
		case 'M': {
			char *end;
			unsigned long m = strtoul(optarg, &end, 8);

			if (*end || end == optarg || m > 0777) {
				fprintf(stderr, "hmmud: --socket-mode takes an octal mode, such as 0660\n");
				return -EINVAL;
			}
			o->socket_mode = (mode_t)m;
			break;
		}
		case 'G':
			if (!getgrnam(optarg)) {
				fprintf(stderr, "hmmud: --socket-group: no group '%s'\n", optarg);
				return -EINVAL;
			}
			o->socket_group = optarg;
			break;
		case 's':
			o->socket_path = optarg;
			break;
		case 'd':
			if (o->ndevices == MAX_DEVICES) {
				fprintf(stderr, "hmmud: at most %d devices\n",
					MAX_DEVICES);
				return -EINVAL;
			}
			o->devices[o->ndevices++] = optarg;
			break;
		case 'w': {
			char *end;
			unsigned long n = strtoul(optarg, &end, 10);

			if (*end || n == 0 || n > 256) {
				fprintf(stderr, "hmmud: --workers takes 1 to 256\n");
				return -EINVAL;
			}
			o->workers = (unsigned)n;
			break;
		}
		case 'f':
			o->foreground = 1;
			break;
		case 'l':
			if (log_parse_level(optarg) < 0) {
				fprintf(stderr, "hmmud: unknown log level '%s'\n",
					optarg);
				return -EINVAL;
			}
			o->log_level = optarg;
			break;
		case 'F':
			o->log_file = optarg;
			break;
		case 'c':
			o->check = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'V':
			printf("hmmud %s (%s)\n", HMMU_BUILD_VERSION,
			       HMMU_BUILD_COMMIT);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind < argc) {
		usage(stderr);
		return -EINVAL;
	}
	if (o->socket_path)
		return absolute_socket_path(o);
	return 0;
}

/*
 * A detached daemon works in "/", and removes its socket when it stops:
 * a relative --socket is made absolute while the directory it is relative
 * to is still ours.
 */
static int absolute_socket_path(struct options *o)
{
	static char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char cwd[PATH_MAX];
	int n;

	if (o->socket_path[0] == '/')
		return 0;
	if (!getcwd(cwd, sizeof(cwd))) {
		fprintf(stderr, "hmmud: --socket %s: cannot tell the current "
			"directory: %s\n", o->socket_path, strerror(errno));
		return -errno;
	}
	n = snprintf(path, sizeof(path), "%s/%s", cwd, o->socket_path);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		fprintf(stderr, "hmmud: --socket %s: too long as an absolute "
			"path (%s/%s: at most %zu bytes)\n", o->socket_path, cwd,
			o->socket_path, sizeof(path) - 1);
		return -ENAMETOOLONG;
	}
	o->socket_path = path;
	return 0;
}

/*
 * Every --device spec, checked before anything is created: an unknown
 * model or key, a bad value, a missing or repeated name each get one line
 * saying which. The model's own options are checked by the model as the
 * device is created.
 */
static int check_device_specs(const struct options *o)
{
	char names[MAX_DEVICES][HMMU_NAME_MAX];

	for (unsigned i = 0; i < o->ndevices; i++) {
		struct device_spec s;
		char why[256];
		int err = device_spec_parse(o->devices[i], &s, why, sizeof(why));

		if (err) {
			fprintf(stderr, "hmmud: --device '%s': %s\n",
				o->devices[i], why);
			return err;
		}
		strcpy(names[i], s.name);
		device_spec_free(&s);
		for (unsigned j = 0; j < i; j++) {
			if (strcmp(names[j], names[i]) == 0) {
				fprintf(stderr, "hmmud: --device '%s': the name "
					"'%s' is taken by --device '%s'\n",
					o->devices[i], names[i], o->devices[j]);
				return -EEXIST;
			}
		}
	}
	return 0;
}

static int make_devices(struct daemon *d, const struct options *o)
{
	const char *const *specs = o->ndevices ? o->devices : default_devices;
	unsigned n = o->ndevices ? o->ndevices :
				   sizeof(default_devices) / sizeof(default_devices[0]);

	d->devices = calloc(n, sizeof(*d->devices));
	if (!d->devices)
		return -ENOMEM;
	for (unsigned i = 0; i < n; i++) {
		struct hmmu_device *dev;
		int err = device_create(specs[i], &dev);

		if (err)
			return err; /* device_create() said why */
		for (unsigned j = 0; j < d->ndevices; j++) {
			if (strcmp(d->devices[j]->name, dev->name) == 0) {
				log_err("device '%s': name used twice", specs[i]);
				device_destroy(dev);
				return -EEXIST;
			}
		}
		dev->index = d->ndevices;
		/* Each process's device memory file has a run of its pages. */
		err = failsafe_add_device(dev->index,
					  devmem_pages_total(dev->mem),
					  devmem_node(dev->mem));
		if (err) {
			log_err("device '%s': more devices than hmmu counts "
				"(%u)", specs[i], (unsigned)ACCOUNT_MAX_DEVICES);
			device_destroy(dev);
			return err;
		}
		journal_add_device(dev->name, device_model(dev),
				   devmem_pages_total(dev->mem));
		d->devices[d->ndevices++] = dev;
		log_info("device %s (%s), %llu MiB of memory on node %d, cpus %s",
			 dev->name, device_model(dev),
			 (unsigned long long)(dev->mem_bytes >> 20),
			 dev->numa_node, placement_cpus(dev->near));
	}
	return 0;
}

/* A stale socket file (nobody listening) may be replaced; a live one not. */
static int remove_stale_socket(const struct sockaddr_un *addr)
{
	struct stat st;
	int fd, err;

	if (lstat(addr->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode))
		return -EEXIST;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	err = connect(fd, (const struct sockaddr *)addr, sizeof(*addr));
	close(fd);
	if (err == 0)
		return -EADDRINUSE;
	return unlink(addr->sun_path) < 0 ? -errno : 0;
}

/*
 * Who may talk to hmmud is the socket's permission, as for libvirt's and
 * docker's: the group (hmmu) whose members may use it, nobody else.
 */
static int restrict_socket(const char *path, const struct options *o)
{
	const char *name = o->socket_group ? o->socket_group : "hmmu";
	struct group *g = getgrnam(name);

	if (g && chown(path, (uid_t)-1, g->gr_gid) < 0)
		return -errno;
	if (!g && o->socket_group)
		return -ENOENT;
	return chmod(path, o->socket_mode) < 0 ? -errno : 0;
}

/*
 * Where the socket is bound before it listens: it is renamed to its path
 * only then, so that whoever sees the path can connect (a script that
 * waits for the file would otherwise race bind() with listen()). A
 * socket's own address stays this name (getsockname()).
 */
static int unready_name(const char *path, char *out, size_t size)
{
	int n = snprintf(out, size, "%s.new", path);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int listen_on(const char *path, const struct options *o, int *out)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	struct sockaddr_un bound = { .sun_family = AF_UNIX };
	int fd, err;

	if (strlen(path) >= sizeof(addr.sun_path))
		return -ENAMETOOLONG;
	strcpy(addr.sun_path, path);
	err = unready_name(path, bound.sun_path, sizeof(bound.sun_path));
	if (err)
		return err;
	if (strcmp(path, DEFAULT_SOCKET) == 0 && mkdir("/run/hmmu", 0755) < 0 &&
	    errno != EEXIST)
		return -errno;
	err = remove_stale_socket(&addr);
	if (!err)
		err = remove_stale_socket(&bound); /* a start that died early */
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&bound, sizeof(bound)) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	err = restrict_socket(bound.sun_path, o);
	if (!err && listen(fd, 128) < 0)
		err = -errno;
	if (!err && rename(bound.sun_path, path) < 0)
		err = -errno;
	if (err) {
		close(fd);
		unlink(bound.sun_path);
		return err;
	}
	*out = fd;
	return 0;
}

/* Our own socket's name in the fd store (a socket unit's is its unit's). */
#define STORED_SOCKET "hmmud-listen"

/*
 * The listening socket systemd (or a supervisor speaking its protocol)
 * passed: the fd named "hmmud.socket" (systemd names a socket unit's fds
 * after the unit) or STORED_SOCKET (ours, from the fd store: *stored is
 * then true), else the only listening SEQPACKET socket passed. The other
 * fds are a predecessor's state, for restart_take(). 1 and *out, 0 if
 * nothing was passed, or -errno.
 */
static int activated_socket(int *out, bool *stored)
{
	char **names = NULL;
	int n = sd_listen_fds_with_names(1, &names), named = -1, only = -1;
	int sockets = 0, found;

	if (n <= 0)
		return n;
	for (int i = 0; i < n; i++) {
		int fd = SD_LISTEN_FDS_START + i;

		if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0)
			continue;
		sockets++;
		only = fd;
		if (names && names[i] &&
		    (strcmp(names[i], "hmmud.socket") == 0 ||
		     strcmp(names[i], STORED_SOCKET) == 0))
			named = fd;
	}
	if (named >= 0)
		found = named;
	else if (sockets == 1)
		found = only;
	else
		found = sockets ? -E2BIG : -ENOTSOCK; /* which is ours? */
	for (int i = 0; i < n; i++) {
		if (SD_LISTEN_FDS_START + i == found)
			continue;
		if (found >= 0)
			restart_take(SD_LISTEN_FDS_START + i,
				     names ? names[i] : NULL);
		else
			close(SD_LISTEN_FDS_START + i);
	}
	*stored = found >= 0 && names && names[found - SD_LISTEN_FDS_START] &&
		  strcmp(names[found - SD_LISTEN_FDS_START], STORED_SOCKET) == 0;
	if (names)
		for (int i = 0; i < n; i++)
			free(names[i]);
	free(names);
	if (found < 0)
		return found;
	*out = found;
	return 1;
}

/*
 * Out of fds: a connection left in the backlog would wait unanswered (the
 * poll fires again only when another arrives), so take it with the fd kept
 * in reserve for this and close it at once; the client sees the connection
 * end. The reserve is opened again after. If even that fails, give up for
 * now: the next connection brings us back.
 */
static bool refuse_one(struct daemon *d, int listen_fd)
{
	int fd;

	if (d->reserve_fd < 0)
		return false;
	close(d->reserve_fd);
	fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd >= 0) {
		log_out_of_fds();
		close(fd);
	}
	d->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	return fd >= 0;
}

static void listen_ready(struct loop_watch *w, unsigned revents)
{
	struct daemon *d = (struct daemon *)((char *)w -
					     offsetof(struct daemon, listen_watch));

	(void)revents;
	for (;;) {
		int fd = accept4(w->fd, NULL, NULL,
				 SOCK_CLOEXEC | SOCK_NONBLOCK);

		if (fd < 0 && (errno == EMFILE || errno == ENFILE)) {
			if (refuse_one(d, w->fd))
				continue;
			return;
		}
		if (fd < 0) {
			if (errno != EAGAIN && errno != ECONNABORTED &&
			    errno != EINTR)
				log_err("accept: %s", strerror(errno));
			return;
		}
		session_accept(d, fd); /* logs why if it refuses */
	}
}

/*
 * A clean stop releases every client's mirrors while the loop still runs:
 * bringing pages back from device memory and tearing down userfaultfds may
 * need it to read events. The loop stops when the last connection is gone.
 */
static void begin_shutdown(struct daemon *d)
{
	atomic_store(&d->stopping, true);
	loop_watch_remove(d->loop, &d->listen_watch);
	for (struct session *s = d->sessions, *next; s; s = next) {
		next = s->next; /* closing may unlink s */
		session_close(s);
	}
	if (counter_read(&counters.sessions) == 0)
		loop_stop(d->loop);
}

void daemon_session_gone(struct daemon *d)
{
	if (atomic_load(&d->stopping) &&
	    counter_read(&counters.sessions) == 0)
		loop_stop(d->loop);
}

/*
 * A clean stop waits for nothing a client controls (every command and job
 * is cancelled, every wait bounded), but a stop is a promise to systemd:
 * past stop-seconds we say so and exit, whatever is left.
 */
static void stop_overdue(union sigval v)
{
	(void)v;
	log_err("stop: not done after %llu s, exiting anyway",
		(unsigned long long)(limits.stop_timeout_ms / 1000));
	_exit(1);
}

static void arm_stop_watchdog(void)
{
	struct sigevent sev = {
		.sigev_notify = SIGEV_THREAD,
		.sigev_notify_function = stop_overdue,
	};
	struct itimerspec when = {
		.it_value = { .tv_sec = (time_t)(limits.stop_timeout_ms / 1000),
			      .tv_nsec = (long)(limits.stop_timeout_ms % 1000) * 1000000 },
	};
	timer_t t;

	if (timer_create(CLOCK_MONOTONIC, &sev, &t) < 0 ||
	    timer_settime(t, 0, &when, NULL) < 0)
		log_warn("stop: no watchdog: %s", strerror(errno));
}

static void signal_ready(struct loop_watch *w, unsigned revents)
{
	struct daemon *d = (struct daemon *)((char *)w -
					     offsetof(struct daemon, signal_watch));
	struct signalfd_siginfo si;

	(void)revents;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (atomic_load(&d->stopping))
			continue;
		log_info("signal %u: stopping", si.ssi_signo);
		sd_notify(0, "STOPPING=1");
		arm_stop_watchdog();
		begin_shutdown(d);
	}
}

static void no_gone(struct loop_watch *w)
{
	(void)w;
}

/*
 * Without --foreground and outside systemd, detach: the parent returns
 * once the daemon listens, so "hmmud --socket X && client" just works, and
 * exits with the daemon's status if it fails first (2 for a bad option).
 * The daemon leads a session of its own, with no controlling terminal,
 * and reads nothing from stdin. It keeps stderr until it is ready, so that
 * whoever started it sees why it did not start; then finish_detaching().
 */
static int detach_from_terminal(int *ready_fd)
{
	int pipefd[2], null, status;
	pid_t pid;
	char c;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(pipefd[1]);
		if (read(pipefd[0], &c, 1) == 1)
			exit(0);
		/* It closed the pipe: it exited, having logged why. */
		if (waitpid(pid, &status, 0) == pid && WIFEXITED(status))
			exit(WEXITSTATUS(status));
		exit(1);
	}
	close(pipefd[0]);
	if (setsid() < 0)
		return -errno;
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (null < 0)
		return -errno;
	if (dup2(null, STDIN_FILENO) < 0) {
		close(null);
		return -errno;
	}
	close(null);
	*ready_fd = pipefd[1];
	return 0;
}

/*
 * Ready (the socket listens): a detached daemon leaves the directory it
 * was started in, so that it keeps no file system busy, and lets go of the
 * terminal's stdout and stderr. From here its log goes to --log-file if
 * given, else to syslog. In the foreground, only --log-file changes it.
 */
static int finish_detaching(bool detached, int log_fd)
{
	int null;

	if (detached && chdir("/") < 0)
		return -errno;
	if (log_fd >= 0) {
		if (dup2(log_fd, STDERR_FILENO) < 0)
			return -errno;
		log_use_stderr();
	} else if (detached) {
		log_use_syslog();
	}
	if (!detached)
		return 0;
	null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null < 0)
		return -errno;
	if (dup2(null, STDOUT_FILENO) < 0 ||
	    (log_fd < 0 && dup2(null, STDERR_FILENO) < 0)) {
		close(null);
		return -errno;
	}
	close(null);
	return 0;
}

/*
 * STATUS= for systemctl status, when systemd listens ($NOTIFY_SOCKET): the
 * open connections, the registered mirrors, and the faults per second
 * (device faults and CPU write-protect faults) over the last period. From
 * a timerfd on the event loop, sent only when the text changes.
 */
#define STATUS_PERIOD_S 2

struct status {
	struct loop_watch watch; /* first: ready() gets it */
	struct daemon *d;
	uint64_t faults;	 /* the total at the last tick */
	struct timespec at;	 /* of the last tick */
	char sent[128];		 /* the last STATUS= text sent */
};

static uint64_t faults_total(void)
{
	return counter_read(&counters.device_faults) +
	       counter_read(&counters.cpu_faults);
}

static void status_text(char *buf, size_t len, uint64_t per_s)
{
	uint64_t clients = counter_read(&counters.sessions);
	uint64_t mirrors = counter_read(&counters.mirrors);

	snprintf(buf, len, "%llu client%s, %llu mirror%s, %llu fault%s/s",
		 (unsigned long long)clients, clients == 1 ? "" : "s",
		 (unsigned long long)mirrors, mirrors == 1 ? "" : "s",
		 (unsigned long long)per_s, per_s == 1 ? "" : "s");
}

static void status_tick(struct loop_watch *w, unsigned revents)
{
	struct status *st = (struct status *)w;
	uint64_t ticks, faults = faults_total();
	struct timespec now;
	char text[sizeof(st->sent)];
	int64_t ms;

	(void)revents;
	while (read(w->fd, &ticks, sizeof(ticks)) == sizeof(ticks))
		;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (int64_t)(now.tv_sec - st->at.tv_sec) * 1000 +
	     (now.tv_nsec - st->at.tv_nsec) / 1000000;
	/* Rounded to the nearest: a fault in 2 s is 1/s, not 0. */
	status_text(text, sizeof(text),
		    ms > 0 ? ((faults - st->faults) * 1000 + (uint64_t)ms / 2) /
				     (uint64_t)ms : 0);
	st->faults = faults;
	st->at = now;
	if (atomic_load(&st->d->stopping) || strcmp(text, st->sent) == 0)
		return;
	strcpy(st->sent, text);
	sd_notifyf(0, "STATUS=%s", text);
}

/*
 * Arm the timer; the caller sends the first STATUS= with READY=1. Without
 * it hmmud runs on, only without STATUS= updates.
 */
static int status_start(struct daemon *d, struct status *st)
{
	struct itimerspec every = {
		.it_interval = { .tv_sec = STATUS_PERIOD_S },
		.it_value = { .tv_sec = STATUS_PERIOD_S },
	};

	st->d = d;
	st->faults = faults_total();
	clock_gettime(CLOCK_MONOTONIC, &st->at);
	status_text(st->sent, sizeof(st->sent), 0);
	st->watch = (struct loop_watch){ .fd = -1, .ready = status_tick,
					 .gone = no_gone };
	st->watch.fd = timerfd_create(CLOCK_MONOTONIC,
				      TFD_CLOEXEC | TFD_NONBLOCK);
	if (st->watch.fd < 0)
		return -errno;
	if (timerfd_settime(st->watch.fd, 0, &every, NULL) < 0)
		return -errno;
	return loop_watch_add(d->loop, &st->watch);
}

/* Request workers go near the devices' memory (no binding if on no node). */
static int place_workers(struct daemon *d, struct placement **out)
{
	int nodes[MAX_DEVICES];

	for (unsigned i = 0; i < d->ndevices; i++)
		nodes[i] = d->devices[i]->numa_node;
	return placement_create(nodes, d->ndevices, out);
}

/*
 * The listening socket: systemd's, or our own at @path. Under a service
 * manager, our own goes into its fd store (FileDescriptorStoreMax=) as we
 * make it: a successor after a crash listens on the very socket, so a
 * client that connects meanwhile waits in its backlog, never finds the
 * path gone or refused. A stored one handed back is ours as before.
 */
static int open_listener(const char *path, const struct options *o, int *fd,
			 int *own, bool notify)
{
	bool stored = false;
	int one = 1, err;

	err = activated_socket(fd, &stored);
	if (err < 0) {
		log_err("socket from systemd: %s", strerror(-err));
		return err;
	}
	if (err == 0) {
		err = listen_on(path, o, fd);
		if (err) {
			log_err("listen on %s: %s", path, strerror(-err));
			return err;
		}
		*own = 1;
		if (notify &&
		    sd_pid_notify_with_fds(0, 0, "FDSTORE=1\nFDNAME="
					   STORED_SOCKET, fd, 1) <= 0)
			log_warn("cannot put the listening socket in the fd "
				 "store: a restart makes a new one");
	} else if (fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) | O_NONBLOCK) < 0) {
		return -errno;
	} else if (stored) {
		struct sockaddr_un addr;
		socklen_t len = sizeof(addr);

		char name[sizeof(addr.sun_path)];

		/* Ours to remove at stop if it was made for @path. */
		memset(&addr, 0, sizeof(addr));
		*own = unready_name(path, name, sizeof(name)) == 0 &&
		       getsockname(*fd, (struct sockaddr *)&addr, &len) == 0 &&
		       strncmp(addr.sun_path, name, sizeof(name)) == 0;
		log_info("listening on the socket a predecessor kept in the "
			 "fd store for %s", path);
	}
	/* Accepted sockets inherit it: the kernel tells us every sender. */
	if (setsockopt(*fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		err = -errno;
		log_err("SO_PASSCRED on the listening socket: %s",
			strerror(-err));
		return err;
	}
	return 0;
}

static int run(const struct options *o)
{
	struct daemon d = { .reserve_fd = -1 };
	struct placement *near = NULL;
	struct status status = { .watch.fd = -1 };
	int listen_fd = -1, sig_fd = -1, ready_fd = -1, log_fd = -1, err;
	int own_socket = 0, exit_status = 1;
	const char *path = o->socket_path ? o->socket_path : DEFAULT_SOCKET;
	bool detached = false, notify = getenv("NOTIFY_SOCKET") != NULL;
	sigset_t sigs;

	/*
	 * A daemon that detaches keeps none of the fds its starter left open
	 * (a pipe it holds would keep "$(...)" or a pipeline waiting).
	 */
	if (!o->foreground && !notify && close_range(3, ~0u, 0) < 0)
		log_warn("cannot close the fds it inherited: %s",
			 strerror(errno));
	if (o->log_file) {
		log_fd = open(o->log_file,
			      O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (log_fd < 0) {
			log_err("--log-file %s: %s", o->log_file,
				strerror(errno));
			return 1;
		}
	}
	/* Before any thread exists: threads do not survive fork(). */
	if (!o->foreground && !notify) {
		err = detach_from_terminal(&ready_fd);
		if (err) {
			log_err("cannot detach: %s", strerror(-err));
			goto out;
		}
		detached = true;
	}
	/*
	 * Blocked before any thread starts (threads inherit the mask), so
	 * that SIGTERM reaches the signalfd and not a default handler.
	 */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/*
	 * Under a service manager with an fd store, state is kept for a
	 * successor (restart.h), unless --adopt-grace 0 says not to.
	 */
	if (notify && o->adopt_grace_ms)
		restart_init();
	/* A bad device spec fails before the socket is touched. */
	err = make_devices(&d, o);
	if (err == -EINVAL || err == -ENOEXEC || err == -EEXIST)
		exit_status = EXIT_USAGE; /* what the command line asked */
	if (!err)
		err = open_listener(path, o, &listen_fd, &own_socket, notify);
	if (err)
		goto out;

	d.reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sig_fd < 0)
		err = -errno;
	if (!err)
		err = loop_create(&d.loop);
	/*
	 * The registry is made with the loop it hands to new states, and
	 * unmade with it at out: it exists exactly when d.loop does, so no
	 * error path below can finish a registry never initialised.
	 */
	if (!err)
		registry_init(&d.registry, d.loop);
	if (!err)
		err = place_workers(&d, &near);
	if (!err)
		err = workers_start(o->workers, placement_bind_self, near,
				    &d.workers);
	if (!err)
		err = receivers_start(o->workers, placement_bind_self, near,
				      &d.receivers);
	if (err) {
		log_err("start: %s", strerror(-err));
		goto out;
	}

	/* Before the loop runs: adopted faults are served from its start. */
	restart_adopt(&d, o->adopt_grace_ms);

	d.listen_watch = (struct loop_watch){ .fd = listen_fd,
					      .ready = listen_ready,
					      .gone = no_gone };
	d.signal_watch = (struct loop_watch){ .fd = sig_fd,
					      .ready = signal_ready,
					      .gone = no_gone };
	err = loop_watch_add(d.loop, &d.listen_watch);
	if (!err)
		err = loop_watch_add(d.loop, &d.signal_watch);
	if (err) {
		log_err("event loop: %s", strerror(-err));
		goto out;
	}
	if (notify) {
		int serr = status_start(&d, &status);

		if (serr)
			log_warn("no STATUS= updates for systemd: %s",
				 strerror(-serr));
	}

	copy_pool_start();
	log_info("listening on %s, %u device(s), %u worker(s) on cpus %s",
		 own_socket ? path : "the socket from systemd", d.ndevices,
		 o->workers, placement_cpus(near));
	err = finish_detaching(detached, log_fd);
	if (err) {
		log_err("cannot leave the terminal and the directory: %s",
			strerror(-err));
		goto out;
	}
	if (log_fd >= 0) {
		close(log_fd);
		log_fd = -1;
	}
	/* The first STATUS= comes with READY=1 (status_start() wrote it). */
	if (notify)
		sd_notifyf(0, "READY=1\nSTATUS=%s", status.sent);
	if (ready_fd >= 0) {
		(void)!write(ready_fd, "r", 1);
		close(ready_fd);
		ready_fd = -1;
	}

	err = loop_run(d.loop);
	if (err)
		log_err("event loop: %s", strerror(-err));

	/*
	 * Release every client's mirrors, so no client is left protected:
	 * end the watches being removed, close the other connections (their
	 * teardown is queued on the workers), then let the workers finish.
	 */
	atomic_store(&d.loop_done, true);
	loop_finish(d.loop);
	while (d.sessions)
		session_close(d.sessions);
	restart_stop();
out:
	/*
	 * Receivers first: they end the sockets' tokens, and queue work;
	 * then the submission queues' servicers, which queue work too.
	 */
	if (d.receivers)
		receivers_stop(d.receivers);
	queues_stop();
	if (d.workers)
		workers_stop(d.workers);
	placement_destroy(near);
	if (d.loop) {
		loop_destroy(d.loop);
		registry_fini(&d.registry); /* made with the loop, above */
	}
	if (status.watch.fd >= 0)
		close(status.watch.fd);
	for (unsigned i = 0; i < d.ndevices; i++)
		device_destroy(d.devices[i]);
	free(d.devices);
	if (sig_fd >= 0)
		close(sig_fd);
	if (d.reserve_fd >= 0)
		close(d.reserve_fd);
	if (listen_fd >= 0)
		close(listen_fd);
	/* A clean stop: the next start makes its socket anew. */
	if (own_socket && notify)
		sd_notify(0, "FDSTOREREMOVE=1\nFDNAME=" STORED_SOCKET);
	if (own_socket)
		unlink(path);
	if (ready_fd >= 0)
		close(ready_fd); /* the waiting parent reads EOF: failed */
	if (log_fd >= 0)
		close(log_fd);
	if (!err)
		log_info("stopped");
	return err ? exit_status : 0;
}

/*
 * Ask the kernel once, before any thread exists, what it offers; refuse to
 * start without what hmmud cannot do without (kfeatures.c says which and
 * since when). Everything later reads these answers.
 */
static int check_kernel(void)
{
	const struct kfeatures *kf = kfeatures();
	char why[256], fix[512];
	struct kaccess a;

	if (kfeatures_missing(kf, why, sizeof(why))) {
		kaccess_read(&a);
		kfeatures_fix(kf, &a, fix, sizeof(fix));
		log_err("cannot run here: it lacks %s: not starting (fix: %s; "
			"hmmud --check lists what there is)", why, fix);
		return -EOPNOTSUPP;
	}
	if (kf->uffd_err)
		log_warn("cannot ask the kernel for its userfaultfd features "
			 "(%s): each client's userfaultfd is checked as it "
			 "registers", strerror(-kf->uffd_err));
	return 0;
}

/* hmmud --check: what the kernel offers, and what this process may do. */
static int check(void)
{
	struct kaccess a;

	kaccess_read(&a);
	return kfeatures_print(kfeatures(), &a, stdout) ? 1 : 0;
}

/*
 * As many fds as we may have: each connection costs several. The number of
 * connections we accept follows from it (limits.h), unless set.
 */
static void raise_fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return;
	rl.rlim_cur = rl.rlim_max;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	limits_init(rl.rlim_cur);
}

int main(int argc, char **argv)
{
	struct options o;

	raise_fd_limit();
	if (parse_options(argc, argv, &o) < 0 || check_device_specs(&o) < 0)
		return EXIT_USAGE;
	log_init(o.log_level);
	if (o.check)
		return check();
	if (check_kernel() < 0)
		return 1;
	return run(&o);
}
