/* SPDX-License-Identifier: MIT */
/*
 * hmmu/driver.h - the interface between hmmud's HMM core and device models.
 *
 * A device model is what a kernel driver for a shared-virtual-memory device
 * would be: it keeps a device page table per client address space, fills it
 * with range faults, drops entries when the CPU side changes, migrates pages
 * to its own memory and back. The kernel gives such a driver a small API
 * (hmm_range_fault(), the mmu_interval_notifier, migrate_vma_*(),
 * make_device_exclusive(), a dev_pagemap's migrate_to_ram); this header is
 * hmmu's counterpart, with the same names behind an hmmu_ prefix and the
 * same shapes, so that a model written here ports to the kernel by renaming,
 * and a kernel driver's logic reads the same here. docs/writing-a-device.md
 * walks through one model and gives the kernel name of every hmmu name.
 *
 * What differs from the kernel, and why:
 *   - The device cannot map the client's pages: a range fault hands the
 *     model a copy of each page, taken under write-protection so that any
 *     later CPU write invalidates it first. Where a kernel driver gets a pfn,
 *     a model here gets the page's contents and the same flags.
 *   - Device-private pages live in the device's memory pool, which the core
 *     owns (--device ...,mem=SIZE); the core allocates them during
 *     migration, and the model sees their contents through callbacks.
 *   - The client discards the pages that move to the device itself (the
 *     daemon cannot unmap another process's memory): a migration is set up
 *     and its pages handed over in one request, and finalized in the next,
 *     once the client has discarded them.
 *
 * Threads. Models run on three kinds of threads, and never on the event
 * loop except where a callback says so:
 *   - the main thread: create() and destroy();
 *   - request workers: bind(), unbind(), release(), command(), job();
 *   - the device's compute threads (hmmu_device_threads_start()).
 * Every function below says which of them may call it. A function that
 * "may wait for the client" must not be called with a lock held that an
 * invalidation callback takes: invalidations are what the client waits on.
 *
 * Errors are negative errno values, never -1 with errno.
 *
 * Out-of-tree models are shared objects that define HMMU_DRIVER_MODULE()
 * and are loaded with hmmud --device model=/path/to/model.so,name=NAME.
 * Build them with `pkg-config --cflags hmmu-driver`; the functions of this
 * header are resolved in hmmud when the model is loaded.
 */
#ifndef HMMU_DRIVER_H
#define HMMU_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <hmmu/hmmu.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The version of this interface. It changes whenever a structure's layout,
 * a function's meaning or an ops member changes; hmmud loads only models
 * built for its own version.
 */
#define HMMU_DRIVER_API_VERSION 1

/* The top of the client address space a device can mirror (48 bits). */
#define HMMU_VA_LIMIT (1ull << 48)

struct hmmu_device; /* one instance of a model: hmmud --device ... */
/*
 * A device bound to one client address space: the mirror that a client's
 * struct hmmu_mirror handle (hmmu.h) names, as hmmud sees it.
 */
struct hmmu_mirror;

/* ==== Models ============================================================ */

