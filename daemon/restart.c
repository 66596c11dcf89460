/* SPDX-License-Identifier: MIT */
#include "restart.h"
#include "daemon.h"
#include "fdstore.h"
#include "registry.h"
#include "session.h"
#include "../core/accounts.h"
#include "../core/device.h"
#include "../core/journal.h"
#include "../core/migrate.h"
#include "../core/mirror.h"
#include "../core/process.h"
#include "../common/kfeatures.h"
#include "../lib/log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STATE_NAME "hmmud-state"

enum kind { K_UFFD, K_PIDFD, K_MEM, K_PAGEMAP, K_MAPS, K_JOURNAL, K_DEVMEM, K_NR };
static const char *const kind_names[K_NR] = {
	"uffd", "pidfd", "mem", "pagemap", "maps", "journal", "devmem",
};

static uint64_t incarnation;
static atomic_uint_fast64_t last_session;

/* What restart_take() kept, until restart_adopt(). */
static struct passed {
	int fd;
	char *name;
} *passed;
static unsigned npassed;

/* The ghosts of adopted states, released when the grace period ends. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool running, stop;
	pthread_t thread;
	struct registry *registry;
	struct hmmu_mirror **ghosts;
	unsigned n;
	unsigned ms;
} grace = { .lock = PTHREAD_MUTEX_INITIALIZER,
	    .cond = PTHREAD_COND_INITIALIZER };

static void process_name(char *buf, size_t size, uint64_t serial,
			 enum kind k)
{
	snprintf(buf, size, "p%" PRIu64 ".%s", serial, kind_names[k]);
}

static void session_name(char *buf, size_t size, uint64_t serial)
{
	snprintf(buf, size, "c%" PRIu64 ".sock", serial);
}

static void devfile_made(struct process *p, int fd)
{
	char name[64];

	process_name(name, sizeof(name), p->serial, K_DEVMEM);
	fdstore_put(name, fd);
}

void restart_init(void)
{
	fdstore_enable();
	process_journals = true;
	migrate_devfile_made = devfile_made;
}

uint64_t restart_incarnation(void)
{
	return incarnation;
}

void restart_store_process(struct process *p)
{
	int fds[K_DEVMEM] = {
		[K_UFFD] = p->uffd, [K_PIDFD] = p->pidfd, [K_MEM] = p->mem_fd,
		[K_PAGEMAP] = p->pagemap_fd, [K_MAPS] = p->maps_fd,
	};
	char name[64];

	if (!fdstore_enabled() || !p->journal)
		return;
	fds[K_JOURNAL] = journal_fd(p->journal);
	for (unsigned k = 0; k < K_DEVMEM; k++) {
		process_name(name, sizeof(name), p->serial, k);
		if (fdstore_put(name, fds[k]) < 0) {
			/* Logged; a successor finds it incomplete. */
			process_journals = fdstore_enabled();
			return;
		}
	}
}

void restart_forget_process(struct process *p)
{
	char name[64];

	if (!p->journal)
		return;
	journal_end(p->journal);
	if (!fdstore_enabled())
		return;
	for (unsigned k = 0; k < K_NR; k++) {
		process_name(name, sizeof(name), p->serial, k);
		fdstore_remove(name);
	}
}

void restart_store_session(struct session *s)
{
	char name[64];

	if (!fdstore_enabled())
		return;
	s->serial = atomic_fetch_add(&last_session, 1) + 1;
	session_name(name, sizeof(name), s->serial);
	/*
	 * Kept so that a crash does not hang the connection up: the client
	 * then waits for the successor, which holds its state, instead of
	 * bringing its pages home itself (libhmmu/failsafe.c).
	 */
	if (fdstore_put(name, s->fd) < 0) {
		s->serial = 0;
		process_journals = fdstore_enabled();
	}
}

void restart_forget_session(struct session *s)
{
	char name[64];

	if (!s->serial)
		return;
	session_name(name, sizeof(name), s->serial);
	fdstore_remove(name);
}

void restart_take(int fd, const char *name)
{
	struct passed *p = realloc(passed, (npassed + 1) * sizeof(*p));

	if (!p || !name || !(p[npassed].name = strdup(name))) {
		log_err("out of memory keeping passed fd %d (%s): closed", fd,
			name ? name : "unnamed");
		if (p)
			passed = p;
		close(fd);
		return;
	}
	passed = p;
	p[npassed++].fd = fd;
}

