/* SPDX-License-Identifier: MIT */
/*
 * The kernel-feature cache (common/kfeatures.h): probed once, printed with
 * a yes or no for every feature, and a missing required feature named
 * with the version that brought it and how to get it. The decisions are
 * checked on made-up answers (and made-up settings and privileges), so
 * that they hold whatever kernel runs the test.
 */
#include "common/kfeatures.h"
#include "common/kernel_uapi.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A kernel with everything hmmud needs and nothing optional. */
static struct kfeatures enough(void)
{
	return (struct kfeatures){
		.uffd_features = HMMU_UFFD_REQUIRED_FEATURES,
		.poll_multishot = true,
		.zero_page_on_read = -1,
	};
}

Test(kfeatures, is_probed_once_and_kept)
{
	const struct kfeatures *a = kfeatures(), *b = kfeatures();

	cr_expect_eq(a, b);
	cr_expect_eq(memcmp(a, b, sizeof(*a)), 0);
}

Test(kfeatures, check_prints_every_feature_yes_or_no)
{
	char *text = NULL, *line, *save = NULL;
	size_t size = 0, features = 0;
	FILE *f = open_memstream(&text, &size);
	bool missing;
	char why[256];

	struct kaccess a;

	kaccess_read(&a);
	cr_assert_not_null(f);
	missing = kfeatures_print(kfeatures(), &a, f);
	fclose(f);
	cr_expect_eq(missing, kfeatures_missing(kfeatures(), why, sizeof(why)));
	for (line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char group[32], name[32], answer[8];

		if (sscanf(line, "%31s %31s %7s", group, name, answer) != 3 ||
		    strcmp(group, "kernel") == 0 || strchr(group, ':'))
			continue;
		cr_expect(strcmp(answer, "yes") == 0 ||
			  strcmp(answer, "no") == 0 || strcmp(answer, "?") == 0,
			  "%s %s: '%s'", group, name, answer);
		features++;
	}
	cr_expect_geq(features, 19, "one line per feature: %s", text);
	free(text);
}

Test(kfeatures, enough_is_enough)
{
	struct kfeatures kf = enough();
	char why[256];

	cr_expect(!kfeatures_missing(&kf, why, sizeof(why)), "%s", why);
}

Test(kfeatures, no_multishot_poll_names_5_13)
{
	struct kfeatures kf = enough();
	char why[256] = "";

	kf.poll_multishot = false;
	cr_assert(kfeatures_missing(&kf, why, sizeof(why)));
	cr_expect_not_null(strstr(why, "multishot poll"), "%s", why);
	cr_expect_not_null(strstr(why, "Linux 5.13"), "%s", why);
}

Test(kfeatures, no_write_protect_faults_names_5_7)
{
	struct kfeatures kf = enough();
	char why[256] = "";

	kf.uffd_features &= ~(uint64_t)UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	cr_assert(kfeatures_missing(&kf, why, sizeof(why)));
	cr_expect_not_null(strstr(why, "write-protect"), "%s", why);
	cr_expect_not_null(strstr(why, "Linux 5.7"), "%s", why);
}

Test(kfeatures, no_userfaultfd_at_all_names_4_3)
{
	struct kfeatures kf = enough();
	char why[256] = "";

	kf.uffd_err = -ENOSYS;
	kf.uffd_features = 0;
	cr_assert(kfeatures_missing(&kf, why, sizeof(why)));
	cr_expect_not_null(strstr(why, "Linux 4.3"), "%s", why);
}

Test(kfeatures, no_pidfd_open_names_5_3)
{
	struct kfeatures kf = enough();
	char why[256] = "";

	kf.pidfd_err = -ENOSYS;
	cr_assert(kfeatures_missing(&kf, why, sizeof(why)));
	cr_expect_not_null(strstr(why, "Linux 5.3"), "%s", why);
}

Test(kfeatures, a_userfaultfd_that_cannot_be_asked_is_not_missing)
{
	struct kfeatures kf = enough();
	char why[256] = "";

	kf.uffd_err = -EPERM;
	kf.uffd_features = 0;
	cr_expect(!kfeatures_missing(&kf, why, sizeof(why)), "%s", why);
}

/* Root with what hmmud.service gives it, on a machine that allows all. */
static struct kaccess privileged(void)
{
	return (struct kaccess){
		.uid = 0,
		.cap_sys_ptrace = true,
		.cap_dac_override = true,
		.cap_sys_admin = true,
		.io_uring_disabled = 0,
		.io_uring_group = -1,
		.unprivileged_uffd = 0,
		.yama_ptrace_scope = -1,
		.dev_uffd = 1,
	};
}

/* What --check prints for @kf and @a; the caller frees it. */
static char *check_output(const struct kfeatures *kf, const struct kaccess *a,
			  bool *missing)
{
	char *text = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&text, &size);

	cr_assert_not_null(f);
	*missing = kfeatures_print(kf, a, f);
	fclose(f);
	return text;
}

static void expect_fix(const struct kfeatures *kf, const struct kaccess *a,
		       const char *needle)
{
	char fix[512] = "";

	cr_assert(kfeatures_fix(kf, a, fix, sizeof(fix)));
	cr_expect_not_null(strstr(fix, needle), "no '%s' in: %s", needle, fix);
}

