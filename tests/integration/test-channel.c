/* Hostile clients on the shared-memory channel (proto/chan.h), written on
 * a raw socket and a raw mapping of the ring memory (no libhsclient): one
 * that asks for the channel and speaks the protocol through it, then ones
 * that corrupt their client -> daemon ring (head, record headers), send a
 * datagram on the socket after the switch, corrupt the daemon -> client
 * tail, or never read while a subscription of theirs is flooded. Each is
 * disconnected, while a well-behaved libhsclient client on its own
 * channel keeps working and the daemon keeps running. */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "chan.h"
#include "itest.h"
#include "roles.h"
#include "wire.h"

/* ---- the well-behaved client ---- */

struct good {
	const char *sock;
	struct ht_chan to, from; /* 'P': prove you work, 'Q': then leave */
};

/* Proves the connection (alloc, emit, receive, ping) and that it runs on
 * the transport its environment asks for. */
static int good_round(hs_client *c, const char *topic)
{
	int rc = ht_round_trip(c, topic);
	if (rc < 0)
		return ht_child_fail("good", "round trip: %s", hs_strerror(rc));
	rc = hs_client_ping(c);
	if (rc < 0)
		return ht_child_fail("good", "ping: %s", hs_strerror(rc));
	hs_client_stats st;
	rc = hs_client_get_stats(c, &st);
	if (rc < 0)
		return ht_child_fail("good", "stats: %s", hs_strerror(rc));
	const char *e = getenv("HSBROKER_CHANNEL");
	uint32_t want = e && !strcmp(e, "0") ? 0 : 1;
	if (st.shared_channel != want)
		return ht_child_fail("good", "shared_channel %u, expected %u", st.shared_channel, want);
	return 0;
}

static int good_client(void *arg)
{
	struct good *g = arg;
	hs_client *c;
	if (ht_connect(g->sock, "it-good", &c) < 0)
		return 1;
	char topic[64];
	snprintf(topic, sizeof(topic), "it/good.%d", (int)getpid());
	int ret = good_round(c, topic);
	while (!ret) {
		ht_chan_send(&g->from, 'K');
		int b = ht_chan_recv(&g->to, HT_LONG_DEADLINE_MS);
		if (b < 0) {
			ret = ht_child_fail("good", "no signal");
			break;
		}
		ret = good_round(c, topic);
		if (b == 'Q')
			break;
	}
	hs_client_disconnect(c);
	return ret;
}

struct scene {
	struct ht_daemon d;
	struct good g;
	pid_t good_pid;
};

/* Every child is forked before the test process connects anything. */
#define SCENE_BEGIN(s)                                                         \
	HT_BEGIN(&(s)->d, NULL);                                               \
	(s)->g.sock = (s)->d.sock;                                             \
	ht_chan_open(&(s)->g.to);                                              \
	ht_chan_open(&(s)->g.from);                                            \
	(s)->good_pid = ht_fork(good_client, &(s)->g);                         \
	ck_assert_int_gt((s)->good_pid, 0);                                    \
	ck_assert_int_eq(ht_chan_recv(&(s)->g.from, HT_DEADLINE_MS), 'K')

/* The daemon is up and the good client still does everything. */
static void good_check(struct scene *s)
{
	ck_assert_msg(ht_daemon_alive(&s->d), "hsbrokerd died");
	ck_assert_int_eq(ht_chan_send(&s->g.to, 'P'), 0);
	ck_assert_msg(ht_chan_recv(&s->g.from, HT_DEADLINE_MS) == 'K',
		      "the good client stopped working");
}

#define SCENE_END(s)                                                           \
	do {                                                                   \
		good_check(s);                                                 \
		ck_assert_int_eq(ht_chan_send(&(s)->g.to, 'Q'), 0);            \
		ck_assert_int_eq(ht_wait((s)->good_pid, HT_DEADLINE_MS), 0);   \
		ht_chan_close(&(s)->g.to);                                     \
		ht_chan_close(&(s)->g.from);                                   \
		HT_END(&(s)->d);                                               \
	} while (0)