/*
 * What a model implements. Every callback is optional: a model that sets
 * none still mirrors memory, through the device MMU the core keeps for each
 * mirror (hmmu_mmu_*()), and answers device commands and jobs with
 * -EOPNOTSUPP.
 *
 * create(dev, args)       main thread, before the daemon serves anyone.
 *                         @args: the --device options the core did not
 *                         take (name=, mem=, node= are the core's), as
 *                         "key=value,key=value", maybe "". -EINVAL for an
 *                         option it does not know. May call
 *                         hmmu_device_set_drvdata(), hmmu_device_set_prefetch(),
 *                         hmmu_device_set_fault_buffer() and
 *                         hmmu_device_threads_start().
 * destroy(dev)            main thread, after every mirror is gone.
 * bind(m)                 a request worker, when @m is registered (the
 *                         kernel: a driver's open() inserting its notifier).
 *                         The mirror's device MMU exists already. May insert
 *                         interval notifiers and set mirror drvdata. An error
 *                         fails the registration.
 * release(m)              a request worker or the event loop, once per
 *                         mirror, when the client process exits (or its
 *                         connection closes) while @m is registered: the
 *                         client's memory is gone, nothing may be written
 *                         back. unbind() follows. Must not wait.
 * unbind(m)               a request worker, after @m left its process's
 *                         mirror list: no invalidation, command or fault for
 *                         @m runs any more. Remove the notifiers bind()
 *                         inserted and free what bind() allocated.
 * command(m, cmd, res)    a request worker, @m registered, for the whole
 *                         run of the command (an unregistration waits for
 *                         it). The test_hmm-style commands
 *                         (HMMU_COMMAND_*). -EOPNOTSUPP for one it does
 *                         not know.
 * job(m, job, res)        a request worker, as command(): an accelerator
 *                         job (HMMU_JOB_*), run to completion.
 * migrate_to_ram(m, addr, src, dst)
 *                         any thread (the event loop for a CPU fault, a
 *                         worker or compute thread when a range fault, a
 *                         DMA or an eviction reaches the page), with the
 *                         core's migration lock held: the page at @addr is
 *                         in this device's memory (@src, one page) and goes
 *                         back to the CPU; fill @dst (one page) with what
 *                         the CPU must see. The
 *                         kernel's dev_pagemap_ops.migrate_to_ram. Must not
 *                         block and must not call into this header. Without
 *                         it, the page's contents are copied.
 */
struct hmmu_command; /* below */
struct hmmu_command_result;
struct hmmu_job_desc;
struct hmmu_job_result;

struct hmmu_device_ops {
	int (*create)(struct hmmu_device *dev, const char *args);
	void (*destroy)(struct hmmu_device *dev);
	int (*bind)(struct hmmu_mirror *m);
	void (*release)(struct hmmu_mirror *m);
	void (*unbind)(struct hmmu_mirror *m);
	int (*command)(struct hmmu_mirror *m, const struct hmmu_command *cmd,
		       struct hmmu_command_result *res);
	int (*job)(struct hmmu_mirror *m, const struct hmmu_job_desc *job,
		   struct hmmu_job_result *res);
	int (*migrate_to_ram)(struct hmmu_mirror *m, uint64_t addr,
			      const void *src, void *dst);
};

/*
 * A model as hmmud finds it: in-tree models are linked in, out-of-tree
 * ones export one of these as the symbol "hmmu_driver_module" (use
 * HMMU_DRIVER_MODULE()). hmmud refuses a module whose api_version is not
 * its HMMU_DRIVER_API_VERSION, or whose struct_size is smaller than its own.
 */
struct hmmu_driver_module {
	uint32_t api_version; /* HMMU_DRIVER_API_VERSION */
	uint32_t struct_size; /* sizeof(struct hmmu_driver_module) */
	const char *model;    /* the name --device specs use */
	const struct hmmu_device_ops *ops;
};

#define HMMU_DRIVER_MODULE(name, ops_ptr)                                      \
	__attribute__((visibility("default"))) const struct hmmu_driver_module \
		hmmu_driver_module = {                                         \
			.api_version = HMMU_DRIVER_API_VERSION,                \
			.struct_size = sizeof(struct hmmu_driver_module),      \
			.model = (name),                                       \
			.ops = (ops_ptr),                                      \
	}

/* ==== Devices and mirrors ================================================ */

/* Any thread. The name --device gave, and the NUMA node (-1: none). */
const char *hmmu_device_name(const struct hmmu_device *dev);
int hmmu_device_node(const struct hmmu_device *dev);

/* The model's private data of a device (create() sets it). Any thread. */
void hmmu_device_set_drvdata(struct hmmu_device *dev, void *data);
void *hmmu_device_get_drvdata(const struct hmmu_device *dev);

/*
 * create() only: a device load fault (hmmu_mmu_load()) brings in @pages
 * pages from the faulting one on, in one range fault, like a GPU's fault
 * buffer with prefetch. 1 (the default) disables prefetch. -EINVAL above
 * 512 or for 0.
 */
int hmmu_device_set_prefetch(struct hmmu_device *dev, unsigned pages);

