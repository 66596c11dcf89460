/* SPDX-License-Identifier: MIT */
/*
 * Restarting without loss (docs/design.md, "Restarting without loss";
 * docs/protocol.md §11). Under a service manager with an fd store, hmmud
 * keeps there, as it makes them, each client process's userfaultfd, pidfd,
 * /proc/PID/{mem,pagemap,maps} files, journal (core/journal.h) and device
 * memory file, each connection's socket, and the incarnation of the state.
 * A successor adopts the processes: each gets one placeholder mirror per
 * device (a "ghost", owned by no connection) holding its pages in device
 * memory and keeping the state alive, until a connection of the process
 * restores its mirrors (MIRROR_RESTORE), which take the ghost's pages, or
 * until the grace period ends, when the ghosts are released as at a
 * client's unregistration (pages come home). The old connections are
 * closed: their clients connect again and restore what was theirs.
 *
 * Names in the store: "hmmud-state" (the incarnation), "p<N>.<kind>" for
 * process N (kind: uffd, pidfd, mem, pagemap, maps, journal, devmem), and
 * "c<N>.sock" for connection N.
 */
#ifndef HMMUD_RESTART_H
#define HMMUD_RESTART_H

#include <stdint.h>

struct daemon;
struct process;
struct session;

/* At start, under a service manager: keep state in its fd store. */
void restart_init(void);
/*
 * A passed fd that is not the listening socket (at start, before
 * restart_adopt()): kept for it, or closed if it is none of ours.
 */
void restart_take(int fd, const char *name);
/*
 * Adopt what restart_take() kept, once devices, registry and loop exist
 * and before the loop runs; then hold adopted states @grace_ms at most.
 * Makes the incarnation if none was adopted.
 */
void restart_adopt(struct daemon *d, unsigned grace_ms);
/* A clean stop: the next start makes a new incarnation. Joins the grace. */
void restart_stop(void);

uint64_t restart_incarnation(void);

/* A process's state was made / is gone (registry lock held). */
void restart_store_process(struct process *p);
void restart_forget_process(struct process *p);
/* A connection was accepted / is being torn down. */
void restart_store_session(struct session *s);
void restart_forget_session(struct session *s);

#endif
