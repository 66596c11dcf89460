/* SPDX-License-Identifier: MIT */
/*
 * What the end-to-end tests share besides the daemon and the fixture
 * (harness.h): memory to mirror, /proc/self/smaps and transparent huge
 * pages, users, and the wire protocol spoken by hand on a raw
 * SOCK_SEQPACKET connection.
 *
 * Functions that assert say so; the others assert nothing and may be used
 * in a forked child, where a failed assertion has no test to fail.
 */
#ifndef HMMU_TEST_HELPERS_H
#define HMMU_TEST_HELPERS_H

#include "common/proto.h"

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <hmmu/hmmu.h>

/* ---- memory -------------------------------------------------------------- */

size_t page_size(void);
/* malloc(), asserting. */
void *xmalloc(size_t len);
/* @npages of anonymous memory, @flags MAP_PRIVATE or MAP_SHARED, asserting. */
void *map_anon(size_t npages, int prot, int flags);
/* @npages of private read-write anonymous memory, asserting. */
void *map_rw(size_t npages);
/* The same, or NULL; asserts nothing. */
void *map_rw_or_null(size_t npages);
/* map_rw(), every byte of page i filled_byte(i, @seed). */
unsigned char *map_filled(size_t npages, int seed);
unsigned char filled_byte(size_t page, int seed);
/* Page i of @p holds filled_byte(i, @seed) (every 511th byte is looked at). */
void expect_filled_pages(const unsigned char *p, size_t npages, int seed);

/* A device read of @npages at @addr into @buf, asserting it read them all. */
struct hmmu_cmd dev_read(struct hmmu_mirror *m, const void *addr,
			 size_t npages, void *buf);
/* A device write of @buf to @npages at @addr, asserting it wrote them all. */
struct hmmu_cmd dev_write(struct hmmu_mirror *m, void *addr, size_t npages,
			  const void *buf);
/* The device reads @npages at @p, and sees what the CPU sees; asserting. */
void device_touch(struct hmmu_mirror *m, const void *p, size_t npages);

/* Number of fds open in process @pid, asserting. */
int count_fds(pid_t pid);

/* ---- /proc/self/smaps and transparent huge pages ------------------------- */

#define HUGE_SIZE (2ul << 20)

/* A field ("AnonHugePages") of the VMA holding @addr, in kB; -1 if none. */
long smaps_field_kb(const void *addr, const char *field);
/* 1 if any VMA of this process has the uffd flags "uf" or "uw". */
int smaps_has_uffd_flags(void);
/* 1 if the VMA containing @addr has the flag (two letters) in VmFlags. */
int smaps_vma_has_flag(const void *addr, const char *flag);
/*
 * A HUGE_SIZE-aligned private read-write region of @len bytes, advised
 * MADV_HUGEPAGE and not touched yet; skips the test unless this kernel has
 * transparent huge pages enabled. Once the test has filled it,
 * require_huge_pages() skips the test unless it did get huge pages.
 */
void *map_thp(size_t len);
void require_huge_pages(const void *p);

/* ---- users --------------------------------------------------------------- */

#define NOBODY 65534
/* Skip the test unless it runs as root, which it needs to act as NOBODY. */
void require_root(void);
/* In a child: become NOBODY, with no supplementary groups. 0, or -1. */
int become_nobody(void);

/* ---- the wire protocol by hand ------------------------------------------- */

/*
 * One message, to send or received: room for more than any valid one
 * (HMMU_MSG_MAX), so that a test can send one too long.
 */
union raw_msg {
	struct hmmu_wire_hdr hdr;
	unsigned char buf[4096];
	uint64_t align;
};

#define RAW_HDR sizeof(struct hmmu_wire_hdr)
#define RAW_MAX_FDS 8
/* raw_reply()'s status when no well-formed reply to the request came. */
#define RAW_NO_REPLY INT_MIN
/* Only so that a daemon that never answers fails the test, not hangs it. */
#define RAW_REPLY_WAIT_MS 20000

/* The id raw_post() gives its next request (then one more each time). */
extern _Atomic uint64_t raw_next_id;

void *raw_payload(union raw_msg *m);
/* A request of @op with @plen bytes of payload (zeroed if @p is NULL). */
size_t raw_build(union raw_msg *m, unsigned op, uint64_t id, const void *p,
		 size_t plen);
/*
 * A connection to the daemon under test, or -errno. Without @cloexec it
 * survives exec, as a client that builds its own socket may well leave it.
 */
int raw_open(int cloexec);
/* The same, close-on-exec, asserting. */
int raw_connect(void);
/*
 * Send @len bytes as one message with @nfds fds attached (at most
 * RAW_MAX_FDS) and, if @cred is not NULL, explicit credentials. 0 or -errno.
 */
int raw_sendmsg(int sock, const void *buf, size_t len, const int *fds,
		int nfds, const struct ucred *cred);
/* One message into @m: its length, 0 at hang-up, -ETIMEDOUT, or -errno. */
ssize_t raw_recv(int sock, union raw_msg *m, int timeout_ms);
/* A request of @op (@fd attached unless -1), not waiting: its id, or 0. */
uint64_t raw_post(int sock, unsigned op, const void *req, size_t len, int fd);
/*
 * The reply to request @id of @op, which must be the next message: its
 * status, or RAW_NO_REPLY. Up to @cap bytes of its payload go to @out,
 * past the reason an error reply may carry (hmmu_proto_reason()).
 */
int raw_reply(int sock, unsigned op, uint64_t id, void *out, size_t cap);
int raw_call(int sock, unsigned op, const void *req, size_t len, int fd,
	     void *out, size_t cap);
/* HELLO: its status. */
int raw_hello(int sock);
/*
 * HELLO, asserting a well-formed reply of exactly a HELLO reply payload
 * (struct hmmu_wire_hello_reply), status 0, naming our protocol version.
 */
void raw_say_hello(int sock);
/* A connection past its HELLO, asserting. */
int raw_session(void);
/* A new mirror on @device: its id, 0 if refused. */
uint64_t raw_mirror_create(int sock, const char *device);
/* MIRROR_REGISTER of @mirror, with @uffd (unless -1) and @probe: status. */
int raw_register(int sock, uint64_t mirror, int uffd, uint64_t probe);
/* MIRROR_UNREGISTER or MIRROR_DESTROY: status. */
int raw_mirror_op(int sock, unsigned op, uint64_t mirror);

#endif
