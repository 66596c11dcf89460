/* SPDX-License-Identifier: MIT */
/*
 * Interval notifiers (hmmu/driver.h): a model's watch on part of a mirror's
 * address space, told of every invalidation that overlaps it. The core
 * calls them from process_invalidate_range_start(), after it dropped the
 * mirror's own device-MMU copies.
 *
 * Locking: m->notifier_lock, read-held to call them (inside the process
 * lock, read-held), write-held to insert or remove one; a leaf but for the
 * model's own lock, which invalidate() takes.
 */
#ifndef HMMU_CORE_NOTIFIER_H
#define HMMU_CORE_NOTIFIER_H

#include <stdint.h>

#include <hmmu/driver.h>

/* Tell @m's notifiers that overlap @r; @cur_seq is their new sequence. */
void notifier_invalidate(struct hmmu_mirror *m,
			 const struct hmmu_notifier_range *r, uint64_t cur_seq);
/* @m's process died: HMMU_NOTIFY_RELEASE to each of its notifiers. */
void notifier_release(struct hmmu_mirror *m);
/* Unbind: forget every notifier still inserted. */
void notifier_remove_all(struct hmmu_mirror *m);

#endif
