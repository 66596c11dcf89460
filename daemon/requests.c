/* SPDX-License-Identifier: MIT */
#include "requests.h"
#include "buffers.h"
#include "daemon.h"
#include "../lib/log.h"
#include "../core/accounts.h"
#include "../core/client_mem.h"
#include "../core/coherence.h"
#include "../core/command.h"
#include "../core/limits.h"
#include "../core/mirror.h"
#include "../core/process.h"
#include "registry.h"
#include "session.h"
#include "../lib/workers.h"
#include "../core/device.h"
#include "../core/devmem.h"
#include "../core/migrate.h"
#include "../core/reason.h"
#include "queue.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/syscall.h>
#include <unistd.h>

struct request {
	struct work work;
	struct session *s;
	int fd;
	/* Set for a submission from a queue (queue.c): the reply goes there. */
	request_done_fn done;
	void *done_arg;
	struct reply_reason why; /* the error reply's reason */
	union {
		struct hmmu_wire_hdr hdr;
		char buf[HMMU_MSG_MAX];
	} msg;
};

static const void *payload(const struct request *r)
{
	return &r->msg.hdr + 1;
}

static void reply(struct request *r, int status, const void *p, size_t len)
{
	if (r->done) {
		r->done(r->done_arg, status, p, len);
		return;
	}
	session_reply(r->s, &r->msg.hdr, status, reason_for(&r->why, status),
		      p, len);
}

/* The reason of @r's error reply, for its log line ("" if none). */
static const char *why(struct request *r, int err)
{
	const char *text = reason_for(&r->why, err);

	return text ? text : "";
}

static struct daemon *daemon_of(struct request *r)
{
	return r->s->d;
}

static void do_device_count(struct request *r)
{
	struct hmmu_wire_count c = { .count = daemon_of(r)->ndevices };

	reply(r, 0, &c, sizeof(c));
}

static void do_device_info(struct request *r)
{
	const struct hmmu_wire_index *req = payload(r);
	struct daemon *d = daemon_of(r);
	struct hmmu_wire_device_info info;
	const struct hmmu_device *dev;

	if (req->index >= d->ndevices) {
		log_warn("client %d: no device number %u", r->s->peer.pid,
			 req->index);
		reason_set(&r->why, -ENODEV, "hmmud has no device number %u: "
			   "it has %u (hmmu_device_count())", req->index,
			   d->ndevices);
		reply(r, -ENODEV, NULL, 0);
		return;
	}
	dev = d->devices[req->index];
	memset(&info, 0, sizeof(info));
	memcpy(info.name, dev->name, sizeof(info.name));
	strncpy(info.model, device_model(dev), sizeof(info.model) - 1);
	info.mem_bytes = devmem_pages_total(dev->mem) * (uint64_t)sysconf(_SC_PAGESIZE);
	info.numa_node = dev->numa_node;
	info.page_size = (uint32_t)sysconf(_SC_PAGESIZE);
	reply(r, 0, &info, sizeof(info));
}

/* "dmirror0, dmirror1, acc0" into @out, cut short with "..." to fit. */
static char *device_names(struct daemon *d, char *out, size_t size)
{
	size_t n = 0;

	out[0] = '\0';
	for (unsigned i = 0; i < d->ndevices; i++) {
		size_t len = strlen(d->devices[i]->name) + (i ? 2 : 0);

		if (n + len + 4 >= size) {
			snprintf(out + n, size - n, "...");
			break;
		}
		n += (size_t)snprintf(out + n, size - n, "%s%s", i ? ", " : "",
				      d->devices[i]->name);
	}
	return out;
}

static struct hmmu_device *find_device(struct daemon *d, const char *name)
{
	for (unsigned i = 0; i < d->ndevices; i++)
		if (strcmp(d->devices[i]->name, name) == 0)
			return d->devices[i];
	return NULL;
}

