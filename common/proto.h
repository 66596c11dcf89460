/* SPDX-License-Identifier: MIT */
/*
 * The hmmu wire protocol, shared by libhmmu and hmmud. docs/protocol.md is
 * the prose version of this file; keep the two in step.
 *
 * Transport: AF_UNIX SOCK_SEQPACKET, so every send is one message and a
 * message is never split or merged. Every message starts with struct
 * hmmu_wire_hdr; the payload that follows has a size fixed by the op
 * (requests) or a minimum size (replies). All integers are host-endian: both
 * ends are on one machine.
 *
 * A request carries an id chosen by the client; the reply echoes it, which
 * lets one connection carry requests of many threads at once. Replies may
 * come in any order.
 */
#ifndef HMMU_PROTO_H
#define HMMU_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define HMMU_PROTO_MAGIC 0x554d4d48u /* "HMMU" in memory order */
/*
 * 2: REGISTER proves the userfaultfd; PREPARE replies with its map.
 * 3: error replies may carry a reason (HMMU_MSG_REASON); HELLO's reply
 *    names the daemon's release (struct hmmu_wire_hello_reply).
 */
#define HMMU_PROTO_VERSION 3u
#define HMMU_MSG_MAX 512u /* no message, either way, is longer */
#define HMMU_NAME_MAX 32u /* device names and models, NUL included */

enum hmmu_op {
	HMMU_OP_NONE = 0,	       /* reply to a broken header or unknown op */
	HMMU_OP_HELLO = 1,	       /* must be the first request */
	HMMU_OP_DEVICE_COUNT = 2,      /* -> count */
	HMMU_OP_DEVICE_INFO = 3,       /* index -> device info */
	HMMU_OP_MIRROR_CREATE = 4,     /* device name -> mirror id */
	HMMU_OP_MIRROR_REGISTER = 5,   /* mirror id [+ userfaultfd] */
	HMMU_OP_MIRROR_UNREGISTER = 6, /* mirror id */
	HMMU_OP_MIRROR_DESTROY = 7,    /* mirror id */
	HMMU_OP_STATS = 8,	       /* -> counters */
	HMMU_OP_DEVICE_CMD = 9,	       /* dmirror-style command on a mirror */
	HMMU_OP_JOB = 10,	       /* run an accelerator job, wait for it */
	HMMU_OP_LIST = 11,	       /* what the daemon holds, a page at a time */
	/* Not in version 3's first daemons, which answer -EOPNOTSUPP. */
	HMMU_OP_QUEUE_CREATE = 12,     /* shared rings for a mirror -> 2 fds */
	HMMU_OP_QUEUE_DESTROY = 13,    /* queue id */
	HMMU_OP_BUFFER_CREATE = 14,    /* bytes -> buffer id, + its memfd */
	HMMU_OP_BUFFER_DESTROY = 15,   /* buffer id */
	HMMU_OP_DEVICE_CMD_BUFFER = 16, /* DEVICE_CMD whose buffer is a buffer's */
	HMMU_OP_FAILSAFE = 17,	       /* mirror id -> device memory file + uffd */
	HMMU_OP_MIRROR_RESTORE = 18,   /* a mirror again, after a restart */
	HMMU_OP_BUFFER_RESTORE = 19,   /* a buffer again, + its memfd */
	HMMU_OP_RESERVE_IDS = 20,      /* ids made from now on are > above */
	HMMU_OP_MAX_
};

#define HMMU_MSG_REPLY 0x1u /* hdr.flags: this is a reply */
/*
 * hdr.flags, in a reply with status < 0 only: the payload starts with a
 * reason, one sentence for a person saying what went wrong and what to do:
 * UTF-8 text, NUL-terminated, at most HMMU_REASON_MAX bytes with the NUL,
 * then zero bytes up to a multiple of 8. The op's own error payload (none,
 * or at least the op's minimum) follows. The daemon sets it only once HELLO
 * has succeeded on the connection, or in an error reply to a HELLO of this
 * version; never on the reply to a HELLO of another version, which a client
 * of any version must be able to read.
 */