/* ---- adoption ------------------------------------------------------------ */

/* The fds of one process, by kind; -1 where none was passed. */
struct group {
	uint64_t serial;
	int fd[K_NR];
};

static void close_group(struct group *g)
{
	char name[64];

	for (unsigned k = 0; k < K_NR; k++) {
		if (g->fd[k] >= 0)
			close(g->fd[k]);
		process_name(name, sizeof(name), g->serial, k);
		fdstore_remove(name);
	}
}

/*
 * The incarnation: the predecessor's, from the store, or a new one. Kept
 * in a memfd of its own: the store keeps fds, not values.
 */
static void adopt_incarnation(int fd)
{
	uint64_t v = 0;

	if (fd >= 0 && pread(fd, &v, sizeof(v), 0) == sizeof(v) && v) {
		incarnation = v;
		close(fd); /* the store keeps its own */
		return;
	}
	if (fd >= 0) {
		close(fd);
		fdstore_remove(STATE_NAME);
	}
	while (!incarnation)
		if (getrandom(&incarnation, sizeof(incarnation), 0) < 0)
			incarnation = (uint64_t)time(NULL) << 20 ^ (uint64_t)getpid();
	if (!fdstore_enabled())
		return;
	fd = memfd_create(STATE_NAME, MFD_CLOEXEC);
	if (fd < 0 || pwrite(fd, &incarnation, sizeof(incarnation), 0) !=
			      sizeof(incarnation))
		log_warn("cannot keep the incarnation for a successor: %s",
			 strerror(errno));
	else
		fdstore_put(STATE_NAME, fd);
	if (fd >= 0)
		close(fd);
}

/* The ghosts of @p, one per device: their pages, and the state's life. */
static int make_ghosts(struct daemon *d, struct process *p,
		       struct hmmu_mirror **ghosts)
{
	struct peer owner = {
		.pid = p->pid, .uid = p->uid, .pidfd = p->pidfd,
		.pid_ino = p->pid_ino,
	};

	for (unsigned i = 0; i < d->ndevices; i++) {
		ghosts[i] = mirror_new(0, d->devices[i], &owner, p->acct);
		if (!ghosts[i]) {
			while (i--)
				mirror_put(ghosts[i]);
			return -ENOMEM;
		}
		account_force_mirror(p->acct); /* mirror_put() gives it back */
	}
	return 0;
}

static int keep_ghosts(struct hmmu_mirror **ghosts, unsigned n)
{
	struct hmmu_mirror **all;

	pthread_mutex_lock(&grace.lock);
	all = realloc(grace.ghosts, (grace.n + n) * sizeof(*all));
	if (all) {
		memcpy(all + grace.n, ghosts, n * sizeof(*all));
		grace.ghosts = all;
		grace.n += n;
	}
	pthread_mutex_unlock(&grace.lock);
	return all ? 0 : -ENOMEM;
}

/*
 * Adopt one process. Nothing irreversible happens before the last step
 * that may fail: a failure leaves the kernel's registrations and the
 * device memory file's journal as they were, for the client's fail-safe.
 */
