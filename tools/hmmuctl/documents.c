/* SPDX-License-Identifier: MIT */
/*
 * The JSON documents of hmmuctl --json: an object per command, its members
 * named as the text tables' columns, with the unit in the name where the
 * number has one (mem_bytes, device_pages). docs/operations.md shows them;
 * members are only ever added.
 */
#include "output.h"

#include "hmmu_build_info.h"

void json_device_members(struct json *j, const struct hmmu_device_info *d)
{
	json_member_string(j, "name", d->name, sizeof(d->name));
	json_member_string(j, "model", d->model, sizeof(d->model));
	json_member_uint(j, "mem_bytes", d->mem_bytes);
	json_key(j, "numa_node");
	if (d->numa_node < 0)
		json_null(j); /* memory on no particular node */
	else
		json_int(j, d->numa_node);
	json_member_uint(j, "page_size_bytes", d->page_size);
}

void json_process_array(struct json *j, const struct snapshot *s)
{
	json_begin_array(j);
	for (unsigned i = 0; i < s->nprocesses; i++) {
		json_begin_object(j);
		json_member_int(j, "pid", s->processes[i].pid);
		json_member_uint(j, "uid", s->processes[i].uid);
		json_member_uint(j, "mirrors", s->processes[i].mirrors);
		json_end_object(j);
	}
	json_end_array(j);
}

void json_mirror_array(struct json *j, const struct snapshot *s)
{
	json_begin_array(j);
	for (unsigned i = 0; i < s->nmirrors; i++) {
		const struct hmmu_mirror_info *m = &s->mirrors[i];

		json_begin_object(j);
		json_member_int(j, "pid", m->pid);
		json_member_uint(j, "uid", m->uid);
		json_member_string(j, "device", m->device, sizeof(m->device));
		json_member_uint(j, "device_pages", m->device_pages);
		json_end_object(j);
	}
	json_end_array(j);
}

void json_stats_members(struct json *j, const struct snapshot *s)
{
	for (size_t i = 0; i < stat_field_count; i++) {
		uint64_t v;

		/* Counters an older daemon does not keep are left out. */
		if (stat_value(s, &stat_fields[i], &v))
			json_member_uint(j, stat_fields[i].key, v);
	}
}

void json_devices(struct json *j, const struct snapshot *s)
{
	json_begin_object(j);
	json_key(j, "devices");
	json_begin_array(j);
	for (unsigned i = 0; i < s->ndevices; i++) {
		json_begin_object(j);
		json_device_members(j, &s->devices[i]);
		json_end_object(j);
	}
	json_end_array(j);
	json_end_object(j);
}

void json_processes(struct json *j, const struct snapshot *s)
{
	json_begin_object(j);
	json_key(j, "processes");
	json_process_array(j, s);
	json_end_object(j);
}

void json_mirrors(struct json *j, const struct snapshot *s)
{
	json_begin_object(j);
	json_key(j, "mirrors");
	json_mirror_array(j, s);
	json_end_object(j);
}

void json_stats(struct json *j, const struct snapshot *s)
{
	json_begin_object(j);
	json_stats_members(j, s);
	json_end_object(j);
}

void json_version(struct json *j, const struct snapshot *s)
{
	json_begin_object(j);
	json_member_string(j, "hmmuctl", HMMU_BUILD_VERSION, SIZE_MAX);
	json_member_string(j, "commit", HMMU_BUILD_COMMIT, SIZE_MAX);
	json_member_string(j, "libhmmu", hmmu_version(), SIZE_MAX);
	/* A daemon that did not say (before protocol 3): null. */
	json_key(j, "hmmud");
	if (*s->daemon_version)
		json_string(j, s->daemon_version, SIZE_MAX);
	else
		json_null(j);
	json_end_object(j);
}
