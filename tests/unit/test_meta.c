/* DLPack metadata checks (proto/meta.c): every bad field rejected with its
 * own code, good cases accepted with the right extent; topic names. */
#include <stdint.h>
#include <stdio.h>
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
	/* empty with a huge other dimension: accepted while the non-zero
	 * dimensions' bytes fit int64 (as NumPy asks), refused past it */
	const DLDataType u8 = { kDLUInt, 8, 1 };
	ck_assert_int_eq(extent(cpu, u8, 2, (int64_t[]){ 0, INT64_MAX }, NULL, 0, &need), 0);
	ck_assert_uint_eq(need, 0);
	ck_assert_int_eq(extent(cpu, f32, 2, (int64_t[]){ 0, INT64_MAX }, NULL, 0, &need),
			 HS_EOVERFLOW);
	ck_assert_int_eq(extent(cpu, f32, 3, (int64_t[]){ 1ll << 40, 1ll << 40, 0 }, NULL, 0, &need),
			 HS_EOVERFLOW);
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

/* ---- the extent against an exact reference ----
 *
 * A 320-bit unsigned integer, enough for every quantity the extent ever
 * forms (32 dimensions of spans below 2^127 each, times 1024-byte
 * elements, plus a 64-bit byte_offset: below 2^143), so the reference
 * never wraps and needs no overflow reasoning of its own. The element
 * count is the one product that could grow past it (32 dimensions of
 * 2^63); it is compared with 2^63 - 1 after every factor, and it only grows
 * (every dimension is >= 1 by then). */
#define BIG_WORDS 5
struct big {
	uint64_t w[BIG_WORDS];
};

static struct big big_u64(uint64_t v)
{
	struct big b = { { v } };
	return b;
}

static struct big big_add(struct big a, struct big b)
{
	unsigned __int128 carry = 0;
	for (int i = 0; i < BIG_WORDS; i++) {
		carry += (unsigned __int128)a.w[i] + b.w[i];
		a.w[i] = (uint64_t)carry;
		carry >>= 64;
	}
	ck_assert(!carry);
	return a;
}

static struct big big_mul(struct big a, uint64_t m)
{
	unsigned __int128 carry = 0;
	for (int i = 0; i < BIG_WORDS; i++) {
		carry += (unsigned __int128)a.w[i] * m;
		a.w[i] = (uint64_t)carry;
		carry >>= 64;
	}
	ck_assert(!carry);
	return a;
}

static int big_cmp(struct big a, struct big b)
{
	for (int i = BIG_WORDS - 1; i >= 0; i--)
		if (a.w[i] != b.w[i])
			return a.w[i] < b.w[i] ? -1 : 1;
	return 0;
}

static bool big_fits(struct big a)
{
	for (int i = 1; i < BIG_WORDS; i++)
		if (a.w[i])
			return false;
	return true;
}

/* What hs__meta_extent promises (proto/wire.h), computed exactly. */
static int extent_ref(DLDevice dev, DLDataType dt, int32_t ndim, const int64_t *shape,
		      const int64_t *strides, uint64_t off, uint64_t *need)
{
	if (!((dev.device_type == kDLCPU && dev.device_id == 0) ||
	      (dev.device_type == kDLCUDA && dev.device_id >= 0 && dev.device_id < 1024)))
		return HS_EINVAL;
	uint64_t esize = hs__dtype_size(dt);
	if (!esize)
		return HS_EDTYPE;
	if (ndim < 0 || ndim > HS__MAX_NDIM)
		return HS_ENDIM;
	for (int32_t i = 0; i < ndim; i++)
		if (shape[i] < 0)
			return HS_ESHAPE;
	/* The count of the non-zero dimensions, and its bytes, within int64
	 * (an empty tensor too). */
	struct big count = big_u64(1);
	bool empty = false;
	for (int32_t i = 0; i < ndim; i++) {
		if (shape[i] == 0) {
			empty = true;
			continue;
		}
		count = big_mul(count, (uint64_t)shape[i]);
		if (big_cmp(count, big_u64(INT64_MAX)) > 0)
			return HS_EOVERFLOW;
	}
	if (big_cmp(big_mul(count, esize), big_u64(INT64_MAX)) > 0)
		return HS_EOVERFLOW;
	if (empty) {
		*need = off;
		return 0;
	}
	struct big hi = big_u64(0), lo = big_u64(0);
	if (!strides) {
		hi = big_u64(count.w[0] - 1);
	} else {
		for (int32_t i = 0; i < ndim; i++) {
			/* (shape - 1) * |stride|, the magnitude taken in 128 bits */
			__int128 st = strides[i];
			unsigned __int128 mag = (unsigned __int128)(st < 0 ? -st : st);
			struct big span = big_mul(big_u64((uint64_t)mag), (uint64_t)shape[i] - 1);
			if (st < 0)
				lo = big_add(lo, span);
			else
				hi = big_add(hi, span);
		}
	}
	if (big_cmp(big_mul(lo, esize), big_u64(off)) > 0)
		return HS_ERANGE;
	struct big end = big_add(big_mul(big_add(hi, big_u64(1)), esize), big_u64(off));
	if (!big_fits(end))
		return HS_EOVERFLOW;
	*need = end.w[0];
	return 0;
}

