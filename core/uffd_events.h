/* SPDX-License-Identifier: MIT */
/*
 * Reading and handling a process's userfaultfd messages, on the loop
 * thread: the CPU-side half of coherence (the kernel's mmu_notifier).
 */
#ifndef HMMUD_UFFD_EVENTS_H
#define HMMUD_UFFD_EVENTS_H

struct process;

/* The userfaultfd of @p is readable: read and handle until it is empty. */
void uffd_events_handle(struct process *p, unsigned revents);

/*
 * Retry the write faults held while their pages were being migrated; the
 * ones whose migration has settled are handled now. Loop thread.
 */
void uffd_events_release_held(struct process *p);

#endif