/* ---- the raw client ---- */

struct raw {
	int sock;
	struct hs__chan ch;   /* the client's side of the mapping */
	int efd_daemon;       /* we write it to wake the daemon */
	int efd_client;       /* the daemon writes it */
	uint64_t seq;
	bool hup;
};

static uint8_t rbuf[HS__WIRE_MAX_MSG];

static int64_t left_ms(int64_t end)
{
	int64_t l = end - ht_now_ms();
	return l > 0 ? l : 0;
}

/* The next datagram on the socket, decoded (fds closed unless wanted),
 * or NULL with *err: -EPIPE at hang-up, -ETIMEDOUT. */
static Hs__Message *sock_recv(struct raw *r, int *fds, int *nfds, int *err)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	int tmp[HS__WIRE_MAX_FDS], ntmp = 0;
	for (;;) {
		struct pollfd p = { .fd = r->sock, .events = POLLIN };
		int pr = poll(&p, 1, (int)left_ms(end));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			*err = -ETIMEDOUT;
			return NULL;
		}
		int n = hs__wire_recv(r->sock, rbuf, fds ? fds : tmp, fds ? nfds : &ntmp);
		if (n == -EAGAIN)
			continue;
		hs__wire_close_fds(tmp, ntmp);
		if (n < 0) {
			*err = n == -ECONNRESET ? -EPIPE : n;
			return NULL;
		}
		Hs__Message *m;
		*err = hs__wire_decode(rbuf, (size_t)n, &m);
		ck_assert_msg(*err == 0, "the daemon sent an undecodable datagram");
		return m;
	}
}

/* Hello with want_channel, the HelloReply that says a channel comes, and
 * the ChannelAnnounce with its three fds, mapped. */
static void raw_open(struct raw *r, const char *path)
{
	memset(r, 0, sizeof(*r));
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(path), sizeof(addr.sun_path));
	memcpy(addr.sun_path, path, strlen(path) + 1);
	r->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(r->sock, 0);
	ck_assert_int_eq(connect(r->sock, (struct sockaddr *)&addr, sizeof(addr)), 0);

	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = HS_PROTOCOL_VERSION;
	h.client_name = (char *)"it-raw-chan";
	h.want_channel = true;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = r->seq = 1;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	ck_assert_int_eq(hs__wire_send(r->sock, &m, NULL, 0), 0);

	int err, fds[HS__WIRE_MAX_FDS], nfds = 0;
	Hs__Message *rep = sock_recv(r, fds, &nfds, &err);
	ck_assert_msg(rep, "no HelloReply: %s", strerror(-err));
	ck_assert_int_eq(rep->body_case, HS__MESSAGE__BODY_HELLO_REPLY);
	ck_assert_uint_eq(rep->seq, 1);
	ck_assert_msg(rep->hello_reply->channel, "the daemon offered no channel");
	ck_assert_int_eq(nfds, 0);
	hs__wire_free(rep);

	Hs__Message *ca = sock_recv(r, fds, &nfds, &err);
	ck_assert_msg(ca, "no ChannelAnnounce: %s", strerror(-err));
	ck_assert_int_eq(ca->body_case, HS__MESSAGE__BODY_CHANNEL);
	ck_assert_uint_eq(ca->seq, 0);
	ck_assert_uint_eq(ca->channel->ring_size, HS__CHAN_RING_SIZE);
	hs__wire_free(ca);
	ck_assert_int_eq(nfds, 3);
	/* fd 0 is a memfd the daemon sealed: we cannot shrink it under it */
	ck_assert_int_lt(ftruncate(fds[0], 4096), 0);
	ck_assert_int_eq(hs__chan_map(fds[0], &r->ch), 0);
	close(fds[0]);
	r->efd_daemon = fds[1];
	r->efd_client = fds[2];
}

static void raw_close(struct raw *r)
{
	if (r->sock >= 0)
		close(r->sock);
	hs__chan_unmap(&r->ch);
	close(r->efd_daemon);
	close(r->efd_client);
	r->sock = r->efd_daemon = r->efd_client = -1;
}

