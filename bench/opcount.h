/* SPDX-License-Identifier: MIT */
/* hmmu-bench --ops: operations to count, not to time (bench/opcounts.sh). */
#ifndef HMMU_BENCH_OPCOUNT_H
#define HMMU_BENCH_OPCOUNT_H

#include "bench.h"
#include "floors.h"

/* The classes --ops runs: request, device-fault, device-fault-acc. */
#define OPS_CLASSES                                                            \
	((1u << C_REQUEST) | (1u << C_DEVICE_FAULT) | (1u << C_DEVICE_FAULT_ACC))

/*
 * @n operations of class @id after a setup that does not depend on @n;
 * nothing timed, nothing recorded. 0 or -errno (-EOPNOTSUPP: not a class
 * --ops runs).
 */
int ops_run(struct bench *b, enum class_id id, uint64_t n);

#endif
