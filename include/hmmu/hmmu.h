/* SPDX-License-Identifier: MIT */
/*
 * libhmmu: the client side of hmmu, a userspace emulation of Linux HMM.
 *
 * A process connects to the hmmud daemon, creates mirrors (one device bound
 * to this process's address space) and registers them. While a mirror is
 * registered, the device sees this process's memory through its own page
 * table, kept coherent with the CPU by the daemon.
 *
 * Conventions, for every call below:
 *  - the return value is 0 (or a count) on success, a negative errno on
 *    failure; errno itself is left alone and nothing is printed;
 *  - a failed call changes nothing, unless its Errors: say what it left
 *    done;
 *  - a struct hmmu and its mirrors may be used from many threads at once;
 *  - after fork() the child must connect anew: calls on a handle inherited
 *    from the parent fail with -ECHILD;
 *  - a call that fails leaves a sentence in hmmu_error_detail() wherever
 *    the errno alone is ambiguous: what was wrong (the address, the kind of
 *    memory, the limit) and what to do about it.
 *
 * Errors every call that talks to the daemon may return, besides those it
 * lists (all of them but hmmu_connect, hmmu_disconnect,
 * hmmu_mirror_destroy, hmmu_error_detail, hmmu_version and
 * hmmu_daemon_version):
 *  -ECHILD      called in a child of the process that connected;
 *  -ECONNRESET  the daemon closed the connection (it stopped or crashed,
 *               or hung up on a client that does not read its replies);
 *               every later call on the handle fails so too;
 *  -ESHUTDOWN   the daemon crashed while pages were in device memory
 *               (the library brought them home), or restarted without
 *               this process's state; as for -ECONNRESET. A restart that
 *               kept the state costs a delay, not an error:
 *               hmmu_connect(3), NOTES;
 *  -EPROTO      the daemon's reply made no sense; the handle is broken, as
 *               for -ECONNRESET;
 *  -ENOMEM      the library or the daemon ran out of memory;
 *  -ENOBUFS and other errors of sendmsg(2)/recv(2) on the connection.
 */
#ifndef HMMU_HMMU_H
#define HMMU_HMMU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct hmmu;
struct hmmu_mirror;
struct hmmu_buffer;

/*
 * The version of hmmu this header belongs to: the release's, as
 * `pkg-config --modversion hmmu` and find_package(hmmu) report it (the
 * soname, libhmmu.so.1, follows the ABI instead). Kept equal to
 * project(VERSION) in CMakeLists.txt: the library does not build otherwise.
 */
#define HMMU_VERSION_MAJOR 0
#define HMMU_VERSION_MINOR 1
#define HMMU_VERSION_PATCH 0
#define HMMU_VERSION "0.1.0"

/*
 * hmmu_version - the version of the libhmmu running, "MAJOR.MINOR.PATCH",
 * as zlib's zlibVersion(): compare it with HMMU_VERSION, the one the caller
 * was built against. A static string; never fails.
 */
const char *hmmu_version(void);

/* Where hmmu_connect() looks when given NULL and $HMMU_SOCKET is unset. */
#define HMMU_DEFAULT_SOCKET "/run/hmmu/hmmud.sock"

/*
 * hmmu_connect - connect to hmmud and agree on the protocol version.
 * @socket_path: the daemon's socket; NULL means $HMMU_SOCKET, else
 *               HMMU_DEFAULT_SOCKET.
 * @out: the new connection, on success.
 *
 * Connecting and the handshake together take at most
 * $HMMU_CONNECT_TIMEOUT_MS milliseconds (5000 if unset or empty; 0 waits
 * as long as it takes): a daemon that is stuck, or a socket whose listener
 * never answers, gives -ETIMEDOUT, and hmmu_error_detail() names the
 * socket. The connection itself blocks, as before, once made.
 *
 * Errors: -EINVAL (@out is NULL, or $HMMU_CONNECT_TIMEOUT_MS is not a
 * decimal number of milliseconds from 0 to 2^31 - 1); -ETIMEDOUT (no
 * answer in time, above); -ENOENT (no socket at that path),
 * -ECONNREFUSED (nobody listens on it), -EACCES (this user may not connect:
 * the socket is open to group hmmu only), -ENAMETOOLONG (the path does not
 * fit a sockaddr_un), or another error of socket(2) and connect(2), such as
 * -EMFILE; -EPROTONOSUPPORT (the daemon speaks another protocol version);
 * -EUSERS (the daemon has as many connections as it allows: hmmud --limit
 * connections), -EDQUOT (this user has as many as allowed: --limit
 * connections-per-user); -ECONNRESET (the daemon hung up during the
 * handshake, as it does when out of file descriptors), -EPROTO, -ENOMEM.
 */
