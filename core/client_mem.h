/* SPDX-License-Identifier: MIT */
/*
 * A client's memory, as a device's DMA sees it: copy_from_user() and
 * copy_to_user() of hmmu. Every access goes through the /proc/PID/mem file
 * opened when the process's state was made (process.c), never through a
 * pid: that open file holds the address space it was opened on, and once
 * that address space is gone (the process exited, or exec'd a new image,
 * setuid or not) every access fails with -ESRCH. So nothing the daemon does
 * for a client can reach any memory but the one that registered.
 *
 * Unlike process_vm_readv/writev, an access through that file never waits
 * for the client's userfaultfd: a page that would raise a userfault (a
 * missing page of a range registered for migration, a page we write-protect)
 * makes it fail instead, and we resolve that page ourselves and go on. So
 * no worker ever sleeps on a fault only its own client could resolve.
 *
 * The file would also let us read PROT_NONE pages and write read-only ones
 * (it is ptrace's access); the checked calls refuse those as the CPU would.
 *
 * Any thread but the loop thread: resolving a page may wait for the loop
 * to read a queued userfaultfd event.
 */
#ifndef HMMUD_CLIENT_MEM_H
#define HMMUD_CLIENT_MEM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

struct process;

/* Is the address space the state was made for still alive? */
bool client_mm_alive(struct process *p);

/*
 * Copy [remote, remote + len) of the client into @local (@nlocal buffers,
 * at most IOV_MAX), as a device read would. -EFAULT if part of the range is
 * unmapped or not readable, -ESRCH if the address space is gone, -EBUSY if
 * a page is in the middle of a migration for longer than we wait.
 */
int client_readv(struct process *p, uint64_t remote, const struct iovec *local,
		 unsigned long nlocal, uint64_t len);
int client_read(struct process *p, uint64_t remote, void *dst, uint64_t len);

/*
 * Write @len bytes into the client at @remote, as a CPU store on the
 * client's behalf: every device's copy of the pages is invalidated first,
 * pages we write-protect are let go, device-private pages come back.
 * -EFAULT if part of the range is unmapped or read-only (nothing is written
 * then), -EBUSY if a page is being migrated, -ESRCH as above.
 */
int client_writev(struct process *p, uint64_t remote, const struct iovec *local,
		  unsigned long nlocal, uint64_t len);
int client_write(struct process *p, uint64_t remote, const void *src,
		 uint64_t len);

/*
 * The same without the permission check, for callers that checked the VMAs
 * already (the range fault registers them first).
 */
int client_readv_checked(struct process *p, uint64_t remote,
			 const struct iovec *local, unsigned long nlocal,
			 uint64_t len);

/*
 * For a migration's own copy of the pages it reserved: one never populated
 * reads as zero (and is installed write-protected), instead of -EBUSY.
 */
int client_read_reserved(struct process *p, uint64_t remote, void *dst,
			 uint64_t len);

#endif