#define HMMU_MSG_REASON 0x2u
#define HMMU_REASON_MAX 200u
/* Wire size of a reason of @n characters: NUL and padding included. */
#define HMMU_REASON_WIRE_SIZE(n) (((size_t)(n) + 1 + 7) / 8 * 8)

struct hmmu_wire_hdr {
	uint32_t magic;
	uint16_t op;
	uint16_t flags;
	uint32_t len;	/* whole message, header included */
	int32_t status; /* reply: 0, a HMMU_STATUS_*, or -errno; request: 0 */
	uint64_t id;	/* chosen by the client, echoed in the reply */
};

/*
 * Positive statuses are protocol signals, not errors; the library never
 * returns them to its caller.
 *
 * NEED_UFFD: the calling process has no per-process state in the daemon
 * (first registration, or all its mirrors were unregistered since): send the
 * same MIRROR_REGISTER again with a userfaultfd attached (SCM_RIGHTS).
 */
#define HMMU_STATUS_NEED_UFFD 1

struct hmmu_wire_hello {
	uint32_t version; /* request: client's; reply: daemon's */
	uint32_t reserved;
};

#define HMMU_RELEASE_MAX 64u

/*
 * HELLO's reply. Every version's starts with struct hmmu_wire_hello, so
 * that any client reads which version a daemon speaks; only those 8 bytes
 * are the op's minimum. Since version 3 a daemon sends the whole struct,
 * in its success and its version-mismatch replies.
 */
struct hmmu_wire_hello_reply {
	uint32_t version;
	uint32_t reserved;		/* 0 */
	char release[HMMU_RELEASE_MAX]; /* "0.1.0 (git 4415f675eea2)", NUL-padded */
	/*
	 * Which incarnation of state the daemon serves (docs/protocol.md
	 * §11): random, not 0, made by an hmmud that started with nothing
	 * to adopt, and announced unchanged by a successor that adopted its
	 * predecessor's state from the fd store. Absent (the reply is 8 bytes
	 * shorter) from daemons that predate it: read as 0, "unknown".
	 */
	uint64_t incarnation;
};

struct hmmu_wire_index {
	uint32_t index;
	uint32_t reserved;
};

struct hmmu_wire_count {
	uint32_t count;
	uint32_t reserved;
};

struct hmmu_wire_device_info {
	char name[HMMU_NAME_MAX];
	char model[HMMU_NAME_MAX];
	uint64_t mem_bytes;
	int32_t numa_node;
	uint32_t page_size;
};

struct hmmu_wire_device_name {
	char name[HMMU_NAME_MAX]; /* NUL-terminated, not empty */
};

struct hmmu_wire_mirror {
	uint64_t mirror; /* id given by MIRROR_CREATE, scoped to the connection */
};

/*
 * MIRROR_REGISTER. With a userfaultfd attached, @probe is the address of two
 * private anonymous pages of the sender that nobody has touched: the daemon
 * uses them to prove that the userfaultfd belongs to the sender's address
 * space and serves faults the kernel takes for it (docs/security.md); the
 * sender may unmap them once the reply came. Without a userfaultfd, 0.
 */
struct hmmu_wire_register {
	uint64_t mirror;
	uint64_t probe;
};

/*
 * MIRROR_REGISTER's long form: the same op with 8 more bytes, sent only
 * when a flag is set (a daemon that predates it refuses the size with
 * -EMSGSIZE, and changes nothing). HMMU_REGISTER_COARSE: the mirror wants
 * coarse-grained coherence; the userfaultfd that goes with the NEED_UFFD
 * round must then have UFFD_FEATURE_WP_ASYNC, and one that goes with a
 * fine-grained registration must not. Unknown flags and a non-zero
 * reserved are -EINVAL.
 */
#define HMMU_REGISTER_COARSE 0x1u
#define HMMU_REGISTER_FLAGS_ HMMU_REGISTER_COARSE
struct hmmu_wire_register_ext {
	struct hmmu_wire_register base;
	uint32_t flags;
	uint32_t reserved;
};

/*
 * The counters of HMMU_OP_STATS, in reply order. The reply carries as many
 * u64 as the daemon knows; a client reads the ones it knows. New counters go
 * at the end, never in between.
 */