int hmmu_connect(const char *socket_path, struct hmmu **out);

/*
 * hmmu_daemon_version - the release of the hmmud that @h is connected to,
 * as it named itself in the handshake: "0.1.0 (git 4415f675eea2)"; "" if
 * it did not say, or @h is NULL. The string lives as long as @h; after a
 * restart that kept this process's state, it names the successor (which
 * may be a newer release), so read it again rather than keep it. Compare
 * hmmu_version(), the library's. In the symbol version HMMU_1.1.
 */
const char *hmmu_daemon_version(struct hmmu *h);

/*
 * hmmu_disconnect - close the connection. Mirrors still registered through
 * it are released by the daemon; every mirror handle of this connection is
 * freed and must not be used again. NULL is ignored.
 */
void hmmu_disconnect(struct hmmu *h);

/*
 * hmmu_device_count - number of devices the daemon offers, or -errno.
 * Errors: -EINVAL (@h is NULL).
 */
int hmmu_device_count(struct hmmu *h);

struct hmmu_device_info {
	char name[32];	    /* "dmirror0" */
	char model[32];	    /* "dmirror", "accel", ... */
	uint64_t mem_bytes; /* device memory */
	int32_t numa_node;  /* node of its memory, -1 if none */
	uint32_t page_size;
};

/*
 * hmmu_device_info - describe device @index (0 <= index < device count).
 * Errors: -ENODEV (no such index), -EINVAL (@h or @out is NULL).
 */
int hmmu_device_info(struct hmmu *h, unsigned index,
		     struct hmmu_device_info *out);

/*
 * hmmu_mirror_create - a new, unregistered mirror of this process on
 * @device (a name from hmmu_device_info()).
 * Errors: -ENODEV (no device of that name), -EINVAL (a NULL argument),
 * -EDQUOT (this user has as many mirrors, registered or not, as hmmud
 * allows: --limit mirrors-per-user), -ENOSPC (this connection holds 4096
 * mirrors, the most one may: destroy some), -ENOMEM.
 */
int hmmu_mirror_create(struct hmmu *h, const char *device,
		       struct hmmu_mirror **out);

/*
 * hmmu_mirror_register - start mirroring this process into the device.
 * The first registration of a process creates the process's userfaultfd
 * and hands it to the daemon.
 *
 * Errors: -EBUSY (already registered; nothing changes), -EINVAL (@m is
 * NULL, or the daemon could not take the userfaultfd or prove it is this
 * process's own); -EPERM (this process may not create a userfaultfd, or
 * the daemon found that it does not serve faults the kernel takes:
 * hmmu_error_detail() names the fix), -EOPNOTSUPP (this kernel's
 * userfaultfd lacks write-protect or the unmap/remove/remap events hmmu
 * needs), -EMFILE or -ENFILE (no file descriptor left for it); -EACCES or
 * -EPERM (hmmud may not open this process's /proc/PID/mem: it lacks
 * CAP_SYS_PTRACE or CAP_DAC_OVERRIDE over it, docs/operations.md); -ESRCH
 * (the daemon no longer serves this process: it exec'd); -EAGAIN (the
 * daemon could not start the thread of its check: try again); -ENOMEM.
 * With a coherence mode (hmmu_mirror_set_coherence()): -EBUSY (the
 * process's other mirrors are of the other mode), -EOPNOTSUPP (coarse-
 * grained coherence is not available here).
 */
int hmmu_mirror_register(struct hmmu_mirror *m);

/*
 * Coherence modes (docs/semantics.md, "Coherence modes").
 * HMMU_COHERENCE_FINE, the default, is HMM's: a CPU write to a page a
 * device holds drops the device's copy before the write completes.
 * HMMU_COHERENCE_COARSE is OpenCL 2.0's coarse-grained SVM: CPU writes
 * cost no more than a kernel write-protect fault, and a device command or
 * job sees every CPU write that completed before the command started;
 * writes made while it runs may or may not be seen. After a command
 * returns, the CPU sees the device's writes (both modes).
 */
