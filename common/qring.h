/* SPDX-License-Identifier: MIT */
/*
 * The shared rings of a queue (docs/protocol.md §9), as both ends touch
 * them: the control words (proto.h, enum hmmu_ring_word) and the futex
 * calls on them. The memory is shared between two processes, so the futex
 * ops are the shared ones (no FUTEX_PRIVATE_FLAG): the kernel keys them by
 * the memfd's page, not by an address of one process.
 */
#ifndef HMMU_QRING_H
#define HMMU_QRING_H

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "proto.h"

/* The size of the control page that starts the memfd. */
#define HMMU_RING_HDR_SIZE 4096u

static inline _Atomic uint32_t *qring_word(void *ring, enum hmmu_ring_word w)
{
	return (_Atomic uint32_t *)((char *)ring + HMMU_RING_OFF(w));
}

/* The layout of a queue of @entries (a power of 2) slots per ring. */
static inline void qring_layout(uint32_t entries, uint32_t *sqes_off,
				uint32_t *cqes_off, uint64_t *size)
{
	uint64_t page = 4096, cq, end;

	*sqes_off = HMMU_RING_HDR_SIZE;
	cq = *sqes_off + (uint64_t)entries * sizeof(struct hmmu_wire_sqe);
	cq = (cq + 63) / 64 * 64;
	*cqes_off = (uint32_t)cq;
	end = cq + (uint64_t)entries * sizeof(struct hmmu_wire_cqe);
	*size = (end + page - 1) / page * page;
}

/*
 * Sleep while *@word == @val, at most @timeout_ns (0: no limit). Returns 0
 * when woken (or the word had changed: EAGAIN), -ETIMEDOUT, -EINTR.
 */
/*
 * The full barrier between "I set my flag" and "I look at the other
 * side's word", on each side of a doorbell or a wake-up. ThreadSanitizer
 * does not model fences (gcc refuses them under -fsanitize=thread): there,
 * a sequentially consistent read-modify-write, a full barrier on x86 too.
 */
static inline void qring_full_barrier(void)
{
#if defined(__SANITIZE_THREAD__)
	static _Atomic uint32_t barrier;

	atomic_fetch_add(&barrier, 0);
#else
	atomic_thread_fence(memory_order_seq_cst);
#endif
}

static inline int qring_futex_wait(_Atomic uint32_t *word, uint32_t val,
				   int64_t timeout_ns)
{
	struct timespec ts = { .tv_sec = timeout_ns / 1000000000,
			       .tv_nsec = timeout_ns % 1000000000 };
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT, val,
			 timeout_ns > 0 ? &ts : NULL, NULL, 0);

	if (r == 0 || errno == EAGAIN)
		return 0;
	return -errno;
}

static inline void qring_futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL,
		0);
}

static inline int64_t qring_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void qring_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

#endif