static void do_mirror_create(struct request *r)
{
	const struct hmmu_wire_device_name *req = payload(r);
	struct hmmu_wire_mirror rep;
	struct daemon *d = daemon_of(r);
	struct hmmu_device *dev = find_device(d, req->name);
	struct hmmu_mirror *m;
	char name[4 * HMMU_NAME_MAX], names[96];
	int err;

	if (!dev) {
		/* The name is the client's: escaped, for the log as for it. */
		reason_escape(name, sizeof(name), req->name);
		log_warn("client %d: no device named '%s'", r->s->peer.pid,
			 name);
		reason_set(&r->why, -ENODEV, "hmmud has no device named '%.48s'; "
			   "it has %s (hmmu_device_info())", name,
			   device_names(d, names, sizeof(names)));
		reply(r, -ENODEV, NULL, 0);
		return;
	}
	err = account_add_mirror(r->s->acct);
	if (err) {
		log_warn("client %d (uid %u): refused a mirror: its user has "
			 "%u, the limit (--limit mirrors-per-user)",
			 r->s->peer.pid, r->s->peer.uid, limits.mirrors_per_user);
		reason_set(&r->why, err, "this user has as many mirrors as "
			   "hmmud allows (%u, --limit mirrors-per-user): "
			   "destroy some", limits.mirrors_per_user);
		reply(r, err, NULL, 0);
		return;
	}
	m = mirror_new(0, dev, &r->s->peer, r->s->acct);
	if (!m) {
		log_err("client %d: out of memory for a mirror", r->s->peer.pid);
		account_del_mirror(r->s->acct);
		reply(r, -ENOMEM, NULL, 0);
		return;
	}
	/* The id is read under the table's lock: a DESTROY may free m at once. */
	err = session_add_mirror(r->s, m, &rep.mirror);
	if (err) {
		log_warn("client %d: too many mirrors", r->s->peer.pid);
		reason_set(&r->why, err, "this connection holds %u mirrors, "
			   "the most one may: destroy some",
			   SESSION_MAX_MIRRORS);
		mirror_put(m);
		reply(r, err, NULL, 0);
		return;
	}
	reply(r, 0, &rep, sizeof(rep));
}

/* The mirror named by the request, with a reference, or NULL (replied). */
static struct hmmu_mirror *request_mirror(struct request *r, uint64_t id)
{
	struct hmmu_mirror *m = session_find_mirror(r->s, id);

	if (!m) {
		log_warn("client %d: %s: no mirror %llu", r->s->peer.pid,
			 hmmu_proto_op_name(r->msg.hdr.op),
			 (unsigned long long)id);
		reason_set(&r->why, -ENOENT, "no mirror %llu on this "
			   "connection: it was destroyed, or never created on "
			   "it", (unsigned long long)id);
		reply(r, -ENOENT, NULL, 0);
	}
	return m;
}

static void do_mirror_register(struct request *r)
{
	const struct hmmu_wire_register *req = payload(r);
	struct hmmu_mirror *m = request_mirror(r, req->mirror);
	bool coarse = false;
	int err;

	if (!m)
		return;
	/* The long form (proto.h) carries flags; proto.c checked them. */
	if (r->msg.hdr.len - sizeof(r->msg.hdr) ==
	    sizeof(struct hmmu_wire_register_ext))
		coarse = ((const struct hmmu_wire_register_ext *)req)->flags &
			 HMMU_REGISTER_COARSE;
	err = registry_register_mode(&daemon_of(r)->registry, m, &r->fd,
				     req->probe, coarse, &r->why);
	if (err == -ENOENT)
		reason_default(&r->why, err, "mirror %llu was destroyed",
			       (unsigned long long)req->mirror);
	if (err < 0)
		log_warn("client %d: register mirror %llu on %s: %s%s%s",
			 r->s->peer.pid, (unsigned long long)req->mirror,
			 m->dev->name, strerror(-err), *why(r, err) ? ": " : "",
			 why(r, err));
	mirror_put(m);
	reply(r, err, NULL, 0);
	/* It exec'd: whoever speaks on this connection now is not the client. */
	if (err == -ESRCH)
		session_end(r->s);
}