/*
 * create() only: device loads that miss (hmmu_mmu_load(),
 * hmmu_mmu_fault_replayable()) post their fault into a replayable fault
 * buffer of @entries entries, one per mirror, instead of each taking a
 * range fault alone, as a GPU's compute units post faults into the fault
 * buffer its driver drains (NVIDIA UVM's replayable faults). No thread of
 * the core's serves it: the first faulting thread to find no servicer at
 * work becomes it, drains up to 256 entries, drops duplicates and pages
 * held already, groups the rest by 2 MiB block and brings each contiguous
 * run in with one write-protect and one read; the other faulting threads
 * sleep until a batch has taken their fault, then replay their access.
 * Prefetch per fault is the window of hmmu_device_set_prefetch(), or, by
 * the density rule, the whole 2 MiB block: when the pages the device holds
 * in a block, plus the block's faults in the batch, reach @density_pct
 * percent of it, every page of the block it lacks (within the faulting
 * page's mapping) comes in at once. @density_pct 0: no density rule.
 * @entries 0 (the default): no buffer. -EINVAL for @entries from 1 to 255
 * or above 65536, or @density_pct above 100.
 */
int hmmu_device_set_fault_buffer(struct hmmu_device *dev, unsigned entries,
				 unsigned density_pct);

/* Any thread, while @m is bound: its device, and the client's pid. */
struct hmmu_device *hmmu_mirror_device(const struct hmmu_mirror *m);
int hmmu_mirror_pid(const struct hmmu_mirror *m);

/* The model's private data of a mirror (bind() sets it). Any thread. */
void hmmu_mirror_set_drvdata(struct hmmu_mirror *m, void *data);
void *hmmu_mirror_get_drvdata(const struct hmmu_mirror *m);

/* ==== Commands and jobs ================================================== */

/*
 * The device commands of a client (hmmu.h's hmmu_device_read() and
 * friends), as test_hmm's ioctls.
 */
enum hmmu_command_op {
	HMMU_COMMAND_READ = 1,		    /* device reads [addr..) into buf */
	HMMU_COMMAND_WRITE = 2,		    /* device writes buf to [addr..) */
	HMMU_COMMAND_SNAPSHOT = 3,	    /* an HMMU_PAGE_* byte per page */
	HMMU_COMMAND_MIGRATE_PREPARE = 4,   /* migration steps 1 and 2 */
	HMMU_COMMAND_EXCLUSIVE_PREPARE = 5, /* ... for exclusive access */
	HMMU_COMMAND_MIGRATE_FINISH = 6,    /* step 3 */
	HMMU_COMMAND_MIGRATE_TO_SYSTEM = 7, /* device pages come back */
	HMMU_COMMAND_CHECK_EXCLUSIVE = 8,   /* still exclusive? */
	HMMU_COMMAND_RELEASE = 9,	    /* every page comes back */
};

#define HMMU_COMMAND_MAX_PAGES (1ull << 20) /* pages of one command */
#define HMMU_MIGRATE_MAX_PAGES 2048u	    /* pages of one migration */

/*
 * One device command: @cmd an HMMU_COMMAND_* value, [addr, addr + npages pages) the range it
 * works on, checked by the core to lie in user space and be page-aligned;
 * @buf, @buf_len a buffer in the client's memory (reach it with
 * hmmu_dma_*()), unchecked.
 */
struct hmmu_command {
	uint32_t cmd;
	uint64_t addr;
	uint64_t npages;
	uint64_t buf;
	uint64_t buf_len;
};

/*
 * What a command reports, as test_hmm's ioctls do: pages it handled and
 * device faults it took. HMMU_COMMAND_MIGRATE_PREPARE and _EXCLUSIVE_PREPARE
 * also set, in @discard, one bit per page that the client must discard
 * (hmmu_migrate_vma_pages() fills it).
 */
struct hmmu_command_result {
	uint64_t cpages;
	uint64_t faults;
	uint8_t discard[HMMU_MIGRATE_MAX_PAGES / 8];
};

/*
 * An accelerator job, as the client gave it to hmmu_job_run() (hmmu.h's
 * struct hmmu_job): the kind is unchecked, the model checks the rest.
 */
struct hmmu_job_desc {
	uint32_t kind; /* HMMU_JOB_* */
	uint64_t src, dst, len, value;
	uint32_t next_offset, value_offset;
};

