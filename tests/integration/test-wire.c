/* Misbehaving clients on a raw socket (no libhsclient): garbage, a
 * truncated message, an oversized datagram, a wrong protocol version, a
 * request before Hello, fds nobody asked for, too many fds, releasing or
 * emitting a tensor it does not hold. Each gets an error or a disconnect,
 * while a well-behaved client, connected the whole time and holding a
 * tensor, keeps working and the daemon keeps running. Messages are built
 * and read with the generated protocol code (proto/wire.h). */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "itest.h"
#include "raw.h"
#include "roles.h"
#include "wire.h"

/* ---- the well-behaved client ---- */

struct good {
	const char *sock;
	struct ht_chan ready, go;
};

static int good_client(void *arg)
{
	struct good *g = arg;
	hs_client *c;
	/* It counts every tensor it holds: no spare allocations. */
	setenv("HSBROKER_SPARES", "0", 1);
	if (ht_connect(g->sock, "it-good", &c) < 0)
		return 1;
	char topic[64];
	snprintf(topic, sizeof(topic), "it/good.%d", (int)getpid());
	int rc = ht_round_trip(c, topic);
	if (rc < 0)
		return ht_child_fail("good", "round trip before: %s", hs_strerror(rc));
	/* A tensor the misbehaving client will try to release or steal. */
	hs_tensor *victim;
	rc = ht_tensor_make(c, 4242, HT_ELEMS, &victim);
	if (rc < 0)
		return ht_child_fail("good", "alloc: %s", hs_strerror(rc));
	ht_chan_send(&g->ready, 'R');
	if (ht_chan_recv(&g->go, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail("good", "no go signal");

	if (ht_tensor_check(victim, 4242, HT_ELEMS))
		return ht_child_fail("good", "the held tensor changed");
	/* Still ours in the daemon: it can be emitted and comes back. */
	hs_subscription *sub;
	rc = hs_subscribe(c, topic, NULL, &sub);
	if (rc < 0)
		return ht_child_fail("good", "subscribe: %s", hs_strerror(rc));
	rc = hs_tensor_emit(victim, topic, NULL, NULL);
	if (rc < 0)
		return ht_child_fail("good", "emit of the held tensor: %s", hs_strerror(rc));
	hs_tensor *back;
	rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &back);
	if (rc < 0)
		return ht_child_fail("good", "receive: %s", hs_strerror(rc));
	if (ht_tensor_check(back, 4242, HT_ELEMS))
		return ht_child_fail("good", "the held tensor came back changed");
	hs_tensor_release(back, NULL);
	hs_subscription_close(sub);
	rc = ht_round_trip(c, topic);
	if (rc < 0)
		return ht_child_fail("good", "round trip after: %s", hs_strerror(rc));
	rc = hs_client_ping(c);
	hs_client_disconnect(c);
	if (rc < 0)
		return ht_child_fail("good", "ping: %s", hs_strerror(rc));
	return 0;
}

/* Starts the daemon and the good client; the test body misbehaves. */
struct scene {
	struct ht_daemon d;
	struct good g;
	pid_t good_pid;
};

#define SCENE_BEGIN(s)                                                         \
	HT_BEGIN(&(s)->d, NULL);                                               \
	(s)->g.sock = (s)->d.sock;                                             \
	ht_chan_open(&(s)->g.ready);                                           \
	ht_chan_open(&(s)->g.go);                                              \
	(s)->good_pid = ht_fork(good_client, &(s)->g);                         \
	ck_assert_int_gt((s)->good_pid, 0);                                    \
	ck_assert_int_eq(ht_chan_recv(&(s)->g.ready, HT_DEADLINE_MS), 'R')

#define SCENE_END(s)                                                           \
	do {                                                                   \
		ck_assert_msg(ht_daemon_alive(&(s)->d), "hsbrokerd died");     \
		ck_assert_int_eq(ht_chan_send(&(s)->g.go, 'G'), 0);            \
		ck_assert_int_eq(ht_wait((s)->good_pid, HT_DEADLINE_MS), 0);   \
		ht_chan_close(&(s)->g.ready);                                  \
		ht_chan_close(&(s)->g.go);                                     \
		HT_END(&(s)->d);                                               \
	} while (0)

static const int proto_errors[] = { HS_EPROTO, HS_EMSGSIZE, HS_EVERSION, 0 };

/* ---- the cases ---- */

START_TEST(test_garbage)
{
	struct scene s;
	SCENE_BEGIN(&s);
	/* before Hello */
	int sock = rw_connect(s.d.sock);
	uint8_t junk[200];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0xff - i * 7);
	ck_assert_int_eq(rw_send(sock, junk, sizeof(junk), -1, 0), 0);
	rw_expect_disconnect(sock, proto_errors, false);
	/* after Hello */
	sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(sock);
	ck_assert_int_eq(rw_send(sock, junk, sizeof(junk), -1, 0), 0);
	rw_expect_disconnect(sock, proto_errors, false);
	/* an empty datagram is no message either */
	sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(sock);
	ck_assert_int_eq(rw_send(sock, "", 0, -1, 0), 0);
	/* (0 bytes reads as a hang-up on some kernels: either ends it) */
	rw_expect_disconnect(sock, proto_errors, false);
	SCENE_END(&s);
}
END_TEST

