/* SPDX-License-Identifier: MIT */
/* libhmmu internals: the connection, its request multiplexer, mirrors. */
#ifndef LIBHMMU_INTERNAL_H
#define LIBHMMU_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

#include "../common/proto.h"
#include <hmmu/hmmu.h>

#define HMMU_EXPORT __attribute__((visibility("default")))

/*
 * The detail returned by hmmu_error_detail() for this thread: every public
 * call that returns an int clears it first, and sets it where it fails in a
 * way the errno alone does not explain (hmmu.h says the rule).
 */
#define HMMU_DETAIL_MAX 256
/* A reconnection's reason for its verdict "dead": the start of a detail. */
#define HMMU_WHY_MAX 160

/*
 * A request waiting for its reply. What it sent stays in the caller's
 * frame, which waits as long as the entry is listed: a reconnection sends
 * it again from there (connection.c).
 */
struct pending {
	uint64_t id;
	unsigned op;
	const void *req;
	size_t req_len;
	int fd;	       /* sent along if >= 0 */
	unsigned resent; /* times sent again, after restarts */
	bool done;
	int status;
	size_t len; /* payload bytes received */
	void *out;  /* where the payload goes */
	size_t cap; /* its size */
	char reason[HMMU_REASON_MAX]; /* of an error reply; "" if none */
	int *fds;      /* where the fds of a successful reply go, or NULL */
	unsigned nfds; /* how many it must carry */
	bool got_fds;
	unsigned restarts; /* struct hmmu's, when the reply was filed */
	struct pending *next;
};

/*
 * A range a migration is discarding right now (failsafe.c); once the
 * watcher took over, one it discarded since (done), which stays listed.
 */
struct hmmu_discard {
	uint64_t start, end;
	bool done;
};

#define HMMU_DISCARDS_MAX 64

/*
 * What keeps this connection's pages in device memory safe if hmmud dies
 * (failsafe.c): from the first migration on, the process's device memory
 * file (mapped read-only), a dup of the process's userfaultfd, and a
 * watcher thread waiting for the socket to hang up. Under the handle's
 * lock.
 */
struct hmmu_failsafe {
	uint64_t gen;	   /* of the file held; 0: none (and nothing below) */
	int memfd;
	const char *map;
	size_t bytes;
	int uffd;	   /* our dup of the process's userfaultfd */
	int stopfd;	   /* eventfd: hmmu_disconnect() stops the watcher */
	int pidfd;	   /* the daemon's, or -1 if it cannot be had */
	pthread_t thread;
	bool running;	   /* the thread was started (joined at disconnect) */
	bool started;	   /* and is in its loop: see wait_watcher_started() */
	/*
	 * It waits for the socket to hang up; a hang-up is then its to
	 * handle (the reconnection runs in it, see connection.c).
	 */
	bool watching;
	bool took_over;	   /* the daemon hung up: the thread is at work */
	bool done;	   /* and finished: detail says what it did */
	unsigned ndiscards; /* entries of discards[] */
	unsigned active;    /* of them, not done */
	struct hmmu_discard discards[HMMU_DISCARDS_MAX];
	char detail[HMMU_DETAIL_MAX];
};

struct hmmu {
	/*
	 * The connection. It changes only when a reconnection swaps in a new
	 * one, under lock and with reconnecting set: a thread that reads or
	 * sends on it counts itself in reading or senders first.
	 */
	int fd;
	/*
	 * Who may use the handle (hmmu_call()): the process that connected.
	 * A forked child must fail with -ECHILD, never speak for its parent.
	 * Told without a system call: the page after the handle's own is
	 * MADV_WIPEONFORK and holds a nonzero word, which every child, made
	 * by fork() or a raw clone(), sees as 0. Only where the kernel lacks
	 * it (before 4.14) is getpid() compared with pid on each call.
	 */
	const volatile uint32_t *owner; /* in the wiped page; NULL: use pid */
	pid_t pid;
	char release[HMMU_RELEASE_MAX]; /* the daemon's, from HELLO */
	/*
	 * While hmmu_connect() waits for HELLO's reply, and only then: when
	 * to give up (CLOCK_MONOTONIC, ms); 0 for never.
	 */
	int64_t deadline_ms;
	/* What a reconnection needs: where, how long it may take, and whom. */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int timeout_ms;	      /* hmmu_connect()'s; 0: no bound was asked */
	uint64_t incarnation; /* from HELLO; 0: the daemon keeps no state */