static void do_mirror_unregister(struct request *r)
{
	const struct hmmu_wire_mirror *req = payload(r);
	struct hmmu_mirror *m = request_mirror(r, req->mirror);
	int err;

	if (!m)
		return;
	err = registry_unregister(&daemon_of(r)->registry, m);
	if (err) {
		log_warn("client %d: unregister mirror %llu: not registered",
			 r->s->peer.pid, (unsigned long long)m->id);
		reason_set(&r->why, err, "mirror %llu on %s is not registered",
			   (unsigned long long)m->id, m->dev->name);
	}
	mirror_put(m);
	reply(r, err, NULL, 0);
}

static void do_mirror_destroy(struct request *r)
{
	const struct hmmu_wire_mirror *req = payload(r);
	struct hmmu_mirror *m = session_take_mirror(r->s, req->mirror);

	if (!m) {
		log_warn("client %d: destroy: no mirror %llu", r->s->peer.pid,
			 (unsigned long long)req->mirror);
		reason_set(&r->why, -ENOENT, "no mirror %llu on this "
			   "connection: it was destroyed, or never created on "
			   "it", (unsigned long long)req->mirror);
		reply(r, -ENOENT, NULL, 0);
		return;
	}
	/* Its queues first: nothing submitted from now on reaches it. */
	queue_mirror_gone(r->s, req->mirror);
	registry_destroy(&daemon_of(r)->registry, m);
	mirror_put(m);
	reply(r, 0, NULL, 0);
}

/*
 * After a restart (protocol.md §11): the mirror the client had, under its
 * id, registered again if it was, taking the pages the adopted state holds
 * for its device. All or nothing: on an error the mirror is not made.
 */
static void do_mirror_restore(struct request *r)
{
	const struct hmmu_wire_mirror_restore *req = payload(r);
	struct daemon *d = daemon_of(r);
	struct hmmu_device *dev = find_device(d, req->device);
	struct hmmu_mirror *m;
	int err;

	if (!dev) {
		reason_set(&r->why, -ENODEV, "hmmud has no device named "
			   "'%.32s' any more", req->device);
		log_warn("client %d: restore mirror %llu: no such device",
			 r->s->peer.pid, (unsigned long long)req->mirror);
		reply(r, -ENODEV, NULL, 0);
		return;
	}
	err = account_add_mirror(r->s->acct);
	if (err) {
		reason_set(&r->why, err, "this user has as many mirrors as "
			   "hmmud allows (%u, --limit mirrors-per-user)",
			   limits.mirrors_per_user);
		reply(r, err, NULL, 0);
		return;
	}
	m = mirror_new(0, dev, &r->s->peer, r->s->acct);
	if (!m) {
		account_del_mirror(r->s->acct);
		reply(r, -ENOMEM, NULL, 0);
		return;
	}
	mirror_get(m); /* ours: a DESTROY may take the table's at once */
	err = session_add_mirror_id(r->s, m, req->mirror);
	if (err) {
		reason_set(&r->why, err, err == -EEXIST ?
			   "mirror %llu exists on this connection already" :
			   "this connection holds as many mirrors as it may",
			   (unsigned long long)req->mirror);
		mirror_put(m); /* the table's, which it never had */
	} else if (req->flags & HMMU_RESTORE_REGISTERED) {
		err = registry_restore(&d->registry, m,
				       req->flags & HMMU_RESTORE_COARSE,
				       &r->why);
		if (err) {
			struct hmmu_mirror *t = session_take_mirror(r->s,
								    req->mirror);

			log_warn("client %d: restore mirror %llu on %s: %s%s%s",
				 r->s->peer.pid, (unsigned long long)req->mirror,
				 dev->name, strerror(-err),
				 *why(r, err) ? ": " : "", why(r, err));
			if (t) {
				registry_destroy(&d->registry, t);
				mirror_put(t);
			}
		}
	}
	mirror_put(m);
	reply(r, err, NULL, 0);
}