struct hmmu_job_result {
	uint64_t result;
	uint64_t faults;
};

/* ==== Device MMU ========================================================= */

/*
 * The core keeps a device page table for each mirror, holding the device's
 * own copy of each mirrored page: filled by range faults, emptied by
 * invalidations before the CPU-side change completes. Models that need no
 * page table of their own use it through these calls; it follows the same
 * sequence protocol as a model's own page table would (range fault, then
 * a retry check under its lock), on the core's internal range fault.
 *
 * All of them: request workers and compute threads, never the event loop;
 * they may wait for the client. The core takes its own locks only; call
 * them with none of the model's locks held that its notifier takes.
 * Memory userfaultfd cannot track (file-backed private mappings) has no
 * copies: these calls reach it in the client's memory directly.
 * Common errors: -EFAULT (part of the range is not mapped, or PROT_NONE),
 * -EPERM (a write to read-only memory), -EINVAL (part of a hugetlb page),
 * -ESRCH (the client is gone), -EBUSY (a page in the middle of a
 * migration), -EDQUOT (its user holds as many page copies as the daemon
 * allows), and hmmu_should_stop()'s errors. The core tells the client why
 * (hmmu_fail()) for each error these calls return: the address and the
 * kind of memory at fault, and the fix.
 */

/*
 * Make every page of [start, end) (page aligned) present in the device page
 * table, writable if @write. *@faulted is set to 1 if a range fault was
 * taken, left alone otherwise.
 */
int hmmu_mmu_fault(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		   bool write, int *faulted);

/*
 * Read [start, end) (page aligned) into @buf through the device page table.
 * Every page of each 1024-page chunk is faulted in before the first byte
 * of it is copied, as test_hmm does: an error leaves that chunk (and the
 * ones after it) untouched. *@faulted is set to 1 if a range fault was
 * taken, else to 0.
 */
int hmmu_mmu_read(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		  void *buf, int *faulted);

/*
 * As hmmu_mmu_read(), into @dst, a buffer hmmu_dma_map() gave, in one copy:
 * pages the device holds come from its copies, the others straight from
 * the client's memory under the same protocol as a range fault (@dst holds
 * what hmmu_mmu_read() would have read), and the device keeps no copy of
 * them: no page copy is taken or charged. An error leaves the 1024-page
 * chunks before it read. *@faulted as hmmu_mmu_read()'s.
 */
int hmmu_mmu_read_direct(struct hmmu_mirror *m, uint64_t start,
			 uint64_t end, void *dst, int *faulted);

/*
 * A device store of @len bytes of @buf at @addr (any alignment): DMA into
 * system memory (hmmu_dma_write()), after which this device holds the
 * written pages. Found before anything is written: -EPERM, -EFAULT.
 */
int hmmu_mmu_write(struct hmmu_mirror *m, uint64_t addr, uint64_t len,
		   const void *buf, int *faulted);

/*
 * A device load of @len bytes at @addr (any alignment) into @dst, a page
 * at a time: each page the device does not hold is a device fault, added to
 * *@faults, bringing in the device's prefetch window from that page; on a
 * device with a fault buffer, the fault goes through it (a replayable
 * fault, serviced in a batch with other threads' faults, then replayed).
 */
int hmmu_mmu_load(struct hmmu_mirror *m, uint64_t addr, void *dst,
		  uint64_t len, uint64_t *faults);

/*
 * A replayable device fault on the page at @addr, for a model that does
 * its own loads (hmmu_mmu_pin(), say): posted into the device's fault
 * buffer (hmmu_device_set_fault_buffer()), serviced in a batch by whichever
 * faulting thread serves the buffer then (maybe this one, which then also
 * serves the others' faults of that batch), and 0 once a batch took it.
 * Then replay the access: the page is usually held now, but not always
 * (an invalidation ran since, or its run failed); a page still missing at
 * the replay is for hmmu_mmu_fault() alone, which says why it fails.
 * Counts nothing: the model counts its faults (hmmu_count_device_faults()).
 * Request workers and compute threads, with none of the model's locks
 * held that its notifier takes; it waits for other threads' faults, never
 * longer than the caller's command may run: hmmu_should_stop()'s errors.
 * -EOPNOTSUPP if the device has no fault buffer, -EFAULT for an address
 * past user space.
 */
