/* Check glue shared by the integration test programs: the begin/end steps
 * every test takes (daemon up, fds counted; then broker idle, daemon
 * stopped cleanly with its socket removed, no fd leaked) and main(). */
#ifndef HS_TEST_ITEST_H
#define HS_TEST_ITEST_H

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

/* Every integration test case gets this long before Check kills it; the
 * harness' own deadlines are shorter so a failure says where it stuck. */
#define HT_CASE_TIMEOUT_S 600

#define HT_BEGIN(d, extra)                                                     \
	ht_init();                                                             \
	const int ht_fds_at_start_ = ht_count_fds();                           \
	ck_assert_int_eq(ht_daemon_start((d), (extra)), 0)

/* HT_BEGIN with a configuration file holding text (its log kept in a
 * file, the socket reachable by other uids: ht_daemon_start_config). */
#define HT_BEGIN_CONFIG(d, text)                                               \
	ht_init();                                                             \
	const int ht_fds_at_start_ = ht_count_fds();                           \
	char ht_log_[300];                                                     \
	ck_assert_int_eq(ht_daemon_start_config((d), (text), ht_log_, sizeof(ht_log_)), 0)

/* Stops the daemon: it must exit 0 (clean shutdown) and remove its
 * socket. */
#define HT_STOP(d)                                                             \
	do {                                                                   \
		ck_assert_int_eq(ht_daemon_stop(d), 0);                        \
		ck_assert_msg(access((d)->sock, F_OK) < 0 && errno == ENOENT,  \
			      "hsbrokerd left its socket %s behind", (d)->sock); \
	} while (0)

#define HT_END(d)                                                              \
	do {                                                                   \
		ck_assert_msg(ht_daemon_alive(d), "hsbrokerd died");           \
		ck_assert_int_eq(ht_wait_idle((d)->sock, HT_DEADLINE_MS), 0);  \
		HT_STOP(d);                                                    \
		ck_assert_int_eq(ht_count_fds(), ht_fds_at_start_);            \
	} while (0)

/* Runs the suite (CK_RUN_CASE / CK_RUN_SUITE select, as Check documents);
 * every case forks (CK_FORK), so one crash fails one test. */
static inline int ht_main(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_set_fork_status(sr, CK_FORK);
	srunner_run_all(sr, CK_ENV);
	int failed = srunner_ntests_failed(sr);
	int run = srunner_ntests_run(sr);
	srunner_free(sr);
	if (run == 0) {
		/* a typo in CK_RUN_CASE must not pass as a skip */
		fprintf(stderr, "no test case ran (CK_RUN_CASE=%s)\n",
			getenv("CK_RUN_CASE") ? getenv("CK_RUN_CASE") : "");
		return EXIT_FAILURE;
	}
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static inline TCase *ht_case(Suite *s, const char *name, const TTest *fn)
{
	TCase *tc = tcase_create(name);
	tcase_set_timeout(tc, HT_CASE_TIMEOUT_S);
	tcase_add_unchecked_fixture(tc, ht_run_setup, ht_run_teardown);
	tcase_add_test(tc, fn);
	suite_add_tcase(s, tc);
	return tc;
}

#endif