/*
 * After a restart (protocol.md §11), before anything else: the ids the
 * client was given before may still be named by what it sends again (a
 * DESTROY whose reply the crash lost) or keeps (a buffer we could not make
 * again), and must never name something made on this connection. So
 * whatever it makes from now on has an id above all of them. The decoder
 * bounded @above: the counters never wrap.
 */
static void do_reserve_ids(struct request *r)
{
	const struct hmmu_wire_reserve_ids *req = payload(r);

	session_reserve_ids(r->s, req->above);
	buffers_reserve_ids(&r->s->buffers, req->above);
	queue_reserve_ids(req->above);
	reply(r, 0, NULL, 0);
}

static void do_stats(struct request *r)
{
	struct hmmu_wire_stats st;

	registry_stats(&daemon_of(r)->registry, &r->s->peer, r->s->acct, &st);
	if (r->s->peer.uid != 0)
		st.value[HMMU_STAT_DEVICE_MEM_PAGES] = account_devmem_pages(r->s->acct);
	for (unsigned i = 0; r->s->peer.uid == 0 && i < daemon_of(r)->ndevices; i++)
		st.value[HMMU_STAT_DEVICE_MEM_PAGES] +=
			devmem_pages_used(daemon_of(r)->devices[i]->mem);
	reply(r, 0, &st, sizeof(st));
}

_Static_assert((int)HMMU_COMMAND_READ == (int)HMMU_CMD_READ &&
		       (int)HMMU_COMMAND_WRITE == (int)HMMU_CMD_WRITE &&
		       (int)HMMU_COMMAND_SNAPSHOT == (int)HMMU_CMD_SNAPSHOT &&
		       (int)HMMU_COMMAND_MIGRATE_PREPARE == (int)HMMU_CMD_MIGRATE_PREPARE &&
		       (int)HMMU_COMMAND_EXCLUSIVE_PREPARE ==
			       (int)HMMU_CMD_EXCLUSIVE_PREPARE &&
		       (int)HMMU_COMMAND_MIGRATE_FINISH == (int)HMMU_CMD_MIGRATE_FINISH &&
		       (int)HMMU_COMMAND_MIGRATE_TO_SYSTEM ==
			       (int)HMMU_CMD_MIGRATE_TO_SYSTEM &&
		       (int)HMMU_COMMAND_CHECK_EXCLUSIVE == (int)HMMU_CMD_CHECK_EXCLUSIVE &&
		       (int)HMMU_COMMAND_RELEASE == (int)HMMU_CMD_RELEASE &&
		       (int)HMMU_COMMAND_MAX_PAGES == (int)HMMU_CMD_MAX_PAGES &&
		       HMMU_MIGRATE_MAX_PAGES == HMMU_PREPARE_MAX_PAGES,
	       "the driver API's commands are the protocol's");

/*
 * HMMU_OP_DEVICE_CMD: the wire's command, to the model and back.
 * DEVICE_CMD_BUFFER: the same, into a shared buffer (buffers.h), held
 * until the command returns.
 */
static int run_command(struct request *r, struct hmmu_mirror *m,
		       const struct hmmu_wire_device_cmd *w,
		       struct hmmu_wire_prepare_result *out)
{
	const struct hmmu_command cmd = {
		.cmd = w->cmd,
		.addr = w->addr,
		.npages = w->npages,
		.buf = w->buf,
		.buf_len = w->buf_len,
	};
	struct hmmu_command_result res;
	struct buffer *b = NULL;
	int err;