int hmmu_mmu_fault_replayable(struct hmmu_mirror *m, uint64_t addr);

/*
 * The device's copies of [start, end) (at most 1024 pages) as one iovec a
 * page in @pages, readable without a lock until hmmu_mmu_unpin(): an
 * invalidation still drops them from the table, but does not reuse their
 * memory meanwhile. 1 if every page was present, 0 (nothing pinned) if not.
 */
int hmmu_mmu_pin(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		 struct iovec *pages);
void hmmu_mmu_unpin(struct hmmu_mirror *m);

/* Drop the device's copies of [start, end). Never waits. */
void hmmu_mmu_invalidate(struct hmmu_mirror *m, uint64_t start, uint64_t end);

/* Pages the device page table holds. Any thread. */
uint64_t hmmu_mmu_pages(struct hmmu_mirror *m);

/* ==== Interval notifiers ================================================= */

/*
 * Why an invalidation happens, as the kernel's enum mmu_notifier_event.
 * Unlike test_hmm, which keeps its own device-private pages on a MIGRATE of
 * its own, a model here drops every entry of the range whatever the event:
 * a page that comes back from device memory is not write-protected, and a
 * copy kept of it would go stale.
 */
enum hmmu_notifier_event {
	HMMU_NOTIFY_WRITE,     /* a CPU store to a page the devices hold */
	HMMU_NOTIFY_UNMAP,     /* munmap, or a mapping replaced */
	HMMU_NOTIFY_DISCARD,   /* madvise(MADV_DONTNEED/REMOVE) */
	HMMU_NOTIFY_REMAP,     /* mremap: the pages moved */
	HMMU_NOTIFY_FORK,      /* fork: private pages become copy-on-write */
	HMMU_NOTIFY_RELEASE,   /* the address space or the mirror goes away */
	HMMU_NOTIFY_MIGRATE,   /* pages move to or from device memory */
	HMMU_NOTIFY_EXCLUSIVE, /* pages become exclusive to one device */
};

struct hmmu_notifier_range {
	uint64_t start, end; /* page aligned */
	enum hmmu_notifier_event event;
	/*
	 * MIGRATE and EXCLUSIVE: the device the pages move to or come back
	 * from; NULL when the core fills a page never populated, and for the
	 * other events.
	 */
	const struct hmmu_device *owner;
};

struct hmmu_interval_notifier;

/*
 * invalidate(n, range, cur_seq): the CPU side of [range->start, range->end)
 * is changing, and the change waits until this returns. Drop every device
 * entry of the range, then return true (the kernel's non-blocking
 * invalidations, where false means "try again", do not exist here). Take
 * the lock that the model's fault path holds around hmmu_interval_read_retry()
 * and call hmmu_interval_set_seq(n, cur_seq) under it, as in the kernel.
 * Runs on any thread: the event loop, a request worker or compute thread
 * (the model's own, during its hmmu_dma_write() or hmmu_mmu_write(): never
 * call those with the lock invalidate() takes), with the core's process lock
 * read-held and sometimes its migration lock. Must not wait for the client,
 * nor call hmmu_ functions but hmmu_interval_set_seq(),
 * hmmu_mmu_invalidate(), hmmu_log() and those marked "any thread".
 */
struct hmmu_interval_notifier_ops {
	bool (*invalidate)(struct hmmu_interval_notifier *n,
			   const struct hmmu_notifier_range *range,
			   uint64_t cur_seq);
};

/* Embed it in the model's own structure; the fields are the core's. */
struct hmmu_interval_notifier {
	const struct hmmu_interval_notifier_ops *ops;
	struct hmmu_mirror *mirror;
	uint64_t start, end;
	uint64_t invalidate_seq; /* atomic */
	struct hmmu_interval_notifier *next;
};

/*
 * Watch [start, start + length) of @m's address space (length 0: up to
 * HMMU_VA_LIMIT). Request workers (bind() is the usual place). -EINVAL for
 * a range outside user space.
 */