START_TEST(test_truncated)
{
	struct scene s;
	SCENE_BEGIN(&s);
	uint8_t buf[512];
	/* a Hello cut short */
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = HS_PROTOCOL_VERSION;
	h.client_name = (char *)"a-client-whose-hello-is-cut-short";
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 1;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	size_t len = rw_pack(&m, buf, sizeof(buf));
	int sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_send(sock, buf, len - 5, -1, 0), 0);
	rw_expect_disconnect(sock, proto_errors, false);

	/* an AllocReq cut short, after a good Hello */
	sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(sock);
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = kDLCPU;
	Hs__DType dt = HS__DTYPE__INIT;
	dt.code = kDLFloat;
	dt.bits = 32;
	dt.lanes = 1;
	int64_t shape[3] = { 4, 5, 6 };
	Hs__Meta meta = HS__META__INIT;
	meta.device = &dev;
	meta.dtype = &dt;
	meta.n_shape = 3;
	meta.shape = shape;
	Hs__AllocReq a = HS__ALLOC_REQ__INIT;
	a.meta = &meta;
	Hs__Message am = HS__MESSAGE__INIT;
	am.seq = 2;
	am.body_case = HS__MESSAGE__BODY_ALLOC;
	am.alloc = &a;
	len = rw_pack(&am, buf, sizeof(buf));
	ck_assert_int_eq(rw_send(sock, buf, len - 3, -1, 0), 0);
	rw_expect_disconnect(sock, proto_errors, false);
	SCENE_END(&s);
}
END_TEST

START_TEST(test_oversized)
{
	struct scene s;
	SCENE_BEGIN(&s);
	int sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(sock);
	/* A datagram as large as the kernel lets us send, well past the
	 * daemon's 256 KiB: 1 MiB where SO_SNDBUF(FORCE) allows it. */
	int want = 4 << 20;
	if (setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want)) < 0)
		setsockopt(sock, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
	static const size_t sizes[] = { 1 << 20, 512 << 10, 384 << 10, HS__WIRE_MAX_MSG + 4096 };
	static uint8_t big[1 << 20];
	memset(big, 'A', sizeof(big));
	size_t sent = 0;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]) && !sent; i++) {
		int rc = rw_send(sock, big, sizes[i], -1, 0);
		if (rc == 0)
			sent = sizes[i];
		else
			ck_assert_msg(rc == -EMSGSIZE || rc == -ENOBUFS, "send %zu: %s", sizes[i], strerror(-rc));
	}
	ck_assert_msg(sent > HS__WIRE_MAX_MSG, "could not send any datagram over %d bytes", HS__WIRE_MAX_MSG);
	fprintf(stderr, "sent a %zu-byte datagram\n", sent);
	rw_expect_disconnect(sock, proto_errors, false);
	SCENE_END(&s);
}
END_TEST

START_TEST(test_wrong_version)
{
	struct scene s;
	SCENE_BEGIN(&s);
	static const int version_error[] = { HS_EVERSION, 0 };
	int sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION + 998), 0);
	rw_expect_disconnect(sock, version_error, true);
	sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, 0), 0);
	rw_expect_disconnect(sock, version_error, true);
	SCENE_END(&s);
}
END_TEST

START_TEST(test_request_before_hello)
{
	struct scene s;
	SCENE_BEGIN(&s);
	static const int before_hello[] = { HS_EPROTO, HS_EVERSION, 0 };
	int sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_ping(sock, 1, -1, 0), 0);
	rw_expect_disconnect(sock, before_hello, true);

	/* a ListReq first would hand out the broker's state: refused too */
	sock = rw_connect(s.d.sock);
	Hs__ListReq l = HS__LIST_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 1;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &l;
	ck_assert_int_eq(rw_send_msg(sock, &m, -1, 0), 0);
	rw_expect_disconnect(sock, before_hello, true);

	SCENE_END(&s);
}
END_TEST

/* True once every copy of the pipe's write end is closed. */
static bool write_end_closed(int rd)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		struct pollfd p = { .fd = rd, .events = POLLIN };
		int left = (int)(end - ht_now_ms());
		int r = poll(&p, 1, left > 0 ? left : 0);
		if (r < 0 && errno == EINTR)
			continue;
		return r > 0 && (p.revents & POLLHUP);
	}
}