	/*
	 * lock protects everything below, and each mirror's registered and
	 * coarse; it is the library's only lock (the failsafe's state is
	 * under it too). One thread at a time receives (reading); it files
	 * each reply under its pending entry and wakes the others on cond,
	 * one of which takes over receiving when the reader's own reply has
	 * come. A reconnection (reconnect.c) holds the others off with
	 * reconnecting, not with the lock, which it drops while it talks to
	 * the new daemon.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool reading;
	unsigned senders; /* threads in send_request() on fd */
	int broken; /* the connection failed: -errno for every later call */
	/*
	 * A thread is reconnecting: until it gives its verdict, nobody else
	 * reads, sends, or changes the pending, mirror or buffer lists.
	 */
	bool reconnecting;
	/*
	 * Successful reconnections. A queue made under an older count is
	 * dead: hmmud does not make queues again. Read without the lock by
	 * the queues, hence atomic.
	 */
	_Atomic unsigned restarts;
	/*
	 * A reconnection's verdict "dead": -ECONNRESET (no daemon answered)
	 * or -ESHUTDOWN (one did, without this process's state), and why.
	 */
	int verdict;
	char why[HMMU_WHY_MAX];
	/*
	 * And the daemon that answered holds this process's state: it
	 * brings the pages in device memory home itself (reconnect.c).
	 */
	bool kept;
	uint64_t next_id;
	/*
	 * The largest id of a mirror, buffer or queue any daemon gave this
	 * handle (a restore names only ids given before). Noted where the
	 * reply is filed (connection.c), so that no reconnection falls
	 * between the reply and the note; a reconnection asks the successor
	 * to give none up to it again (RESERVE_IDS, reconnect.c).
	 */
	uint64_t max_id;
	struct pending *pending;
	struct hmmu_mirror *mirrors;
	struct hmmu_buffer *buffers;
	struct hmmu_failsafe fs;
};

struct hmmu_buffer {
	struct hmmu *h;
	uint64_t id; /* the daemon's */
	/* Its memfd, kept for a reconnection to hand back (reconnect.c). */
	int fd;
	/*
	 * A restart's successor could not make it again (an hmmud older than
	 * BUFFER_RESTORE, or one that refused it): every call on it fails.
	 * An hmmud older than RESERVE_IDS may have given its id to another
	 * buffer since; a newer one never does. Set by the reconnection,
	 * read without the lock.
	 */
	atomic_bool lost;
	/*
	 * Why a successor refused it, "" if it is older than the op. Written
	 * by the reconnection before @lost, read once @lost is seen.
	 */
	char refused[HMMU_WHY_MAX];
	char *addr;  /* our mapping */
	size_t bytes;
	struct hmmu_buffer *next;
};

struct hmmu_mirror {
	struct hmmu *h;
	uint64_t id; /* the daemon's */
	char device[HMMU_NAME_MAX];
	/*
	 * What the daemon said last, as a reconnection makes the mirror
	 * again: set where its reply is filed (connection.c), under the
	 * handle's lock.
	 */
	bool registered;
	bool coarse; /* registered coarse-grained */
	struct hmmu_mirror *next;
	/* hmmu_mirror_set_coherence(); read by each register */
	_Atomic int coherence;
};

/*
 * One request, one reply. @fd is sent along if >= 0. The reply payload goes
 * to @out (up to @cap bytes). Returns the reply status: 0, -errno, or a
 * positive HMMU_STATUS_*. -ECHILD if called in a child of the process that
 * connected. On an error it sets the detail (hmmu_set_detail()): the
 * daemon's reason, or what the library knows.
 */