/* Writes m as one record and wakes the daemon (always: simpler than
 * watching its armed flag, and harmless). */
static void raw_put(struct raw *r, const Hs__Message *m)
{
	size_t len = hs__message__get_packed_size(m);
	ck_assert_int_eq(hs__chan_put(&r->ch.tx, HS__CHAN_MSG, m, len), 0);
	hs__chan_kick(r->efd_daemon);
}

static uint64_t raw_ping(struct raw *r)
{
	Hs__PingReq p = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = ++r->seq;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &p;
	raw_put(r, &m);
	return m.seq;
}

/* The daemon's next message in the channel's order (a SOCKET record's
 * datagram fetched from the socket; its fds given back in fds, or
 * closed), or NULL with *err: -EPIPE after the hang-up with the ring
 * empty, -ETIMEDOUT. */
static Hs__Message *raw_next(struct raw *r, int *fds, int *nfds, int *err)
{
	static uint8_t rec[HS__CHAN_MAX_RECORD];
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		uint32_t kind;
		int n = hs__chan_get(&r->ch.rx, rec, &kind);
		if (n >= 0 && kind == HS__CHAN_SOCKET)
			return sock_recv(r, fds, nfds, err);
		if (n >= 0) {
			Hs__Message *m;
			ck_assert_msg(hs__wire_decode(rec, (size_t)n, &m) == 0,
				      "the daemon wrote an undecodable record");
			*err = 0;
			return m;
		}
		ck_assert_msg(n == -EAGAIN, "the daemon's ring is corrupt: %s", strerror(-n));
		if (r->hup) {
			*err = -EPIPE;
			return NULL;
		}
		if (!hs__chan_arm(&r->ch.rx))
			continue;
		struct pollfd p[2] = { { .fd = r->efd_client, .events = POLLIN }, { .fd = r->sock } };
		int pr = poll(p, 2, (int)left_ms(end));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr == 0) {
			*err = -ETIMEDOUT;
			return NULL;
		}
		if (p[0].revents & POLLIN)
			hs__chan_clear(r->efd_client);
		if (p[1].revents & (POLLHUP | POLLERR))
			r->hup = true; /* what is in the ring still counts */
	}
}

/* The reply to seq, skipping pushes (slabs, deliveries). */
static Hs__Message *raw_reply(struct raw *r, uint64_t seq)
{
	for (;;) {
		int err;
		Hs__Message *m = raw_next(r, NULL, NULL, &err);
		ck_assert_msg(m, "no reply to %" PRIu64 ": %s", seq, strerror(-err));
		if (m->seq == 0 && (m->body_case == HS__MESSAGE__BODY_SLAB ||
				    m->body_case == HS__MESSAGE__BODY_DELIVER)) {
			hs__wire_free(m);
			continue;
		}
		ck_assert_uint_eq(m->seq, seq);
		return m;
	}
}

static void expect_ok(struct raw *r, uint64_t seq)
{
	Hs__Message *m = raw_reply(r, seq);
	ck_assert_msg(m->body_case == HS__MESSAGE__BODY_OK, "expected OkReply, got %s (%s)",
		      hs__wire_body_name(m),
		      m->body_case == HS__MESSAGE__BODY_ERROR ? m->error->message : "");
	hs__wire_free(m);
}

/* Nothing came on the socket: the replies travelled through the ring. */
static void socket_quiet(struct raw *r)
{
	struct pollfd p = { .fd = r->sock, .events = POLLIN };
	ck_assert_int_eq(poll(&p, 1, 0), 0);
}

/* The daemon must end this connection: the socket hangs up. With why
 * (a part of the reason), the ErrorReply (HS_EPROTO) that says so must be
 * in the ring (its d2c ring is intact, so the daemon writes it there);
 * anything else it sent is a push or a reply to an earlier request. */
