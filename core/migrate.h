/* SPDX-License-Identifier: MIT */
/*
 * Device memory and migration: the counterpart of the kernel's device
 * private memory and migrate_vma_*(). A page migrated to a device lives in
 * that device's memory (devices/devmem.c) and not in the CPU's page table;
 * any CPU access raises a userfaultfd MISSING fault that brings it back.
 *
 * The daemon cannot discard a page of another process, so migrating to a
 * device takes three steps, the middle one done by libhmmu in the client:
 *
 *   1. prepare (worker): register the range for missing faults, reserve
 *      device pages, write-protect the pages, copy them. From here on a CPU
 *      write to them is held asleep by the daemon.
 *   2. the client discards them: madvise(MADV_DONTNEED), which the daemon
 *      sees as a REMOVE event.
 *   3. finish (on the loop thread, after that event was handled): pages the
 *      client discarded are now device-private; pages it did not are rolled
 *      back (device page freed, write-protect lifted). Held writers wake up
 *      and, for device-private pages, fault the page straight back.
 *
 * Why no write is lost: a write before step 1's write-protect is in the
 * copy; a write after it sleeps until step 3, and then lands either on the
 * CPU page that was never discarded or, through a missing fault, on the page
 * brought back from the device with the migrated contents. A page that was
 * never populated is zero either way; a missing fault on one during
 * migration installs it write-protected, so its writer is held too.
 */
#ifndef HMMUD_MIGRATE_H
#define HMMUD_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

#include <hmmu/driver.h>

struct hmmu_device;
struct hmmu_mirror;
struct process;

int migrate_init(struct process *p);
/* The process is gone: free its device pages. */
void migrate_fini(struct process *p);

/*
 * Step 1 for [start, start + npages pages) on @m's device. One byte per
 * page into @map: 1 if the page is being migrated (the client must discard
 * it), 0 if not (not anonymous private writable memory, a hole, or already
 * in device memory). -ENOMEM if the device memory is full (nothing changes).
 */
int migrate_prepare(struct hmmu_mirror *m, uint64_t start, uint64_t npages,
		    uint8_t *map, int exclusive, uint64_t *count);
/* Step 3. *@cpages: pages now in @m's device memory from this migration. */
int migrate_finish(struct hmmu_mirror *m, uint64_t start, uint64_t npages,
		   uint64_t *cpages);

/*
 * Bring @m's pages in [start, end) back to system memory (all of them if
 * end is 0). *@cpages counts them. Worker.
 */
int migrate_to_system(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		      uint64_t *cpages);
/* The mirror's process is gone: free its device pages without copying. */
void migrate_drop_mirror(struct process *p, struct hmmu_mirror *m);

/*
 * The process's device memory file, for its client: a dup of its memfd in
 * *@fd (the caller closes it), its generation and size; made now if no
 * migration made it yet. -EOPNOTSUPP for a coarse-grained process.
 */
int migrate_devfile(struct process *p, int *fd, uint64_t *gen,
		    uint64_t *bytes);
/* Its generation, or 0 if there is none yet. */
uint64_t migrate_devfile_gen(struct process *p);

/*
 * Called once the process's device memory file is made, before any page
 * is in it: the daemon puts @fd in its fd store (restart.c). NULL: no call.
 */
extern void (*migrate_devfile_made)(struct process *p, int fd);

/*
 * A successor takes over the device memory file @fd of adopted process @p
 * (before its userfaultfd is watched): each HELD page becomes a page of
 * @owners[its device] in device memory, or a page being migrated if the
 * client's page still exists. -EBADMSG if the file is not one this daemon
 * would make. @fd is @p's, or closed on failure.
 */
int migrate_adopt(struct process *p, int fd, struct hmmu_mirror *const *owners,
		  unsigned nowners, uint64_t *pages, uint64_t *migrating);
/*
 * An adoption that failed: let the pages and the file go without a change
 * to the journal, which the client's fail-safe then reads.
 */
void migrate_abandon(struct process *p);
/* Every page of @from is @to's now (same device; restart.c). */
void migrate_transfer(struct process *p, struct hmmu_mirror *from,
		      struct hmmu_mirror *to);

/* 0 if every page of [start, end) is exclusive to @m, else -EPERM. */
int migrate_check_exclusive(struct hmmu_mirror *m, uint64_t start, uint64_t end);

/*
 * For the device MMU: copy the page at @page from @m's device memory into
 * @dst, without a CPU fault. -ENOENT if it is not there.
 */
int migrate_copy_local(struct hmmu_mirror *m, uint64_t page, void *dst);

/*
 * Snapshot overlay: 0, or HMMU_PFN_DEVICE_PRIVATE, with HMMU_PFN_DEVICE_OWNER
 * if the page is in @m's device's memory.
 */
uint8_t migrate_page_state(struct hmmu_mirror *m, uint64_t page);

/*
 * For workers reaching client memory (client_mem.c), with p->migrate_lock
 * held. migrate_fault_in_locked() makes a missing page present: a device
 * page comes back, a page never populated gets a zero page; a page being
 * migrated gets -EBUSY unless @fill_reserved (the migration's own copy,
 * before the client was told what to discard). -EAGAIN: an event is queued,
 * drop the lock and try again. -ENOENT/-EINVAL: not a range of ours.
 * migrate_busy_locked(): is a page of [start, end) being migrated?
 */
int migrate_fault_in_locked(struct process *p, uint64_t page, bool fill_reserved);
bool migrate_busy_locked(struct process *p, uint64_t start, uint64_t end);

/* Loop thread: userfaultfd traffic that concerns device memory. */
int migrate_missing_fault(struct process *p, const struct uffd_msg *msg);
int migrate_holds_write(struct process *p, uint64_t page);
void migrate_on_remove(struct process *p, uint64_t start, uint64_t end);
/*
 * Why the pages of a REMOVE go: a client's discard is HMMU_NOTIFY_DISCARD,
 * but the discard that completes a migration is HMMU_NOTIFY_MIGRATE (or
 * _EXCLUSIVE), owned by the device they move to. Sets r->event and
 * r->owner when the range holds a page being migrated.
 */
void migrate_classify_remove(struct process *p, struct hmmu_notifier_range *r);
void migrate_on_unmap(struct process *p, uint64_t start, uint64_t end);
void migrate_on_remap(struct process *p, uint64_t from, uint64_t to,
		      uint64_t len);
void migrate_on_fork(struct process *p, int child_uffd);

#endif