static int adopt_process(struct daemon *d, struct group *g, uint64_t *pages,
			 uint64_t *migrating, const char **what)
{
	struct process_fds fds = {
		.uffd = g->fd[K_UFFD], .mem = g->fd[K_MEM],
		.pagemap = g->fd[K_PAGEMAP], .maps = g->fd[K_MAPS],
	};
	struct hmmu_mirror *ghosts[ACCOUNT_MAX_DEVICES];
	struct journal_identity id;
	struct uffd_range *ranges = NULL;
	struct pollfd pfd = { .fd = g->fd[K_PIDFD], .events = POLLIN };
	struct journal *j = NULL;
	struct process *p;
	struct peer peer;
	struct stat st;
	unsigned n = 0;
	int err;

	/* A pidfd polls POLLHUP once its process is reaped: the store drops it. */
	if (g->fd[K_PIDFD] < 0) {
		*what = "it exited while hmmud was down (its pidfd left the store)";
		return -ESRCH;
	}
	for (unsigned k = 0; k < K_DEVMEM; k++) {
		if (g->fd[k] < 0) {
			*what = "some of its fds are missing from the store";
			return -EBADMSG;
		}
	}
	err = journal_adopt(g->fd[K_JOURNAL], &j, &id, &ranges, &n);
	if (err) {
		*what = err == -ESTALE ? "its state had ended (the store missed "
					 "the removal)" :
					 "its journal is unreadable";
		return err;
	}
	g->fd[K_JOURNAL] = -1; /* j's */
	if (id.serial != g->serial ||
	    fstat(g->fd[K_PIDFD], &st) < 0 ||
	    (kfeatures()->pidfs && st.st_ino != id.pid_ino)) {
		*what = "its journal and pidfd disagree";
		err = -EBADMSG;
		goto fail_journal;
	}
	if (id.devices != journal_devices()) {
		*what = "it was served with other devices (--device changed)";
		err = -EBADMSG;
		goto fail_journal;
	}
	/* The store was full, or given up, when the file came to it. */
	if (id.devmem_gen && g->fd[K_DEVMEM] < 0) {
		*what = "its device memory file is not in the store";
		err = -EBADMSG;
		goto fail_journal;
	}
	if (poll(&pfd, 1, 0) != 0) {
		*what = "it exited while hmmud was down";
		err = -ESRCH;
		goto fail_journal;
	}
	peer = (struct peer){ .pid = id.pid, .uid = id.uid,
			      .pidfd = g->fd[K_PIDFD], .pid_ino = id.pid_ino };
	err = process_adopt(&peer, &fds, j, g->serial, ranges, n, d->loop, &p);
	free(ranges);
	if (err) {
		*what = "its state could not be made";
		goto fail_journal;
	}
	/* p has them now, and a dup of the pidfd: ours goes. */
	g->fd[K_UFFD] = g->fd[K_MEM] = g->fd[K_PAGEMAP] = g->fd[K_MAPS] = -1;
	close(g->fd[K_PIDFD]);
	g->fd[K_PIDFD] = -1;
	j = NULL;
	if (p->coarse != id.coarse) {
		*what = "its userfaultfd's mode is not the journal's";
		err = -EBADMSG;
		goto fail_process;
	}
	err = make_ghosts(d, p, ghosts);
	if (err) {
		*what = "out of memory";
		goto fail_process;
	}
	if (g->fd[K_DEVMEM] >= 0) {
		err = migrate_adopt(p, g->fd[K_DEVMEM], ghosts, d->ndevices,
				    pages, migrating);
		g->fd[K_DEVMEM] = -1; /* p's, or closed */
		if (err) {
			*what = err == -EBADMSG ?
				"its device memory file is not of this "
				"daemon's devices" : "its device pages could "
				"not be taken";
			goto fail_ghosts;
		}
	}
	err = keep_ghosts(ghosts, d->ndevices);
	if (err) {
		*what = "out of memory";
		goto fail_pages;
	}
	err = registry_adopt(&d->registry, p, ghosts, d->ndevices);
	if (err) {
		/* keep_ghosts()'s entries: the grace thread puts them. */
		*what = "its devices refused the placeholder mirrors";
		migrate_abandon(p);
		process_put(p);
		return err;
	}
	err = process_start(p);
	if (err)
		log_err("client %d: cannot watch its userfaultfd: %s", p->pid,
			strerror(-err));
	process_wake_all(p);
	/* process_adopt()'s reference is the table's now: not ours to put. */
	return 0;

fail_pages:
	migrate_abandon(p);
fail_ghosts:
	for (unsigned i = 0; i < d->ndevices; i++)
		mirror_put(ghosts[i]);
fail_process:
	process_put(p); /* closes its fds, unregisters nothing */
	return err;
fail_journal:
	free(ranges);
	journal_destroy(j);
	return err;
}

/* The group for process @serial, made if need be; NULL if out of memory. */
static struct group *group_of(struct group **groups, unsigned *n,
			      uint64_t serial)
{
	struct group *g;

	for (unsigned i = 0; i < *n; i++)
		if ((*groups)[i].serial == serial)
			return &(*groups)[i];
	g = realloc(*groups, (*n + 1) * sizeof(*g));
	if (!g)
		return NULL;
	*groups = g;
	g = &g[(*n)++];
	g->serial = serial;
	for (unsigned k = 0; k < K_NR; k++)
		g->fd[k] = -1;
	return g;
}

