/* Framing over a real SOCK_SEQPACKET socketpair: round trip with fds,
 * truncation, oversize, too many fds (none leaked), undecodable bytes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"
#include "wire.h"

static int sp[2];

static void setup(void)
{
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp), 0);
	int big = 1 << 20;
	setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	setsockopt(sp[1], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
}

static void teardown(void)
{
	close(sp[0]);
	close(sp[1]);
}

static uint8_t buf[HS__WIRE_MAX_MSG];

START_TEST(test_roundtrip_fds)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	Hs__EmitReq e = HS__EMIT_REQ__INIT;
	e.tensor_id = 0x100000007ull;
	e.topic = "cam/0";
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 42;
	m.body_case = HS__MESSAGE__BODY_EMIT;
	m.emit = &e;
	ck_assert_int_eq(hs__wire_send(sp[0], &m, p, 2), 0);
	close(p[0]);
	close(p[1]);

	int fds[HS__WIRE_MAX_FDS], nfds = -1;
	int n = hs__wire_recv(sp[1], buf, fds, &nfds);
	ck_assert_int_gt(n, 0);
	ck_assert_int_eq(nfds, 2);
	Hs__Message *got;
	ck_assert_int_eq(hs__wire_decode(buf, (size_t)n, &got), 0);
	ck_assert_uint_eq(got->seq, 42);
	ck_assert_int_eq(got->body_case, HS__MESSAGE__BODY_EMIT);
	ck_assert_uint_eq(got->emit->tensor_id, 0x100000007ull);
	ck_assert_str_eq(got->emit->topic, "cam/0");
	ck_assert_str_eq(hs__wire_body_name(got), "emit");
	hs__wire_free(got);
	/* The fds are the pipe: write on one, read on the other. */
	ck_assert_int_eq(write(fds[1], "x", 1), 1);
	char c;
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	ck_assert_int_eq(c, 'x');
	hs__wire_close_fds(fds, nfds);

	ck_assert_int_eq(hs__wire_recv(sp[1], buf, fds, &nfds), -EAGAIN);
	close(sp[0]);
	sp[0] = socket(AF_UNIX, SOCK_SEQPACKET, 0); /* keep teardown happy */
	ck_assert_int_eq(hs__wire_recv(sp[1], buf, fds, &nfds), -EPIPE);
}
END_TEST

START_TEST(test_truncated)
{
	size_t len = HS__WIRE_MAX_MSG + 1000;
	uint8_t *big = calloc(1, len);
	ck_assert_ptr_nonnull(big);
	ck_assert_int_eq(send(sp[0], big, len, 0), (ssize_t)len);
	free(big);
	int fds[HS__WIRE_MAX_FDS], nfds = -1;
	ck_assert_int_eq(hs__wire_recv(sp[1], buf, fds, &nfds), -EMSGSIZE);
	ck_assert_int_eq(nfds, 0);
}
END_TEST

START_TEST(test_oversized_send)
{
	size_t len = HS__WIRE_MAX_MSG + 1;
	char *text = malloc(len + 1);
	ck_assert_ptr_nonnull(text);
	memset(text, 'a', len);
	text[len] = '\0';
	Hs__ErrorReply er = HS__ERROR_REPLY__INIT;
	er.message = text;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ERROR;
	m.error = &er;
	ck_assert_int_eq(hs__wire_send(sp[0], &m, NULL, 0), -EMSGSIZE);
	free(text);
	int fds[HS__WIRE_MAX_FDS], nfds;
	ck_assert_int_eq(hs__wire_recv(sp[1], buf, fds, &nfds), -EAGAIN); /* nothing sent */
}
END_TEST

START_TEST(test_too_many_fds)
{
	int before = unit_count_fds();
	int fds_out[HS__WIRE_MAX_FDS + 2];
	for (int i = 0; i < HS__WIRE_MAX_FDS + 2; i++) {
		fds_out[i] = dup(0);
		ck_assert_int_ge(fds_out[i], 0);
	}
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 1;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	/* The sender refuses too many itself... */
	ck_assert_int_eq(hs__wire_send(sp[0], &m, fds_out, HS__WIRE_MAX_FDS + 1), -EINVAL);

	/* ...so send them raw, as a hostile peer would. */
	uint8_t body[16];
	size_t blen = hs__message__pack(&m, body);
	struct iovec iov = { body, blen };
	union {
		char b[CMSG_SPACE(sizeof(int) * (HS__WIRE_MAX_FDS + 2))];
		struct cmsghdr align;
	} ctl;
	memset(&ctl, 0, sizeof(ctl));
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			     .msg_controllen = sizeof(ctl.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (HS__WIRE_MAX_FDS + 2));
	memcpy(CMSG_DATA(c), fds_out, sizeof(int) * (HS__WIRE_MAX_FDS + 2));
	ck_assert_int_eq(sendmsg(sp[0], &mh, 0), (ssize_t)blen);
	for (int i = 0; i < HS__WIRE_MAX_FDS + 2; i++)
		close(fds_out[i]);

	int fds[HS__WIRE_MAX_FDS], nfds = -1;
	ck_assert_int_eq(hs__wire_recv(sp[1], buf, fds, &nfds), -EPROTO);
	ck_assert_int_eq(nfds, 0);
	ck_assert_int_eq(unit_count_fds(), before);
}
END_TEST

START_TEST(test_garbage)
{
	Hs__Message *m;
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99 };
	ck_assert_int_eq(hs__wire_decode(junk, sizeof(junk), &m), -EPROTO);
	/* a length-delimited field claiming more bytes than there are */
	static const uint8_t short_len[] = { 0x52, 0x7f, 0x01 };
	ck_assert_int_eq(hs__wire_decode(short_len, sizeof(short_len), &m), -EPROTO);
}
END_TEST

START_TEST(test_empty_body)
{
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 7;
	uint8_t b[32];
	size_t n = hs__message__pack(&m, b);
	Hs__Message *got;
	ck_assert_int_eq(hs__wire_decode(b, n, &got), -EPROTO);
	/* and a zero-length datagram decodes to no body either */
	ck_assert_int_eq(hs__wire_decode(b, 0, &got), -EPROTO);
}
END_TEST

static Suite *wire_suite(void)
{
	Suite *s = suite_create("wire");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_roundtrip_fds);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_oversized_send);
	tcase_add_test(tc, test_too_many_fds);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_empty_body);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(wire_suite)