static void expect_disconnect(struct raw *r, const char *why)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	/* First the hang-up, without reading the ring (a daemon that answers
	 * there would keep raw_next busy, not prove a disconnect). */
	for (;;) {
		struct pollfd p = { .fd = r->sock, .events = POLLIN };
		int pr = poll(&p, 1, (int)left_ms(end));
		if (pr < 0 && errno == EINTR)
			continue;
		ck_assert_msg(pr > 0, "the daemon kept the connection open");
		int fds[HS__WIRE_MAX_FDS], nfds = 0;
		int n = hs__wire_recv(r->sock, rbuf, fds, &nfds);
		hs__wire_close_fds(fds, nfds);
		if (n == -EPIPE || n == -ECONNRESET)
			break;
		ck_assert_msg(n > 0 || n == -EAGAIN, "recv: %s", strerror(-n));
		/* a datagram a SOCKET record marks: a slab, or a reply too
		 * large for a record; never a channel's ErrorReply */
	}
	r->hup = true;
	if (why) {
		bool saw = false;
		for (;;) {
			uint32_t kind;
			static uint8_t rec[HS__CHAN_MAX_RECORD];
			int n = hs__chan_get(&r->ch.rx, rec, &kind);
			if (n == -EAGAIN)
				break;
			ck_assert_int_ge(n, 0);
			if (kind != HS__CHAN_MSG)
				continue; /* its datagram was read above */
			Hs__Message *m;
			ck_assert_int_eq(hs__wire_decode(rec, (size_t)n, &m), 0);
			if (m->body_case == HS__MESSAGE__BODY_ERROR) {
				ck_assert_msg(m->error->code == HS_EPROTO, "ErrorReply %s: %s",
					      hs__err_name(m->error->code), m->error->message ?: "");
				ck_assert_msg(m->error->message && strstr(m->error->message, why),
					      "disconnected for '%s', expected '%s'",
					      m->error->message ?: "", why);
				saw = true;
			}
			hs__wire_free(m);
		}
		ck_assert_msg(saw, "no ErrorReply in the ring before the hang-up");
	}
	raw_close(r);
}

/* A raw client that proved it works: a Ping answered through the ring. */
static void raw_ready(struct raw *r, const char *path)
{
	raw_open(r, path);
	expect_ok(r, raw_ping(r));
	socket_quiet(r);
}

/* ---- the cases ---- */

static void alloc_meta(Hs__Meta *meta, Hs__Device *dev, Hs__DType *dt, int64_t *shape)
{
	*dev = (Hs__Device)HS__DEVICE__INIT;
	dev->type = kDLCPU;
	*dt = (Hs__DType)HS__DTYPE__INIT;
	dt->code = kDLUInt;
	dt->bits = 8;
	dt->lanes = 1;
	*meta = (Hs__Meta)HS__META__INIT;
	meta->device = dev;
	meta->dtype = dt;
	meta->n_shape = 1;
	meta->shape = shape;
}

/* Tensors the broker holds that this process allocated. */
static size_t my_tensors(const char *sock)
{
	const char *args[] = { "ls", "tensors", NULL };
	json_t *j = ht_hsctl_json(sock, args);
	ck_assert_ptr_nonnull(j);
	json_t *ts = json_object_get(j, "tensors");
	size_t n = 0;
	for (size_t i = 0; i < json_array_size(ts); i++)
		if (json_integer_value(json_object_get(json_array_get(ts, i), "owner_pid")) == getpid())
			n++;
	json_decref(j);
	return n;
}

/* (a) The raw protocol works: pings one by one and a thousand in a row,
 * all answered in order through the ring; an allocation whose slab comes
 * as a SOCKET record and a datagram with the memfd, the reply through the
 * ring; the release as a note. */