/* xorshift64*: the same sequence every run, so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

/* Values where arithmetic goes wrong: 0, +-1, powers of two and their
 * neighbours, the ends of int64, and the ones from issue 11's report. */
static int64_t edge_i64(void)
{
	switch (rnd() % 9) {
	case 0:
		return (int64_t)(rnd() % 5) - 2;
	case 1: {
		int sh = (int)(rnd() % 63);
		return (int64_t)((1ull << sh) + (uint64_t)(rnd() % 3) - 1);
	}
	case 2:
		return -(int64_t)(1ull << (rnd() % 63));
	case 3:
		return (rnd() & 1) ? INT64_MAX - (int64_t)(rnd() % 3) : INT64_MIN + (int64_t)(rnd() % 3);
	case 4: {
		static const int64_t issue[] = { (1ll << 40), (1ll << 20) * ((1ll << 39) - 1) + 1,
						 (1ll << 20) * ((1ll << 39) + 1), 2 };
		return issue[rnd() % 4];
	}
	case 5:
		return (int64_t)(rnd() % 1000);
	case 6:
		return (int64_t)(rnd() >> (rnd() % 64)) * ((rnd() & 1) ? 1 : -1);
	case 7:
		return (int64_t)(rnd() % 70000) - 1000;
	default:
		return (int64_t)rnd();
	}
}

static DLDataType random_dtype(void)
{
	static const DLDataType good[] = {
		{ kDLInt, 8, 1 },     { kDLUInt, 16, 1 },  { kDLFloat, 32, 1 },
		{ kDLFloat, 64, 1 },  { kDLBfloat, 16, 1 }, { kDLComplex, 128, 1 },
		{ kDLComplex, 64, 1 }, { kDLUInt, 64, 1 },
	};
	DLDataType dt = good[rnd() % (sizeof(good) / sizeof(good[0]))];
	switch (rnd() % 4) {
	case 0:
		dt.lanes = (uint16_t)(1 + rnd() % 64);
		break;
	case 1:
		dt.lanes = (rnd() & 1) ? 64 : 65; /* the widest, and one past */
		break;
	case 2:
		if (rnd() % 8 == 0)
			dt.bits = (uint8_t)rnd(); /* mostly invalid */
		break;
	default:
		break;
	}
	return dt;
}

static uint64_t random_offset(void)
{
	switch (rnd() % 5) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX - rnd() % 4096;
	case 2:
		return 1ull << (rnd() % 64);
	case 3:
		return rnd() % 100000;
	default:
		return rnd();
	}
}

