/* SPDX-License-Identifier: MIT */
/*
 * The table of open units and the connection behind them.
 *
 * Locking: conn_lock guards the connection and is held while a unit is
 * being opened (connect, create, register); units_lock, taken after it,
 * guards every unit's refs and the writes to the table. The table's slots
 * are atomic, so that close(), interposed for every fd of the process
 * (libhmmu's own among them, closed while conn_lock is held), looks without
 * a lock. A unit is freed, and its mirror destroyed, when its last
 * reference goes: a close racing with an ioctl on another thread frees
 * nothing under the ioctl's feet.
 *
 * fork: the child inherits the table and the connection, both the
 * parent's. hmmud serves a connection to the process that made it only, so
 * the child forgets the mirrors (its units answer ECHILD) and closes its
 * copy of the socket, which would otherwise keep the parent's connection
 * open after the parent closed it.
 */
#include "units.h"
#include "real_calls.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hmm_dmirror_abi.h"

/* Units open on fds past this get EMFILE: the table is indexed by fd. */
#define UNIT_FD_MAX 65536

static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t units_lock = PTHREAD_MUTEX_INITIALIZER;
static struct unit *_Atomic table[UNIT_FD_MAX];
static atomic_uint open_units;
static struct hmmu *conn;
static pid_t conn_pid;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

int unit_number_of_path(const char *path)
{
	size_t len = sizeof(HMM_DMIRROR_PATH_PREFIX) - 1;

	if (!path || strncmp(path, HMM_DMIRROR_PATH_PREFIX, len) != 0)
		return -1;
	if (path[len] < '0' || path[len] >= '0' + HMM_DMIRROR_UNITS ||
	    path[len + 1] != '\0')
		return -1;
	return path[len] - '0';
}

static void before_fork(void)
{
	pthread_mutex_lock(&conn_lock);
	pthread_mutex_lock(&units_lock);
}

static void after_fork_in_parent(void)
{
	pthread_mutex_unlock(&units_lock);
	pthread_mutex_unlock(&conn_lock);
}

static void after_fork_in_child(void)
{
	struct hmmu *inherited = conn;

	for (int fd = 0; atomic_load(&open_units) && fd < UNIT_FD_MAX; fd++) {
		struct unit *u = atomic_load(&table[fd]);

		if (u)
			u->mirror = NULL; /* the parent's */
	}
	conn = NULL;
	pthread_mutex_unlock(&units_lock);
	pthread_mutex_unlock(&conn_lock);
	if (inherited)
		hmmu_disconnect(inherited); /* only the child's copy of it */
}

static void install_atfork(void)
{
	pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
}

/* The process's connection, made on first use. Called with conn_lock. */
static int connection(struct hmmu **out)
{
	int err;

	if (!conn || conn_pid != getpid()) {
		err = hmmu_connect(NULL, &conn);
		if (err) {
			const char *detail = hmmu_error_detail();

			conn = NULL;
			fprintf(stderr,
				"hmmu-dmirror: cannot reach hmmud (%s%s%s); "
				"start one, or run the program under hmmu-run\n",
				strerror(-err), *detail ? ": " : "", detail);
			return err;
		}
		conn_pid = getpid();
	}
	*out = conn;
	return 0;
}

/*
 * Does hmmud offer a device named "dmirror<number>" of the right kind?
 * Units 0 and 1 are device-private ("dmirror" model), 2 and 3 coherent.
 */
static int find_device(struct hmmu *h, unsigned number, char *name, size_t len)
{
	const char *model = number < HMM_DMIRROR_PRIVATE_UNITS ?
				    "dmirror" : "dmirror-coherent";
	int n = hmmu_device_count(h);

	snprintf(name, len, "dmirror%u", number);
	for (int i = 0; i < n; i++) {
		struct hmmu_device_info info;

		if (hmmu_device_info(h, (unsigned)i, &info) == 0 &&
		    strcmp(info.name, name) == 0)
			return strcmp(info.model, model) == 0 ? 0 : -ENOENT;
	}
	return n < 0 ? n : -ENOENT;
}

static int new_mirror(unsigned number, struct hmmu_mirror **out)
{
	char name[32];
	struct hmmu *h;
	int err = connection(&h);

	if (!err)
		err = find_device(h, number, name, sizeof(name));
	if (!err)
		err = hmmu_mirror_create(h, name, out);
	if (!err) {
		err = hmmu_mirror_register(*out);
		if (err)
			hmmu_mirror_destroy(*out);
	}
	return err == -ENODEV ? -ENOENT : err;
}

int unit_open(unsigned number, int flags)
{
	char name[32];
	struct unit *u;
	int fd, err;

	pthread_once(&atfork_once, install_atfork);
	snprintf(name, sizeof(name), "hmm_dmirror%u", number);
	fd = memfd_create(name, flags & O_CLOEXEC ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -errno;
	u = calloc(1, sizeof(*u));
	if (!u) {
		real_close(fd);
		return -ENOMEM;
	}
	u->fd = fd;
	u->number = number;
	u->refs = 1;

	pthread_mutex_lock(&conn_lock);
	err = fd < UNIT_FD_MAX ? new_mirror(number, &u->mirror) : -EMFILE;
	if (!err) {
		pthread_mutex_lock(&units_lock);
		atomic_store(&table[fd], u);
		atomic_fetch_add(&open_units, 1);
		pthread_mutex_unlock(&units_lock);
	}
	pthread_mutex_unlock(&conn_lock);
	if (err) {
		real_close(fd);
		free(u);
		return err;
	}
	return fd;
}

struct unit *unit_get(int fd)
{
	struct unit *u;

	if (!atomic_load(&open_units) || fd < 0 || fd >= UNIT_FD_MAX ||
	    !atomic_load(&table[fd]))
		return NULL;
	pthread_mutex_lock(&units_lock);
	u = atomic_load(&table[fd]);
	if (u)
		u->refs++;
	pthread_mutex_unlock(&units_lock);
	return u;
}

void unit_put(struct unit *u)
{
	bool last;

	pthread_mutex_lock(&units_lock);
	last = --u->refs == 0;
	pthread_mutex_unlock(&units_lock);
	if (!last)
		return;
	/* A fork child's mirror is its parent's, and already forgotten. */
	if (u->mirror)
		hmmu_mirror_destroy(u->mirror);
	free(u);
}

void unit_forget(int fd)
{
	struct unit *u = NULL;

	if (!atomic_load(&open_units) || fd < 0 || fd >= UNIT_FD_MAX ||
	    !atomic_load(&table[fd]))
		return;
	pthread_mutex_lock(&units_lock);
	u = atomic_exchange(&table[fd], NULL);
	if (u) {
		atomic_fetch_sub(&open_units, 1);
	}
	pthread_mutex_unlock(&units_lock);
	if (u)
		unit_put(u);
}
