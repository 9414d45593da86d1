/* hsbridge's wire and allow-list, driven directly: every message round
 * trips, and every malformed one (each byte cut off, each field out of
 * range, trailing bytes) is refused with a reason. */
#include <arpa/inet.h>
#include <string.h>

#include "../unit/unit.h"
#include "hsb.h"

void hsb_log(const char *fmt, ...)
{
}

static struct hsb_meta meta(void)
{
	struct hsb_meta m = { .seq = 7, .nbytes = 96, .byte_offset = 0,
			      .dtype = { kDLFloat, 32, 1 }, .device = { kDLCPU, 0 },
			      .ndim = 2, .has_strides = true, .shape = { 4, 6 }, .strides = { 6, 1 } };
	strcpy(m.topic, "cam/left:0");
	return m;
}

START_TEST(meta_round_trip)
{
	uint8_t buf[HSB_HEADER_MAX];
	struct hsb_meta m = meta(), out;
	const char *why;
	int n = hsb_wire_put_meta(&m, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(hsb_wire_get_meta(buf, (size_t)n, &out, &why), 0);
	ck_assert_uint_eq(out.seq, 7);
	ck_assert_uint_eq(out.nbytes, 96);
	ck_assert_int_eq(out.ndim, 2);
	ck_assert(out.has_strides);
	ck_assert_int_eq(out.shape[1], 6);
	ck_assert_int_eq(out.strides[0], 6);
	ck_assert_str_eq(out.topic, "cam/left:0");
	ck_assert_int_eq(out.dtype.code, kDLFloat);
	uint64_t e;
	ck_assert_int_eq(hsb_wire_elem_bytes(&out, &e), 0);
	ck_assert_uint_eq(e, 96);
	/* every truncation and a trailing byte are refused */
	for (int cut = 0; cut < n; cut++)
		ck_assert_int_eq(hsb_wire_get_meta(buf, (size_t)cut, &out, &why), HS_EPROTO);
	buf[n] = 0;
	ck_assert_int_eq(hsb_wire_get_meta(buf, (size_t)n + 1, &out, &why), HS_EPROTO);
	ck_assert_str_eq(why, "trailing bytes");
}
END_TEST

static int put_bad(struct hsb_meta m, uint8_t *buf, const char **why)
{
	struct hsb_meta out;
	int n = hsb_wire_put_meta(&m, buf, HSB_HEADER_MAX);
	ck_assert_int_gt(n, 0);
	return hsb_wire_get_meta(buf, (size_t)n, &out, why);
}

START_TEST(meta_bad_fields)
{
	uint8_t buf[HSB_HEADER_MAX];
	const char *why;
	struct hsb_meta m = meta();
	m.shape[0] = -1;
	ck_assert_int_eq(put_bad(m, buf, &why), HS_EPROTO);
	ck_assert_str_eq(why, "negative dimension");
	m = meta();
	m.device.device_type = kDLVulkan;
	ck_assert_int_eq(put_bad(m, buf, &why), HS_EPROTO);
	m = meta();
	m.dtype.bits = 0;
	ck_assert_int_eq(put_bad(m, buf, &why), HS_EPROTO);
	/* magic, version, flags, ndim, the strides flag, the topic's bytes */
	int n = hsb_wire_put_meta(&(struct hsb_meta){ 0 }, buf, sizeof(buf));
	ck_assert_int_lt(n, 0); /* an empty topic is not written either */
	struct hsb_meta out;
	m = meta();
	n = hsb_wire_put_meta(&m, buf, sizeof(buf));
	size_t at[] = { 0, 4, 6, 8 + 8 + 8 + 8 + 4 + 8, 8 + 8 + 8 + 8 + 4 + 8 + 1 };
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		uint8_t save = buf[at[i]];
		buf[at[i]] = 0xee;
		ck_assert_int_eq(hsb_wire_get_meta(buf, (size_t)n, &out, &why), HS_EPROTO);
		buf[at[i]] = save;
	}
	buf[n - 1] = ' '; /* a byte no topic holds */
	ck_assert_int_eq(hsb_wire_get_meta(buf, (size_t)n, &out, &why), HS_EPROTO);
	ck_assert_str_eq(why, "bad topic");
	m = meta();
	m.ndim = 3;
	m.shape[0] = m.shape[1] = m.shape[2] = INT64_C(1) << 40;
	uint64_t e;
	ck_assert_int_eq(hsb_wire_elem_bytes(&m, &e), HS_EOVERFLOW);
}
END_TEST

