/* The slab sub-allocator: alignment, reuse, exhaustion, fragmentation and
 * coalescing, largest free block. */
#include <stdbool.h>
#include <stdint.h>

#include "hsbroker/error.h"
#include "range.h"
#include "unit.h"

START_TEST(test_new_bad_size)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(0, &r), HS_EINVAL);
	ck_assert_int_eq(hsd_range_new(1000, &r), HS_EINVAL);
	ck_assert_int_eq(hsd_range_new(4096, &r), 0);
	ck_assert_uint_eq(hsd_range_size(r), 4096);
	ck_assert_uint_eq(hsd_range_free_bytes(r), 4096);
	ck_assert_uint_eq(hsd_range_largest_free(r), 4096);
	hsd_range_free(r);
}
END_TEST

START_TEST(test_alignment)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(1 << 20, &r), 0);
	uint64_t sizes[] = { 1, 7, 255, 256, 257, 1000, 0, 4097, 3 };
	uint64_t prev_end = 0;
	for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint64_t off;
		ck_assert_int_eq(hsd_range_alloc(r, sizes[i], &off), 0);
		ck_assert_uint_eq(off % RANGE_ALIGN, 0);
		ck_assert_uint_ge(off, prev_end); /* no overlap */
		prev_end = off + hsd_range_round(sizes[i]);
	}
	ck_assert_uint_eq(hsd_range_round(0), 256);
	ck_assert_uint_eq(hsd_range_round(1), 256);
	ck_assert_uint_eq(hsd_range_round(256), 256);
	ck_assert_uint_eq(hsd_range_round(257), 512);
	ck_assert_uint_eq(hsd_range_round(UINT64_MAX), 0);
	hsd_range_free(r);
}
END_TEST

START_TEST(test_reuse)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(64 * 1024, &r), 0);
	uint64_t a, b, c;
	ck_assert_int_eq(hsd_range_alloc(r, 1000, &a), 0);
	ck_assert_int_eq(hsd_range_alloc(r, 1000, &b), 0);
	ck_assert_int_eq(hsd_range_release(r, a, 1000), 0);
	ck_assert_int_eq(hsd_range_alloc(r, 900, &c), 0);
	ck_assert_uint_eq(c, a); /* best fit takes the hole a left */
	ck_assert_int_eq(hsd_range_release(r, b, 1000), 0);
	ck_assert_int_eq(hsd_range_release(r, c, 900), 0);
	ck_assert_uint_eq(hsd_range_used(r), 0);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 1);
	hsd_range_free(r);
}
END_TEST

START_TEST(test_exhaustion)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(4096, &r), 0);
	uint64_t off[16];
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(hsd_range_alloc(r, 256, &off[i]), 0);
	uint64_t x;
	ck_assert_int_eq(hsd_range_alloc(r, 1, &x), HS_ENOSPC);
	ck_assert_uint_eq(hsd_range_free_bytes(r), 0);
	ck_assert_uint_eq(hsd_range_largest_free(r), 0);
	ck_assert_int_eq(hsd_range_alloc(r, UINT64_MAX, &x), HS_ENOSPC);
	ck_assert_int_eq(hsd_range_release(r, off[3], 256), 0);
	ck_assert_int_eq(hsd_range_alloc(r, 512, &x), HS_ENOSPC); /* only 256 free */
	ck_assert_int_eq(hsd_range_alloc(r, 200, &x), 0);
	ck_assert_uint_eq(x, off[3]);
	hsd_range_free(r);
}
END_TEST

START_TEST(test_fragmentation_coalescing)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(8 * 256, &r), 0);
	uint64_t off[8];
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(hsd_range_alloc(r, 256, &off[i]), 0);
	/* Free every other block: 1 KiB free, but no 512-byte hole. */
	for (int i = 0; i < 8; i += 2)
		ck_assert_int_eq(hsd_range_release(r, off[i], 256), 0);
	ck_assert_uint_eq(hsd_range_free_bytes(r), 1024);
	ck_assert_uint_eq(hsd_range_largest_free(r), 256);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 4);
	uint64_t x;
	ck_assert_int_eq(hsd_range_alloc(r, 512, &x), HS_ENOSPC);
	/* Freeing block 1 joins 0, 1, 2 into one 768-byte block. */
	ck_assert_int_eq(hsd_range_release(r, off[1], 256), 0);
	ck_assert_uint_eq(hsd_range_largest_free(r), 768);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 3);
	/* Then 5 joins 4, 5, 6; then 3 joins everything up to 6; 7 is last. */
	ck_assert_int_eq(hsd_range_release(r, off[5], 256), 0);
	ck_assert_int_eq(hsd_range_release(r, off[3], 256), 0);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 1);
	ck_assert_uint_eq(hsd_range_largest_free(r), 7 * 256);
	ck_assert_int_eq(hsd_range_release(r, off[7], 256), 0);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 1);
	ck_assert_uint_eq(hsd_range_largest_free(r), 8 * 256);
	ck_assert_int_eq(hsd_range_alloc(r, 8 * 256, &x), 0);
	ck_assert_uint_eq(x, 0);
	hsd_range_free(r);
}
END_TEST

