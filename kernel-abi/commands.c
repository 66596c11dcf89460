/* SPDX-License-Identifier: MIT */
/*
 * The ioctls of the kernel's HMM test device, each as lib/test_hmm.c
 * answers it, on libhmmu's public calls: the checks and errors are the
 * kernel driver's, the work is hmmud's dmirror device. Where the kernel's
 * command does two things (migrate, then read back what the device now
 * holds), the shim makes the two calls. docs/kernel-abi.md lists what
 * differs and why.
 */
#include "commands.h"
#include "real_calls.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hmm_dmirror_abi.h"

/*
 * The caller's memory (the command struct, the snapshot buffer) may be
 * bad: copied as the kernel's copy_from_user() and copy_to_user() would,
 * -EFAULT rather than a crash. @ours is the shim's side of the copy.
 */
static int copy_user(void *ours, const void *user, size_t len, bool to_user)
{
	struct iovec local = { .iov_base = ours, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)user, .iov_len = len };
	ssize_t n = to_user ?
		process_vm_writev(getpid(), &local, 1, &remote, 1, 0) :
		process_vm_readv(getpid(), &local, 1, &remote, 1, 0);

	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

static uint64_t page_size(void)
{
	return (uint64_t)sysconf(_SC_PAGESIZE);
}

/*
 * Scratch for page states. Not from the heap: the kernel's own tests pass
 * buffers too small for what a command writes back (a byte per page to
 * MIGRATE_TO_DEV, which copies whole pages), and what they overrun on the
 * heap must not be the shim's. Nor a new mapping for a small range: it
 * would land in the hole a test just punched next to the range, and show
 * up in the snapshot. So the stack, and a mapping only for huge ranges.
 */
#define STACK_STATES 16384

struct states {
	uint8_t *v;
	uint64_t npages;
	uint8_t on_stack[STACK_STATES];
};