int hmmu_interval_notifier_insert(struct hmmu_interval_notifier *n,
				  struct hmmu_mirror *m, uint64_t start,
				  uint64_t length,
				  const struct hmmu_interval_notifier_ops *ops);
/* Stop watching; waits for a running invalidate() of @n. Not from one. */
void hmmu_interval_notifier_remove(struct hmmu_interval_notifier *n);

/*
 * The sequence protocol. read_begin() waits until no invalidation of the
 * process is in flight and returns the notifier's sequence; after the range
 * fault, under the model's lock, read_retry() says whether an invalidation
 * of the notifier's range ran since (then drop what was read and begin
 * again). read_begin() may wait for the client and fails with
 * hmmu_should_stop()'s errors, so it returns the sequence in *@seq.
 */
int hmmu_interval_read_begin(struct hmmu_interval_notifier *n, uint64_t *seq);
bool hmmu_interval_read_retry(struct hmmu_interval_notifier *n, uint64_t seq);
void hmmu_interval_set_seq(struct hmmu_interval_notifier *n, uint64_t cur_seq);

/* ==== Range fault ======================================================== */

/* Per-page flags of a range fault, as the kernel's HMM_PFN_*. */
#define HMMU_PFN_VALID (1ul << 0)	   /* out: the page was read */
#define HMMU_PFN_WRITE (1ul << 1)	   /* out: the CPU may write it */
#define HMMU_PFN_ZERO (1ul << 2)	   /* out: the shared zero page */
#define HMMU_PFN_HUGE (1ul << 3)	   /* out: part of a huge page */
#define HMMU_PFN_DEVICE_PRIVATE (1ul << 4) /* out: in a device's memory */
#define HMMU_PFN_DEVICE_OWNER (1ul << 5)   /* out: ... of this mirror's device */
#define HMMU_PFN_ERROR (1ul << 6)	   /* out: unmapped, or PROT_NONE */
/* In default_flags: fault the pages in (else only report their state). */
#define HMMU_PFN_REQ_FAULT (1ul << 8)
#define HMMU_PFN_REQ_WRITE (1ul << 9) /* ... and writable */

/*
 * A range fault, as the kernel's struct hmm_range. @pages: one page-sized
 * buffer per page of [start, end), where a faulting range fault puts the
 * pages' contents (at most 1024 pages then). @hmm_pfns: one entry per page,
 * set to HMMU_PFN_* (may be NULL when faulting).
 */
struct hmmu_range {
	struct hmmu_interval_notifier *notifier;
	uint64_t notifier_seq;
	uint64_t start, end;
	unsigned long *hmm_pfns;
	const struct iovec *pages;
	unsigned long default_flags;
};

/*
 * With HMMU_PFN_REQ_FAULT: make the pages present (writable with
 * HMMU_PFN_REQ_WRITE), write-protect them so that a CPU write invalidates
 * first, and copy them into range->pages. Without it: set hmm_pfns to each
 * page's state and copy nothing (at most HMMU_COMMAND_MAX_PAGES pages).
 * The copies are current only if hmmu_interval_read_retry(range->notifier,
 * range->notifier_seq) says false under the model's lock afterwards.
 * Request workers and compute threads; may wait for the client. Errors as
 * the device MMU's (not -EDQUOT: the copies are the model's), and -EBUSY:
 * an invalidation ran meanwhile; begin again. Unlike the device MMU's calls,
 * a faulting range fault refuses memory userfaultfd cannot track (-EPERM):
 * it can keep no copy of it coherent.
 */
int hmmu_range_fault(struct hmmu_range *range);

/* ==== DMA ================================================================ */

/*
 * Where the daemon itself maps the client's [addr, addr + len): when the
 * running command's buffer lies in memory the client shares with the
 * daemon (hmmu_buffer_create() in hmmu.h) and the range lies wholly in it,
 * its address in the daemon, else NULL. A model may then read into it
 * directly (hmmu_mmu_read_direct()) instead of copying twice; the
 * hmmu_dma_*() calls below reach it without the model's asking. Valid
 * until the command returns; only on the thread running the command: a
 * compute thread running a slice of it gets NULL, and copies as usual.
 */