START_TEST(test_best_fit)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(16 * 256, &r), 0);
	uint64_t a, b, c, d, e;
	ck_assert_int_eq(hsd_range_alloc(r, 4 * 256, &a), 0); /* hole of 4 */
	ck_assert_int_eq(hsd_range_alloc(r, 256, &b), 0);
	ck_assert_int_eq(hsd_range_alloc(r, 2 * 256, &c), 0); /* hole of 2 */
	ck_assert_int_eq(hsd_range_alloc(r, 256, &d), 0);
	ck_assert_int_eq(hsd_range_release(r, a, 4 * 256), 0);
	ck_assert_int_eq(hsd_range_release(r, c, 2 * 256), 0);
	ck_assert_uint_eq(hsd_range_best_fit(r, 300), 2 * 256);
	ck_assert_int_eq(hsd_range_alloc(r, 300, &e), 0);
	ck_assert_uint_eq(e, c); /* the smaller hole, not the first one */
	ck_assert_uint_eq(hsd_range_largest_free(r), 8 * 256); /* the tail */
	(void)b;
	(void)d;
	hsd_range_free(r);
}
END_TEST

START_TEST(test_bad_release)
{
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(4096, &r), 0);
	uint64_t a;
	ck_assert_int_eq(hsd_range_alloc(r, 512, &a), 0);
	ck_assert_int_eq(hsd_range_release(r, a + 1, 256), HS_EINVAL); /* unaligned */
	ck_assert_int_eq(hsd_range_release(r, 4096, 256), HS_EINVAL); /* outside */
	ck_assert_int_eq(hsd_range_release(r, 1024, 256), HS_EINVAL); /* already free */
	ck_assert_int_eq(hsd_range_release(r, a, 512), 0);
	ck_assert_int_eq(hsd_range_release(r, a, 512), HS_EINVAL);   /* double */
	ck_assert_uint_eq(hsd_range_used(r), 0);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 1);
	hsd_range_free(r);
}
END_TEST

START_TEST(test_many_random)
{
	/* Random alloc/free against a shadow list: never overlapping, all
	 * aligned, and everything comes back together at the end. */
	struct hsd_range *r;
	ck_assert_int_eq(hsd_range_new(1 << 20, &r), 0);
	enum { N = 512 };
	uint64_t off[N], len[N];
	int live[N] = { 0 };
	bool ok = true; /* one assertion at the end: each ck_assert costs a pipe write under CK_FORK */
	srandom(1234);
	for (int step = 0; step < 20000; step++) {
		int i = (int)(random() % N);
		if (live[i]) {
			ok &= hsd_range_release(r, off[i], len[i]) == 0;
			live[i] = 0;
		} else {
			len[i] = (uint64_t)(random() % 8192);
			if (hsd_range_alloc(r, len[i], &off[i]) == 0) {
				live[i] = 1;
				ok &= off[i] % 256 == 0;
				for (int j = 0; j < N; j++) {
					if (j == i || !live[j])
						continue;
					ok &= off[i] + hsd_range_round(len[i]) <= off[j] ||
					      off[j] + hsd_range_round(len[j]) <= off[i];
				}
			}
		}
	}
	ck_assert(ok);
	for (int i = 0; i < N; i++)
		if (live[i])
			ck_assert_int_eq(hsd_range_release(r, off[i], len[i]), 0);
	ck_assert_uint_eq(hsd_range_used(r), 0);
	ck_assert_uint_eq(hsd_range_free_blocks(r), 1);
	ck_assert_uint_eq(hsd_range_largest_free(r), 1 << 20);
	hsd_range_free(r);
}
END_TEST

static Suite *range_suite(void)
{
	Suite *s = suite_create("range");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_new_bad_size);
	tcase_add_test(tc, test_alignment);
	tcase_add_test(tc, test_reuse);
	tcase_add_test(tc, test_exhaustion);
	tcase_add_test(tc, test_fragmentation_coalescing);
	tcase_add_test(tc, test_best_fit);
	tcase_add_test(tc, test_bad_release);
	tcase_add_test(tc, test_many_random);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(range_suite)