START_TEST(test_ring_ping)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct raw r;
	raw_open(&r, s.d.sock);
	for (int i = 0; i < 100; i++)
		expect_ok(&r, raw_ping(&r));
	uint64_t first = r.seq + 1;
	for (int i = 0; i < 1000; i++)
		raw_ping(&r);
	for (uint64_t seq = first; seq <= r.seq; seq++)
		expect_ok(&r, seq);
	socket_quiet(&r);
	ck_assert(!hs__chan_pending(&r.ch.rx));

	Hs__Device dev;
	Hs__DType dt;
	Hs__Meta meta;
	int64_t shape[1] = { 4096 };
	alloc_meta(&meta, &dev, &dt, shape);
	Hs__AllocReq a = HS__ALLOC_REQ__INIT;
	a.meta = &meta;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = ++r.seq;
	m.body_case = HS__MESSAGE__BODY_ALLOC;
	m.alloc = &a;
	raw_put(&r, &m);
	/* the slab first: on the socket (it carries the memfd) */
	int err, fds[HS__WIRE_MAX_FDS], nfds = 0;
	Hs__Message *sa = raw_next(&r, fds, &nfds, &err);
	ck_assert_msg(sa, "no SlabAnnounce: %s", strerror(-err));
	ck_assert_int_eq(sa->body_case, HS__MESSAGE__BODY_SLAB);
	ck_assert_int_eq(nfds, 1);
	ck_assert_int_eq(sa->slab->fd_index, 0);
	off_t slab_size = lseek(fds[0], 0, SEEK_END);
	ck_assert_int_eq(slab_size, (off_t)sa->slab->size);
	close(fds[0]);
	uint64_t slab_id = sa->slab->slab_id;
	hs__wire_free(sa);
	Hs__Message *ar = raw_reply(&r, m.seq);
	ck_assert_msg(ar->body_case == HS__MESSAGE__BODY_ALLOC_REPLY, "expected AllocReply, got %s",
		      hs__wire_body_name(ar));
	ck_assert_uint_eq(ar->alloc_reply->tensor->block->slab_id, slab_id);
	ck_assert_uint_ge(ar->alloc_reply->tensor->block->length, 4096);
	uint64_t id = ar->alloc_reply->tensor->id;
	hs__wire_free(ar);
	ck_assert_uint_eq(my_tensors(s.d.sock), 1);

	Hs__ReleaseNote rn = HS__RELEASE_NOTE__INIT;
	rn.n_tensor_ids = 1;
	rn.tensor_ids = &id;
	m = (Hs__Message)HS__MESSAGE__INIT;
	m.seq = ++r.seq;
	m.body_case = HS__MESSAGE__BODY_RELEASE;
	m.release = &rn;
	raw_put(&r, &m);
	expect_ok(&r, raw_ping(&r)); /* after the note: it was handled */
	ck_assert_uint_eq(my_tensors(s.d.sock), 0);
	raw_close(&r);
	good_check(&s);
	SCENE_END(&s);
}
END_TEST

/* Publishes a c2d head of the client's choosing and wakes the daemon. */
static void scribble_head(struct raw *r, uint64_t head)
{
	__atomic_store_n(&r->ch.tx.r->head, head, __ATOMIC_RELEASE);
	hs__chan_kick(r->efd_daemon);
}

/* (b) Garbage in the client -> daemon ring head. */
START_TEST(test_corrupt_head)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct raw r;
	/* unaligned */
	raw_ready(&r, s.d.sock);
	scribble_head(&r, r.ch.tx.pos + 4);
	expect_disconnect(&r, "corrupt channel");
	good_check(&s);
	/* more than a ring ahead of what the daemon read */
	raw_ready(&r, s.d.sock);
	scribble_head(&r, r.ch.tx.pos + HS__CHAN_RING_SIZE + 8);
	expect_disconnect(&r, "corrupt channel");
	good_check(&s);
	/* behind what the daemon read */
	raw_ready(&r, s.d.sock);
	scribble_head(&r, r.ch.tx.pos - 16);
	expect_disconnect(&r, "corrupt channel");
	good_check(&s);
	/* random */
	raw_ready(&r, s.d.sock);
	scribble_head(&r, 0xdeadbeefcafef00dull);
	expect_disconnect(&r, "corrupt channel");
	SCENE_END(&s);
}
END_TEST