void *hmmu_dma_map(struct hmmu_mirror *m, uint64_t addr, uint64_t len);

/*
 * Read or write the client's memory, as a device's DMA engine: by the
 * client's virtual address, any alignment, with the CPU's permissions: a
 * write to a read-only page is -EFAULT, as the kernel's copy_to_user() is,
 * and so is any access to unmapped or PROT_NONE memory. A write is a
 * CPU store for every other purpose: every device's copy of the pages is
 * invalidated (HMMU_NOTIFY_WRITE) before it lands. A page in the middle of
 * a migration is not written (-EBUSY). Request workers and compute threads;
 * may wait for the client.
 */
int hmmu_dma_read(struct hmmu_mirror *m, uint64_t addr, void *buf,
		  uint64_t len);
int hmmu_dma_write(struct hmmu_mirror *m, uint64_t addr, const void *buf,
		   uint64_t len);
int hmmu_dma_writev(struct hmmu_mirror *m, uint64_t addr,
		    const struct iovec *iov, unsigned long iovcnt);

/*
 * Check, before a transfer, that all of [start, end) is mapped with the
 * permission it needs (for a write, as the mappings say now), so that a
 * command fails before its first byte moves. Memory userfaultfd cannot
 * track passes: DMA keeps no copy. Errors as the device MMU's.
 */
int hmmu_dma_check(struct hmmu_mirror *m, uint64_t start, uint64_t end,
		   bool write);

/* ==== Migration and device-private memory ================================ */

/* Per-page flags of a migration, as the kernel's MIGRATE_PFN_*. */
#define HMMU_MIGRATE_PFN_MIGRATE 0x1 /* the page moves */

/* Which pages a migration selects, as the kernel's MIGRATE_VMA_SELECT_*. */
#define HMMU_MIGRATE_VMA_SELECT_SYSTEM 0x1 /* system memory -> this device */
#define HMMU_MIGRATE_VMA_EXCLUSIVE 0x2	   /* ... for exclusive access */

/*
 * One migration to device memory, as the kernel's struct migrate_vma.
 * [start, end) page aligned, at most HMMU_MIGRATE_MAX_PAGES pages; @src one
 * byte per page. The core's fields carry state from setup to pages.
 */
struct hmmu_migrate_vma {
	struct hmmu_mirror *mirror;
	uint64_t start, end;
	uint8_t *src;	 /* out of setup: HMMU_MIGRATE_PFN_* per page */
	uint64_t cpages; /* out: pages collected (setup), moved (finalize) */
	unsigned flags;	 /* HMMU_MIGRATE_VMA_* */
};

/*
 * Step 1, setup: collect the pages of [start, end) that can move (private
 * anonymous readable memory, writable or not, not in a device's memory
 * already), allocate a
 * device-private page for each in the device's memory, write-protect the
 * pages and copy them there. From here, a CPU write to them sleeps until
 * finalize. src[i] has HMMU_MIGRATE_PFN_MIGRATE for each page collected.
 * A model may clear the flag of pages it does not want before step 2.
 * -ENOMEM (device memory full: nothing changes), -EDQUOT (the client's
 * user holds its share of it), and the device MMU's errors.
 */
int hmmu_migrate_vma_setup(struct hmmu_migrate_vma *args);

/*
 * Step 2, pages: set @discard (one bit per page, HMMU_MIGRATE_MAX_PAGES / 8
 * bytes) for the pages that move, which the client must discard and learns
 * of from the command's reply; args->cpages becomes their number. A page
 * whose flag the model cleared, or that setup did not collect, does not
 * move: it stays reserved (CPU writes to it sleep, DMA to it is -EBUSY)
 * until finalize rolls it back with the pages the client kept.
 */
int hmmu_migrate_vma_pages(struct hmmu_migrate_vma *args, uint8_t *discard);

/*
 * Step 3, finalize, in the client's next request: pages the client
 * discarded are now device-private to @mirror's device, the rest are rolled
 * back; sleeping writers wake up. args->cpages: pages that moved. Needs
 * mirror, start and end only, which it checks as setup does (-EINVAL).
 */