enum hmmu_coherence {
	HMMU_COHERENCE_FINE = 0,
	HMMU_COHERENCE_COARSE = 1,
};

/*
 * hmmu_mirror_set_coherence - the coherence mode @m registers with, from
 * its next hmmu_mirror_register() on (a registration in force keeps its
 * mode). The mode belongs to the whole process, which has one userfaultfd:
 * the registration that creates the process's state sets it (a coarse one
 * makes the userfaultfd with UFFD_FEATURE_WP_ASYNC), and while any mirror
 * of the process is registered, registering a mirror of the other mode
 * fails with -EBUSY. Pages of a coarse-grained process never move to
 * device memory: hmmu_migrate_to_device() and hmmu_make_exclusive() fail
 * with -EOPNOTSUPP (a CPU write racing the move could not be held back).
 * The register call then fails with -EOPNOTSUPP if the kernel (Linux 6.7
 * or newer: asynchronous write-protect, PAGEMAP_SCAN) or the daemon lacks
 * coarse-grained coherence, with hmmu_error_detail() saying which.
 * Errors: -EINVAL (@m is NULL, or an unknown @mode). Not thread-safe
 * against a register of the same mirror.
 */
int hmmu_mirror_set_coherence(struct hmmu_mirror *m, enum hmmu_coherence mode);

/*
 * hmmu_mirror_unregister - stop mirroring. When it returns, the device
 * holds no page of this mirror and runs no callback for it. The last
 * unregistration of a process removes its userfaultfd registrations.
 * Errors: -EINVAL (not registered, or @m is NULL).
 */
int hmmu_mirror_unregister(struct hmmu_mirror *m);

/* hmmu_mirror_destroy - unregister if needed, then free. NULL is ignored. */
void hmmu_mirror_destroy(struct hmmu_mirror *m);

/*
 * Device commands, like the kernel's test_hmm ioctls. @addr is page aligned,
 * @npages counts pages of the host page size; on return @cpages says how
 * many pages the command completed and @faults how many device faults it
 * took (one range fault that brings in a whole cold range counts as one).
 *
 * Errors every device command may return, besides those it lists:
 *  -EINVAL      a NULL argument; @addr not page aligned, @npages 0 or past
 *               2^20, or the range past the 48-bit address space; the
 *               mirror not registered;
 *  -EOPNOTSUPP  the mirror's device runs no commands (model "accel");
 *  -ESRCH       the daemon no longer serves this process (it exec'd).
 * Memory userfaultfd cannot write-protect (anything but anonymous, shmem
 * and hugetlbfs memory: a file mapping on most filesystems) is mirrored
 * without copies: the device reaches it in this process's memory at each
 * access, so these commands and jobs work on it as on any other memory.
 * The commands that fault pages in (read, write, and hmmu_job_run) may
 * also return:
 *  -EINVAL      part of a hugetlb page: hmmu mirrors hugetlbfs memory in
 *               whole, aligned huge pages only;
 *  -EBUSY       a mapping of the range is registered with another
 *               userfaultfd of this process, or a page the daemon must
 *               write (a data or state buffer, or the target of a DMA
 *               write) is in the middle of a migration by another thread;
 *  -E2BIG       one chunk of the range (1024 pages, or a whole DMA write)
 *               spans more than 64 mappings the daemon has not yet
 *               registered;
 *  -EAGAIN      the range was invalidated on every one of many tries (the
 *               CPU kept writing or discarding it): try again;
 *  -EDQUOT      this user's device page copies reached hmmud --limit
 *               copy-mib-per-user;
 *  -ETIMEDOUT   the command ran past hmmud --limit job-seconds.
 */
struct hmmu_cmd {
	uint64_t addr;
	uint64_t npages;
	uint64_t cpages;
	uint64_t faults;
};

/*
 * hmmu_device_read - the device reads [addr, addr + npages pages) through
 * its page table into @buf (npages pages long). Into a shared buffer
 * (hmmu_buffer_create(), below), it is hmmu_device_read_buffer().
 * Errors: -EFAULT (part of the range unmapped or PROT_NONE: @buf untouched;
 * or part of @buf not writable: the chunks of 1024 pages before it are
 * copied and counted in cpages), and those of every command that faults
 * pages in, above.
 */