/* Writes a record header {len, kind} and payload bytes at the client's
 * position, then publishes head = pos + advance: never a half-written
 * record for the daemon to see. */
static void scribble_record(struct raw *r, uint32_t len, uint32_t kind, const void *payload,
			    size_t plen, uint64_t advance)
{
	struct hs__chan_end *e = &r->ch.tx;
	uint32_t at = (uint32_t)(e->pos & (e->size - 1));
	ck_assert_uint_le(at + 8 + plen, e->size);
	uint32_t h[2] = { len, kind };
	memcpy(e->data + at, h, sizeof(h));
	if (plen)
		memcpy(e->data + at + 8, payload, plen);
	scribble_head(r, e->pos + advance);
}

/* (b) Garbage in a record header, and records the daemon must refuse
 * although they are well framed. */
START_TEST(test_corrupt_record)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct raw r;
	/* a kind that does not exist */
	raw_ready(&r, s.d.sock);
	scribble_record(&r, 0, 9, NULL, 0, 8);
	expect_disconnect(&r, "corrupt channel");
	good_check(&s);
	/* a length past the largest record, head covering it */
	raw_ready(&r, s.d.sock);
	scribble_record(&r, HS__CHAN_MAX_RECORD + 8, HS__CHAN_MSG, NULL, 0,
			HS__CHAN_MAX_RECORD + 16);
	expect_disconnect(&r, "corrupt channel");
	good_check(&s);
	/* a length past head */
	raw_ready(&r, s.d.sock);
	scribble_record(&r, 4000, HS__CHAN_MSG, NULL, 0, 16);
	expect_disconnect(&r, "corrupt channel");
	good_check(&s);
	/* a SOCKET record: the client has nothing to send on the socket */
	raw_ready(&r, s.d.sock);
	scribble_record(&r, 0, HS__CHAN_SOCKET, NULL, 0, 8);
	expect_disconnect(&r, "not a message");
	good_check(&s);
	/* well framed, not a Message */
	raw_ready(&r, s.d.sock);
	uint8_t junk[40];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(0xff - i * 7);
	scribble_record(&r, sizeof(junk), HS__CHAN_MSG, junk, sizeof(junk), 8 + sizeof(junk));
	expect_disconnect(&r, "undecodable");
	good_check(&s);
	/* a Message the client may not send */
	raw_ready(&r, s.d.sock);
	Hs__OkReply ok = HS__OK_REPLY__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = ++r.seq;
	m.body_case = HS__MESSAGE__BODY_OK;
	m.ok = &ok;
	raw_put(&r, &m);
	expect_disconnect(&r, "not a client message");
	SCENE_END(&s);
}
END_TEST

/* True once every copy of the pipe's write end is closed. */
static bool write_end_closed(int rd)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		struct pollfd p = { .fd = rd, .events = POLLIN };
		int pr = poll(&p, 1, (int)left_ms(end));
		if (pr < 0 && errno == EINTR)
			continue;
		return pr > 0 && (p.revents & POLLHUP);
	}
}

/* (c) A datagram on the socket after the switch, valid or not, with an
 * fd or without: disconnected, the fd not kept. */
START_TEST(test_socket_after_switch)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct raw r;
	Hs__PingReq p = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &p;
	/* a valid Ping */
	raw_ready(&r, s.d.sock);
	m.seq = ++r.seq;
	ck_assert_int_eq(hs__wire_send(r.sock, &m, NULL, 0), 0);
	expect_disconnect(&r, "after the switch");
	good_check(&s);
	/* with an fd */
	raw_ready(&r, s.d.sock);
	int pp[2];
	ck_assert_int_eq(pipe2(pp, O_CLOEXEC), 0);
	m.seq = ++r.seq;
	ck_assert_int_eq(hs__wire_send(r.sock, &m, &pp[1], 1), 0);
	close(pp[1]);
	expect_disconnect(&r, "after the switch");
	ck_assert_msg(write_end_closed(pp[0]), "the daemon kept an fd sent after the switch");
	close(pp[0]);
	good_check(&s);
	/* a Ping through the ring and one on the socket at once */
	raw_ready(&r, s.d.sock);
	raw_ping(&r);
	m.seq = ++r.seq;
	ck_assert_int_eq(hs__wire_send(r.sock, &m, NULL, 0), 0);
	expect_disconnect(&r, "after the switch");
	SCENE_END(&s);
}
END_TEST