START_TEST(hello_credit_ping)
{
	uint8_t buf[HSB_HEADER_MAX * 20];
	struct hsb_hello h = { .window = 4, .nglobs = 2 }, out;
	strcpy(h.globs[0], "cam/*");
	strcpy(h.globs[1], "imu/[ab]?");
	const char *why;
	int n = hsb_wire_put_hello(&h, buf, sizeof(buf));
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(hsb_wire_get_hello(buf, (size_t)n, &out, &why), 0);
	ck_assert_uint_eq(out.window, 4);
	ck_assert_str_eq(out.globs[1], "imu/[ab]?");
	for (int cut = 0; cut < n; cut++)
		ck_assert_int_eq(hsb_wire_get_hello(buf, (size_t)cut, &out, &why), HS_EPROTO);
	h.window = 0;
	n = hsb_wire_put_hello(&h, buf, sizeof(buf));
	ck_assert_int_eq(hsb_wire_get_hello(buf, (size_t)n, &out, &why), HS_EPROTO);

	char topic[HS_MAX_TOPIC + 1];
	uint32_t count;
	n = hsb_wire_put_credit("cam/0", 3, buf, sizeof(buf));
	ck_assert_int_eq(hsb_wire_get_credit(buf, (size_t)n, topic, &count, &why), 0);
	ck_assert_uint_eq(count, 3);
	ck_assert_str_eq(topic, "cam/0");
	for (int cut = 0; cut < n; cut++)
		ck_assert_int_eq(hsb_wire_get_credit(buf, (size_t)cut, topic, &count, &why), HS_EPROTO);
	n = hsb_wire_put_credit("cam/0", 0, buf, sizeof(buf));
	ck_assert_int_eq(hsb_wire_get_credit(buf, (size_t)n, topic, &count, &why), HS_EPROTO);
	ck_assert_int_lt(hsb_wire_put_credit("cam/*", 1, buf, sizeof(buf)), 0);

	n = hsb_wire_put_ping(buf, sizeof(buf));
	ck_assert_int_eq(hsb_wire_get_ping(buf, (size_t)n, &why), 0);
	ck_assert_int_eq(hsb_wire_get_ping(buf, (size_t)n + 1, &why), HS_EPROTO);
	ck_assert_int_eq(hsb_wire_get_ping(buf, (size_t)n - 1, &why), HS_EPROTO);
	buf[4] = 2; /* a version this bridge does not speak */
	ck_assert_int_eq(hsb_wire_get_ping(buf, (size_t)n, &why), HS_EPROTO);
	ck_assert_str_eq(why, "unknown version");
}
END_TEST

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss = { 0 };
	struct sockaddr_in *s = (struct sockaddr_in *)&ss;
	s->sin_family = AF_INET;
	inet_pton(AF_INET, ip, &s->sin_addr);
	return ss;
}

START_TEST(allow_list)
{
	struct hsb_allow a = { 0 };
	struct sockaddr_storage x = v4("10.231.0.2");
	ck_assert(hsb_allow_check(&a, &x)); /* empty: everyone */
	ck_assert_int_eq(hsb_allow_add(&a, "10.231.0.0/30"), 0);
	ck_assert_int_eq(hsb_allow_add(&a, "fd00::/8"), 0);
	ck_assert_int_eq(hsb_allow_add(&a, "10.0.0.1/33"), HS_EINVAL);
	ck_assert_int_eq(hsb_allow_add(&a, "host.example"), HS_EINVAL);
	ck_assert_int_eq(hsb_allow_add(&a, "10.0.0.1/"), HS_EINVAL);
	ck_assert(hsb_allow_check(&a, &x));
	x = v4("10.231.0.4");
	ck_assert(!hsb_allow_check(&a, &x));
	/* an IPv4 peer seen on an IPv6 listener */
	struct sockaddr_storage m = { 0 };
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&m;
	s6->sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:10.231.0.3", &s6->sin6_addr);
	ck_assert(hsb_allow_check(&a, &m));
	inet_pton(AF_INET6, "fd12::1", &s6->sin6_addr);
	ck_assert(hsb_allow_check(&a, &m));
	inet_pton(AF_INET6, "fe80::1", &s6->sin6_addr);
	ck_assert(!hsb_allow_check(&a, &m));

	socklen_t len;
	char buf[80];
	ck_assert_int_eq(hsb_addr_parse("[::1]:80", &m, &len), 0);
	hsb_addr_format(&m, buf, sizeof(buf));
	ck_assert_str_eq(buf, "[::1]:80");
	ck_assert_int_eq(hsb_addr_parse("127.0.0.1:13337", &m, &len), 0);
	hsb_addr_format(&m, buf, sizeof(buf));
	ck_assert_str_eq(buf, "127.0.0.1:13337");
	ck_assert_int_eq(hsb_addr_parse("127.0.0.1", &m, &len), HS_EINVAL);
	ck_assert_int_eq(hsb_addr_parse("127.0.0.1:70000", &m, &len), HS_EINVAL);
	ck_assert_int_eq(hsb_addr_parse("example.org:80", &m, &len), HS_EINVAL);
}
END_TEST

static Suite *bridge_suite(void)
{
	Suite *s = suite_create("bridge-wire");
	TCase *tc = tcase_create("wire");
	tcase_add_test(tc, meta_round_trip);
	tcase_add_test(tc, meta_bad_fields);
	tcase_add_test(tc, hello_credit_ping);
	tcase_add_test(tc, allow_list);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(bridge_suite)