int hmmu_call(struct hmmu *h, unsigned op, const void *req, size_t req_len,
	      int fd, void *out, size_t cap);
/* The same, and how many payload bytes the reply carried into *@len. */
int hmmu_call_len(struct hmmu *h, unsigned op, const void *req,
		  size_t req_len, int fd, void *out, size_t cap, size_t *len);
/* A device read into [offset, ...) of @b (buffer.c). */
int hmmu_buffer_cmd(struct hmmu_mirror *m, struct hmmu_cmd *c,
		    struct hmmu_buffer *b, uint64_t offset);
/* hmmu_disconnect(): unmap and free the connection's buffers (buffer.c). */
void hmmu_buffers_free(struct hmmu *h);
/*
 * The buffer of @h that holds all of [buf, buf + len), or NULL; its offset
 * in *@offset.
 */
struct hmmu_buffer *hmmu_buffer_find(struct hmmu *h, const void *buf,
				     uint64_t len, uint64_t *offset);

/*
 * Most fds a reply may carry: a queue's memfd and eventfd, a buffer's
 * memfd, FAILSAFE's file, userfaultfd and daemon pidfd.
 */
#define HMMU_REPLY_MAX_FDS 3
/*
 * The same, for a request whose successful reply carries exactly @nfds
 * fds (@fds NULL: none), put into @fds (else -EPROTO); the caller owns
 * them on success.
 */
int hmmu_call_fds(struct hmmu *h, unsigned op, const void *req,
		  size_t req_len, int fd, void *out, size_t cap, size_t *len,
		  int *fds, unsigned nfds);
/*
 * The same, from a request the caller filled in (op, req, req_len, fd,
 * out, cap, fds, nfds): the reply's status, p->len, and p->restarts, the
 * count of reconnections when the reply came. A caller that makes
 * something which a restart does not keep compares it with h->restarts.
 */
int hmmu_request(struct hmmu *h, struct pending *p);

/*
 * Lock @h once no reconnection is under way: what changes the lists of
 * mirrors and buffers takes the lock so.
 */
void hmmu_lock_settled(struct hmmu *h);

/*
 * reconnect.c. Lock held: the connection hung up (@err: -ECONNRESET) that
 * the caller used when h->restarts was @seen. One thread reconnects (the
 * failsafe watcher if it watches, and then only it: see reconnect.c), the
 * others wait for its verdict. 0: @h has a connection again, on which
 * every request without a reply went again; or the -errno that every call
 * fails with from now on.
 */
int hmmu_connection_lost(struct hmmu *h, unsigned seen, int err, bool watcher);
/*
 * For a caller that waits on something else than the socket (a queue's
 * rings): has the connection hung up? Then as a request that found it so
 * (a reconnection, or the verdict). 0, or the handle's error, detail set.
 */
int hmmu_connection_check(struct hmmu *h);

/* How long hmmu_connect() waits for the daemon, unless told otherwise. */
#define HMMU_CONNECT_TIMEOUT_MS 5000

int64_t hmmu_now_ms(void); /* CLOCK_MONOTONIC */
/*
 * A connected socket to @path, non-blocking unless @block, by @deadline_ms
 * (0: none): 0, or the -errno of socket(2) or connect(2), or -ETIMEDOUT.
 */
int hmmu_open_socket(const char *path, int64_t deadline_ms, bool block,
		     int *out);
int hmmu_socket_block(int sock); /* back to blocking mode: 0 or -errno */
/*
 * Send request @p on @sock (by @deadline_ms if @sock does not block): 0,
 * -ECONNRESET if the daemon hung up, or -errno.
 */
int hmmu_send_pending(int sock, int64_t deadline_ms, const struct pending *p);
/*
 * A request on @sock, which nobody else uses (a reconnection's socket, not
 * swapped in yet), and its reply, by @deadline_ms (CLOCK_MONOTONIC): 0 with
 * the reply in @p (p->status), or -errno (-ETIMEDOUT, -ECONNRESET, -EPROTO).
 */