	if (r->msg.hdr.op == HMMU_OP_DEVICE_CMD_BUFFER &&
	    (err = buffer_command_begin(r->s, (const void *)w, &b)))
		return err;
	memset(&res, 0, sizeof(res));
	err = device_command(m, &cmd, &res);
	if (b)
		buffer_put(b);
	/* A PREPARE's reply has the discard map; the others stop before. */
	out->cpages = res.cpages;
	out->faults = res.faults;
	memcpy(out->discard, res.discard, sizeof(out->discard));
	/* The client holds this file before it discards (FAILSAFE). */
	if (!err && (w->cmd == HMMU_CMD_MIGRATE_PREPARE ||
		     w->cmd == HMMU_CMD_EXCLUSIVE_PREPARE))
		out->devfile = migrate_devfile_gen(m->proc);
	return err;
}

/* HMMU_OP_JOB, timed here: the time the device spent on it. */
static int run_job(struct hmmu_mirror *m, const struct hmmu_wire_job *w,
		   struct hmmu_wire_job_result *out)
{
	const struct hmmu_job_desc job = {
		.kind = w->kind,
		.src = w->src,
		.dst = w->dst,
		.len = w->len,
		.value = w->value,
		.next_offset = w->next_offset,
		.value_offset = w->value_offset,
	};
	struct hmmu_job_result res = { 0 };
	struct timespec t0, t1;
	int err;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = device_job(m, &job, &res);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	out->result = res.result;
	out->faults = res.faults;
	out->elapsed_ns = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000ll +
				     (t1.tv_nsec - t0.tv_nsec));
	return err;
}

/*
 * What a command or job's errno means when nothing closer to the error
 * said why (the core and the models explain the errors they decide).
 */
static void explain_status(struct request *r, struct hmmu_mirror *m, int err)
{
	switch (err) {
	case -ESRCH:
		reason_default(&r->why, err, "this process exec'd or exited "
			       "since it registered: a new image must connect "
			       "anew");
		break;
	case -ETIMEDOUT:
		reason_default(&r->why, err, "the %s on %s ran past hmmud's "
			       "limit of %llu s (--limit job-seconds)",
			       r->msg.hdr.op == HMMU_OP_JOB ? "job" : "command",
			       m->dev->name,
			       (unsigned long long)(limits.job_timeout_ms / 1000));
		break;
	case -EAGAIN:
		reason_default(&r->why, err, "the pages kept changing under "
			       "the %s (the CPU kept writing or discarding "
			       "them): try again",
			       r->msg.hdr.op == HMMU_OP_JOB ? "job" : "command");
		break;
	case -ENOMEM:
		reason_default(&r->why, err, "hmmud ran out of memory: see "
			       "its log");
		break;
	default:
		break;
	}
}

/*
 * Device commands and jobs run with the mirror's state_lock read-held, so
 * that an unregistration waits for them to finish (rule 6).
 */
static int run_on_mirror(struct request *r, struct hmmu_mirror *m, void *res)
{
	const void *req = payload(r);
	struct command_ctx ctx;
	int err;

	pthread_rwlock_rdlock(&m->state_lock);
	command_enter(&ctx, m, limits.job_timeout_ms, &r->why);
	if (!m->registered)
		err = command_fail(-EINVAL, "mirror %llu on %s is not "
				   "registered: hmmu_mirror_register() it "
				   "first", (unsigned long long)m->id,
				   m->dev->name);
	else if (!client_mm_alive(m->proc))
		err = -ESRCH; /* exited, or exec'd: not the one that registered */
	/* A command boundary: a coarse process's CPU writes reach devices. */
	else if ((err = coherence_boundary(m->proc)) != 0)
		;
	else if (r->msg.hdr.op == HMMU_OP_JOB)
		err = run_job(m, req, res);
	else
		err = run_command(r, m, req, res);
	command_leave();
	pthread_rwlock_unlock(&m->state_lock);
	explain_status(r, m, err);
	/* Faults on bad addresses are the client's business, not news. */
	if (err && err != -EFAULT && err != -EPERM && err != -ESRCH &&
	    err != -ECANCELED && err != -ESHUTDOWN)
		log_warn("client %d: %s on %s: %s%s%s", r->s->peer.pid,
			 hmmu_proto_op_name(r->msg.hdr.op), m->dev->name,
			 strerror(-err), *why(r, err) ? ": " : "", why(r, err));
	else if (err)
		log_debug("client %d: %s on %s: %s%s%s", r->s->peer.pid,
			  hmmu_proto_op_name(r->msg.hdr.op), m->dev->name,
			  strerror(-err), *why(r, err) ? ": " : "",
			  why(r, err));
	return err;
}