START_TEST(test_unasked_fds)
{
	struct scene s;
	SCENE_BEGIN(&s);
	int sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(sock);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	/* A Ping with an fd the daemon never asked for: it may answer or
	 * hang up, but it must not keep the fd. */
	ck_assert_int_eq(rw_ping(sock, 2, p[1], 1), 0);
	close(p[1]);
	int err;
	Hs__Message *m = rw_recv(sock, &err);
	bool open = m && m->body_case == HS__MESSAGE__BODY_OK;
	if (m) {
		ck_assert_msg(m->body_case == HS__MESSAGE__BODY_OK ||
			      (m->body_case == HS__MESSAGE__BODY_ERROR &&
			       rw_code_in(m->error->code, proto_errors)),
			      "unexpected reply %s", hs__wire_body_name(m));
		hs__wire_free(m);
	} else {
		ck_assert_int_eq(err, -EPIPE);
	}
	ck_assert_msg(write_end_closed(p[0]), "the daemon kept an fd it was sent with a Ping");
	close(p[0]);
	if (open) {
		/* the session goes on */
		ck_assert_int_eq(rw_ping(sock, 3, -1, 0), 0);
		rw_expect_ok(sock, 3);
		close(sock);
	} else {
		rw_expect_disconnect(sock, proto_errors, false);
	}
	SCENE_END(&s);
}
END_TEST

START_TEST(test_too_many_fds)
{
	struct scene s;
	SCENE_BEGIN(&s);
	int p[2];
	ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
	/* more than HS__WIRE_MAX_FDS, and more than a receiver's cmsg room */
	static const int counts[] = { HS__WIRE_MAX_FDS + 1, 16 };
	for (size_t i = 0; i < 2; i++) {
		int sock = rw_connect(s.d.sock);
		ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
		rw_expect_hello_reply(sock);
		ck_assert_int_eq(rw_ping(sock, 2, p[1], counts[i]), 0);
		rw_expect_disconnect(sock, proto_errors, false);
	}
	close(p[1]);
	ck_assert_msg(write_end_closed(p[0]), "the daemon kept fds from a message with too many");
	close(p[0]);
	SCENE_END(&s);
}
END_TEST

START_TEST(test_release_not_held)
{
	struct scene s;
	SCENE_BEGIN(&s);
	/* The good client's tensor, as hsctl shows it. */
	const char *args[] = { "ls", "tensors", NULL };
	json_t *j = ht_hsctl_json(s.d.sock, args);
	ck_assert_ptr_nonnull(j);
	json_t *tensors = json_object_get(j, "tensors");
	ck_assert_int_eq(json_array_size(tensors), 1);
	json_t *t0 = json_array_get(tensors, 0);
	ck_assert_int_eq(json_integer_value(json_object_get(t0, "owner_pid")), s.good_pid);
	uint64_t victim = (uint64_t)json_integer_value(json_object_get(t0, "id"));
	json_decref(j);

	int sock = rw_connect(s.d.sock);
	ck_assert_int_eq(rw_hello(sock, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(sock);
	static const int not_held[] = { HS_ENOENT, HS_ESTALE, HS_EPERM, 0 };

	/* ids nobody holds, and one someone else holds */
	uint64_t bogus[] = { 0x12345678ull, (7ull << 32) | 3, victim };
	for (size_t i = 0; i < 3; i++) {
		Hs__ReleaseNote r = HS__RELEASE_NOTE__INIT;
		r.n_tensor_ids = 1;
		r.tensor_ids = &bogus[i];
		Hs__Message m = HS__MESSAGE__INIT;
		m.seq = 10 + i;
		m.body_case = HS__MESSAGE__BODY_RELEASE;
		m.release = &r;
		ck_assert_int_eq(rw_send_msg(sock, &m, -1, 0), 0);
		rw_expect_error(sock, 10 + i, not_held);
	}
	/* emitting the other client's tensor is refused as well */
	Hs__EmitReq e = HS__EMIT_REQ__INIT;
	e.tensor_id = victim;
	e.topic = (char *)"it/stolen";
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 20;
	m.body_case = HS__MESSAGE__BODY_EMIT;
	m.emit = &e;
	ck_assert_int_eq(rw_send_msg(sock, &m, -1, 0), 0);
	rw_expect_error(sock, 20, not_held);
	/* a failed note never ends the session */
	ck_assert_int_eq(rw_ping(sock, 21, -1, 0), 0);
	rw_expect_ok(sock, 21);
	close(sock);

	/* the owner still holds it: one reference, unchanged */
	j = ht_hsctl_json(s.d.sock, args);
	ck_assert_ptr_nonnull(j);
	tensors = json_object_get(j, "tensors");
	ck_assert_int_eq(json_array_size(tensors), 1);
	t0 = json_array_get(tensors, 0);
	ck_assert_uint_eq((uint64_t)json_integer_value(json_object_get(t0, "id")), victim);
	ck_assert_int_eq(json_integer_value(json_object_get(t0, "refs")), 1);
	json_decref(j);
	SCENE_END(&s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("wire");
	ht_case(s, "garbage", test_garbage);
	ht_case(s, "truncated", test_truncated);
	ht_case(s, "oversized", test_oversized);
	ht_case(s, "wrong_version", test_wrong_version);
	ht_case(s, "request_before_hello", test_request_before_hello);
	ht_case(s, "unasked_fds", test_unasked_fds);
	ht_case(s, "too_many_fds", test_too_many_fds);
	ht_case(s, "release_not_held", test_release_not_held);
	return ht_main(s);
}