/* Sort one passed fd: into @groups, or the state's, or closed. */
static void sort_passed(struct passed *x, struct group **groups, unsigned *n,
			int *state_fd, unsigned *connections)
{
	char kind[16];
	uint64_t serial;
	int used = 0;

	if (strcmp(x->name, STATE_NAME) == 0 && *state_fd < 0) {
		*state_fd = x->fd;
		return;
	}
	if (sscanf(x->name, "c%" SCNu64 ".sock%n", &serial, &used) == 1 &&
	    !x->name[used]) {
		/* The client connects again, and restores what was its. */
		close(x->fd);
		fdstore_remove(x->name);
		(*connections)++;
		if (serial > atomic_load(&last_session))
			atomic_store(&last_session, serial);
		return;
	}
	if (sscanf(x->name, "p%" SCNu64 ".%15[a-z]%n", &serial, kind, &used) == 2 &&
	    !x->name[used]) {
		struct group *g = group_of(groups, n, serial);

		for (unsigned k = 0; g && k < K_NR; k++) {
			if (strcmp(kind, kind_names[k]) == 0 && g->fd[k] < 0) {
				g->fd[k] = x->fd;
				return;
			}
		}
	}
	log_warn("passed fd %d (%s) is none of ours: closed", x->fd, x->name);
	close(x->fd);
	fdstore_remove(x->name);
}

static void *grace_thread(void *arg);

void restart_adopt(struct daemon *d, unsigned grace_ms)
{
	struct group *groups = NULL;
	unsigned ngroups = 0, adopted = 0, connections = 0;
	uint64_t pages = 0, migrating = 0;
	int state_fd = -1;

	for (unsigned i = 0; i < npassed; i++) {
		sort_passed(&passed[i], &groups, &ngroups, &state_fd,
			    &connections);
		free(passed[i].name);
	}
	free(passed);
	passed = NULL;
	npassed = 0;
	adopt_incarnation(state_fd);

	for (unsigned i = 0; i < ngroups; i++) {
		struct group *g = &groups[i];
		uint64_t n = 0, m = 0;
		const char *what = "";
		int err;

		process_serial_floor(g->serial);
		err = adopt_process(d, g, &n, &m, &what);
		if (err) {
			log_warn("process %" PRIu64 " of the fd store not "
				 "adopted: %s (%s); its client brings its pages "
				 "home itself", g->serial, what, strerror(-err));
			close_group(g);
			continue;
		}
		adopted++;
		pages += n;
		migrating += m;
	}
	free(groups);
	if (adopted || connections)
		log_info("adopted %u process(es) from the fd store, %" PRIu64
			 " page(s) in device memory (%" PRIu64 " of them "
			 "mid-migration); closed %u old connection(s), whose "
			 "clients restore their mirrors", adopted, pages,
			 migrating, connections);
	if (!grace.n)
		return;
	grace.registry = &d->registry;
	grace.ms = grace_ms;
	if (pthread_create(&grace.thread, NULL, grace_thread, NULL) == 0)
		grace.running = true;
	else
		log_err("cannot start the grace timer: adopted states are "
			"held until their processes exit");
}

/* ---- the grace period ---------------------------------------------------- */

static void *grace_thread(void *arg)
{
	struct timespec until;

	(void)arg;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += grace.ms / 1000;
	until.tv_nsec += (long)(grace.ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&grace.lock);
	while (!grace.stop &&
	       pthread_cond_timedwait(&grace.cond, &grace.lock, &until) == 0)
		;
	pthread_mutex_unlock(&grace.lock);
	/*
	 * A ghost a restored mirror took is unregistered already; the others
	 * are released as at an unregistration: their pages come home.
	 */
	for (unsigned i = 0; i < grace.n; i++) {
		registry_destroy(grace.registry, grace.ghosts[i]);
		mirror_put(grace.ghosts[i]);
	}
	free(grace.ghosts);
	grace.ghosts = NULL;
	log_info("grace period over: the placeholder mirrors of adopted "
		 "processes are gone, with their pages brought home");
	return NULL;
}

void restart_stop(void)
{
	if (grace.running) {
		pthread_mutex_lock(&grace.lock);
		grace.stop = true;
		pthread_cond_signal(&grace.cond);
		pthread_mutex_unlock(&grace.lock);
		pthread_join(grace.thread, NULL);
		grace.running = false;
	}
	if (fdstore_enabled())
		fdstore_remove(STATE_NAME);
}
