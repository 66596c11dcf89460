/* SPDX-License-Identifier: MIT */
/*
 * seccomp-exec: run a command under an allow-list seccomp filter, the way
 * systemd runs a unit with SystemCallFilter= (an allow-list) and no
 * SystemCallErrorNumber=: a call not on the list kills the whole process
 * with SIGSYS, so a missing entry is loud rather than a quiet EPERM.
 *
 * usage: seccomp-exec LISTFILE -- COMMAND [ARG]...
 *
 * LISTFILE holds one system call name a line; blank lines and lines
 * starting with '#' are skipped. Names this libseccomp does not know, or
 * that do not exist on this architecture, are skipped as systemd skips them
 * (the unit's groups name calls of every architecture).
 *
 * The filter is loaded in this process, which then execs COMMAND: the pid
 * stays the same, so a parent waiting for it sees COMMAND's exit (or its
 * SIGSYS). execve itself must be on the list, as it is in systemd's
 * @default. Like systemd, only the native architecture is allowed
 * (SystemCallArchitectures=native); a call through another ABI kills too.
 */
#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr, "usage: seccomp-exec LISTFILE -- COMMAND [ARG]...\n");
	exit(2);
}

/* Adds every name of @path to @ctx; returns how many were added, or -1. */
static int add_names(scmp_filter_ctx ctx, const char *path)
{
	char line[256];
	int added = 0, skipped = 0;
	FILE *f = fopen(path, "re");

	if (!f) {
		fprintf(stderr, "seccomp-exec: %s: %s\n", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *name = line + strspn(line, " \t");
		int nr, err;

		name[strcspn(name, " \t\r\n")] = '\0';
		if (!*name || *name == '#')
			continue;
		nr = seccomp_syscall_resolve_name(name);
		/* Unknown (__NR_SCMP_ERROR), or a pseudo-number: not native. */
		if (nr < 0) {
			skipped++;
			continue;
		}
		err = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (err) {
			fprintf(stderr, "seccomp-exec: allow %s: %s\n", name,
				strerror(-err));
			fclose(f);
			return -1;
		}
		added++;
	}
	fclose(f);
	fprintf(stderr, "seccomp-exec: %d calls allowed, %d names not on this "
		"architecture skipped, anything else kills\n", added, skipped);
	return added;
}

int main(int argc, char **argv)
{
	scmp_filter_ctx ctx;
	int err;

	if (argc < 4 || strcmp(argv[2], "--") != 0)
		usage();

	ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
	if (!ctx) {
		fprintf(stderr, "seccomp-exec: seccomp_init failed\n");
		return 1;
	}
	if (add_names(ctx, argv[1]) <= 0) {
		seccomp_release(ctx);
		return 1;
	}
	/*
	 * Without CAP_SYS_ADMIN the kernel takes a filter only with
	 * no_new_privs; systemd's units here set NoNewPrivileges=yes anyway.
	 */
	err = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 1);
	if (!err)
		err = seccomp_load(ctx);
	seccomp_release(ctx);
	if (err) {
		fprintf(stderr, "seccomp-exec: loading the filter: %s\n",
			strerror(-err));
		return 1;
	}
	execvp(argv[3], &argv[3]);
	/* Not found, say (a filtered execve would have killed us instead). */
	fprintf(stderr, "seccomp-exec: %s: %s\n", argv[3], strerror(errno));
	return 127;
}