int hmmu_device_read(struct hmmu_mirror *m, struct hmmu_cmd *c, void *buf);

/*
 * hmmu_device_write - the device writes @buf (npages pages) into
 * [addr, addr + npages pages), as DMA into system memory: the CPU sees the
 * data when the call returns, and every device's stale copy is dropped.
 * Errors: -EPERM (part of the range is read-only: nothing written),
 * -EFAULT (unmapped or PROT_NONE memory: nothing written; or @buf not
 * readable: the data is moved 1024 pages at a time, and what came before
 * the unreadable part is written), -EBUSY (a target page is in the middle
 * of a migration: the write stops there, what came before it is written),
 * and those of every command that faults pages in, above.
 */
int hmmu_device_write(struct hmmu_mirror *m, struct hmmu_cmd *c,
		      const void *buf);

/*
 * Shared buffers, like io_uring's registered buffers: memory this process
 * and hmmud both map, so that a device read into it is one copy (the
 * daemon reads the mirrored pages straight into its own mapping of the
 * buffer) instead of two. In the symbol version HMMU_1.1.
 *
 * hmmu_buffer_create - @bytes (rounded up to whole pages) of memory shared
 * with the daemon, zero-filled, mapped read-write at *@addr; *@out is its
 * handle. hmmu_device_read() into a range that lies wholly in a buffer of
 * the mirror's connection uses it by itself; hmmu_device_read_buffer()
 * names it. The daemon makes the memory (a memfd sealed against resizing),
 * so it is charged to this user's limits: hmmud --limit buffers-per-user
 * and buffer-mib-per-user.
 *
 * The buffer is a destination, not mirrored memory: use it as the source of
 * device commands (@addr of a command) only if stale device copies of it do
 * not matter, since the daemon writes it through its own mapping, which no
 * write-protection sees. A read whose source overlaps its own destination
 * in the buffer is -EINVAL.
 *
 * A buffer lives until hmmu_buffer_destroy(), hmmu_disconnect(), or the
 * end of the process; the daemon then frees its memory. It outlives a
 * restart of hmmud that kept this process's state (hmmu_connect(3),
 * NOTES): the library keeps the memfd (one fd per buffer, close-on-exec)
 * and hands it to the new daemon, so the buffer stays at *@addr with its
 * bytes; only a new daemon older than this library loses it (calls on it
 * then fail with -ESHUTDOWN). After fork(), the child inherits the
 * mapping (shared with the parent, as any MAP_SHARED memory) but not the
 * buffer: calls with the parent's handle fail with -ECHILD;
 * hmmu_buffer_destroy() in the child only unmaps its own copy.
 *
 * Errors: -EINVAL (a NULL argument, @bytes 0), -EDQUOT (this user's buffers
 * would pass hmmud --limit buffers-per-user or buffer-mib-per-user),
 * -EOPNOTSUPP (the daemon is older and has no shared buffers), -EMFILE or
 * -ENFILE (no fd for it), -ENOMEM.
 */
int hmmu_buffer_create(struct hmmu *h, size_t bytes, void **addr,
		       struct hmmu_buffer **out);

/*
 * hmmu_buffer_destroy - unmap and free the buffer; a command running into
 * it meanwhile finishes first in the daemon. NULL is ignored. Not needed
 * before hmmu_disconnect(), which frees every buffer of the connection.
 */
void hmmu_buffer_destroy(struct hmmu_buffer *b);

/*
 * hmmu_device_read_buffer - hmmu_device_read() into @b at byte @offset
 * (the buffer's own mapping, at that offset), in one copy. The device
 * keeps no copy of pages it did not hold before: the read is a streaming
 * one, and faults counts the chunks it read from memory. The bytes are
 * those hmmu_device_read() would have put into plain memory.
 * Errors: -EINVAL (a NULL argument; the pages do not fit in the buffer
 * from @offset; @b and @m belong to different connections; the source
 * overlaps the destination), -ENOENT (the daemon no longer has the buffer),
 * and those of hmmu_device_read(); a chunk of 1024 pages that failed is
 * not counted in cpages, the chunks before it are read.
 */
int hmmu_device_read_buffer(struct hmmu_mirror *m, struct hmmu_cmd *c,
			    struct hmmu_buffer *b, size_t offset);

