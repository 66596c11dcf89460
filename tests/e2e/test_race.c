/* SPDX-License-Identifier: MIT */
/*
 * Rule 3 and rule 4 under load: many threads of one process register and
 * unregister different mirrors in random interleavings, on one connection
 * and on several, some of them with device pages mapped so that teardown has
 * userfaultfd ranges to remove while fresh state is being built. Afterwards
 * the counts must be exactly what a serial execution would give, and the
 * daemon must hold no more fds than before.
 */
#include "harness.h"
#include "helpers.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(race, .init = daemon_start, .fini = daemon_stop, .timeout = 300);

#define THREADS 8
#define ROUNDS 1000

struct worker {
	struct hmmu *h;
	int index;
	unsigned seed;
	char *mem; /* pages this thread's device reads now and then */
	int errors;
	int leave_registered;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct hmmu_mirror *m;
	char *buf = malloc(2 * page_size());

	if (hmmu_mirror_create(w->h, w->index % 2 ? "dmirror1" : "dmirror0",
			       &m)) {
		w->errors++;
		free(buf);
		return NULL;
	}
	for (int round = 0; round < ROUNDS; round++) {
		unsigned r = rand_r(&w->seed);

		if (hmmu_mirror_register(m) != 0)
			w->errors++;
		if (r % 4 == 0 && hmmu_mirror_register(m) != -EBUSY)
			w->errors++;
		if (r % 8 == 1) {
			struct hmmu_cmd c = { .addr = (uintptr_t)w->mem,
					      .npages = 2 };

			if (hmmu_device_read(m, &c, buf) != 0 ||
			    memcmp(buf, w->mem, 2 * page_size()) != 0)
				w->errors++;
		}
		if (r % 16 == 2)
			usleep(r % 200);
		if (hmmu_mirror_unregister(m) != 0)
			w->errors++;
		if (r % 4 == 3 && hmmu_mirror_unregister(m) != -EINVAL)
			w->errors++;
	}
	if (w->leave_registered && hmmu_mirror_register(m) != 0)
		w->errors++;
	free(buf);
	return NULL;
}

static void run_threads(struct hmmu **conns, int nconns, int leave_odd)
{
	pthread_t threads[THREADS];
	struct worker w[THREADS];
	char *mem = map_rw(THREADS * 2);

	/* The refusals each round provokes on purpose. */
	expect_daemon_log("%s", strerror(EBUSY));
	expect_daemon_log("not registered");
	for (size_t i = 0; i < THREADS * 2 * page_size(); i++)
		mem[i] = (char)(i * 7);

	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){
			.h = conns[i % nconns],
			.index = i,
			.seed = 1234u + (unsigned)i,
			.mem = mem + i * 2 * page_size(),
			.leave_registered = leave_odd && (i % 2),
		};
		cr_assert_eq(pthread_create(&threads[i], NULL, worker_main,
					    &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(threads[i], NULL);
		cr_expect_eq(w[i].errors, 0, "thread %d: %d unexpected results",
			     i, w[i].errors);
	}
}

Test(race, register_unregister_of_different_mirrors_from_8_threads)
{
	struct fixture f = fixture_open(NULL);
	int fds_before = count_fds(daemon_under_test.pid);
	struct hmmu_stats st;

	run_threads(&f.h, 1, 0);
	st = stats_of(f.h);
	cr_expect_eq(st.mirrors, 0);
	cr_expect_eq(st.processes, 0);
	cr_expect_eq(st.my_state, 0);
	cr_expect_eq(st.device_pages, 0);
	cr_expect_not(smaps_has_uffd_flags());
	cr_expect_eq(count_fds(daemon_under_test.pid), fds_before,
		     "the daemon leaked fds");
	fixture_close(&f);
}

Test(race, racing_threads_on_many_connections_end_in_serial_state)
{
	struct hmmu *conns[4];
	struct fixture f[4];
	struct hmmu_stats st;

	for (int i = 0; i < 4; i++) {
		f[i] = fixture_open(NULL);
		conns[i] = f[i].h;
	}
	/* Odd threads end registered: 4 mirrors, one process state. */
	run_threads(conns, 4, 1);
	st = stats_of(conns[0]);
	cr_expect_eq(st.mirrors, THREADS / 2);
	cr_expect_eq(st.my_mirrors, THREADS / 2);
	cr_expect_eq(st.processes, 1);
	cr_expect_eq(st.my_state, 1);
	for (int i = 0; i < 4; i++)
		fixture_close(&f[i]);
}