/* DEVICE_CMD and JOB: both payloads start with the mirror's id. */
static void do_mirror_op(struct request *r)
{
	const uint64_t *id = payload(r);
	union {
		struct hmmu_wire_cmd_result cmd;
		struct hmmu_wire_prepare_result prepare;
		struct hmmu_wire_job_result job;
	} res;
	struct hmmu_mirror *m = request_mirror(r, *id);
	int err;

	if (!m)
		return;
	memset(&res, 0, sizeof(res));
	err = run_on_mirror(r, m, &res);
	mirror_put(m);
	reply(r, err, &res, hmmu_proto_reply_size(&r->msg.hdr));
	/* Exited or exec'd: answered, and then no one is served here again. */
	if (err == -ESRCH)
		session_end(r->s);
}

static void do_list(struct request *r)
{
	const struct hmmu_wire_list *req = payload(r);
	struct {
		struct hmmu_wire_list_reply head;
		struct hmmu_wire_list_entry e[HMMU_LIST_PER_REPLY];
	} rep;

	memset(&rep, 0, sizeof(rep));
	rep.head.total = registry_list(&daemon_of(r)->registry, &r->s->peer,
				       req->what, req->start, rep.e,
				       HMMU_LIST_PER_REPLY, &rep.head.count);
	reply(r, 0, &rep, sizeof(rep.head) + rep.head.count * sizeof(rep.e[0]));
}

static void do_buffer_create(struct request *r)
{
	buffer_create(r->s, &r->msg.hdr, &r->why);
}

static void do_buffer_destroy(struct request *r)
{
	buffer_destroy(r->s, &r->msg.hdr, &r->why);
}

static void do_buffer_restore(struct request *r)
{
	buffer_restore(r->s, &r->msg.hdr, r->fd, &r->why);
}

static void do_queue_create(struct request *r)
{
	const struct hmmu_wire_queue_create *req = payload(r);
	struct hmmu_mirror *m = request_mirror(r, req->mirror);
	struct hmmu_wire_queue_reply rep;
	int fds[2], err;

	if (!m)
		return;
	err = queue_create(r->s, m->id, req->entries, &rep, fds, &r->why);
	mirror_put(m);
	if (err) {
		reply(r, err, NULL, 0);
		return;
	}
	err = session_reply_fds(r->s, &r->msg.hdr, &rep, sizeof(rep), fds, 2);
	close(fds[0]);
	close(fds[1]);
	/* Nobody learnt of it: it goes. */
	if (err) {
		if (err != -EAGAIN) /* that one is logged already */
			log_warn("client %d: queue reply: %s", r->s->peer.pid,
				 strerror(-err));
		queue_destroy(r->s, rep.queue);
	}
}

static void do_queue_destroy(struct request *r)
{
	const struct hmmu_wire_queue_id *req = payload(r);
	int err = queue_destroy(r->s, req->queue);

	if (err)
		reason_set(&r->why, err, "no queue %llu on this connection",
			   (unsigned long long)req->queue);
	reply(r, err, NULL, 0);
}

