/* Per-topic allow lists: the first matching rule of the action decides,
 * by uid or gid; unmatched topics are open; bad rules are refused. */
#include <string.h>

#include "acl.h"
#include "unit.h"

START_TEST(test_first_match_decides)
{
	static struct hsd_acl a;
	memset(&a, 0, sizeof(a));
	uint32_t alice = 1000, bob = 1001, video = 44;
	ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, "camera/*", &alice, 1, &video, 1), 0);
	ck_assert_int_eq(hsd_acl_add(&a, ACL_SUBSCRIBE, "camera/raw", &alice, 1, NULL, 0), 0);
	ck_assert_int_eq(hsd_acl_add(&a, ACL_SUBSCRIBE, "camera/*", &bob, 1, NULL, 0), 0);
	ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, "locked", NULL, 0, NULL, 0), 0);

	ck_assert(hsd_acl_allows(&a, ACL_PUBLISH, "camera/left", alice, 1));
	ck_assert(hsd_acl_allows(&a, ACL_PUBLISH, "camera/left", 7, video)); /* by gid */
	ck_assert(!hsd_acl_allows(&a, ACL_PUBLISH, "camera/left", bob, 1));
	ck_assert(hsd_acl_allows(&a, ACL_PUBLISH, "camera/a/b", alice, 1)); /* '*' crosses '/' */
	/* the first subscribe rule that matches decides, not any later one */
	ck_assert(hsd_acl_allows(&a, ACL_SUBSCRIBE, "camera/raw", alice, 1));
	ck_assert(!hsd_acl_allows(&a, ACL_SUBSCRIBE, "camera/raw", bob, 1));
	ck_assert(hsd_acl_allows(&a, ACL_SUBSCRIBE, "camera/left", bob, 1));
	ck_assert(!hsd_acl_allows(&a, ACL_SUBSCRIBE, "camera/left", alice, 1));
	/* a rule with no ids shuts the topic */
	ck_assert(!hsd_acl_allows(&a, ACL_PUBLISH, "locked", 0, 0));
	ck_assert(hsd_acl_allows(&a, ACL_SUBSCRIBE, "locked", 0, 0)); /* other action */
	/* no rule matches: open */
	ck_assert(hsd_acl_allows(&a, ACL_PUBLISH, "other", bob, 1));
	ck_assert(hsd_acl_allows(&a, ACL_SUBSCRIBE, "other", bob, 1));
}
END_TEST

START_TEST(test_bad_rules)
{
	static struct hsd_acl a;
	memset(&a, 0, sizeof(a));
	char long_glob[300];
	memset(long_glob, 'x', sizeof(long_glob) - 1);
	long_glob[sizeof(long_glob) - 1] = '\0';
	ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, "", NULL, 0, NULL, 0), -1);
	ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, long_glob, NULL, 0, NULL, 0), -1);
	uint32_t ids[ACL_MAX_IDS + 1] = { 0 };
	ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, "t", ids, ACL_MAX_IDS + 1, NULL, 0), -1);
	for (int i = 0; i < ACL_MAX_RULES; i++)
		ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, "t", ids, 1, NULL, 0), 0);
	ck_assert_int_eq(hsd_acl_add(&a, ACL_PUBLISH, "t", ids, 1, NULL, 0), -1);
	ck_assert_uint_eq(a.n, ACL_MAX_RULES);
}
END_TEST

static Suite *acl_suite(void)
{
	Suite *s = suite_create("acl");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_first_match_decides);
	tcase_add_test(tc, test_bad_rules);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(acl_suite)
