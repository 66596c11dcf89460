/* SPDX-License-Identifier: MIT */
#include "helpers.h"
#include "harness.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- memory -------------------------------------------------------------- */

size_t page_size(void)
{
	return (size_t)sysconf(_SC_PAGESIZE);
}

void *xmalloc(size_t len)
{
	void *p = malloc(len);

	cr_assert_not_null(p);
	return p;
}

void *map_anon(size_t npages, int prot, int flags)
{
	void *p = mmap(NULL, npages * page_size(), prot, flags | MAP_ANONYMOUS,
		       -1, 0);

	cr_assert_neq(p, MAP_FAILED, "mmap of %zu pages: %s", npages,
		      strerror(errno));
	return p;
}

void *map_rw(size_t npages)
{
	return map_anon(npages, PROT_READ | PROT_WRITE, MAP_PRIVATE);
}

void *map_rw_or_null(size_t npages)
{
	void *p = mmap(NULL, npages * page_size(), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

unsigned char filled_byte(size_t page, int seed)
{
	return (unsigned char)(page * 7 + (size_t)seed);
}

unsigned char *map_filled(size_t npages, int seed)
{
	unsigned char *p = map_rw(npages);

	for (size_t i = 0; i < npages; i++)
		memset(p + i * page_size(), filled_byte(i, seed), page_size());
	return p;
}

void expect_filled_pages(const unsigned char *p, size_t npages, int seed)
{
	for (size_t i = 0; i < npages; i++)
		for (size_t b = 0; b < page_size(); b += 511)
			cr_assert_eq(p[i * page_size() + b],
				     filled_byte(i, seed), "page %zu byte %zu",
				     i, b);
}

static struct hmmu_cmd dev_rw(struct hmmu_mirror *m, int write,
			      const void *addr, size_t npages, void *buf)
{
	struct hmmu_cmd c = { .addr = (uintptr_t)addr, .npages = npages };
	int err = write ? hmmu_device_write(m, &c, buf) :
			  hmmu_device_read(m, &c, buf);

	cr_assert_eq(err, 0, "device %s of %p, %zu pages: %s",
		     write ? "write" : "read", addr, npages, strerror(-err));
	cr_assert_eq(c.cpages, npages, "cpages %llu, want %zu",
		     (unsigned long long)c.cpages, npages);
	return c;
}

struct hmmu_cmd dev_read(struct hmmu_mirror *m, const void *addr,
			 size_t npages, void *buf)
{
	return dev_rw(m, 0, addr, npages, buf);
}

struct hmmu_cmd dev_write(struct hmmu_mirror *m, void *addr, size_t npages,
			  const void *buf)
{
	return dev_rw(m, 1, addr, npages, (void *)buf);
}

void device_touch(struct hmmu_mirror *m, const void *p, size_t npages)
{
	unsigned char *buf = xmalloc(npages * page_size());

	dev_read(m, p, npages, buf);
	cr_assert_eq(memcmp(buf, p, npages * page_size()), 0,
		     "the device read what the CPU sees");
	free(buf);
}

int count_fds(pid_t pid)
{
	char path[64];
	struct dirent *de;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	dir = opendir(path);
	cr_assert_not_null(dir);
	while ((de = readdir(dir)))
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

/* ---- /proc/self/smaps and transparent huge pages ------------------------- */

/*
 * Pass the value of each "@key:" line of /proc/self/smaps to @fn, for the
 * VMA that holds @addr (every VMA if @addr is NULL), until @fn returns 1.
 * Whether it did.
 */
static int smaps_each(const void *addr, const char *key,
		      int (*fn)(const char *value, void *arg), void *arg)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	size_t klen = strlen(key);
	int in_vma = !addr, found = 0;
	unsigned long s, e;
	char line[512];

	cr_assert_not_null(f);
	while (!found && fgets(line, sizeof(line), f)) {
		/* A VMA's first line: "start-end perms ..." */
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
			if (addr)
				in_vma = (uintptr_t)addr >= s &&
					 (uintptr_t)addr < e;
			continue;
		}
		if (in_vma && strncmp(line, key, klen) == 0 &&
		    line[klen] == ':')
			found = fn(line + klen + 1, arg);
	}
	fclose(f);
	return found;
}

static int kb_of(const char *value, void *arg)
{
	*(long *)arg = strtol(value, NULL, 10);
	return 1;
}

long smaps_field_kb(const void *addr, const char *field)
{
	long kb = -1;

	smaps_each(addr, field, kb_of, &kb);
	return kb;
}

static int has_uffd_flag(const char *flags, void *arg)
{
	(void)arg;
	return strstr(flags, " uf") || strstr(flags, " uw");
}

int smaps_has_uffd_flags(void)
{
	return smaps_each(NULL, "VmFlags", has_uffd_flag, NULL);
}

static int has_flag(const char *flags, void *flag)
{
	char f[8];

	snprintf(f, sizeof(f), " %s", (const char *)flag);
	return strstr(flags, f) != NULL;
}

int smaps_vma_has_flag(const void *addr, const char *flag)
{
	return smaps_each(addr, "VmFlags", has_flag, (void *)flag);
}

void *map_thp(size_t len)
{
	char mode[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	unsigned char *raw, *p;

	if (!f)
		cr_skip_test("no transparent huge pages in this kernel");
	if (!fgets(mode, sizeof(mode), f))
		mode[0] = '\0';
	fclose(f);
	if (strstr(mode, "[never]") || !mode[0])
		cr_skip_test("transparent huge pages are disabled (%s)", mode);

	raw = mmap(NULL, len + HUGE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(raw, MAP_FAILED);
	p = (unsigned char *)(((uintptr_t)raw + HUGE_SIZE - 1) &
			      ~(HUGE_SIZE - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	munmap(p + len, (size_t)(raw + len + HUGE_SIZE - (p + len)));
	cr_assert_eq(madvise(p, len, MADV_HUGEPAGE), 0, "MADV_HUGEPAGE: %s",
		     strerror(errno));
	return p;
}

void require_huge_pages(const void *p)
{
	if (smaps_field_kb(p, "AnonHugePages") <= 0)
		cr_skip_test("the MADV_HUGEPAGE region did not get huge pages "
			     "(AnonHugePages is 0; memory too fragmented?)");
}

/* ---- users --------------------------------------------------------------- */

void require_root(void)
{
	if (geteuid() != 0)
		cr_skip_test("needs root, to run a client as uid %d", NOBODY);
}

int become_nobody(void)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 ||
	    setuid(NOBODY) < 0 || getuid() != NOBODY || geteuid() != NOBODY)
		return -1;
	return 0;
}

/* ---- the wire protocol by hand ------------------------------------------- */

_Atomic uint64_t raw_next_id = 1;

void *raw_payload(union raw_msg *m)
{
	return &m->hdr + 1;
}

size_t raw_build(union raw_msg *m, unsigned op, uint64_t id, const void *p,
		 size_t plen)
{
	memset(m, 0, sizeof(*m));
	m->hdr.magic = HMMU_PROTO_MAGIC;
	m->hdr.op = (uint16_t)op;
	m->hdr.len = (uint32_t)(RAW_HDR + plen);
	m->hdr.id = id;
	if (p)
		memcpy(raw_payload(m), p, plen);
	return RAW_HDR + plen;
}

int raw_open(int cloexec)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | (cloexec ? SOCK_CLOEXEC : 0),
			0);

	if (fd < 0)
		return -errno;
	strcpy(addr.sun_path, daemon_under_test.socket);
	if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	return fd;
}

int raw_connect(void)
{
	int fd = raw_open(1);

	cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
	return fd;
}

int raw_sendmsg(int sock, const void *buf, size_t len, const int *fds,
		int nfds, const struct ucred *cred)
{
	union {
		char buf[CMSG_SPACE(RAW_MAX_FDS * sizeof(int)) +
			 CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} control;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (nfds > RAW_MAX_FDS)
		return -E2BIG;
	memset(&control, 0, sizeof(control));
	msg.msg_control = control.buf;
	msg.msg_controllen = (nfds ? CMSG_SPACE(nfds * sizeof(int)) : 0) +
			     (cred ? CMSG_SPACE(sizeof(*cred)) : 0);
	if (!msg.msg_controllen)
		msg.msg_control = NULL;
	c = CMSG_FIRSTHDR(&msg);
	if (nfds) {
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
		c = CMSG_NXTHDR(&msg, c);
	}
	if (cred) {
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_CREDENTIALS;
		c->cmsg_len = CMSG_LEN(sizeof(*cred));
		memcpy(CMSG_DATA(c), cred, sizeof(*cred));
	}
	if (sendmsg(sock, &msg, MSG_NOSIGNAL) != (ssize_t)len)
		return -errno;
	return 0;
}

ssize_t raw_recv(int sock, union raw_msg *m, int timeout_ms)
{
	struct pollfd p = { .fd = sock, .events = POLLIN };
	ssize_t n = poll(&p, 1, timeout_ms);

	if (n <= 0)
		return n == 0 ? -ETIMEDOUT : -errno;
	n = recv(sock, m->buf, sizeof(m->buf), MSG_DONTWAIT);
	return n < 0 ? -errno : n;
}

uint64_t raw_post(int sock, unsigned op, const void *req, size_t len, int fd)
{
	uint64_t id = atomic_fetch_add(&raw_next_id, 1);
	union raw_msg m;

	len = raw_build(&m, op, id, req, len);
	return raw_sendmsg(sock, &m, len, &fd, fd >= 0, NULL) ? 0 : id;
}

int raw_reply(int sock, unsigned op, uint64_t id, void *out, size_t cap)
{
	union raw_msg m;
	ssize_t n = raw_recv(sock, &m, RAW_REPLY_WAIT_MS);

	size_t off, len;

	if (n <= 0 || hmmu_proto_check(&m, (size_t)n, 1) || m.hdr.id != id ||
	    m.hdr.op != op)
		return RAW_NO_REPLY;
	/* The op's payload, past the reason of an error reply. */
	off = hmmu_proto_payload_offset(&m);
	len = (size_t)n - off;
	if (out)
		memcpy(out, m.buf + off, len < cap ? len : cap);
	return m.hdr.status;
}

int raw_call(int sock, unsigned op, const void *req, size_t len, int fd,
	     void *out, size_t cap)
{
	uint64_t id = raw_post(sock, op, req, len, fd);

	return id ? raw_reply(sock, op, id, out, cap) : RAW_NO_REPLY;
}

int raw_hello(int sock)
{
	struct hmmu_wire_hello hello = { .version = HMMU_PROTO_VERSION };

	return raw_call(sock, HMMU_OP_HELLO, &hello, sizeof(hello), -1, NULL,
			0);
}

void raw_say_hello(int sock)
{
	struct hmmu_wire_hello hello = { .version = HMMU_PROTO_VERSION };
	uint64_t id = raw_post(sock, HMMU_OP_HELLO, &hello, sizeof(hello), -1);
	union raw_msg m;
	ssize_t n;

	cr_assert_neq(id, 0, "hello: cannot send");
	n = raw_recv(sock, &m, RAW_REPLY_WAIT_MS);
	cr_assert_gt(n, 0, "hello: no reply: %s",
		     n ? strerror((int)-n) : "the daemon hung up");
	cr_assert_eq(hmmu_proto_check(&m, (size_t)n, 1), 0,
		     "hello: malformed reply (%zd bytes)", n);
	cr_assert_eq(m.hdr.status, 0, "hello: status %d", m.hdr.status);
	cr_assert_eq(m.hdr.op, HMMU_OP_HELLO);
	cr_assert_eq(m.hdr.id, id);
	cr_assert_eq(n, (ssize_t)(RAW_HDR + sizeof(struct hmmu_wire_hello_reply)));
	cr_assert_eq(((struct hmmu_wire_hello *)raw_payload(&m))->version,
		     HMMU_PROTO_VERSION);
}

int raw_session(void)
{
	int sock = raw_connect();

	raw_say_hello(sock);
	return sock;
}

uint64_t raw_mirror_create(int sock, const char *device)
{
	struct hmmu_wire_device_name name = { { 0 } };
	struct hmmu_wire_mirror rep = { 0 };

	snprintf(name.name, sizeof(name.name), "%s", device);
	if (raw_call(sock, HMMU_OP_MIRROR_CREATE, &name, sizeof(name), -1, &rep,
		     sizeof(rep)) != 0)
		return 0;
	return rep.mirror;
}

int raw_register(int sock, uint64_t mirror, int uffd, uint64_t probe)
{
	struct hmmu_wire_register req = { .mirror = mirror, .probe = probe };

	return raw_call(sock, HMMU_OP_MIRROR_REGISTER, &req,
			hmmu_proto_request_size(HMMU_OP_MIRROR_REGISTER), uffd,
			NULL, 0);
}

int raw_mirror_op(int sock, unsigned op, uint64_t mirror)
{
	struct hmmu_wire_mirror req = { .mirror = mirror };

	return raw_call(sock, op, &req, sizeof(req), -1, NULL, 0);
}
