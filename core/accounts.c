/* SPDX-License-Identifier: MIT */
#include "accounts.h"
#include "limits.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

/* Protects the list, every account's refs, connections and mirrors. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct account *all;
static unsigned connections; /* all users */

struct account *account_get(uid_t uid)
{
	struct account *a;

	pthread_mutex_lock(&lock);
	for (a = all; a && a->uid != uid; a = a->next)
		;
	if (!a && (a = calloc(1, sizeof(*a)))) {
		a->uid = uid;
		a->next = all;
		all = a;
	}
	if (a)
		a->refs++;
	pthread_mutex_unlock(&lock);
	return a;
}

void account_hold(struct account *a)
{
	pthread_mutex_lock(&lock);
	a->refs++;
	pthread_mutex_unlock(&lock);
}

void account_put(struct account *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&lock);
	if (--a->refs == 0) {
		for (struct account **pp = &all; *pp; pp = &(*pp)->next) {
			if (*pp == a) {
				*pp = a->next;
				break;
			}
		}
		free(a);
	}
	pthread_mutex_unlock(&lock);
}

int account_connect(struct account *a)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	if (connections >= limits.connections)
		err = -EUSERS;
	else if (a->connections >= limits.connections_per_user)
		err = -EDQUOT;
	else {
		connections++;
		a->connections++;
	}
	pthread_mutex_unlock(&lock);
	return err;
}

unsigned account_connections(struct account *a)
{
	unsigned n;

	pthread_mutex_lock(&lock);
	n = a->connections;
	pthread_mutex_unlock(&lock);
	return n;
}

void account_disconnect(struct account *a)
{
	pthread_mutex_lock(&lock);
	connections--;
	a->connections--;
	pthread_mutex_unlock(&lock);
}

void account_force_mirror(struct account *a)
{
	pthread_mutex_lock(&lock);
	a->mirrors++;
	pthread_mutex_unlock(&lock);
}

int account_add_mirror(struct account *a)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	if (a->mirrors >= limits.mirrors_per_user)
		err = -EDQUOT;
	else
		a->mirrors++;
	pthread_mutex_unlock(&lock);
	return err;
}

void account_del_mirror(struct account *a)
{
	pthread_mutex_lock(&lock);
	a->mirrors--;
	pthread_mutex_unlock(&lock);
}

int account_add_buffer(struct account *a, uint64_t bytes)
{
	int err = 0;

	pthread_mutex_lock(&lock);
	if (a->buffers >= limits.buffers_per_user ||
	    bytes > limits.buffer_bytes_per_user - a->buffer_bytes) {
		err = -EDQUOT;
	} else {
		a->buffers++;
		a->buffer_bytes += bytes;
	}
	pthread_mutex_unlock(&lock);
	return err;
}

void account_del_buffer(struct account *a, uint64_t bytes)
{
	pthread_mutex_lock(&lock);
	a->buffers--;
	a->buffer_bytes -= bytes;
	pthread_mutex_unlock(&lock);
}

/* Add @n to @c unless that passes @max. */
static bool charge(atomic_uint_fast64_t *c, uint64_t n, uint64_t max)
{
	uint64_t old = atomic_load_explicit(c, memory_order_relaxed);

	do {
		if (old + n > max)
			return false;
	} while (!atomic_compare_exchange_weak_explicit(
		c, &old, old + n, memory_order_relaxed, memory_order_relaxed));
	return true;
}

bool account_charge_copies(struct account *a, uint64_t n)
{
	return charge(&a->copy_pages, n,
		      limits.copy_bytes_per_user / (uint64_t)getpagesize());
}

void account_uncharge_copies(struct account *a, uint64_t n)
{
	atomic_fetch_sub_explicit(&a->copy_pages, n, memory_order_relaxed);
}

bool account_charge_devmem(struct account *a, unsigned dev, uint64_t total)
{
	uint64_t max = total * limits.devmem_percent_per_user / 100;

	return dev < ACCOUNT_MAX_DEVICES &&
	       charge(&a->devmem_pages[dev], 1, max ? max : 1);
}

void account_force_devmem(struct account *a, unsigned dev)
{
	if (dev < ACCOUNT_MAX_DEVICES)
		atomic_fetch_add_explicit(&a->devmem_pages[dev], 1,
					  memory_order_relaxed);
}

void account_uncharge_devmem(struct account *a, unsigned dev)
{
	if (dev < ACCOUNT_MAX_DEVICES)
		atomic_fetch_sub_explicit(&a->devmem_pages[dev], 1,
					  memory_order_relaxed);
}

uint64_t account_devmem_pages(struct account *a)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < ACCOUNT_MAX_DEVICES; i++)
		n += atomic_load_explicit(&a->devmem_pages[i], memory_order_relaxed);
	return n;
}