enum hmmu_stat {
	HMMU_STAT_PROCESSES,
	HMMU_STAT_MIRRORS,
	HMMU_STAT_MY_STATE,
	HMMU_STAT_MY_MIRRORS,
	HMMU_STAT_DEVICE_FAULTS,
	HMMU_STAT_CPU_FAULTS,
	HMMU_STAT_INVALIDATIONS,
	HMMU_STAT_MIGRATED_TO_DEVICE,
	HMMU_STAT_MIGRATED_TO_SYSTEM,
	HMMU_STAT_RELEASES,
	HMMU_STAT_SESSIONS,
	HMMU_STAT_DEVICE_PAGES,
	HMMU_STAT_DEVICE_MEM_PAGES,
	HMMU_STAT_FAULT_BATCHES,
	HMMU_STAT_FAULT_ENTRIES,
	HMMU_STAT_FAULT_DUPLICATES,
	HMMU_STAT_FAULT_BLOCKS,
	HMMU_STAT_FAULT_RUNS,
	HMMU_STAT_DENSITY_FETCHES,
	HMMU_STAT_FAULT_WINDOW_PAGES,
	HMMU_STAT_FAULT_DENSITY_PCT,
	HMMU_STAT_FAULT_BATCH_MAX,
	HMMU_STAT_FAULT_BLOCK_PAGES,
	HMMU_STAT_NR_
};

struct hmmu_wire_stats {
	uint64_t value[HMMU_STAT_NR_];
};

enum hmmu_device_cmd {
	HMMU_CMD_READ = 1,     /* device reads client memory into buf */
	HMMU_CMD_WRITE = 2,    /* device writes buf into client memory */
	HMMU_CMD_SNAPSHOT = 3, /* one state byte per page into buf */
	/*
	 * Migration takes the client's help (docs/design.md): PREPARE copies
	 * at most HMMU_PREPARE_MAX_PAGES pages and replies with a bit per page
	 * (struct hmmu_wire_prepare_result), set for each page the client must
	 * now discard (MADV_DONTNEED); FINISH settles it. The daemon writes
	 * nothing into client memory meanwhile: the pages are held.
	 */
	HMMU_CMD_MIGRATE_PREPARE = 4,
	HMMU_CMD_EXCLUSIVE_PREPARE = 5, /* the same, for exclusive access */
	HMMU_CMD_MIGRATE_FINISH = 6,
	HMMU_CMD_MIGRATE_TO_SYSTEM = 7,
	HMMU_CMD_CHECK_EXCLUSIVE = 8,
	HMMU_CMD_RELEASE = 9, /* device release: every page comes back */
	HMMU_CMD_MAX_
};

struct hmmu_wire_device_cmd {
	uint64_t mirror; /* first, as in every request on a mirror */
	uint32_t cmd;
	uint32_t reserved;
	uint64_t addr;	 /* page aligned */
	uint64_t npages; /* > 0, at most HMMU_CMD_MAX_PAGES */
	uint64_t buf;	 /* client address of the data buffer */
	uint64_t buf_len;
};

#define HMMU_CMD_MAX_PAGES (1ull << 20) /* 4 GiB of 4 KiB pages per command */

struct hmmu_wire_cmd_result {
	uint64_t cpages;
	uint64_t faults;
};

/*
 * Shared buffers (docs/protocol.md §7). BUFFER_CREATE's successful reply
 * carries the buffer's memfd (SCM_RIGHTS): @bytes long (the request's,
 * rounded up to whole pages), sealed against shrinking, growing and more
 * seals. The id is scoped to the connection, as a mirror's.
 */
struct hmmu_wire_buffer_create {
	uint64_t bytes; /* > 0 */
};

struct hmmu_wire_buffer {
	uint64_t buffer; /* its id */
	uint64_t bytes;
};

