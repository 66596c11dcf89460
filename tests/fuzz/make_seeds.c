/* SPDX-License-Identifier: MIT */
/*
 * Seed corpus and dictionary for fuzz_proto, built from the structs of
 * common/proto.h so that they follow the protocol as it changes:
 *
 *   make_seeds CORPUS_DIR [DICT_FILE]
 *
 * writes, for every op the decoder knows, a valid request, a successful
 * reply, a failed reply with and without payload, and the NONE reply; and
 * a dictionary of the magic, the op numbers, the flags and a device name.
 * A sample the decoder refuses is reported and still written, but does not
 * fail the run: it means wire.c's samples need to learn a new rule, and a
 * refused seed is still a fine start for the fuzzer.
 */
#include "wire.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int bad;

static void put(const char *dir, const char *kind, unsigned op,
		const union wire_msg *m, size_t len, int reply)
{
	char path[4096];
	FILE *f;
	int err = hmmu_proto_check(m, len, reply);

	if (err) {
		fprintf(stderr, "make_seeds: warning: %s %s: the decoder "
			"refuses our sample: %s\n", kind,
			hmmu_proto_op_name(op), strerror(-err));
	}
	snprintf(path, sizeof(path), "%s/%s-%02u-%s", dir, kind, op,
		 hmmu_proto_op_name(op));
	f = fopen(path, "wb");
	if (!f || fwrite(m, 1, len, f) != len || fclose(f) != 0) {
		fprintf(stderr, "make_seeds: %s: %s\n", path, strerror(errno));
		bad = 1;
	}
}

/* A dictionary entry: its bytes as \xNN escapes. */
static void dict_entry(FILE *f, const char *name, const void *p, size_t n)
{
	fprintf(f, "%s=\"", name);
	for (size_t i = 0; i < n; i++)
		fprintf(f, "\\x%02x", ((const unsigned char *)p)[i]);
	fprintf(f, "\"\n");
}

static void write_dict(const char *path)
{
	FILE *f = fopen(path, "w");
	uint32_t magic = HMMU_PROTO_MAGIC, version = HMMU_PROTO_VERSION;
	uint16_t flags = HMMU_MSG_REPLY;
	uint64_t max_pages = HMMU_CMD_MAX_PAGES;
	char name[32];

	if (!f) {
		fprintf(stderr, "make_seeds: %s: %s\n", path, strerror(errno));
		bad = 1;
		return;
	}
	fprintf(f, "# fuzz_proto dictionary, written by make_seeds\n");
	dict_entry(f, "magic", &magic, sizeof(magic));
	dict_entry(f, "version", &version, sizeof(version));
	dict_entry(f, "reply_flag", &flags, sizeof(flags));
	dict_entry(f, "max_pages", &max_pages, sizeof(max_pages));
	for (unsigned op = 0; op <= HMMU_OP_MAX_; op++) {
		uint16_t o = (uint16_t)op;

		snprintf(name, sizeof(name), "op_%u", op);
		dict_entry(f, name, &o, sizeof(o));
	}
	fprintf(f, "device=\"dmirror0\"\n");
	if (fclose(f) != 0)
		bad = 1;
}

int main(int argc, char **argv)
{
	union wire_msg m;
	size_t n;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: make_seeds CORPUS_DIR [DICT_FILE]\n");
		return 2;
	}
	if (mkdir(argv[1], 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "make_seeds: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	for (unsigned op = 1; op < HMMU_OP_MAX_; op++) {
		n = wire_sample_request(&m, op, op);
		put(argv[1], "request", op, &m, n, 0);
		n = wire_sample_reply(&m, op, op, 0, 0);
		put(argv[1], "reply", op, &m, n, 1);
		n = wire_sample_reply(&m, op, op, -EINVAL, 0);
		put(argv[1], "reply-error", op, &m, n, 1);
		n = wire_sample_reply(&m, op, op, -ENOENT, 1);
		put(argv[1], "reply-bare-error", op, &m, n, 1);
	}
	n = wire_sample_reply(&m, HMMU_OP_NONE, 0, -EOPNOTSUPP, 1);
	put(argv[1], "reply-none", HMMU_OP_NONE, &m, n, 1);
	if (argc == 3)
		write_dict(argv[2]);
	return bad;
}