int hmmu_call_direct(int sock, int64_t deadline_ms, struct pending *p);

/*
 * The detail of a call on a buffer an older successor could not make again
 * (one that refused it says why: buffer.c).
 */
#define HMMU_BUFFER_LOST_DETAIL                                                \
	"hmmud restarted, and its successor is older than this libhmmu: it "   \
	"could not make the shared buffer again; make it anew"

/*
 * A device command: the command checks of the public calls, the request,
 * cpages and faults back into @c. @buf is the data or state buffer.
 */
int hmmu_device_cmd(struct hmmu_mirror *m, struct hmmu_cmd *c, unsigned cmd,
		    const void *buf, uint64_t buf_len);

/* @job checked and put in wire form for @mirror: 0, or -EINVAL (detail set). */
int hmmu_job_to_wire(const struct hmmu_job *job, uint64_t mirror,
		     struct hmmu_wire_job *out);

/* The size of a connection handle's own mapping (with its owner page). */
size_t hmmu_handle_bytes(void);

/*
 * Whether the calling process is the one that connected @h (struct hmmu's
 * owner word): false in a forked child, whose calls must fail -ECHILD.
 * No system call where the kernel has MADV_WIPEONFORK.
 */
bool hmmu_is_owner(const struct hmmu *h);

/*
 * The checks of a device command's range, at the boundary: 0, or -EINVAL
 * with the detail set.
 */
int hmmu_check_range(const struct hmmu_cmd *c);

/*
 * The process's userfaultfd, made for hand-off to the daemon; with
 * UFFD_FEATURE_WP_ASYNC if @coarse (-EOPNOTSUPP, with the detail, if this
 * kernel lacks it or WP_UNPOPULATED).
 */
int hmmu_uffd_create(int *out, int coarse);

/*
 * failsafe.c. hmmu_failsafe_update(): hold generation @gen of the process's
 * device memory file (0: any, if none is held), asking for it and starting
 * the watcher the first time. Never between a PREPARE and its FINISH (the
 * thread's own writes, to its heap say, may be held there). 0, or -errno. hmmu_discard_begin/end(): around a
 * migration's discard of [start, end); begin fails (-ESHUTDOWN) once the
 * watcher took over, or -EBUSY when too many are in flight (retry).
 * hmmu_failsafe_wait(): with the lock held, a call failed with @err: if the
 * watcher is bringing pages home, wait for it and return -ESHUTDOWN.
 * hmmu_failsafe_stop(): hmmu_disconnect(), before the socket is closed.
 * hmmu_failsafe_forget(): its part that closes and unmaps this process's
 * copies only, all that a forked child's hmmu_disconnect() may do.
 */
void hmmu_failsafe_init(struct hmmu *h);
int hmmu_failsafe_update(struct hmmu_mirror *m, uint64_t gen);
uint64_t hmmu_failsafe_gen(struct hmmu *h); /* 0: none held */
int hmmu_discard_begin(struct hmmu *h, uint64_t start, uint64_t end);
void hmmu_discard_end(struct hmmu *h, uint64_t start, uint64_t end);
int hmmu_failsafe_wait(struct hmmu *h, int err);
void hmmu_failsafe_stop(struct hmmu *h);
void hmmu_failsafe_forget(struct hmmu *h);
/*
 * A reconnection to the same incarnation, on @sock (not swapped in yet), by
 * @deadline_ms: if the failsafe is armed, FAILSAFE again on registered
 * mirror @mirror (0: there is none), for the new daemon's pidfd, which the
 * watcher waits for from now on; the file held and our userfaultfd stay.
 * 0 (also when not armed), or -errno with @why set: -ESTALE if the daemon
 * holds another generation of the file (it did not adopt ours).
 */
int hmmu_failsafe_rearm(struct hmmu *h, int sock, int64_t deadline_ms,
			uint64_t id, uint64_t mirror, char *why, size_t size);

__attribute__((format(printf, 1, 2))) void hmmu_set_detail(const char *fmt,
							   ...);
void hmmu_clear_detail(void);

#endif
