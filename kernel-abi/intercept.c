/* SPDX-License-Identifier: MIT */
/*
 * libhmmu-dmirror.so: the C library calls a program makes on the kernel's
 * HMM test device, caught on their way to the C library. open() of
 * /dev/hmm_dmirrorN becomes a unit (units.c); ioctl(), mmap() and close()
 * of a unit's fd go to commands.c and units.c. Every other path and fd goes
 * straight to the C library's own call, after one table lookup.
 *
 * Loaded by LD_PRELOAD (hmmu-run sets it), the shim's definitions come
 * before the C library's; it finds those with dlsym(RTLD_NEXT).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "commands.h"
#include "real_calls.h"
#include "units.h"

#define SHIM_EXPORT __attribute__((visibility("default")))

/* The C library's definition of @name; without it the process cannot go on. */
static void *next_definition(const char *name)
{
	void *fn = dlsym(RTLD_NEXT, name);

	if (!fn) {
		fprintf(stderr, "hmmu-dmirror: no %s after the shim: %s\n",
			name, dlerror());
		abort();
	}
	return fn;
}

/* Resolved on first use; a race resolves it twice, to the same value. */
#define REAL(name, type)                                                      \
	static type real_##name##_fn;                                         \
	if (!real_##name##_fn)                                                \
		real_##name##_fn = (type)next_definition(#name)

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*open_2_fn)(const char *, int);
typedef int (*openat_2_fn)(int, const char *, int);
typedef int (*close_fn)(int);
typedef int (*ioctl_fn)(int, unsigned long, ...);
typedef void *(*mmap_fn)(void *, size_t, int, int, int, off_t);

int real_close(int fd)
{
	REAL(close, close_fn);
	return real_close_fn(fd);
}

int real_ioctl(int fd, unsigned long request, void *arg)
{
	REAL(ioctl, ioctl_fn);
	return real_ioctl_fn(fd, request, arg);
}

void *real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	REAL(mmap, mmap_fn);
	return real_mmap_fn(addr, len, prot, flags, fd, off);
}

/* A mode is passed only when the flags create a file. */
static mode_t mode_arg(int flags, va_list ap)
{
	return flags & (O_CREAT | O_TMPFILE) ? (mode_t)va_arg(ap, int) : 0;
}

/* The path is the device's, absolute; relative to a dirfd it is not. */
static int unit_of(int dirfd, const char *path)
{
	if (dirfd != AT_FDCWD && path && path[0] != '/')
		return -1;
	return unit_number_of_path(path);
}

static int open_unit(int number, int flags)
{
	int fd = unit_open((unsigned)number, flags);

	if (fd < 0) {
		errno = -fd;
		return -1;
	}
	return fd;
}

/*
 * open() and open64(), openat() and openat64(): the same body, for the
 * C library's two names of each.
 */
#define DEFINE_OPEN(name)                                                     \
	SHIM_EXPORT int name(const char *path, int flags, ...)                \
	{                                                                     \
		int unit = unit_of(AT_FDCWD, path);                           \
		va_list ap;                                                   \
		mode_t mode;                                                  \
                                                                              \
		REAL(name, open_fn);                                          \
		if (unit >= 0)                                                \
			return open_unit(unit, flags);                        \
		va_start(ap, flags);                                          \
		mode = mode_arg(flags, ap);                                   \
		va_end(ap);                                                   \
		return real_##name##_fn(path, flags, mode);                   \
	}

#define DEFINE_OPENAT(name)                                                   \
	SHIM_EXPORT int name(int dirfd, const char *path, int flags, ...)     \
	{                                                                     \
		int unit = unit_of(dirfd, path);                              \
		va_list ap;                                                   \
		mode_t mode;                                                  \
                                                                              \
		REAL(name, openat_fn);                                        \
		if (unit >= 0)                                                \
			return open_unit(unit, flags);                        \
		va_start(ap, flags);                                          \
		mode = mode_arg(flags, ap);                                   \
		va_end(ap);                                                   \
		return real_##name##_fn(dirfd, path, flags, mode);            \
	}

DEFINE_OPEN(open)
DEFINE_OPEN(open64)
DEFINE_OPENAT(openat)
DEFINE_OPENAT(openat64)

/* What _FORTIFY_SOURCE turns open() without a mode into. */
SHIM_EXPORT int __open_2(const char *path, int flags)
{
	int unit = unit_of(AT_FDCWD, path);

	REAL(__open_2, open_2_fn);
	return unit >= 0 ? open_unit(unit, flags) : real___open_2_fn(path, flags);
}

SHIM_EXPORT int __open64_2(const char *path, int flags)
{
	int unit = unit_of(AT_FDCWD, path);

	REAL(__open64_2, open_2_fn);
	return unit >= 0 ? open_unit(unit, flags) :
			   real___open64_2_fn(path, flags);
}

SHIM_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	int unit = unit_of(dirfd, path);

	REAL(__openat_2, openat_2_fn);
	return unit >= 0 ? open_unit(unit, flags) :
			   real___openat_2_fn(dirfd, path, flags);
}

SHIM_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	int unit = unit_of(dirfd, path);

	REAL(__openat64_2, openat_2_fn);
	return unit >= 0 ? open_unit(unit, flags) :
			   real___openat64_2_fn(dirfd, path, flags);
}

SHIM_EXPORT int close(int fd)
{
	unit_forget(fd);
	return real_close(fd);
}

SHIM_EXPORT int ioctl(int fd, unsigned long request, ...)
{
	struct unit *u;
	va_list ap;
	void *arg;
	int err;

	va_start(ap, request);
	arg = va_arg(ap, void *);
	va_end(ap);
	u = unit_get(fd);
	if (!u)
		return real_ioctl(fd, request, arg);
	err = unit_ioctl(u, request, arg);
	unit_put(u);
	if (err) {
		errno = -err;
		return -1;
	}
	return 0;
}

SHIM_EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd,
		       off_t off)
{
	struct unit *u = flags & MAP_ANONYMOUS ? NULL : unit_get(fd);
	void *map;
	int err;

	if (!u)
		return real_mmap(addr, len, prot, flags, fd, off);
	map = unit_mmap(u, addr, len, prot, flags, off);
	err = errno;
	unit_put(u);
	errno = err;
	return map;
}

SHIM_EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd,
			 off_t off)
{
	return mmap(addr, len, prot, flags, fd, off);
}
