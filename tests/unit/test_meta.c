/* DLPack metadata checks (proto/meta.c): every bad field rejected with its
 * own code, good cases accepted with the right extent; topic names. */
#include <stdint.h>
#include <string.h>

#include "hsbroker/error.h"
#include "unit.h"
#include "wire.h"

static const DLDevice cpu = { kDLCPU, 0 };
static const DLDataType f32 = { kDLFloat, 32, 1 };

static int extent(DLDevice dev, DLDataType dt, int32_t ndim, const int64_t *shape,
		  const int64_t *strides, uint64_t off, uint64_t *need)
{
	return hs__meta_extent(dev, dt, ndim, shape, strides, off, need);
}

START_TEST(test_good_compact)
{
	uint64_t need;
	int64_t shape[] = { 2, 3, 4 };
	ck_assert_int_eq(extent(cpu, f32, 3, shape, NULL, 0, &need), 0);
	ck_assert_uint_eq(need, 2 * 3 * 4 * 4);
	int64_t strides[] = { 12, 4, 1 };
	ck_assert_int_eq(extent(cpu, f32, 3, shape, strides, 0, &need), 0);
	ck_assert_uint_eq(need, 96);
	/* scalar */
	ck_assert_int_eq(extent(cpu, f32, 0, NULL, NULL, 0, &need), 0);
	ck_assert_uint_eq(need, 4);
	/* byte offset adds */
	ck_assert_int_eq(extent(cpu, f32, 3, shape, NULL, 64, &need), 0);
	ck_assert_uint_eq(need, 96 + 64);
	/* lanes */
	DLDataType f32x4 = { kDLFloat, 32, 4 };
	ck_assert_int_eq(extent(cpu, f32x4, 1, (int64_t[]){ 10 }, NULL, 0, &need), 0);
	ck_assert_uint_eq(need, 160);
	/* cuda device */
	ck_assert_int_eq(extent((DLDevice){ kDLCUDA, 3 }, f32, 1, (int64_t[]){ 1 }, NULL, 0, &need), 0);
}
END_TEST

START_TEST(test_good_strides)
{
	uint64_t need;
	/* transposed view of 3x4: strides 1, 3 */
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 4, 3 }, (int64_t[]){ 1, 4 }, 0, &need), 0);
	ck_assert_uint_eq(need, ((4 - 1) * 1 + (3 - 1) * 4 + 1) * 4);
	/* zero stride (broadcast) */
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 1000, 8 }, (int64_t[]){ 0, 1 }, 0, &need), 0);
	ck_assert_uint_eq(need, 8 * 4);
	/* strides wider than compact reach further: the extent says how far,
	 * and the daemon compares it with the block */
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 2, 2 }, (int64_t[]){ 100, 1 }, 0, &need), 0);
	ck_assert_uint_eq(need, (100 + 1 + 1) * 4);
	/* negative stride with a byte offset that keeps it inside */
	ck_assert_int_eq(extent(cpu, f32, 1, (int64_t[]){ 10 }, (int64_t[]){ -1 }, 36, &need), 0);
	ck_assert_uint_eq(need, 40);
}
END_TEST

START_TEST(test_good_empty)
{
	uint64_t need = 1;
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 0, 5 }, NULL, 0, &need), 0);
	ck_assert_uint_eq(need, 0);
	/* strides of an empty tensor do not matter */
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 5, 0 }, (int64_t[]){ -100, INT64_MAX }, 0, &need), 0);
	ck_assert_uint_eq(need, 0);
	/* empty with a huge other dimension: no overflow */
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 0, INT64_MAX }, NULL, 0, &need), 0);
}
END_TEST

START_TEST(test_bad_dtype)
{
	uint64_t need;
	int64_t shape[] = { 4 };
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLFloat, 7, 1 }, 1, shape, NULL, 0, &need), HS_EDTYPE);
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLFloat, 8, 1 }, 1, shape, NULL, 0, &need), HS_EDTYPE);
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLInt, 0, 1 }, 1, shape, NULL, 0, &need), HS_EDTYPE);
	ck_assert_int_eq(extent(cpu, (DLDataType){ 99, 32, 1 }, 1, shape, NULL, 0, &need), HS_EDTYPE);
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLFloat, 32, 0 }, 1, shape, NULL, 0, &need), HS_EDTYPE);
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLBfloat, 32, 1 }, 1, shape, NULL, 0, &need), HS_EDTYPE);
	ck_assert_uint_eq(hs__dtype_size((DLDataType){ kDLComplex, 128, 1 }), 16);
	ck_assert_uint_eq(hs__dtype_size((DLDataType){ kDLUInt, 3, 1 }), 0);
}
END_TEST

START_TEST(test_bad_ndim)
{
	uint64_t need;
	int64_t shape[40];
	for (int i = 0; i < 40; i++)
		shape[i] = 1;
	ck_assert_int_eq(extent(cpu, f32, 33, shape, NULL, 0, &need), HS_ENDIM);
	ck_assert_int_eq(extent(cpu, f32, -1, shape, NULL, 0, &need), HS_ENDIM);
	ck_assert_int_eq(extent(cpu, f32, 32, shape, NULL, 0, &need), 0);
}
END_TEST