/*
 * FAILSAFE: the process's device memory file and a dup of its own
 * userfaultfd, with which libhmmu brings its pages home if hmmud dies
 * (docs/design.md, "If the daemon dies"), and a pidfd of hmmud, by which
 * it tells a death from a hang-up. The first two are the client's already
 * (its userfaultfd, its pages): nothing of anyone else's goes out. The
 * pidfd is needed because the socket cannot say who hmmud is: under
 * socket activation its peer credentials are those of whoever called
 * listen(), systemd or a supervisor, which outlives every hmmud.
 */
static void do_failsafe(struct request *r)
{
	const struct hmmu_wire_mirror *req = payload(r);
	struct hmmu_mirror *m = request_mirror(r, req->mirror);
	struct hmmu_wire_failsafe rep = { 0 };
	int fds[3] = { -1, -1, -1 }, err;

	if (!m)
		return;
	pthread_rwlock_rdlock(&m->state_lock);
	if (!m->registered) {
		err = reason_set(&r->why, -EINVAL, "mirror %llu is not "
				 "registered", (unsigned long long)m->id);
	} else {
		err = migrate_devfile(m->proc, &fds[0], &rep.generation,
				      &rep.bytes);
		if (err == -EOPNOTSUPP)
			reason_set(&r->why, err, "this process's mirrors are "
				   "coarse-grained: its pages never move to "
				   "device memory");
		else if (!err && (fds[1] = fcntl(m->proc->uffd,
						 F_DUPFD_CLOEXEC, 0)) < 0)
			err = -errno;
		else if (!err && (fds[2] = (int)syscall(SYS_pidfd_open,
							 getpid(), 0)) < 0)
			err = -errno;
	}
	pthread_rwlock_unlock(&m->state_lock);
	mirror_put(m);
	if (!err) {
		err = session_reply_fds(r->s, &r->msg.hdr, &rep, sizeof(rep),
					fds, 3);
		if (err)
			log_warn("client %d: failsafe reply: %s",
				 r->s->peer.pid, strerror(-err));
	} else {
		reply(r, err, NULL, 0);
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static void (*const handlers[HMMU_OP_MAX_])(struct request *r) = {
	[HMMU_OP_FAILSAFE] = do_failsafe,
	[HMMU_OP_QUEUE_CREATE] = do_queue_create,
	[HMMU_OP_QUEUE_DESTROY] = do_queue_destroy,
	[HMMU_OP_DEVICE_COUNT] = do_device_count,
	[HMMU_OP_DEVICE_INFO] = do_device_info,
	[HMMU_OP_MIRROR_CREATE] = do_mirror_create,
	[HMMU_OP_MIRROR_REGISTER] = do_mirror_register,
	[HMMU_OP_MIRROR_UNREGISTER] = do_mirror_unregister,
	[HMMU_OP_MIRROR_DESTROY] = do_mirror_destroy,
	[HMMU_OP_MIRROR_RESTORE] = do_mirror_restore,
	[HMMU_OP_STATS] = do_stats,
	[HMMU_OP_DEVICE_CMD] = do_mirror_op,
	[HMMU_OP_JOB] = do_mirror_op,
	[HMMU_OP_LIST] = do_list,
	[HMMU_OP_BUFFER_CREATE] = do_buffer_create,
	[HMMU_OP_BUFFER_DESTROY] = do_buffer_destroy,
	[HMMU_OP_DEVICE_CMD_BUFFER] = do_mirror_op,
	[HMMU_OP_BUFFER_RESTORE] = do_buffer_restore,
	[HMMU_OP_RESERVE_IDS] = do_reserve_ids,
};

/* Run @r's handler, then let go of what it held (the fd, the reasons). */
static void request_finish(struct request *r)
{
	/*
	 * Received on another thread than the loop, which reads the
	 * userfaultfds: an unmap or discard the client saw complete before
	 * it sent this is applied first (process.h).
	 */
	process_wait_events();
	handlers[r->msg.hdr.op](r);
	if (r->fd >= 0)
		close(r->fd);
	reason_fini(&r->why);
}

static void request_run(struct work *w)
{
	struct request *r = (struct request *)w;
	struct session *s = r->s;

	request_finish(r);
	free(r);
	session_request_done(s);
	/* A queue held back by the connection's share may go on now. */
	queue_session_kick(s);
	session_put(s);
}

/*
 * The most pages a device command may cover and still run on the thread
 * that received it. A range fault of 16 pages is one write-protect and one
 * read of 64 KiB (about 20 us here, the order of the round trip itself), so
 * handing it to a worker would still cost a noticeable share of it (a
 * wake-up of another thread: 6.5 us measured); past that the command's
 * own work dwarfs the hand-off. It is also the accelerator's fault window,
 * and the size past which one write-protect of a running client costs
 * less per page than its TLB shootdown (uffd-pitfalls 13).
 */
#define SHORT_CMD_PAGES 16

bool request_is_short(const struct hmmu_wire_hdr *h)
{
	const struct hmmu_wire_device_cmd *c = (const void *)(h + 1);

	switch (h->op) {
	case HMMU_OP_DEVICE_COUNT:
	case HMMU_OP_DEVICE_INFO:
	case HMMU_OP_MIRROR_CREATE:
	case HMMU_OP_STATS:
	case HMMU_OP_LIST:
	case HMMU_OP_RESERVE_IDS:
		return true;
	case HMMU_OP_DEVICE_CMD:
		/*
		 * The commands bounded by their pages. The others (RELEASE
		 * drops all of a mirror's pages, the migrations move device
		 * memory) go to the workers, as do jobs (their length is the
		 * job's own: a list walk runs to its deadline), the lifecycle
		 * (a registration's probe waits on the loop, an unregistration
		 * or destruction for the mirror's commands) and any op not
		 * named here.
		 */
		return (c->cmd == HMMU_CMD_READ || c->cmd == HMMU_CMD_WRITE ||
			c->cmd == HMMU_CMD_SNAPSHOT) &&
		       c->npages <= SHORT_CMD_PAGES;
	default:
		return false;
	}
}

void request_run_now(struct session *s, const struct hmmu_wire_hdr *h,
		     size_t len, int fd)
{
	struct request r;

	r.s = s;
	r.fd = fd;
	r.done = NULL;
	r.done_arg = NULL;
	reason_init(&r.why);
	memcpy(r.msg.buf, h, len);
	request_finish(&r);
	session_request_done(s);
	queue_session_kick(s);
	session_put(s);
}

static int queue_work(struct session *s, const struct hmmu_wire_hdr *h,
		      size_t len, int fd, request_done_fn done, void *done_arg)
{
	struct request *r;

	if (!handlers[h->op])
		return -EOPNOTSUPP;
	r = malloc(sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->work.fn = request_run;
	r->s = s;
	r->fd = fd;
	r->done = done;
	r->done_arg = done_arg;
	reason_init(&r->why);
	memcpy(r->msg.buf, h, len);
	workers_queue_fair(s->d->workers, &s->requests, &r->work);
	return 0;
}

int request_queue(struct session *s, const struct hmmu_wire_hdr *h,
		  size_t len, int fd)
{
	return queue_work(s, h, len, fd, NULL, NULL);
}

/*
 * From a submission queue (queue.c): counted in the connection's share and
 * holding the session as a received request does, always on a worker.
 */
int request_dispatch_queued(struct session *s, const struct hmmu_wire_hdr *h,
			    size_t len, request_done_fn done, void *arg)
{
	int err;

	if (h->op != HMMU_OP_DEVICE_CMD && h->op != HMMU_OP_JOB)
		return -EOPNOTSUPP;
	session_get(s);
	atomic_fetch_add(&s->inflight, 1);
	err = queue_work(s, h, len, -1, done, arg);
	if (err) {
		session_request_done(s);
		session_put(s);
	}
	return err;
}
