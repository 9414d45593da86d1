/* hsctl's formatting: what people read in every table. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsctl.h"

START_TEST(t_dtype)
{
	char b[32];
	ck_assert_str_eq(fmt_dtype((DLDataType){ kDLFloat, 32, 1 }, b, sizeof(b)), "float32");
	ck_assert_str_eq(fmt_dtype((DLDataType){ kDLUInt, 8, 1 }, b, sizeof(b)), "uint8");
	ck_assert_str_eq(fmt_dtype((DLDataType){ kDLInt, 64, 1 }, b, sizeof(b)), "int64");
	ck_assert_str_eq(fmt_dtype((DLDataType){ kDLBfloat, 16, 1 }, b, sizeof(b)), "bfloat16");
	ck_assert_str_eq(fmt_dtype((DLDataType){ kDLComplex, 64, 1 }, b, sizeof(b)), "complex64");
	ck_assert_str_eq(fmt_dtype((DLDataType){ 6, 8, 1 }, b, sizeof(b)), "bool");
	ck_assert_str_eq(fmt_dtype((DLDataType){ kDLFloat, 16, 4 }, b, sizeof(b)), "float16x4");
	ck_assert_str_eq(fmt_dtype((DLDataType){ 99, 8, 1 }, b, sizeof(b)), "99:8");
}
END_TEST

START_TEST(t_shape_bytes_device_age)
{
	char b[64];
	const int64_t s[3] = { 2, 3, 4 };
	ck_assert_str_eq(fmt_shape(3, s, b, sizeof(b)), "2x3x4");
	ck_assert_str_eq(fmt_shape(0, NULL, b, sizeof(b)), "scalar");
	ck_assert_str_eq(fmt_bytes(0, b, sizeof(b)), "0 B");
	ck_assert_str_eq(fmt_bytes(1023, b, sizeof(b)), "1023 B");
	ck_assert_str_eq(fmt_bytes(4096, b, sizeof(b)), "4.0 KiB");
	ck_assert_str_eq(fmt_bytes(64ull << 20, b, sizeof(b)), "64.0 MiB");
	ck_assert_str_eq(fmt_bytes(3ull << 30, b, sizeof(b)), "3.0 GiB");
	ck_assert_str_eq(fmt_device((DLDevice){ kDLCPU, 0 }, b, sizeof(b)), "cpu");
	ck_assert_str_eq(fmt_device((DLDevice){ kDLCUDA, 1 }, b, sizeof(b)), "cuda:1");
	ck_assert_str_eq(fmt_age(850, b, sizeof(b)), "850us");
	ck_assert_str_eq(fmt_age(80000, b, sizeof(b)), "80ms");
	ck_assert_str_eq(fmt_age(1200000, b, sizeof(b)), "1.2s");
	ck_assert_str_eq(fmt_age(184000000, b, sizeof(b)), "3m04s");
	ck_assert_str_eq(fmt_age(7500ull * 1000000, b, sizeof(b)), "2h05m");
	ck_assert_str_eq(fmt_policy(HS_POLICY_DROP_OLDEST), "drop-oldest");
	char small[4];
	fmt_shape(3, s, small, sizeof(small)); /* cut, never overrun */
	ck_assert_int_lt(strlen(small), sizeof(small));
}
END_TEST

START_TEST(t_table)
{
	static const char *const hdr[] = { "A", "NUM" };
	static const bool right[] = { false, true };
	struct table *t = table_new(2, hdr, right);
	ck_assert_ptr_nonnull(t);
	ck_assert(table_row(t, (const char *const[]){ "long-name", "7" }));
	ck_assert(table_row(t, (const char *const[]){ "x", "1234" }));

	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	ck_assert_ptr_nonnull(f);
	fflush(stdout);
	FILE *old = stdout; /* table_print writes to stdout */
	stdout = f;
	table_print(t);
	stdout = old;
	fclose(f);
	ck_assert_str_eq(out, "A           NUM\n"
			      "long-name     7\n"
			      "x          1234\n");
	free(out);
	table_free(t);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hsctl-format");
	TCase *tc = tcase_create("format");
	tcase_add_test(tc, t_dtype);
	tcase_add_test(tc, t_shape_bytes_device_age);
	tcase_add_test(tc, t_table);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