/*
 * BUFFER_RESTORE (docs/protocol.md §11): after a reconnection to a daemon
 * that announced the incarnation the client saw before, make buffer
 * @buffer (not 0) of @bytes (not 0) again on this connection, from the
 * memfd that comes with the request (SCM_RIGHTS): the one BUFFER_CREATE
 * gave, which the client kept. The request is struct hmmu_wire_buffer;
 * the reply has no payload. The daemon maps the memfd only if it is what
 * it would have made itself (a memfd named "hmmu-buffer" of exactly
 * @bytes, whole pages, open read-write, sealed F_SEAL_SHRINK | F_SEAL_GROW
 * | F_SEAL_SEAL and not against writes), else -EINVAL; -EBADF without an
 * fd, -EEXIST if the id is taken on this connection, and BUFFER_CREATE's
 * limits. Nothing changes on an error.
 */

/*
 * DEVICE_CMD_BUFFER: a READ whose destination is [offset, offset +
 * cmd.buf_len) of @buffer; cmd.buf says where the client maps that part
 * (the daemon writes into the buffer, never at that address). The reply
 * is DEVICE_CMD's.
 */
struct hmmu_wire_device_cmd_buffer {
	struct hmmu_wire_device_cmd cmd;
	uint64_t buffer;
	uint64_t offset;
};

#define HMMU_PREPARE_MAX_PAGES 2048u

/*
 * The reply to MIGRATE_PREPARE and EXCLUSIVE_PREPARE. @devfile: the
 * generation of the process's device memory file (common/failsafe.h), 0 if
 * none (an older daemon sends no such field): a client that does not hold
 * that generation asks for it (FAILSAFE) before it discards anything.
 */
struct hmmu_wire_prepare_result {
	uint64_t cpages;
	uint64_t faults;
	uint8_t discard[HMMU_PREPARE_MAX_PAGES / 8]; /* bit i: page i */
	uint64_t devfile;
};
_Static_assert(sizeof(struct hmmu_wire_hdr) + HMMU_REASON_MAX +
		       sizeof(struct hmmu_wire_prepare_result) <= HMMU_MSG_MAX,
	       "a PREPARE reply fits in one message, with a reason");
_Static_assert(HMMU_REASON_MAX % 8 == 0, "a reason ends at a multiple of 8");

/*
 * FAILSAFE (request: struct hmmu_wire_mirror, a registered mirror of the
 * caller's process): the successful reply carries two fds, the process's
 * device memory file (a sealed memfd, to be mapped read-only) and its
 * userfaultfd, and says which generation of the file they are; the file is
 * made now if the process has none (docs/protocol.md §10).
 */
struct hmmu_wire_failsafe {
	uint64_t generation;
	uint64_t bytes; /* of the file */
};

/*
 * MIRROR_RESTORE (docs/protocol.md §11): after a reconnection to a daemon
 * that announced the incarnation the client saw before, make mirror
 * @mirror again on this connection, on @device, registered if
 * HMMU_RESTORE_REGISTERED (joining the process's adopted state; never with
 * a userfaultfd), in coarse-grained mode if HMMU_RESTORE_COARSE. Reply:
 * no payload. -EEXIST if the id is taken on this connection, -ESTALE if
 * REGISTERED and the daemon holds no state for the caller's process
 * (nothing changes then).
 */
#define HMMU_RESTORE_REGISTERED 0x1u
#define HMMU_RESTORE_COARSE 0x2u
#define HMMU_RESTORE_FLAGS_ (HMMU_RESTORE_REGISTERED | HMMU_RESTORE_COARSE)
struct hmmu_wire_mirror_restore {
	uint64_t mirror; /* not 0 */
	char device[HMMU_NAME_MAX];
	uint32_t flags;
	uint32_t reserved; /* 0 */
};

/*
 * RESERVE_IDS (docs/protocol.md §11): from now on, every id this
 * connection's MIRROR_CREATE, BUFFER_CREATE and QUEUE_CREATE hands out is
 * greater than @above. It only ever raises those floors: a lower @above
 * changes nothing. A reconnecting client sends it first, with the largest
 * id it was ever given, so that no id it may still name (in a DESTROY sent
 * again, or a buffer the successor could not make again) is given to
 * something new. @above past HMMU_RESERVE_IDS_MAX is -EINVAL (the
 * decoder's): so bounded, a counter raised to it never wraps. Reply: no
 * payload.
 */