START_TEST(test_extent_matches_reference)
{
	/* Mostly small ndim (where edge values meet each other), now and
	 * then the widest. */
	enum { ROUNDS = 400000 };
	uint64_t agree_ok = 0;
	int64_t shape[HS__MAX_NDIM + 1], strides[HS__MAX_NDIM + 1];
	for (int round = 0; round < ROUNDS; round++) {
		int32_t ndim = rnd() % 16 ? (int32_t)(rnd() % 5) : (int32_t)(rnd() % (HS__MAX_NDIM + 2));
		for (int32_t i = 0; i < ndim; i++) {
			/* shapes: mostly positive, some edge */
			shape[i] = rnd() % 4 ? (int64_t)(rnd() % 5 + 1) : edge_i64();
			/* most negative ones made positive (INT64_MIN has no
			 * positive twin) */
			if (rnd() % 3 == 0 && shape[i] < 0)
				shape[i] = shape[i] == INT64_MIN ? 1 : -shape[i];
			strides[i] = edge_i64();
		}
		DLDataType dt = random_dtype();
		DLDevice dev = rnd() % 50 ? cpu : (DLDevice){ kDLCUDA, (int32_t)(rnd() % 2000) - 10 };
		uint64_t off = random_offset();
		const int64_t *st = rnd() % 4 ? strides : NULL;
		uint64_t need = 0xdead, want = 0xbeef;
		int got = extent(dev, dt, ndim, shape, st, off, &need);
		int ref = extent_ref(dev, dt, ndim, shape, st, off, &want);
		if (got != ref || (got == 0 && need != want)) {
			char text[2048];
			int n = snprintf(text, sizeof(text), "round %d: ndim %d dtype %u/%u/%u off %llu:",
					 round, ndim, dt.code, dt.bits, dt.lanes, (unsigned long long)off);
			for (int32_t i = 0; i < ndim && n < 1800; i++)
				n += snprintf(text + n, sizeof(text) - (size_t)n, " [%lld %lld]",
					      (long long)shape[i], st ? (long long)strides[i] : 0ll);
			ck_abort_msg("%s: got %d need %llu, reference %d need %llu", text, got,
				     (unsigned long long)need, ref, (unsigned long long)want);
		}
		agree_ok += got == 0;
	}
	/* The sample must reach every outcome, not just the errors. */
	ck_assert_uint_gt(agree_ok, ROUNDS / 20);
}
END_TEST

START_TEST(test_extent_issue11_wrap)
{
	/* Issue 11 row 2: (2^20 (2^39 - 1)) * 2^20 (2^39 + 1) = 2^40 (2^78 - 1);
	 * plus 2^40 from the first dimension, times 1024-byte elements, is
	 * 2^128 exactly, which wrapped to a tiny extent in 128-bit math. */
	uint64_t need = 0;
	DLDataType c128x64 = { kDLComplex, 128, 64 };
	int64_t shape[] = { 2, (1ll << 20) * ((1ll << 39) - 1) + 1 };
	int64_t strides[] = { 1ll << 40, (1ll << 20) * ((1ll << 39) + 1) };
	ck_assert_int_eq(extent(cpu, c128x64, 2, shape, strides, 0, &need), HS_EOVERFLOW);
	/* its reflection, and the same reach with few elements: the count
	 * of bytes spanned alone no longer hides it */
	int64_t neg[] = { -(1ll << 40), -((1ll << 20) * ((1ll << 39) + 1)) };
	ck_assert_int_eq(extent(cpu, c128x64, 2, shape, neg, UINT64_MAX, &need), HS_EOVERFLOW);
	int64_t few[] = { 2, 3 };
	int64_t far[] = { 1ll << 40, ((1ll << 20) * ((1ll << 39) + 1)) };
	ck_assert_int_eq(extent(cpu, c128x64, 2, few, far, 0, &need), HS_EOVERFLOW);
	int64_t back[] = { -(1ll << 40), -((1ll << 20) * ((1ll << 39) + 1)) };
	ck_assert_int_eq(extent(cpu, c128x64, 2, few, back, UINT64_MAX, &need), HS_ERANGE);
	/* spans that each fit but whose sum does not */
	int64_t big2[] = { INT64_MAX, INT64_MAX };
	int64_t wide[] = { 3, 3 };
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLUInt, 8, 1 }, 2, wide, big2, 0, &need),
			 HS_EOVERFLOW);
	/* INT64_MIN stride: its magnitude is 2^63 */
	int64_t two[] = { 2 };
	int64_t minst[] = { INT64_MIN };
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLUInt, 8, 1 }, 1, two, minst, 1ull << 63, &need), 0);
	ck_assert_uint_eq(need, (1ull << 63) + 1);
	ck_assert_int_eq(extent(cpu, (DLDataType){ kDLUInt, 8, 1 }, 1, two, minst, (1ull << 63) - 1, &need),
			 HS_ERANGE);
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
	tcase_add_test(tc, test_extent_matches_reference);
	tcase_add_test(tc, test_extent_issue11_wrap);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(meta_suite)
