/* SPDX-License-Identifier: MIT */
/*
 * What one client may make the daemon spend. Every resource a client can
 * cause the daemon to hold has a bound here, per connection, per process or
 * per user (uid), so that a crashing or hostile client costs the others
 * nothing. Set once at start (hmmud --limit NAME=VALUE), read-only after.
 * docs/security.md says which limit protects what.
 */
#ifndef HMMUD_LIMITS_H
#define HMMUD_LIMITS_H

#include <stdint.h>
#include <stdio.h>

struct limits {
	unsigned connections;		  /* open connections, all users */
	unsigned connections_per_user;
	unsigned mirrors_per_user;	  /* created, registered or not */
	uint64_t copy_bytes_per_user;	  /* page copies in device page tables */
	unsigned devmem_percent_per_user; /* of each device's memory */
	unsigned requests_per_connection; /* received, not yet answered */
	unsigned zaps_per_process;	  /* REMOVEs waiting with a pagemap copy */
	uint64_t job_timeout_ms;	  /* longest command or job */
	uint64_t stop_timeout_ms;	  /* longest clean stop */
	uint64_t copy_pool_bytes;	  /* warm page copies kept unused */
	uint64_t copy_pool_idle_ms;	  /* unused this long: given back */
	unsigned queues_per_connection;	  /* submission queues (queue.c) */
	unsigned queue_threads;		  /* servicers of all queues */
	unsigned buffers_per_user;	  /* shared buffers (hmmu_buffer_create) */
	uint64_t buffer_bytes_per_user;	  /* their memory */
};

extern struct limits limits;

/* "connections" from the fd limit (@max_fds); the rest have defaults. */
void limits_init(uint64_t max_fds);

/* "NAME=VALUE": 0, or -EINVAL with a message on @err naming what is wrong. */
int limits_set(const char *assignment, FILE *err);

/* The names, defaults and meanings, for --help. */
void limits_usage(FILE *f);

#endif