#define HMMU_RESERVE_IDS_MAX (1ull << 62)
struct hmmu_wire_reserve_ids {
	uint64_t above;
};

/* Job kinds: the values of enum hmmu_job_kind in <hmmu/hmmu.h>. */
enum hmmu_wire_job_kind {
	HMMU_WIRE_JOB_FILL = 1,
	HMMU_WIRE_JOB_COPY = 2,
	HMMU_WIRE_JOB_SUM64 = 3,
	HMMU_WIRE_JOB_LIST_SUM = 4,
	HMMU_WIRE_JOB_MAX_
};

struct hmmu_wire_job {
	uint64_t mirror; /* first, as in every request on a mirror */
	uint32_t kind;
	uint32_t reserved;
	uint64_t dst;
	uint64_t src;
	uint64_t len;
	uint64_t value;
	uint32_t next_offset;
	uint32_t value_offset;
};

struct hmmu_wire_job_result {
	uint64_t result;
	uint64_t faults;
	uint64_t elapsed_ns;
};

/*
 * HMMU_OP_LIST: entries @start.. of the list @what; the reply carries
 * struct hmmu_wire_list_reply then @count entries, and @total says how
 * many there are in all. A client sees every process if it is root, else
 * those of its own uid.
 */
enum hmmu_list_what {
	HMMU_LIST_PROCESSES = 1,
	HMMU_LIST_MIRRORS = 2,
	HMMU_LIST_MAX_
};

struct hmmu_wire_list {
	uint32_t what;
	uint32_t start;
};

struct hmmu_wire_list_reply {
	uint32_t total;
	uint32_t count;
};

struct hmmu_wire_list_entry {
	int32_t pid;
	uint32_t uid;
	uint32_t mirrors;     /* processes: registered mirrors */
	uint32_t reserved;
	char device[HMMU_NAME_MAX]; /* mirrors: the device */
	uint64_t device_pages;	    /* mirrors: pages its device holds */
};

#define HMMU_LIST_PER_REPLY                                                   \
	((HMMU_MSG_MAX - sizeof(struct hmmu_wire_hdr) -                       \
	  sizeof(struct hmmu_wire_list_reply)) /                               \
	 sizeof(struct hmmu_wire_list_entry))

/*
 * Asynchronous submission (docs/protocol.md §9). QUEUE_CREATE makes a
 * submission ring and a completion ring for one mirror in a memfd the
 * daemon creates, sizes and seals (shrink, grow, seal), and answers with two
 * fds (SCM_RIGHTS, in this order): that memfd, and an eventfd, the doorbell
 * of a parked queue. Both ends map the memfd MAP_SHARED. The daemon reads
 * every byte the client may write once, into its own memory, and checks it.
 */
#define HMMU_QUEUE_MAX_ENTRIES 1024u

struct hmmu_wire_queue_create {
	uint64_t mirror;
	uint32_t entries;  /* 1 to HMMU_QUEUE_MAX_ENTRIES, rounded up to 2^n */
	uint32_t reserved; /* 0 */
};

struct hmmu_wire_queue_reply {
	uint64_t queue;	  /* id, scoped to the connection */
	uint32_t entries; /* of each ring, a power of 2 */
	uint32_t reserved;
	uint64_t size;	  /* of the memfd, to map whole */
	uint32_t sqes_off; /* where the SQE array starts */
	uint32_t cqes_off; /* where the CQE array starts */
};

struct hmmu_wire_queue_id {
	uint64_t queue;
};

/*
 * The control words, each on its own cache line at the start of the
 * memfd. "head" and "tail" are free-running u32 counters; entry i of a
 * ring is at index i & (entries - 1). Who writes what:
 *   sq_tail   client (release); the doorbell's futex word
 *   sq_head   daemon: SQEs it has taken (read once each)
 *   sq_flags  daemon: HMMU_SQ_NEED_WAKEUP, HMMU_SQ_NEED_EVENT
 *   cq_tail   daemon (release); the client's futex word
 *   cq_head   client: CQEs it has consumed
 *   cq_flags  client: HMMU_CQ_WAITING
 */
