/* SPDX-License-Identifier: MIT */
/* Mirrors: create, register, unregister, destroy. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

HMMU_EXPORT int hmmu_mirror_create(struct hmmu *h, const char *device,
				   struct hmmu_mirror **out)
{
	struct hmmu_wire_device_name req;
	struct hmmu_wire_mirror rep;
	struct hmmu_mirror *m;
	int err;

	hmmu_clear_detail();
	if (!h || !device || !out)
		return -EINVAL;
	if (!*device || strlen(device) >= sizeof(req.name)) {
		hmmu_set_detail("no device has a name of %zu bytes: names are 1 "
				"to %zu bytes (hmmu_device_info() lists them)",
				strlen(device), sizeof(req.name) - 1);
		return -ENODEV;
	}
	memset(&req, 0, sizeof(req));
	strcpy(req.name, device);

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	for (;;) {
		struct pending p = { .op = HMMU_OP_MIRROR_CREATE, .req = &req,
				     .req_len = sizeof(req), .fd = -1,
				     .out = &rep, .cap = sizeof(rep) };

		err = hmmu_request(h, &p);
		if (err) {
			free(m);
			return err < 0 ? err : -EPROTO;
		}
		hmmu_lock_settled(h);
		if (p.restarts == h->restarts)
			break;
		/*
		 * Made by a daemon that restarted before the mirror was
		 * listed, so the reconnection did not make it again: it is
		 * no more. Make one anew.
		 */
		pthread_mutex_unlock(&h->lock);
	}
	/* Listed in the same breath: a restart now makes it again. */
	m->h = h;
	m->id = rep.mirror;
	strcpy(m->device, device);
	m->next = h->mirrors;
	h->mirrors = m;
	pthread_mutex_unlock(&h->lock);
	*out = m;
	return 0;
}

static int mirror_call(struct hmmu_mirror *m, unsigned op, int fd)
{
	struct hmmu_wire_mirror req = { .mirror = m->id };

	return hmmu_call(m->h, op, &req, sizeof(req), fd, NULL, 0);
}

/*
 * A fine-grained registration goes in the short form every hmmud knows;
 * only a coarse one needs the long form (proto.h), which a daemon older
 * than it refuses as too long. *@resent: it was sent again after a restart.
 */
static int register_call(struct hmmu_mirror *m, int uffd, uint64_t probe,
			 int coarse, bool *resent)
{
	struct hmmu_wire_register_ext req = {
		.base = { .mirror = m->id, .probe = probe },
		.flags = coarse ? HMMU_REGISTER_COARSE : 0,
	};
	struct pending p = { .op = HMMU_OP_MIRROR_REGISTER, .req = &req,
			     .req_len = coarse ? sizeof(req) : sizeof(req.base),
			     .fd = uffd };
	int err;

	err = hmmu_request(m->h, &p);
	*resent = p.resent;
	if (coarse && err == -EMSGSIZE) {
		hmmu_set_detail("this hmmud predates coarse-grained coherence: "
				"update it, or register the mirror "
				"fine-grained");
		err = -EOPNOTSUPP;
	}
	return err;
}

HMMU_EXPORT int hmmu_mirror_set_coherence(struct hmmu_mirror *m,
					  enum hmmu_coherence mode)
{
	hmmu_clear_detail();
	if (!m)
		return -EINVAL;
	if (mode != HMMU_COHERENCE_FINE && mode != HMMU_COHERENCE_COARSE) {
		hmmu_set_detail("no coherence mode %d: HMMU_COHERENCE_FINE or "
				"HMMU_COHERENCE_COARSE", (int)mode);
		return -EINVAL;
	}
	m->coherence = (int)mode;
	return 0;
}

static int register_once(struct hmmu_mirror *m, bool *resent)
{
	size_t probe_len = 2 * (size_t)sysconf(_SC_PAGESIZE);
	void *probe;
	int err, uffd, coarse;

	coarse = m->coherence == HMMU_COHERENCE_COARSE;
	err = register_call(m, -1, 0, coarse, resent);
	if (err != HMMU_STATUS_NEED_UFFD)
		return err;

	/*
	 * First mirror of this process (or the first since the last one
	 * left): the daemon needs our userfaultfd. Another thread may be
	 * doing the same right now; the daemon keeps one and closes the
	 * other, so this needs no lock of ours. With it go two pages nobody
	 * touched, which the daemon uses to check that the userfaultfd is
	 * this process's own; they are ours to unmap once it replied.
	 */
	err = hmmu_uffd_create(&uffd, coarse);
	if (err)
		return err;
	probe = mmap(NULL, probe_len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (probe == MAP_FAILED) {
		close(uffd);
		return -ENOMEM;
	}
	err = register_call(m, uffd, (uint64_t)(uintptr_t)probe, coarse,
			    resent);
	close(uffd);
	munmap(probe, probe_len);
	if (err == HMMU_STATUS_NEED_UFFD) {
		hmmu_set_detail("hmmud asked for this process's userfaultfd "
				"twice: are hmmud and libhmmu of one release?");
		return -EPROTO;
	}
	return err;
}

HMMU_EXPORT int hmmu_mirror_register(struct hmmu_mirror *m)
{
	int err, tries = 0;
	bool resent;

	hmmu_clear_detail();
	if (!m)
		return -EINVAL;
	/*
	 * The probe pages of a registration sent again after a restart may
	 * have been touched by the daemon that died (its check reads them):
	 * the successor then refuses them (-EFAULT), and the registration is
	 * made again from the start, with fresh ones. A few times at most.
	 */
	do
		err = register_once(m, &resent);
	while (err == -EFAULT && resent && ++tries < 4);
	return err;
}

HMMU_EXPORT int hmmu_mirror_unregister(struct hmmu_mirror *m)
{
	hmmu_clear_detail();
	if (!m)
		return -EINVAL;
	return mirror_call(m, HMMU_OP_MIRROR_UNREGISTER, -1);
}

HMMU_EXPORT void hmmu_mirror_destroy(struct hmmu_mirror *m)
{
	char detail[HMMU_DETAIL_MAX];
	struct hmmu *h;

	if (!m)
		return;
	h = m->h;
	/*
	 * Unlisted first: a reconnection from now on does not make it again.
	 * The DESTROY it may send again then names no mirror, harmlessly: the
	 * reconnection first asks the successor to give no new mirror an id
	 * this handle was given (RESERVE_IDS, reconnect.c), so none has this
	 * one. Only a successor older than that op may have given it to a
	 * mirror made since, which the DESTROY would take.
	 */
	hmmu_lock_settled(h);
	for (struct hmmu_mirror **pp = &h->mirrors; *pp; pp = &(*pp)->next) {
		if (*pp == m) {
			*pp = m->next;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
	/*
	 * The daemon unregisters it if needed. In a child, just forget it.
	 * The detail of the caller's last failure stays: cleanup comes
	 * before reading it, often.
	 */
	snprintf(detail, sizeof(detail), "%s", hmmu_error_detail());
	mirror_call(m, HMMU_OP_MIRROR_DESTROY, -1);
	hmmu_set_detail("%s", detail);
	free(m);
}
