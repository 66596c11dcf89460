/* SPDX-License-Identifier: MIT */
/*
 * A client of the installed libhmmu: it builds against the installed header
 * and library, and runs. Connecting to a socket that does not exist must
 * fail with -ENOENT, as hmmu.h documents.
 *
 * usage: client NONEXISTENT_SOCKET_PATH
 */
#include <hmmu/hmmu.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct hmmu *h = NULL;
	int err;

	if (argc != 2) {
		fprintf(stderr, "usage: %s NONEXISTENT_SOCKET_PATH\n", argv[0]);
		return 2;
	}
	err = hmmu_connect(argv[1], &h);
	if (err != -ENOENT) {
		fprintf(stderr, "hmmu_connect(%s) = %d (%s), expected -ENOENT\n",
			argv[1], err, err < 0 ? strerror(-err) : "success");
		hmmu_disconnect(h);
		return 1;
	}
	return 0;
}