#define HMMU_RING_LINE 64u
enum hmmu_ring_word {
	HMMU_RING_SQ_HEAD = 0,
	HMMU_RING_SQ_TAIL = 1,
	HMMU_RING_SQ_FLAGS = 2,
	HMMU_RING_CQ_HEAD = 3,
	HMMU_RING_CQ_TAIL = 4,
	HMMU_RING_CQ_FLAGS = 5,
	HMMU_RING_WORDS_
};
/* Byte offset of a control word. */
#define HMMU_RING_OFF(word) ((word) * HMMU_RING_LINE)

/*
 * sq_flags. NEED_WAKEUP: a daemon thread sleeps on sq_tail (FUTEX_WAIT):
 * after publishing a new tail, FUTEX_WAKE it. NEED_EVENT: nobody serves
 * the queue: write 1 to the eventfd. Neither: the daemon polls the ring,
 * no call needed. The client reads the flags after its tail store, with a
 * full barrier between (the daemon sets them, barrier, reads the tail).
 */
#define HMMU_SQ_NEED_WAKEUP 0x1u
#define HMMU_SQ_NEED_EVENT 0x2u
/* cq_flags: the client sleeps on cq_tail; FUTEX_WAKE it after a CQE. */
#define HMMU_CQ_WAITING 0x1u

enum hmmu_wire_sqe_op {
	HMMU_SQE_NOP = 1, /* completes with 0 */
	HMMU_SQE_CMD = 2, /* u.cmd: READ, WRITE or SNAPSHOT */
	HMMU_SQE_JOB = 3, /* u.job */
	HMMU_SQE_MAX_
};

/*
 * A submission: the payload of the DEVICE_CMD or JOB request it stands for,
 * whose mirror field must be 0 (the queue's mirror is meant), checked by the
 * same decoder as a request.
 */
struct hmmu_wire_sqe {
	uint16_t op;	   /* enum hmmu_wire_sqe_op */
	uint16_t reserved; /* 0 */
	uint32_t reserved2; /* 0 */
	uint64_t user_data; /* echoed in the completion */
	union {
		struct hmmu_wire_device_cmd cmd;
		struct hmmu_wire_job job;
	} u;
};

/* A completion: the results of the reply the request would have had. */
struct hmmu_wire_cqe {
	uint64_t user_data;
	int32_t status; /* 0 or -errno */
	uint32_t op;	/* the SQE's op, or 0 if it made no sense */
	uint64_t cpages; /* commands */
	uint64_t faults;
	uint64_t result; /* jobs */
	uint64_t elapsed_ns;
};
_Static_assert(sizeof(struct hmmu_wire_sqe) == 72, "SQE layout");
_Static_assert(sizeof(struct hmmu_wire_cqe) == 48, "CQE layout");

/*
 * Check a received message: magic, flags, op, length for that op, reserved
 * fields and strings. `reply` says which direction is expected. Returns 0
 * or a negative errno; -EPROTO for a broken header, -EINVAL for a bad
 * payload, -EMSGSIZE for a wrong length, -EOPNOTSUPP for an unknown op.
 */
int hmmu_proto_check(const void *msg, size_t len, int reply);
/*
 * The same, and on failure a sentence saying what is wrong into @why
 * (@size bytes, may be 0), for the daemon's log and reason.
 */
int hmmu_proto_check_why(const void *msg, size_t len, int reply, char *why,
			 size_t size);

/* Of a checked reply: its reason (HMMU_MSG_REASON), or NULL. */
const char *hmmu_proto_reason(const void *msg);
/* Of a checked reply: the offset of the op's payload, past any reason. */
size_t hmmu_proto_payload_offset(const void *msg);

/* Payload size of a request of this op, or 0 for an unknown op. */
size_t hmmu_proto_request_size(unsigned op);

/* Minimum payload size of a successful reply to this op. */
size_t hmmu_proto_reply_min_size(unsigned op);

/*
 * Payload size of the reply to the request @msg (checked already): the
 * op's minimum, or a PREPARE's larger result with its map.
 */
size_t hmmu_proto_reply_size(const void *msg);

const char *hmmu_proto_op_name(unsigned op);
int hmmu_proto_op_known(unsigned op);

#endif