/* Page states of hmmu_snapshot(), with the values of the kernel's test_hmm. */
enum hmmu_page_state {
	HMMU_PAGE_NONE = 0x00,	      /* mapped, not present */
	HMMU_PAGE_READ = 0x01,	      /* present, read-only to the CPU */
	HMMU_PAGE_WRITE = 0x02,	      /* present and writable */
	HMMU_PAGE_HUGE = 0x04,	      /* flag: part of a PMD-sized page */
	HMMU_PAGE_ZERO = 0x10,	      /* the shared zero page */
	HMMU_PAGE_DEV_LOCAL = 0x20,   /* device-private, on this device */
	HMMU_PAGE_DEV_REMOTE = 0x30,  /* device-private, on another device */
	HMMU_PAGE_ERROR = 0xff,	      /* unmapped, or no access (PROT_NONE) */
};

/*
 * hmmu_snapshot - the state of each page of [addr, addr + npages pages) as
 * the device would find it in the CPU's page table, without faulting
 * anything in: one enum hmmu_page_state byte per page into @states.
 * cpages is npages on success.
 * Errors: -EFAULT (@states is not writable memory), -EBUSY (@states lies in
 * pages in the middle of a migration), and those of every command.
 */
int hmmu_snapshot(struct hmmu_mirror *m, struct hmmu_cmd *c, uint8_t *states);

/*
 * Device memory. hmmu_migrate_to_device moves the pages' contents into the
 * device's memory; the CPU's copy goes away, and any later CPU access (from
 * any thread, or by the kernel on this process's behalf, as in write(2)
 * from such a buffer) brings the page back. Only anonymous private readable
 * memory migrates; other pages are simply not counted in cpages. The call
 * discards this process's copies of the migrated pages itself
 * (madvise(MADV_DONTNEED)); a concurrent CPU write to them waits until the
 * migration settles and is never lost. Pages the calling thread itself
 * writes during the call (its stack below the caller's frame) stay with the
 * CPU: such a write would wait for the call's own end.
 * The range moves in chunks of 2048 pages, each whole or not at all.
 * Errors: -ENOMEM (device memory full, or memory short), -EDQUOT (past
 * this user's share of it; hmmud --limit devmem-percent-per-user): nothing
 * of the chunk that failed migrated, the chunks before it did and are
 * counted in cpages; and those of every command.
 */
int hmmu_migrate_to_device(struct hmmu_mirror *m, struct hmmu_cmd *c);

/*
 * Bring the mirror's device pages in the range back; cpages counts them.
 * Errors: -EAGAIN (a page could not be put back while the CPU side kept
 * changing: the pages before it are back and counted in cpages; try
 * again), -ENOENT (part of the range was unmapped meanwhile), and those of
 * every command.
 */
int hmmu_migrate_to_system(struct hmmu_mirror *m, struct hmmu_cmd *c);

/*
 * Exclusive access, like make_device_exclusive(): the device holds the only
 * accessible copy, for atomics; any CPU access revokes it and restores the
 * page. hmmu_check_exclusive returns 0 while every page of the range is
 * still exclusive to the device, -EPERM once any is not.
 * hmmu_make_exclusive moves the pages as hmmu_migrate_to_device does, with
 * its errors; both return those of every command.
 */
int hmmu_make_exclusive(struct hmmu_mirror *m, struct hmmu_cmd *c);
int hmmu_check_exclusive(struct hmmu_mirror *m, struct hmmu_cmd *c);

/*
 * hmmu_device_release - simulate the removal of the mirror's device: every
 * page it holds of this process comes back to system memory with its
 * contents, and its copies are dropped. The mirror stays registered.
 * Errors: -EINVAL (@m is NULL or not registered), -EAGAIN and -ENOENT as
 * for hmmu_migrate_to_system (its copies are dropped all the same),
 * -EOPNOTSUPP, -ESRCH.
 */
int hmmu_device_release(struct hmmu_mirror *m);

/*
 * Accelerator jobs. A device of model "accel" runs jobs on its compute
 * units over this process's virtual addresses, touching memory only through
 * its MMU: every page it does not hold is a device fault, counted in
 * @faults. Writes are DMA into system memory, visible to the CPU when
 * hmmu_job_run() returns.
 */
