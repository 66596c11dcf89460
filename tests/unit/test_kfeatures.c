/* SPDX-License-Identifier: MIT */
/*
 * The kernel-feature cache (common/kfeatures.h): probed once, printed with
 * a yes or no for every feature, and a missing required feature named
 * with the version that brought it. The decisions are checked on made-up
 * answers, so that they hold whatever kernel runs the test.
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

	cr_assert_not_null(f);
	missing = kfeatures_print(kfeatures(), f);
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