START_TEST(test_bad_shape)
{
	uint64_t need;
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 3, -1 }, NULL, 0, &need), HS_ESHAPE);
	ck_assert_int_eq(extent(cpu, f32, 1, (int64_t[]){ INT64_MIN }, NULL, 0, &need), HS_ESHAPE);
}
END_TEST

START_TEST(test_overflow)
{
	uint64_t need;
	/* element count overflows */
	ck_assert_int_eq(extent(cpu, f32, 3, (int64_t[]){ 1ll << 30, 1ll << 30, 1ll << 30 }, NULL, 0, &need),
			 HS_EOVERFLOW);
	/* bytes overflow (count fits, times 8 does not) */
	DLDataType f64 = { kDLFloat, 64, 1 };
	ck_assert_int_eq(extent(cpu, f64, 1, (int64_t[]){ INT64_MAX }, NULL, 0, &need), HS_EOVERFLOW);
	/* huge stride */
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 2, 2 }, (int64_t[]){ INT64_MAX, 1 }, 0, &need),
			 HS_EOVERFLOW);
	/* byte offset pushes it over */
	ck_assert_int_eq(extent(cpu, f32, 1, (int64_t[]){ 4 }, NULL, UINT64_MAX - 4, &need), HS_EOVERFLOW);
}
END_TEST

START_TEST(test_strides_out_of_range)
{
	uint64_t need;
	/* negative stride reaching below the block start */
	ck_assert_int_eq(extent(cpu, f32, 1, (int64_t[]){ 10 }, (int64_t[]){ -1 }, 0, &need), HS_ERANGE);
	ck_assert_int_eq(extent(cpu, f32, 1, (int64_t[]){ 10 }, (int64_t[]){ -1 }, 32, &need), HS_ERANGE);
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 2, 3 }, (int64_t[]){ 3, INT64_MIN / 4 }, 0, &need),
			 HS_ERANGE);
}
END_TEST

START_TEST(test_bad_device)
{
	uint64_t need;
	int64_t shape[] = { 4 };
	ck_assert_int_eq(extent((DLDevice){ kDLCPU, 1 }, f32, 1, shape, NULL, 0, &need), HS_EINVAL);
	ck_assert_int_eq(extent((DLDevice){ kDLCUDA, -1 }, f32, 1, shape, NULL, 0, &need), HS_EINVAL);
	ck_assert_int_eq(extent((DLDevice){ (DLDeviceType)77, 0 }, f32, 1, shape, NULL, 0, &need), HS_EINVAL);
}
END_TEST

START_TEST(test_pb)
{
	Hs__Device dev = HS__DEVICE__INIT;
	Hs__DType dt = HS__DTYPE__INIT;
	Hs__Meta m = HS__META__INIT;
	uint64_t need;
	ck_assert_int_eq(hs__meta_extent_pb(NULL, &need), HS_EINVAL);
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), HS_EINVAL); /* no device/dtype */
	dev.type = kDLCPU;
	dt.code = kDLUInt;
	dt.bits = 8;
	dt.lanes = 1;
	m.device = &dev;
	m.dtype = &dt;
	int64_t shape[] = { 4, 5 };
	int64_t strides[] = { 5, 1, 1 };
	m.n_shape = 2;
	m.shape = shape;
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), 0);
	ck_assert_uint_eq(need, 20);
	m.n_strides = 3; /* must match ndim */
	m.strides = strides;
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), HS_EINVAL);
	m.n_strides = 2;
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), 0);
	dt.bits = 256 + 8; /* would truncate to 8 */
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), HS_EDTYPE);
	dt.bits = 8;
	dt.lanes = 65536 + 1;
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), HS_EDTYPE);
	dt.lanes = 1;
	m.n_shape = 33;
	ck_assert_int_eq(hs__meta_extent_pb(&m, &need), HS_ENDIM);
}
END_TEST

START_TEST(test_topic_names)
{
	ck_assert_int_eq(hs__topic_check("cam/0:raw-frames_v1.2"), 0);
	ck_assert_int_eq(hs__topic_check(""), HS_ETOPIC);
	ck_assert_int_eq(hs__topic_check(NULL), HS_ETOPIC);
	ck_assert_int_eq(hs__topic_check("a b"), HS_ETOPIC);
	ck_assert_int_eq(hs__topic_check("a\nb"), HS_ETOPIC);
	ck_assert_int_eq(hs__topic_check("caf\xc3\xa9"), HS_ETOPIC);
	char name[300];
	memset(name, 'a', sizeof(name));
	name[255] = '\0';
	ck_assert_int_eq(hs__topic_check(name), 0);
	name[255] = 'a';
	name[256] = '\0';
	ck_assert_int_eq(hs__topic_check(name), HS_ENAMETOOLONG);
}
END_TEST

static Suite *meta_suite(void)
{
	Suite *s = suite_create("meta");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_good_compact);
	tcase_add_test(tc, test_good_strides);
	tcase_add_test(tc, test_good_empty);
	tcase_add_test(tc, test_bad_dtype);
	tcase_add_test(tc, test_bad_ndim);
	tcase_add_test(tc, test_bad_shape);
	tcase_add_test(tc, test_overflow);
	tcase_add_test(tc, test_strides_out_of_range);
	tcase_add_test(tc, test_bad_device);
	tcase_add_test(tc, test_pb);
	tcase_add_test(tc, test_topic_names);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(meta_suite)