enum hmmu_job_kind {
	HMMU_JOB_FILL = 1,     /* len bytes at dst = the 64-bit value, repeated */
	HMMU_JOB_COPY = 2,     /* len bytes from src to dst (no overlap) */
	HMMU_JOB_SUM64 = 3,    /* result = sum of len uint64_t at src */
	HMMU_JOB_LIST_SUM = 4, /* result = sum of the values of a linked list */
};

struct hmmu_job {
	uint32_t kind;	       /* enum hmmu_job_kind */
	uint32_t reserved;     /* 0 */
	uint64_t dst;	       /* FILL, COPY: 8-byte aligned for FILL */
	uint64_t src;	       /* COPY; SUM64: 8-byte aligned; LIST_SUM: first node */
	uint64_t len;	       /* FILL, COPY: bytes; SUM64: elements; LIST_SUM: node limit */
	uint64_t value;	       /* FILL: the pattern */
	uint32_t next_offset;  /* LIST_SUM: where a node keeps its next pointer (0 ends) */
	uint32_t value_offset; /* LIST_SUM: where a node keeps its uint64_t value */
	/* Filled in by hmmu_job_run(): */
	uint64_t result;       /* SUM64, LIST_SUM: the sum (mod 2^64) */
	uint64_t faults;       /* device faults the job took */
	uint64_t elapsed_ns;   /* on the device */
};

/*
 * hmmu_job_run - launch @job on the mirror's device and wait for it.
 * Errors: -EOPNOTSUPP (the device runs no jobs), -EFAULT (the job touched
 * unmapped or PROT_NONE memory), -EPERM (it wrote read-only memory),
 * -ELOOP (a list longer than len nodes), -EINVAL (bad job, the mirror not
 * registered, or part of a hugetlb page), -ESRCH (the daemon no longer
 * serves this process), -ENOMEM, and -EBUSY, -E2BIG, -EAGAIN, -EDQUOT and
 * -ETIMEDOUT as for the device commands that fault pages in. A job that
 * fails may have written part of its output.
 */
int hmmu_job_run(struct hmmu_mirror *m, struct hmmu_job *job);

/*
 * Queues: asynchronous submission, as io_uring's rings or an NVMe queue
 * pair. A queue belongs to one mirror: a submission ring and a completion
 * ring in memory this process and hmmud both map. Submitting and reaping
 * take no system call while the daemon polls the ring; a futex wake-up (or
 * an eventfd write, for a queue the daemon parked) only when it asked for
 * one, and a futex wait only when the caller must sleep. Many commands may
 * be in flight; each completes with the results the synchronous call would
 * have returned, and the caller's @user_data. Completions may come in any
 * order.
 *
 * Thread-safety: a queue is used by one thread at a time (the caller
 * serialises, as with a liburing ring); different queues are independent.
 * After fork() the child has no mapping of the rings (MADV_DONTFORK): every
 * call on an inherited queue fails with -ECHILD, and hmmu_queue_destroy()
 * only frees the handle.
 */
struct hmmu_queue;

/* What a submission did: what its synchronous call would have returned. */
struct hmmu_cqe {
	uint64_t user_data;  /* the submission's */
	int32_t status;	     /* 0 or -errno, as the synchronous call */
	uint32_t op;	     /* enum hmmu_queue_op; 0 if it made no sense */
	uint64_t cpages;     /* commands: as struct hmmu_cmd */
	uint64_t faults;     /* commands and jobs */
	uint64_t result;     /* jobs: as struct hmmu_job */
	uint64_t elapsed_ns; /* jobs */
};

enum hmmu_queue_op {
	HMMU_QUEUE_NOP = 1, /* completes with 0: for measuring */
	HMMU_QUEUE_CMD = 2, /* read, write, snapshot */
	HMMU_QUEUE_JOB = 3,
};

/* Entries of the largest queue. */
#define HMMU_QUEUE_MAX 1024

/*
 * hmmu_queue_create - a new queue for @m with rings of @entries (1 to
 * HMMU_QUEUE_MAX, rounded up to a power of 2), all of which may be in
 * flight at once. @m may be registered later; commands on a mirror not
 * registered complete with -EINVAL. The queue goes when hmmu_queue_destroy()
 * is called, when its mirror is destroyed (its later submissions never
 * complete) and with the connection. In the symbol version HMMU_1.1.
 * Errors: -EINVAL (a NULL argument, or @entries out of range), -ENOENT
 * (the mirror was destroyed), -ENOSPC (the connection has as many queues
 * as hmmud allows: --limit queues-per-connection), -EOPNOTSUPP (a hmmud
 * without queues), -EMFILE, -ENOMEM.
 */
