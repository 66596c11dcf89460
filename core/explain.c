/* SPDX-License-Identifier: MIT */
#include "explain.h"
#include "command.h"
#include "process.h"
#include "vmas.h"
#include "../common/page.h"
#include "../lib/pagetable.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

#define FIX_TRACKABLE "use anonymous or shared memory (memfd)"

/* The VMA at @at, described; "" if it cannot be had. */
static const char *describe(struct process *p, uint64_t at, struct vma_info *i,
			    char *out, size_t size)
{
	out[0] = '\0';
	if (vma_info(p, at, i) == 1)
		vma_describe(i, out, size);
	return out;
}

/*
 * Walk the VMAs of [start, end) and say why the first one to blame fails
 * @err. 1 if something was said.
 */
static int explain_vmas(struct process *p, int err, uint64_t start,
			uint64_t end, bool write)
{
	struct vma_cursor c;
	struct vma_info info;
	struct vma v;
	uint64_t covered = start;
	char what[128];
	int r = 1, said = 0;

	vma_cursor_init(&c, p, start);
	while (!said && covered < end && (r = vma_next(&c, &v)) == 1) {
		uint64_t at = v.start > covered ? v.start : covered;

		if (v.start > covered && err == -EFAULT) {
			said = command_fail(err, "address %#" PRIx64 " is not "
					    "mapped: every page of the range "
					    "must be mapped memory of this "
					    "process", covered);
		} else if (!v.read && err == -EFAULT) {
			said = command_fail(err, "address %#" PRIx64 " is "
					    "PROT_NONE, in %s: a device may "
					    "touch only what the CPU may read",
					    at, describe(p, at, &info, what,
							 sizeof(what)));
		} else if (write && !v.write &&
			   (err == -EFAULT || err == -EPERM)) {
			describe(p, at, &info, what, sizeof(what));
			said = err == -EPERM ?
				command_fail(err, "address %#" PRIx64 " is "
					     "read-only, in %s: a device write "
					     "needs memory mapped PROT_WRITE",
					     at, what) :
				command_fail(err, "address %#" PRIx64 " is "
					     "read-only, in %s: hmmud cannot "
					     "write the result there", at, what);
		} else if ((v.inode || err == -EFAULT) &&
			   vma_info(p, at, &info) == 1) {
			vma_describe(&info, what, sizeof(what));
			if (err == -EPERM && info.kind == VMA_FILE)
				said = command_fail(err, "address %#" PRIx64
						    " is in %s: userfaultfd "
						    "cannot track it; "
						    FIX_TRACKABLE, at, what);
			else if (err == -EPERM && info.kind == VMA_SPECIAL)
				said = command_fail(err, "address %#" PRIx64
						    " is in %s, which "
						    "userfaultfd cannot track; "
						    FIX_TRACKABLE, at, what);
			else if (err == -EFAULT && info.kind == VMA_SPECIAL)
				said = command_fail(err, "address %#" PRIx64
						    " is in %s, which hmmud "
						    "cannot reach; "
						    FIX_TRACKABLE, at, what);
			else if (err == -EINVAL && info.kind == VMA_HUGETLB)
				said = command_fail(err, "address %#" PRIx64
						    " is in %s, which hmmu "
						    "mirrors only in whole, "
						    "aligned huge pages: use "
						    "normal anonymous memory "
						    "(THP is fine)", at, what);
		}
		covered = v.end;
	}
	vma_cursor_done(&c);
	if (!said && covered < end && err == -EFAULT && r == 0)
		said = command_fail(err, "address %#" PRIx64 " is not mapped: "
				    "every page of the range must be mapped "
				    "memory of this process", covered);
	return said != 0;
}

void explain_access(struct process *p, int err, uint64_t start, uint64_t end,
		    bool write)
{
	uint64_t s = page_down(start), e = page_up(end);

	if (end <= start || end > PT_VA_LIMIT) {
		if (err == -EFAULT)
			command_fail(err, "the range %#" PRIx64 "-%#" PRIx64
				     " reaches past the top of user space",
				     start, end);
		return;
	}
	switch (err) {
	case -EFAULT:
	case -EPERM:
	case -EINVAL:
		explain_vmas(p, err, s, e, write);
		break;
	case -E2BIG:
		command_fail(err, "the range %#" PRIx64 "-%#" PRIx64 " spans "
			     "more mappings than hmmud registers at once (64): "
			     "use fewer, larger mappings or shorter commands",
			     s, e);
		break;
	case -EAGAIN:
		command_fail(err, "the range %#" PRIx64 "-%#" PRIx64 " changed "
			     "on every try (the CPU kept writing or discarding "
			     "it): try again", s, e);
		break;
	case -EBUSY:
		command_fail(err, "a page of %#" PRIx64 "-%#" PRIx64 " is in "
			     "the middle of a migration, or registered with "
			     "another userfaultfd of this process", s, e);
		break;
	default:
		break;
	}
}
