/* SPDX-License-Identifier: MIT */
/*
 * The shim's open device nodes ("units"): a table from file descriptor to
 * the hmmu mirror behind it, and the process's one connection to hmmud.
 */
#ifndef HMMU_SHIM_UNITS_H
#define HMMU_SHIM_UNITS_H

#include <stdbool.h>
#include <sys/types.h>

#include <hmmu/hmmu.h>

/* One open /dev/hmm_dmirrorN. */
struct unit {
	int fd;			    /* a memfd: a real fd, with a real file */
	unsigned number;	    /* N */
	struct hmmu_mirror *mirror; /* NULL once inherited by a fork child */
	unsigned refs;		    /* the table's, and each caller's */
};

/*
 * Which unit @path names: 0..3 for "/dev/hmm_dmirror0".."3", -1 for any
 * other path (which the shim then leaves alone).
 */
int unit_number_of_path(const char *path);

/*
 * Open unit @number as open(2) with @flags would (only O_CLOEXEC matters):
 * a memfd, registered in the table with a new registered mirror of this
 * process on hmmud's device "dmirror<number>". Returns the fd or -errno:
 * -ENOENT (no such device on this hmmud: units 2 and 3, device-coherent,
 * need a coherent model, which hmmu does not have), the errors of
 * hmmu_connect(), hmmu_mirror_create() and hmmu_mirror_register().
 */
int unit_open(unsigned number, int flags);

/*
 * The unit open on @fd, with a reference the caller drops with unit_put(),
 * or NULL if @fd is not one (then the call is not the shim's business).
 * Costs one atomic load while no unit is open.
 */
struct unit *unit_get(int fd);
void unit_put(struct unit *u);

/*
 * Forget @fd's unit if it is one, destroying its mirror (the device drops
 * every page of it) once its last user is done. The caller closes the fd.
 */
void unit_forget(int fd);

#endif