int hmmu_queue_create(struct hmmu_mirror *m, unsigned entries,
		      struct hmmu_queue **out);

/*
 * Prepare a submission: it goes to the daemon at the next
 * hmmu_queue_submit(). The command calls take the arguments of their
 * synchronous twins (hmmu_device_read(), hmmu_device_write(),
 * hmmu_snapshot(), hmmu_job_run()) and check them the same way; only the
 * results go to the completion instead. The buffers must stay valid until
 * the completion.
 * Errors: -EINVAL (a NULL argument, or what the synchronous call refuses
 * before sending), -EBUSY (as many submissions are prepared or in flight
 * as the queue has entries: reap completions first), -ECHILD.
 */
int hmmu_queue_nop(struct hmmu_queue *q, uint64_t user_data);
int hmmu_queue_read(struct hmmu_queue *q, const struct hmmu_cmd *c, void *buf,
		    uint64_t user_data);
int hmmu_queue_write(struct hmmu_queue *q, const struct hmmu_cmd *c,
		     const void *buf, uint64_t user_data);
int hmmu_queue_snapshot(struct hmmu_queue *q, const struct hmmu_cmd *c,
			uint8_t *states, uint64_t user_data);
int hmmu_queue_job(struct hmmu_queue *q, const struct hmmu_job *job,
		   uint64_t user_data);

/*
 * hmmu_queue_submit - hand the prepared submissions to the daemon; rings
 * its doorbell only if it asked for one. Returns how many went.
 * Errors: -EINVAL (@q is NULL), -ECHILD, and those of write(2) on the
 * doorbell.
 */
int hmmu_queue_submit(struct hmmu_queue *q);

/*
 * hmmu_queue_wait - copy up to @max completions into @out, waiting until
 * at least @min have come (min <= max) or @timeout_ms passes (-1: no
 * limit; 0: do not wait). Sleeps on a futex the daemon wakes only
 * because this call asked it to (no spinning: on few CPUs it only delays
 * the daemon). Returns how many were
 * copied; that is fewer than @min only on a timeout (0 or more), or when
 * an error ends the wait after some came (the next call returns it).
 * After an hmmud restart that kept this process's state, the queue is
 * made again on the successor: what was in flight completes there.
 * Errors: -EINVAL (a NULL argument, @min > @max), -EINTR (a signal,
 * nothing copied), -ECHILD, -ESHUTDOWN/-ECONNRESET (hmmud went away).
 */
int hmmu_queue_wait(struct hmmu_queue *q, struct hmmu_cqe *out, unsigned max,
		    unsigned min, int timeout_ms);

/*
 * hmmu_queue_destroy - the daemon takes no more submissions from @q, and
 * the handle and the rings are freed; completions not reaped are lost.
 * Submissions running on the daemon finish there. Call it before
 * hmmu_disconnect() of the queue's connection (a mirror destroyed already
 * is fine). NULL is ignored.
 */
void hmmu_queue_destroy(struct hmmu_queue *q);

/*
 * Counters of the daemon and of the calling process. A caller that is not
 * root sees, in the daemon-wide counters, its own user's share.
 *
 * The struct is versioned by its size, as sched_attr and clone_args are:
 * fields are only ever appended, never moved or removed, and every caller
 * says how large its struct is (see hmmu_stats()).
 */