int hmmu_migrate_vma_finalize(struct hmmu_migrate_vma *args);

/*
 * Bring @m's device-private pages in [start, end) back to system memory
 * (all of them if @end is 0), as the kernel's migrate_device_range() does
 * when a driver evicts. *@cpages counts them. Request workers.
 */
int hmmu_migrate_device_range(struct hmmu_mirror *m, uint64_t start,
			      uint64_t end, uint64_t *cpages);

/*
 * The kernel's make_device_exclusive(): hmmu has no atomic-access PTEs, so a
 * page becomes exclusive by migrating to the device with
 * HMMU_MIGRATE_VMA_EXCLUSIVE, and comes back at the next CPU access. This
 * checks that every page of [start, end) is still exclusive to @m: 0, or
 * -EPERM.
 */
int hmmu_device_exclusive_check(struct hmmu_mirror *m, uint64_t start,
				uint64_t end);

/* ==== Services of the daemon ============================================= */

/*
 * Compute threads: start @n threads for @dev, bound to the CPUs of its
 * NUMA node, which run work queued with hmmu_device_queue_work(). create()
 * only; the core stops them after destroy(). -EINVAL for 0 or more than 64,
 * or when the threads are already started.
 */
int hmmu_device_threads_start(struct hmmu_device *dev, unsigned n);

/*
 * A piece of work for a compute thread. Queued from a command or job, it
 * runs under that request's deadline and cancellation (hmmu_should_stop()
 * answers for it); the model waits for its work before returning. On a
 * device whose model started no compute threads, @w runs at once on the
 * calling thread, before hmmu_device_queue_work() returns.
 */
struct hmmu_work {
	void (*fn)(struct hmmu_work *w);
	union {
		void *align;
		char bytes[48];
	} core; /* the core's, while queued */
};

void hmmu_device_queue_work(struct hmmu_device *dev, struct hmmu_work *w);

/*
 * 0 while the current request may go on; -ETIMEDOUT past its deadline
 * (--limit job-seconds), -ECANCELED once its connection closed,
 * -ESHUTDOWN once the daemon is stopping. An unregistration does not
 * cancel: it waits for the request. Long loops check it.
 */
int hmmu_should_stop(void);

/*
 * hmmu_fail - say why the current command or job fails with @err, in one
 * sentence its client reads (hmmu_error_detail(): the error reply carries
 * it, docs/protocol.md): what was wrong and what to do, at most 199 bytes.
 * Returns @err, so a model writes `return hmmu_fail(-EINVAL, "...")`. The
 * sentence goes out only if the request's status is @err in the end; the
 * last one said wins. Never pass bytes the client chose through %s. Any
 * thread running a command or a job's work; elsewhere it only returns @err.
 */
__attribute__((format(printf, 2, 3))) int hmmu_fail(int err, const char *fmt,
						    ...);

/*
 * Memory on the device's NUMA node (anywhere, for a device on none), in
 * whole pages, zeroed. NULL when there is none. Any thread.
 */
void *hmmu_device_alloc(struct hmmu_device *dev, size_t bytes);
void hmmu_device_free(struct hmmu_device *dev, void *p, size_t bytes);

/*
 * Count @n device faults for @m: they show in hmmu_stats() and in its
 * user's account. Any thread.
 */
void hmmu_count_device_faults(struct hmmu_mirror *m, uint64_t n);

/* Log one line, prefixed with the device's name. Any thread. */
enum hmmu_log_level {
	HMMU_LOG_ERROR,
	HMMU_LOG_WARNING,
	HMMU_LOG_INFO,
	HMMU_LOG_DEBUG,
};
void hmmu_log(const struct hmmu_device *dev, enum hmmu_log_level level,
	      const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * A buffer of the calling thread's of at least @bytes, kept for its next
 * request (slots 0 to 3, each its own buffer): valid until the thread's
 * next call with the same @slot. NULL when there is no memory. Request
 * workers and compute threads.
 */
void *hmmu_thread_buffer(unsigned slot, size_t bytes);

/* The page size of the client's memory. Any thread. */
uint64_t hmmu_page_size(void);

#ifdef __cplusplus
}
#endif

#endif