/* (d) The daemon -> client tail set to nonsense, then a Ping makes the
 * daemon write there. */
static void corrupt_tail(struct scene *s, uint64_t (*tail)(uint64_t pos))
{
	struct raw r;
	raw_ready(&r, s->d.sock);
	uint64_t pos = r.ch.rx.pos;
	ck_assert_uint_gt(pos, 0);
	__atomic_store_n(&r.ch.rx.r->tail, tail(pos), __ATOMIC_RELEASE);
	raw_ping(&r);
	/* its ring is what is broken: no ErrorReply can go there */
	expect_disconnect(&r, NULL);
	good_check(s);
}

static uint64_t tail_ahead(uint64_t pos)
{
	return pos + 64;
}

static uint64_t tail_unaligned(uint64_t pos)
{
	return pos - 3;
}

static uint64_t tail_far_behind(uint64_t pos)
{
	return pos - HS__CHAN_RING_SIZE - 8;
}

static uint64_t tail_random(uint64_t pos)
{
	return pos ^ 0x5a5a5a5a5a5a5a5aull;
}

START_TEST(test_corrupt_tail)
{
	struct scene s;
	SCENE_BEGIN(&s);
	corrupt_tail(&s, tail_ahead);
	corrupt_tail(&s, tail_unaligned);
	corrupt_tail(&s, tail_far_behind);
	corrupt_tail(&s, tail_random);
	SCENE_END(&s);
}
END_TEST

/* The indices the daemon owns (c2d tail, d2c head) live in memory the
 * client can write, but the daemon keeps its own copies: scribbling on
 * them changes nothing, the daemon publishes its own again. */
START_TEST(test_private_indices)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct raw r;
	raw_ready(&r, s.d.sock);
	/* the c2d tail, then a Ping written by hand (hs__chan_put would
	 * refuse the tail we just broke) */
	uint64_t pos = r.ch.tx.pos;
	__atomic_store_n(&r.ch.tx.r->tail, 0x123456789abcdef1ull, __ATOMIC_RELEASE);
	Hs__PingReq p = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = ++r.seq;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &p;
	uint8_t buf[64];
	size_t len = hs__message__get_packed_size(&m);
	ck_assert_uint_le(len, sizeof(buf));
	hs__message__pack(&m, buf);
	uint64_t rec = 8 + ((len + 7) & ~(size_t)7);
	scribble_record(&r, (uint32_t)len, HS__CHAN_MSG, buf, len, rec);
	r.ch.tx.pos += rec;
	expect_ok(&r, m.seq);
	ck_assert_uint_eq(__atomic_load_n(&r.ch.tx.r->tail, __ATOMIC_ACQUIRE), pos + rec);
	/* the d2c head: the daemon writes where it knows it is */
	pos = r.ch.rx.pos;
	__atomic_store_n(&r.ch.rx.r->head, pos + 4096 + 3, __ATOMIC_RELEASE);
	uint64_t seq = raw_ping(&r);
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	while (__atomic_load_n(&r.ch.rx.r->head, __ATOMIC_ACQUIRE) == pos + 4096 + 3 &&
	       ht_now_ms() < end)
		ht_sleep_ms(1);
	expect_ok(&r, seq);
	ck_assert_uint_eq(r.ch.rx.pos, __atomic_load_n(&r.ch.rx.r->head, __ATOMIC_ACQUIRE));
	/* flags the daemon reads only as hints: a false "want space" and a
	 * false "armed" cost it a wake-up, nothing more */
	__atomic_store_n(&r.ch.tx.r->want_space, 7, __ATOMIC_RELEASE);
	__atomic_store_n(&r.ch.rx.r->armed, 9, __ATOMIC_RELEASE);
	for (int i = 0; i < 10; i++)
		expect_ok(&r, raw_ping(&r));
	socket_quiet(&r);
	raw_close(&r);
	good_check(&s);
	SCENE_END(&s);
}
END_TEST

