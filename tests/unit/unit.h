/* Shared by the unit tests: one Check suite per noun, each test forked
 * (CK_FORK) so a crash fails one test, not the run. */
#ifndef HS_TESTS_UNIT_H
#define HS_TESTS_UNIT_H

#include <check.h>
#include <dirent.h>
#include <stdlib.h>

/* Open fds of this process, for leak checks. */
static inline int unit_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the DIR's own fd */
}

#define UNIT_MAIN(make_suite)                                          \
	int main(void)                                                 \
	{                                                              \
		SRunner *sr = srunner_create(make_suite());            \
		srunner_set_fork_status(sr, CK_FORK);                  \
		srunner_run_all(sr, CK_NORMAL);                        \
		int failed = srunner_ntests_failed(sr);                \
		srunner_free(sr);                                      \
		return failed ? EXIT_FAILURE : EXIT_SUCCESS;           \
	}

#endif