static int states_init(struct states *s, uint64_t npages)
{
	s->npages = npages;
	s->v = s->on_stack;
	if (npages <= STACK_STATES)
		return 0;
	s->v = real_mmap(NULL, npages, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return s->v == MAP_FAILED ? -ENOMEM : 0;
}

static void states_fini(struct states *s)
{
	if (s->v != s->on_stack)
		munmap(s->v, s->npages);
}

/*
 * The states of the range as hmmu reports them, into @states; -EINVAL if
 * @no_holes and part of the range is a hole or PROT_NONE, as the kernel's
 * driver says when it finds no readable VMA there.
 */
static int range_states(struct hmmu_mirror *m, const struct hmm_dmirror_cmd *cmd,
			uint8_t *states, bool no_holes)
{
	struct hmmu_cmd c = { .addr = cmd->addr, .npages = cmd->npages };
	int err = hmmu_snapshot(m, &c, states);

	for (uint64_t i = 0; !err && no_holes && i < cmd->npages; i++)
		if (states[i] == HMMU_PAGE_ERROR)
			err = -EINVAL;
	return err;
}

/*
 * Snapshot bytes, hmmu's to the kernel's. The kernel's driver adds the CPU
 * permission to every present page (the zero page is read-only, a
 * device-private page is as writable as the page it replaced, which for a
 * page hmmu migrates is always writable); a device-private page of another
 * device is not returned to the driver at all (its owner differs), so it
 * reads as not present.
 */
static uint8_t kernel_page_state(uint8_t s)
{
	if (s == HMMU_PAGE_ERROR)
		return HMM_DMIRROR_PROT_ERROR;
	switch (s & ~HMMU_PAGE_HUGE) {
	case HMMU_PAGE_ZERO:
		return HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ;
	case HMMU_PAGE_DEV_LOCAL:
		return HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL |
		       HMM_DMIRROR_PROT_WRITE;
	case HMMU_PAGE_DEV_REMOTE:
		return HMM_DMIRROR_PROT_NONE;
	default: /* NONE, READ, WRITE, with PMD */
		return (s & HMMU_PAGE_HUGE ? HMM_DMIRROR_PROT_PMD : 0) |
		       (s & (HMMU_PAGE_READ | HMMU_PAGE_WRITE));
	}
}

static int do_snapshot(struct hmmu_mirror *m, struct hmm_dmirror_cmd *cmd)
{
	struct states st;
	uint8_t *states;
	int err = states_init(&st, cmd->npages);

	if (err)
		return err;
	states = st.v;
	/* Into our memory, then the caller's, once translated. */
	err = range_states(m, cmd, states, false);
	for (uint64_t i = 0; !err && i < cmd->npages; i++)
		states[i] = kernel_page_state(states[i]);
	if (!err)
		err = copy_user(states, (void *)(uintptr_t)cmd->ptr,
				cmd->npages, true);
	if (!err)
		cmd->cpages = cmd->npages;
	states_fini(&st);
	return err;
}

/*
 * The kernel's MIGRATE_TO_DEV and EXCLUSIVE end with the device reading
 * the range back from its own page table into cmd->ptr: a page the device
 * does not hold (it was not migrated: shared memory, or another device's)
 * is -ENOENT there. hmmu's device holds, after the migration, the pages
 * the snapshot shows in its memory.
 */
static int read_back(struct hmmu_mirror *m, struct hmm_dmirror_cmd *cmd,
		     uint8_t *states)
{
	struct hmmu_cmd c = { .addr = cmd->addr, .npages = cmd->npages };
	int err = range_states(m, cmd, states, false);

	for (uint64_t i = 0; !err && i < cmd->npages; i++)
		if (states[i] != HMMU_PAGE_DEV_LOCAL)
			err = -ENOENT;
	if (!err)
		err = hmmu_device_read(m, &c, (void *)(uintptr_t)cmd->ptr);
	if (!err)
		cmd->cpages = c.cpages;
	return err;
}

static int do_migrate_to_device(struct hmmu_mirror *m,
				struct hmm_dmirror_cmd *cmd, bool exclusive)
{
	struct hmmu_cmd c = { .addr = cmd->addr, .npages = cmd->npages };
	struct states st;
	int err = states_init(&st, cmd->npages);

	if (err)
		return err;
	/* The kernel's migration needs a readable VMA for every page. */
	err = exclusive ? 0 : range_states(m, cmd, st.v, true);
	if (!err)
		err = exclusive ? hmmu_make_exclusive(m, &c) :
				  hmmu_migrate_to_device(m, &c);
	/* The kernel's make_device_exclusive() takes all pages or fails. */
	if (!err && exclusive && c.cpages != cmd->npages)
		err = -EBUSY;
	if (!err)
		err = read_back(m, cmd, st.v);
	states_fini(&st);
	return err;
}

static int do_migrate_to_system(struct hmmu_mirror *m,
				struct hmm_dmirror_cmd *cmd)
{
	struct hmmu_cmd c = { .addr = cmd->addr, .npages = cmd->npages };
	struct states st;
	int err = states_init(&st, cmd->npages);

	if (err)
		return err;
	err = range_states(m, cmd, st.v, true);
	states_fini(&st);
	if (!err)
		err = hmmu_migrate_to_system(m, &c);
	if (!err)
		cmd->cpages = c.cpages;
	return err;
}

/*
 * The kernel's CHECK_EXCLUSIVE fails with -EPERM while any page of the
 * range is still exclusive to the device; hmmu_check_exclusive() answers
 * whether all are. So: all are (-EPERM at once), or look page by page.
 */
static int do_check_exclusive(struct hmmu_mirror *m,
			      struct hmm_dmirror_cmd *cmd)
{
	struct hmmu_cmd c = { .addr = cmd->addr, .npages = cmd->npages };
	int err = hmmu_check_exclusive(m, &c);

	if (err != -EPERM)
		return err ? err : -EPERM;
	for (uint64_t i = 0; i < cmd->npages; i++) {
		struct hmmu_cmd one = { .addr = cmd->addr + i * page_size(),
					.npages = 1 };

		err = hmmu_check_exclusive(m, &one);
		if (err != -EPERM)
			return err ? err : -EPERM;
	}
	return 0;
}

static int run(struct hmmu_mirror *m, unsigned long request,
	       struct hmm_dmirror_cmd *cmd)
{
	struct hmmu_cmd c = { .addr = cmd->addr, .npages = cmd->npages };
	void *buf = (void *)(uintptr_t)cmd->ptr;
	int err;

	switch (request) {
	case HMM_DMIRROR_READ:
		err = hmmu_device_read(m, &c, buf);
		break;
	case HMM_DMIRROR_WRITE:
		err = hmmu_device_write(m, &c, buf);
		break;
	case HMM_DMIRROR_MIGRATE_TO_DEV:
		return do_migrate_to_device(m, cmd, false);
	case HMM_DMIRROR_EXCLUSIVE:
		return do_migrate_to_device(m, cmd, true);
	case HMM_DMIRROR_MIGRATE_TO_SYS:
		return do_migrate_to_system(m, cmd);
	case HMM_DMIRROR_SNAPSHOT:
		return do_snapshot(m, cmd);
	case HMM_DMIRROR_CHECK_EXCLUSIVE:
		return do_check_exclusive(m, cmd);
	case HMM_DMIRROR_RELEASE:
		return hmmu_device_release(m);
	default:
		/* As the kernel's driver: an unknown command is -EINVAL. */
		return -EINVAL;
	}
	if (!err) {
		cmd->cpages = c.cpages;
		cmd->faults = c.faults;
	}
	return err;
}

int unit_ioctl(struct unit *u, unsigned long request, void *arg)
{
	struct hmm_dmirror_cmd cmd;
	int err;

	/* The commands of another driver, or a fork child's inherited fd. */
	if (_IOC_TYPE(request) != 'H')
		return real_ioctl(u->fd, request, arg) < 0 ? -errno : 0;
	if (!u->mirror)
		return -ECHILD;
	err = copy_user(&cmd, arg, sizeof(cmd), false);
	if (err)
		return err;
	if (cmd.addr & (page_size() - 1) || cmd.npages == 0 ||
	    cmd.npages > UINT64_MAX / page_size() ||
	    cmd.addr + cmd.npages * page_size() <= cmd.addr)
		return -EINVAL;
	cmd.cpages = 0;
	cmd.faults = 0;
	err = run(u->mirror, request, &cmd);
	return err ? err : copy_user(&cmd, arg, sizeof(cmd), true);
}

void *unit_mmap(struct unit *u, void *addr, size_t len, int prot, int flags,
		off_t off)
{
	uint64_t ps = page_size();
	struct stat st;
	char *map;

	if (off < 0 || len == 0 || (uint64_t)off & (ps - 1)) {
		errno = EINVAL;
		return MAP_FAILED;
	}
	/*
	 * The memfd behind the unit holds the pages: a shmem file, which
	 * hmmud mirrors like any. It grows to cover what is mapped.
	 */
	if (fstat(u->fd, &st) < 0)
		return MAP_FAILED;
	if ((uint64_t)st.st_size < (uint64_t)off + len &&
	    ftruncate(u->fd, (off_t)(((uint64_t)off + len + ps - 1) / ps * ps)) < 0)
		return MAP_FAILED;
	map = real_mmap(addr, len, prot, flags, u->fd, off);
	if (map == MAP_FAILED || !(prot & PROT_READ))
		return map;
	/*
	 * Present, as the kernel's driver inserts every page at mmap time:
	 * a read maps each one without making it writable.
	 */
	for (size_t i = 0; i < len; i += ps)
		(void)*(volatile char *)(map + i);
	return map;
}