/* (e) A client that subscribes through its channel and never reads
 * again, its subscription flooded: the d2c ring fills, then the daemon's
 * outbox for it, and the daemon disconnects it; the producer never
 * notices (drop-oldest, and credits to spare). */
#define FLOOD_COUNT 20000

START_TEST(test_outbox_limit)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct ht_chan go;
	ht_chan_open(&go);
	struct ht_producer prod = { .sock = s.d.sock, .topic = "it/flood", .count = FLOOD_COUNT,
				    .elems = 16, .go = &go };
	pid_t ppid = ht_fork(ht_role_producer, &prod);
	ck_assert_int_gt(ppid, 0);

	struct raw r;
	raw_ready(&r, s.d.sock);
	Hs__SubscribeReq sr = HS__SUBSCRIBE_REQ__INIT;
	sr.topic = (char *)"it/flood";
	sr.depth = 4;
	sr.policy = HS__POLICY__POLICY_DROP_OLDEST;
	sr.credits = 1u << 30;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = ++r.seq;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &sr;
	raw_put(&r, &m);
	Hs__Message *rep = raw_reply(&r, m.seq);
	ck_assert_msg(rep->body_case == HS__MESSAGE__BODY_SUBSCRIBE_REPLY, "expected SubscribeReply, got %s",
		      hs__wire_body_name(rep));
	hs__wire_free(rep);

	ck_assert_int_eq(ht_chan_send(&go, 'G'), 0);
	/* no reading from here on: only wait for the hang-up */
	struct pollfd p = { .fd = r.sock, .events = 0 };
	int pr;
	do
		pr = poll(&p, 1, HT_LONG_DEADLINE_MS);
	while (pr < 0 && errno == EINTR);
	ck_assert_msg(pr == 1 && (p.revents & POLLHUP), "a client that never reads was not disconnected");
	/* the ring was full when it went */
	uint64_t head = __atomic_load_n(&r.ch.rx.r->head, __ATOMIC_ACQUIRE);
	ck_assert_uint_gt(head - r.ch.rx.pos, HS__CHAN_RING_SIZE - HS__CHAN_MAX_RECORD);
	raw_close(&r);
	ck_assert_int_eq(ht_wait(ppid, HT_LONG_DEADLINE_MS), 0);
	ht_chan_close(&go);
	SCENE_END(&s);
}
END_TEST

/* HSBROKER_CHANNEL=0 keeps a libhsclient client on the socket, next to
 * one on its channel (good_round checks which it got). */
static int socket_client(void *arg)
{
	setenv("HSBROKER_CHANNEL", "0", 1);
	struct good *g = arg;
	hs_client *c;
	if (ht_connect(g->sock, "it-socket", &c) < 0)
		return 1;
	int ret = good_round(c, "it/socket");
	hs_client_disconnect(c);
	return ret;
}

START_TEST(test_opt_out)
{
	struct scene s;
	SCENE_BEGIN(&s);
	struct good g2 = { .sock = s.d.sock };
	pid_t pid = ht_fork(socket_client, &g2);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	SCENE_END(&s);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("channel");
	ht_case(s, "ring_ping", test_ring_ping);
	ht_case(s, "corrupt_head", test_corrupt_head);
	ht_case(s, "corrupt_record", test_corrupt_record);
	ht_case(s, "socket_after_switch", test_socket_after_switch);
	ht_case(s, "corrupt_tail", test_corrupt_tail);
	ht_case(s, "private_indices", test_private_indices);
	ht_case(s, "outbox_limit", test_outbox_limit);
	ht_case(s, "opt_out", test_opt_out);
	return ht_main(s);
}