Test(kfeatures, io_uring_disabled_for_all_names_the_sysctl)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();

	kf.poll_multishot = false;
	kf.io_uring_err = -EPERM;
	a.io_uring_disabled = 2;
	expect_fix(&kf, &a, "kernel.io_uring_disabled=2");
	expect_fix(&kf, &a, "set kernel.io_uring_disabled=0");
}

Test(kfeatures, io_uring_for_a_group_names_the_group_sysctl)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();

	kf.poll_multishot = false;
	kf.io_uring_err = -EPERM;
	a.io_uring_disabled = 1;
	a.cap_sys_admin = false;
	expect_fix(&kf, &a, "kernel.io_uring_group");
	expect_fix(&kf, &a, "(-1: none)");
}

Test(kfeatures, io_uring_refused_though_allowed_names_seccomp)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();
	char why[256] = "";

	kf.poll_multishot = false;
	kf.io_uring_err = -EPERM;
	expect_fix(&kf, &a, "seccomp");
	/* Not "upgrade the kernel": the kernel has it. */
	cr_assert(kfeatures_missing(&kf, why, sizeof(why)));
	cr_expect_null(strstr(why, "Linux 5.13"), "%s", why);
	cr_expect_not_null(strstr(why, "Operation not permitted"), "%s", why);
}

Test(kfeatures, no_io_uring_in_the_kernel_names_its_config)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();

	kf.poll_multishot = false;
	kf.io_uring_err = -ENOSYS;
	expect_fix(&kf, &a, "CONFIG_IO_URING");
}

Test(kfeatures, old_kernel_fix_names_the_version)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();

	kf.poll_multishot = false;
	expect_fix(&kf, &a, "upgrade to Linux 5.13");
	kf = enough();
	kf.uffd_features &= ~(uint64_t)UFFD_FEATURE_EVENT_REMAP;
	expect_fix(&kf, &a, "upgrade to Linux 4.11");
	kf = enough();
	kf.uffd_err = -ENOSYS;
	kf.uffd_features = 0;
	expect_fix(&kf, &a, "CONFIG_USERFAULTFD");
}

Test(kfeatures, nothing_to_fix_prints_no_fix)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();
	char fix[512];
	bool missing;
	char *text = check_output(&kf, &a, &missing);

	cr_expect(!missing);
	cr_expect(!kfeatures_fix(&kf, &a, fix, sizeof(fix)));
	cr_expect_null(strstr(text, "fix:"), "%s", text);
	cr_expect_not_null(strstr(text, "privilege   sys-ptrace      yes"), "%s",
			   text);
	free(text);
}

/* What a user who runs --check sees: why, and what to do, yet exit 0. */
Test(kfeatures, an_unprivileged_user_is_told_how_to_fix_it)
{
	struct kfeatures kf = enough();
	struct kaccess a = {
		.uid = 65534,
		.io_uring_disabled = 0,
		.io_uring_group = -1,
		.unprivileged_uffd = 0,
		.yama_ptrace_scope = -1,
		.dev_uffd = 0,
	};
	bool missing;
	char *text;

	kf.uffd_open_err = -EPERM;
	text = check_output(&kf, &a, &missing);
	cr_expect(!missing, "%s", text);
	cr_expect_not_null(strstr(text, "privilege   sys-ptrace      no"), "%s",
			   text);
	cr_expect_not_null(strstr(text, "client      userfaultfd     no"), "%s",
			   text);
	cr_expect_not_null(strstr(text, "fix: privileges: "), "%s", text);
	cr_expect_not_null(strstr(text, "serve only clients of uid 65534"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "run hmmud as root, or give it "
				  "CAP_SYS_PTRACE and CAP_DAC_OVERRIDE"),
			   "%s", text);
	cr_expect_not_null(strstr(text, "set sysctl "
				  "vm.unprivileged_userfaultfd=1"), "%s", text);
	cr_expect_not_null(strstr(text, "read-write access to /dev/userfaultfd"),
			   "%s", text);
	free(text);
}

Test(kfeatures, yama_scope_is_named_where_it_matters)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();
	bool missing;
	char *text;

	a.cap_sys_ptrace = false;
	a.yama_ptrace_scope = 1;
	text = check_output(&kf, &a, &missing);
	cr_expect_not_null(strstr(text, "kernel.yama.ptrace_scope=1"), "%s", text);
	free(text);
	a = privileged();
	a.yama_ptrace_scope = 3;
	text = check_output(&kf, &a, &missing);
	cr_expect_not_null(strstr(text, "kernel.yama.ptrace_scope=3"), "%s", text);
	free(text);
}

/* The startup line names the fix too (check_kernel() in daemon/main.c). */
Test(kfeatures, missing_required_feature_is_printed_with_its_fix)
{
	struct kfeatures kf = enough();
	struct kaccess a = privileged();
	bool missing;
	char *text;

	kf.pidfd_err = -ENOSYS;
	text = check_output(&kf, &a, &missing);
	cr_expect(missing);
	cr_expect_not_null(strstr(text, "fix: pidfd pidfd-open: upgrade to Linux "
				  "5.3 or newer"), "%s", text);
	cr_expect_not_null(strstr(text, "hmmud cannot run here"), "%s", text);
	free(text);
}