struct hmmu_stats {
	uint64_t processes;	     /* live per-process states in the daemon */
	uint64_t mirrors;	     /* live registered mirrors in the daemon */
	uint32_t my_state;	     /* 1 if the calling process has per-process state */
	uint32_t my_mirrors;	     /* registered mirrors of the calling process */
	uint64_t device_faults;
	uint64_t cpu_faults;
	uint64_t invalidations;
	uint64_t migrated_to_device; /* pages */
	uint64_t migrated_to_system; /* pages */
	uint64_t releases;	     /* mirror releases on process exit, ever */
	uint64_t sessions;	     /* open client connections */
	uint64_t device_pages;	     /* pages held in device page tables, all devices */
	uint64_t device_mem_pages;   /* device memory in use (migrated pages), all devices */
	/*
	 * Since 0.2: devices' replayable fault buffers (docs/design.md,
	 * "Batched device faults"). Batches drained, faults drained, faults
	 * dropped (the same page twice in a batch, or held already), 2 MiB
	 * blocks served (once per batch), range faults taken for them (one
	 * write-protect and one read each), blocks fetched whole by the
	 * density rule.
	 */
	uint64_t fault_batches;
	uint64_t fault_entries;
	uint64_t fault_duplicates;
	uint64_t fault_blocks;
	uint64_t fault_runs;
	uint64_t density_fetches;
	/*
	 * The rule, of the devices with a fault buffer (the largest value
	 * where they differ; 0: no device has one): the prefetch window of a
	 * fault, in pages; the density threshold, in percent of a block (0:
	 * no density rule); the most faults one batch drains; a block's pages.
	 */
	uint64_t fault_window_pages;
	uint64_t fault_density_pct;
	uint64_t fault_batch_max;
	uint64_t fault_block_pages;
};

/* sizeof(struct hmmu_stats) in hmmu 0.1: the least hmmu_stats() takes. */
#define HMMU_STATS_SIZE_VER0 96

/*
 * Whether the first @filled bytes (what hmmu_stats() returned) hold the
 * whole of @field.
 */
#define HMMU_STATS_HAS(filled, field)                                          \
	((filled) > 0 &&                                                       \
	 (size_t)(filled) >= offsetof(struct hmmu_stats, field) +              \
				     sizeof(((struct hmmu_stats *)0)->field))

/*
 * hmmu_stats - read the counters into @out, whose size is @size (pass
 * sizeof(*out)). The library fills the first min(@size, its own
 * sizeof(struct hmmu_stats)) bytes, fewer if the daemon knows fewer
 * counters, and returns how many it filled: a caller built against a newer
 * header than the library learns which fields it got (HMMU_STATS_HAS()),
 * one built against an older header gets what it has room for. Bytes past
 * the returned count are left as they were.
 * Errors: -EINVAL (@h or @out is NULL, or @size is below
 * HMMU_STATS_SIZE_VER0).
 */
int hmmu_stats(struct hmmu *h, struct hmmu_stats *out, size_t size);

/*
 * What the daemon holds, for tools: the processes with registered mirrors,
 * and those mirrors. A client sees them all if it runs as root, else those
 * of its own user. Each call fills at most @max entries and returns how
 * many there are in all (which may be more), or -errno. The list is read in
 * pages: an entry may appear twice or not at all if it changes meanwhile.
 * Errors: -EINVAL (@h is NULL, or @out is NULL with @max above 0), -EPROTO
 * (a reply that does not add up).
 */
struct hmmu_process_info {
	int32_t pid;
	uint32_t uid;
	uint32_t mirrors; /* registered mirrors */
	uint32_t reserved;
};

struct hmmu_mirror_info {
	int32_t pid;
	uint32_t uid;
	char device[32];
	uint64_t device_pages; /* pages its device holds for it */
};

int hmmu_list_processes(struct hmmu *h, struct hmmu_process_info *out,
			unsigned max);
int hmmu_list_mirrors(struct hmmu *h, struct hmmu_mirror_info *out,
		      unsigned max);

/*
 * hmmu_error_detail - one sentence about the last failure of a libhmmu call
 * in this thread, where the errno alone does not say enough: what was wrong
 * and what to do, e.g. "address 0x7f3a2c001010 is not page-aligned: use
 * mmap() or aligned_alloc(4096, ...)". Most come from hmmud, which says why
 * it refused a request (an address and the kind of memory there, a limit
 * and its setting); the library adds those of its own checks and of the
 * connection (fork, a daemon that went away or does not answer).
 *
 * The rule: every call that returns an int clears the detail first, so it
 * is valid after a call returned a negative errno, until the next libhmmu
 * call on this thread; after a success it is "". hmmu_disconnect(),
 * hmmu_mirror_destroy(), hmmu_version(), hmmu_daemon_version() and this
 * call leave it alone, so that cleaning up before reporting loses nothing.
 * Some errors need no words (-EINVAL for a NULL argument): "" then.
 *
 * The string is the calling thread's, belongs to the library, is at most
 * 255 bytes of text without control characters, and lives until the next
 * call that clears it. Show it; do not parse it: its words may change.
 */
const char *hmmu_error_detail(void);

#ifdef __cplusplus
}
#endif

#endif
