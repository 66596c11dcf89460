/* SPDX-License-Identifier: MIT */
/*
 * A process's journal: what a successor of hmmud needs to take over the
 * process's address space from the fd store (docs/design.md, "Restarting
 * without loss") besides its fds: who the process is, its coherence mode,
 * and the ranges registered with its userfaultfd (with their modes: a
 * successor that registered a range for write-protect only would drop the
 * missing mode, and the kernel would hand a zero page for a page that
 * lives in device memory). Pages in device memory have their own journal
 * (common/failsafe.h).
 *
 * A memfd of hmmud's only, never sent to a client. The ranges are kept as
 * two copies: the writer fills the copy not in use, then flips `live` with
 * a release store, so a SIGKILL at any instruction leaves one whole copy,
 * the old or the new. One writer at a time: the caller holds the process's
 * lock for write.
 */
#ifndef HMMUD_JOURNAL_H
#define HMMUD_JOURNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct uffd_range;

#define JOURNAL_MAGIC 0x4c4a4d48u /* "HMJL" in memory order */
#define JOURNAL_ENDED 0x444e4548u /* "HEND": journal_end() */
#define JOURNAL_VERSION 2u
/* Ranges per copy: a process with more is not handed over. */
#define JOURNAL_MAX_RANGES 16384u

struct journal_identity {
	pid_t pid;
	uid_t uid;
	uint64_t pid_ino;
	uint64_t serial; /* the process's number in the fd store's names */
	bool coarse;
	/* Set by journal_create(), read back by journal_adopt(): */
	uint64_t devices;    /* journal_devices() of the daemon that made it */
	uint64_t devmem_gen; /* its device memory file's, once made; else 0 */
};

/*
 * At startup, each device in index order: a successor adopts only the
 * journals of a daemon with the same devices, whose device memory files
 * it can read (a run per device, in that order).
 */
void journal_add_device(const char *name, const char *model, uint64_t npages);
/* A digest of the devices added. */
uint64_t journal_devices(void);

struct journal;

/* A new journal (memfd and mapping) for @id; -errno. */
int journal_create(const struct journal_identity *id, struct journal **out);
/*
 * Take over a journal a predecessor wrote: its identity and ranges
 * (malloc'd, *@n of them). -EBADMSG if it is not one, or its ranges
 * overflowed; -ESTALE if its state ended. On success the journal owns @fd.
 */
int journal_adopt(int fd, struct journal **out, struct journal_identity *id,
		  struct uffd_range **ranges, unsigned *n);
void journal_destroy(struct journal *j);
/*
 * The process's state ended. Its fds leave the store, but a store given
 * up (fdstore.c) hears of it no more: written in the journal itself, which
 * needs no word with the manager, a successor adopts nothing of it.
 */
void journal_end(struct journal *j);
int journal_fd(const struct journal *j);

/*
 * The process's device memory file of generation @gen is made: noted
 * before the file goes to the store and before any page is in it, so that
 * a successor that finds the journal saying so but no file in the store
 * (full, or given up) knows pages are missing, and adopts nothing.
 */
void journal_note_devmem(struct journal *j, uint64_t gen);

/* Write @n ranges as the live copy (process lock held for write). */
void journal_write_ranges(struct journal *j, const struct uffd_range *ranges,
			  unsigned n);

#endif
