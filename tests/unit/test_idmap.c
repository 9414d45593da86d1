/* The id map behind held references, announced slabs and the topic
 * index: random inserts and deletes against a shadow array, so backward
 * shift deletion never loses a key that probed past the hole. */
#include <stdbool.h>
#include <stdint.h>

#include "hsbroker/error.h"
#include "idmap.h"
#include "unit.h"

START_TEST(test_basic)
{
	struct hsd_idmap m;
	hsd_idmap_init(&m);
	ck_assert_ptr_null(hsd_idmap_get(&m, 5));
	ck_assert(!hsd_idmap_del(&m, 5));
	ck_assert_int_eq(hsd_idmap_put(&m, 0, 1), HS_EINVAL);
	ck_assert_int_eq(hsd_idmap_put(&m, 5, 50), 0);
	ck_assert_int_eq(hsd_idmap_put(&m, 5, 51), 0); /* replace */
	ck_assert_uint_eq(m.n, 1);
	ck_assert_uint_eq(*hsd_idmap_get(&m, 5), 51);
	ck_assert(hsd_idmap_del(&m, 5));
	ck_assert_ptr_null(hsd_idmap_get(&m, 5));
	ck_assert_uint_eq(m.n, 0);
	hsd_idmap_fini(&m);
}
END_TEST

START_TEST(test_random_shadow)
{
	enum { KEYS = 3000 };
	static uint64_t shadow[KEYS]; /* 0 = absent */
	struct hsd_idmap m;
	hsd_idmap_init(&m);
	srandom(99);
	bool ok = true; /* one assertion at the end: cheap under CK_FORK */
	for (int step = 0; step < 200000; step++) {
		int k = (int)(random() % KEYS);
		/* keys shaped like tensor ids: generation << 32 | slot */
		uint64_t key = ((uint64_t)(k % 7 + 1) << 32) | (uint64_t)k;
		if (random() % 3 == 0) {
			ok &= hsd_idmap_del(&m, key) == (shadow[k] != 0);
			shadow[k] = 0;
		} else {
			uint64_t v = (uint64_t)random() | 1;
			ok &= hsd_idmap_put(&m, key, v) == 0;
			shadow[k] = v;
		}
		if (step % 1000 == 0) {
			size_t n = 0;
			for (int i = 0; i < KEYS; i++) {
				uint64_t key2 = ((uint64_t)(i % 7 + 1) << 32) | (uint64_t)i;
				uint64_t *v = hsd_idmap_get(&m, key2);
				ok &= shadow[i] ? v && *v == shadow[i] : v == NULL;
				n += shadow[i] != 0;
			}
			ok &= n == m.n;
		}
	}
	ck_assert(ok);
	hsd_idmap_fini(&m);
}
END_TEST

static Suite *idmap_suite(void)
{
	Suite *s = suite_create("idmap");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_basic);
	tcase_add_test(tc, test_random_shadow);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(idmap_suite)
