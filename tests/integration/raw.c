/* Raw-socket helpers for tests that speak the protocol without
 * libhsclient (misbehaving clients): messages are built and read with the
 * generated protocol code (proto/wire.h). They run in the test process and
 * assert with Check. */
#include "raw.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <check.h>

#include "harness.h"
#include "hsbroker/client.h"
#include "hsbroker/error.h"

int rw_connect(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(path), sizeof(addr.sun_path));
	memcpy(addr.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	return fd;
}

/* Sends raw bytes with nfds copies of fd (may be 0) in one datagram. */
int rw_send(int sock, const void *buf, size_t len, int fd, int nfds)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	union {
		char b[CMSG_SPACE(sizeof(int) * 16)];
		struct cmsghdr align;
	} ctl;
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		ck_assert_int_le(nfds, 16);
		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		for (int i = 0; i < nfds; i++)
			memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
	}
	ssize_t n = sendmsg(sock, &mh, MSG_NOSIGNAL);
	return n == (ssize_t)len ? 0 : -errno;
}

size_t rw_pack(const Hs__Message *m, uint8_t *buf, size_t size)
{
	size_t len = hs__message__get_packed_size(m);
	ck_assert_uint_le(len, size);
	return hs__message__pack(m, buf);
}

int rw_send_msg(int sock, Hs__Message *m, int fd, int nfds)
{
	static uint8_t buf[HS__WIRE_MAX_MSG];
	size_t len = rw_pack(m, buf, sizeof(buf));
	return rw_send(sock, buf, len, fd, nfds);
}

int rw_hello(int sock, uint32_t version)
{
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = version;
	h.client_name = (char *)"it-raw";
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 1;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	return rw_send_msg(sock, &m, -1, 0);
}

int rw_ping(int sock, uint64_t seq, int fd, int nfds)
{
	Hs__PingReq p = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &p;
	return rw_send_msg(sock, &m, fd, nfds);
}

/* The next message that is not a push, or NULL with *err: -EPIPE when
 * the daemon closed the connection, -ETIMEDOUT at the deadline. */
Hs__Message *rw_recv(int sock, int *err)
{
	static uint8_t buf[HS__WIRE_MAX_MSG];
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		int left = (int)(end - ht_now_ms());
		struct pollfd p = { .fd = sock, .events = POLLIN };
		int r = left > 0 ? poll(&p, 1, left) : 0;
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			*err = -ETIMEDOUT;
			return NULL;
		}
		int fds[HS__WIRE_MAX_FDS], nfds = 0;
		int n = hs__wire_recv(sock, buf, fds, &nfds);
		hs__wire_close_fds(fds, nfds); /* slab fds: not ours to keep */
		if (n == -EAGAIN)
			continue;
		if (n < 0) {
			*err = n == -ECONNRESET ? -EPIPE : n;
			return NULL;
		}
		Hs__Message *m;
		*err = hs__wire_decode(buf, (size_t)n, &m);
		ck_assert_msg(*err == 0, "the daemon sent an undecodable message");
		if (m->seq == 0 && (m->body_case == HS__MESSAGE__BODY_SLAB ||
				    m->body_case == HS__MESSAGE__BODY_DELIVER)) {
			hs__wire_free(m);
			continue;
		}
		return m;
	}
}

void rw_expect_hello_reply(int sock)
{
	int err;
	Hs__Message *m = rw_recv(sock, &err);
	ck_assert_msg(m, "no HelloReply: %s", strerror(-err));
	ck_assert_int_eq(m->body_case, HS__MESSAGE__BODY_HELLO_REPLY);
	ck_assert_uint_eq(m->seq, 1);
	ck_assert_uint_eq(m->hello_reply->protocol_version, HS_PROTOCOL_VERSION);
	hs__wire_free(m);
}

bool rw_code_in(int code, const int *allowed)
{
	for (; *allowed; allowed++)
		if (code == *allowed)
			return true;
	return false;
}

/* The daemon must end this connection: any ErrorReply on the way must
 * carry one of the allowed codes; require_error demands one. */
void rw_expect_disconnect(int sock, const int *allowed, bool require_error)
{
	bool saw_error = false;
	for (;;) {
		int err;
		Hs__Message *m = rw_recv(sock, &err);
		if (!m) {
			ck_assert_msg(err == -EPIPE, "the daemon kept the connection open (%s)", strerror(-err));
			break;
		}
		ck_assert_msg(m->body_case == HS__MESSAGE__BODY_ERROR,
			      "expected an ErrorReply or a hang-up, got %s", hs__wire_body_name(m));
		ck_assert_msg(rw_code_in(m->error->code, allowed), "ErrorReply %s (%d): %s",
			      hs__err_name(m->error->code), m->error->code, m->error->message ?: "");
		saw_error = true;
		hs__wire_free(m);
	}
	ck_assert_msg(saw_error || !require_error, "no ErrorReply before the hang-up");
	close(sock);
}

/* The reply to seq must be an ErrorReply with an allowed code (the
 * session goes on). */
void rw_expect_error(int sock, uint64_t seq, const int *allowed)
{
	int err;
	Hs__Message *m = rw_recv(sock, &err);
	ck_assert_msg(m, "no ErrorReply: %s", strerror(-err));
	ck_assert_msg(m->body_case == HS__MESSAGE__BODY_ERROR, "expected an ErrorReply, got %s",
		      hs__wire_body_name(m));
	ck_assert_uint_eq(m->seq, seq);
	ck_assert_msg(rw_code_in(m->error->code, allowed), "ErrorReply %s (%d): %s",
		      hs__err_name(m->error->code), m->error->code, m->error->message ?: "");
	hs__wire_free(m);
}

void rw_expect_ok(int sock, uint64_t seq)
{
	int err;
	Hs__Message *m = rw_recv(sock, &err);
	ck_assert_msg(m, "no reply: %s", strerror(-err));
	ck_assert_msg(m->body_case == HS__MESSAGE__BODY_OK, "expected OkReply, got %s (%s)",
		      hs__wire_body_name(m),
		      m->body_case == HS__MESSAGE__BODY_ERROR ? hs__err_name(m->error->code) : "");
	ck_assert_uint_eq(m->seq, seq);
	hs__wire_free(m);
}

