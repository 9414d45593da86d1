/* The session state machine, driven with real encoded messages over a
 * SOCK_SEQPACKET socketpair: the daemon's end goes to hsd_request_input, the
 * test plays the client on the other end. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hsbroker/client.h"
#include "hsbroker/error.h"
#include "broker.h"
#include "request.h"
#include "session.h"
#include "unit.h"

struct peer {
	int sp[2];            /* [0] daemon side, [1] client side */
	struct hsd_session *s;
	uint64_t seq;
	int closed_rc;
};

static struct hsd_broker *b;
static struct hsd_broker_config cfg;
static uint8_t buf[HS__WIRE_MAX_MSG];

static void make_broker(void)
{
	ck_assert_int_eq(hsd_broker_new(&cfg, NULL, &b), 0);
}

static int fds_before;

static void setup(void)
{
	hsd_broker_config_defaults(&cfg);
	cfg.cpu_slab_size = 1 << 20;
	b = NULL;
	fds_before = unit_count_fds();
}

/* Every test ends with no fd leaked: sockets, memfds, dup'd fds of
 * outboxes, fds a client sent. */
static void teardown(void)
{
	if (b)
		hsd_broker_free(b);
	b = NULL;
	ck_assert_int_eq(unit_count_fds(), fds_before);
}

static void peer_open(struct peer *p)
{
	memset(p, 0, sizeof(*p));
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, p->sp), 0);
	ck_assert_int_eq(hsd_broker_session_open(b, p->sp[0], getpid(), getuid(), getgid(), &p->s), 0);
}

static void peer_close(struct peer *p)
{
	if (p->s)
		hsd_broker_session_close(b, p->s);
	p->s = NULL;
	close(p->sp[0]);
	close(p->sp[1]);
}

/* Feeds what the daemon side received to hsd_request_input: its result. */
static int pump(struct peer *p)
{
	int ret = 0;
	for (;;) {
		int fds[HS__WIRE_MAX_FDS], nfds = 0;
		int n = hs__wire_recv(p->sp[0], buf, fds, &nfds);
		if (n == -EAGAIN)
			return ret;
		if (n < 0)
			return n;
		int r = hsd_request_input(p->s, buf, (size_t)n, fds, nfds);
		if (r < 0)
			return r;
	}
}

static int send_msg(struct peer *p, Hs__Message *m)
{
	if (!m->seq)
		m->seq = ++p->seq;
	ck_assert_int_eq(hs__wire_send(p->sp[1], m, NULL, 0), 0);
	return pump(p);
}

/* The next message the client end has, or NULL. */
static Hs__Message *recv_msg(struct peer *p, int *fds, int *nfds)
{
	int lfds[HS__WIRE_MAX_FDS], lnfds = 0;
	int n = hs__wire_recv(p->sp[1], buf, fds ? fds : lfds, nfds ? nfds : &lnfds);
	if (n == -EAGAIN)
		return NULL;
	ck_assert_int_gt(n, 0);
	if (!fds)
		hs__wire_close_fds(lfds, lnfds);
	Hs__Message *m;
	ck_assert_int_eq(hs__wire_decode(buf, (size_t)n, &m), 0);
	return m;
}

static Hs__Message *expect(struct peer *p, Hs__Message__BodyCase body)
{
	Hs__Message *m = recv_msg(p, NULL, NULL);
	ck_assert_msg(m != NULL, "expected %d, got nothing", body);
	ck_assert_msg(m->body_case == body, "expected %d, got %s", body, hs__wire_body_name(m));
	return m;
}

static void expect_error(struct peer *p, int code)
{
	Hs__Message *m = expect(p, HS__MESSAGE__BODY_ERROR);
	ck_assert_int_eq(m->error->code, code);
	hs__wire_free(m);
}

static void expect_nothing(struct peer *p)
{
	Hs__Message *m = recv_msg(p, NULL, NULL);
	ck_assert_msg(m == NULL, "unexpected %s", m ? hs__wire_body_name(m) : "");
}

static int send_hello(struct peer *p, uint32_t version, const char *name)
{
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = version;
	h.client_name = (char *)name;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	return send_msg(p, &m);
}

static void hello(struct peer *p, const char *name)
{
	ck_assert_int_eq(send_hello(p, HS_PROTOCOL_VERSION, name), 0);
	Hs__Message *m = expect(p, HS__MESSAGE__BODY_HELLO_REPLY);
	ck_assert_uint_eq(m->seq, p->seq);
	ck_assert_uint_eq(m->hello_reply->protocol_version, HS_PROTOCOL_VERSION);
	ck_assert_uint_eq(m->hello_reply->epoch, b->epoch);
	ck_assert_uint_eq(m->hello_reply->session_id, p->s->id);
	hs__wire_free(m);
}

static int send_alloc(struct peer *p, int64_t n)
{
	Hs__Device dev = HS__DEVICE__INIT;
	Hs__DType dt = HS__DTYPE__INIT;
	Hs__Meta meta = HS__META__INIT;
	int64_t shape[] = { n };
	dev.type = kDLCPU;
	dt.code = kDLUInt;
	dt.bits = 8;
	dt.lanes = 1;
	meta.device = &dev;
	meta.dtype = &dt;
	meta.n_shape = 1;
	meta.shape = shape;
	Hs__AllocReq a = HS__ALLOC_REQ__INIT;
	a.meta = &meta;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ALLOC;
	m.alloc = &a;
	return send_msg(p, &m);
}

/* Allocates n bytes; *slab_fd gets the slab's fd when it is announced
 * (else stays as it was). Returns the tensor id. */
static uint64_t alloc(struct peer *p, int64_t n, int *slab_fd, uint64_t *offset)
{
	ck_assert_int_eq(send_alloc(p, n), 0);
	int fds[HS__WIRE_MAX_FDS], nfds = 0;
	Hs__Message *m = recv_msg(p, fds, &nfds);
	ck_assert_ptr_nonnull(m);
	if (m->body_case == HS__MESSAGE__BODY_SLAB) {
		ck_assert_uint_eq(m->seq, 0);
		ck_assert_int_eq(nfds, 1);
		ck_assert_int_eq(m->slab->kind, HS__SLAB_KIND__SLAB_HOST_MEMFD);
		ck_assert_int_eq(m->slab->fd_index, 0);
		struct stat st;
		ck_assert_int_eq(fstat(fds[0], &st), 0);
		ck_assert_uint_eq((uint64_t)st.st_size, m->slab->size);
		if (slab_fd)
			*slab_fd = fds[0];
		else
			close(fds[0]);
		hs__wire_free(m);
		m = recv_msg(p, NULL, NULL);
		ck_assert_ptr_nonnull(m);
	} else {
		hs__wire_close_fds(fds, nfds);
	}
	ck_assert_int_eq(m->body_case, HS__MESSAGE__BODY_ALLOC_REPLY);
	ck_assert_uint_eq(m->seq, p->seq);
	Hs__TensorRef *t = m->alloc_reply->tensor;
	ck_assert_uint_eq(t->block->offset % 256, 0);
	ck_assert_uint_eq(t->block->length, (uint64_t)n);
	ck_assert_int_eq(t->meta->shape[0], n);
	uint64_t id = t->id;
	if (offset)
		*offset = t->block->offset;
	hs__wire_free(m);
	return id;
}

static int send_emit(struct peer *p, uint64_t id, const char *topic)
{
	Hs__EmitReq e = HS__EMIT_REQ__INIT;
	e.tensor_id = id;
	e.topic = (char *)topic;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_EMIT;
	m.emit = &e;
	return send_msg(p, &m);
}

static uint64_t subscribe(struct peer *p, const char *topic, uint32_t depth, Hs__Policy pol,
			  uint32_t credits)
{
	Hs__SubscribeReq r = HS__SUBSCRIBE_REQ__INIT;
	r.topic = (char *)topic;
	r.depth = depth;
	r.policy = pol;
	r.credits = credits;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &r;
	ck_assert_int_eq(send_msg(p, &m), 0);
	Hs__Message *rep = expect(p, HS__MESSAGE__BODY_SUBSCRIBE_REPLY);
	uint64_t id = rep->subscribe_reply->subscription;
	ck_assert_uint_ne(id, 0);
	hs__wire_free(rep);
	return id;
}

static int send_release(struct peer *p, uint64_t id)
{
	Hs__ReleaseNote rn = HS__RELEASE_NOTE__INIT;
	rn.n_tensor_ids = 1;
	rn.tensor_ids = &id;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_RELEASE;
	m.release = &rn;
	return send_msg(p, &m);
}

static int send_credit(struct peer *p, uint64_t sub, uint32_t n)
{
	Hs__CreditNote cn = HS__CREDIT_NOTE__INIT;
	cn.subscription = sub;
	cn.credits = n;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_CREDIT;
	m.credit = &cn;
	return send_msg(p, &m);
}

static uint64_t expect_emit_reply(struct peer *p, uint64_t req_seq)
{
	Hs__Message *m = expect(p, HS__MESSAGE__BODY_EMIT_REPLY);
	ck_assert_uint_eq(m->seq, req_seq);
	uint64_t seq = m->emit_reply->seq;
	hs__wire_free(m);
	return seq;
}

/* ---- tests ---- */

START_TEST(test_hello)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "unit");
	ck_assert_str_eq(p.s->name, "unit");
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	Hs__Message *r = expect(&p, HS__MESSAGE__BODY_OK);
	ck_assert_uint_eq(r->seq, p.seq);
	hs__wire_free(r);
	/* a second hello is a protocol error */
	ck_assert_int_eq(send_hello(&p, HS_PROTOCOL_VERSION, "again"), HS_EPROTO);
	expect_error(&p, HS_EPROTO);
	peer_close(&p);
}
END_TEST

START_TEST(test_long_name_cut)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	char name[200];
	memset(name, 'n', sizeof(name));
	name[199] = '\0';
	name[3] = '\n';
	hello(&p, name);
	ck_assert_uint_eq(strlen(p.s->name), HS__MAX_NAME);
	ck_assert_int_eq(p.s->name[3], '?');
	peer_close(&p);
}
END_TEST

START_TEST(test_bad_version)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	ck_assert_int_eq(send_hello(&p, 999, "old"), HS_EVERSION);
	expect_error(&p, HS_EVERSION);
	peer_close(&p);
}
END_TEST

START_TEST(test_before_hello)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	ck_assert_int_eq(send_alloc(&p, 16), HS_EPROTO);
	expect_error(&p, HS_EPROTO);
	expect_nothing(&p);
	ck_assert_uint_eq(b->tensors.live, 0);
	peer_close(&p);
}
END_TEST

START_TEST(test_daemon_body_and_fds_rejected)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "x");
	Hs__OkReply ok = HS__OK_REPLY__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_OK;
	m.ok = &ok;
	ck_assert_int_eq(send_msg(&p, &m), HS_EPROTO);
	expect_error(&p, HS_EPROTO);
	peer_close(&p);

	/* fds from a client: closed, protocol error */
	peer_open(&p);
	hello(&p, "y");
	int before = unit_count_fds();
	int fd = dup(0);
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message pm = HS__MESSAGE__INIT;
	pm.seq = 9;
	pm.body_case = HS__MESSAGE__BODY_PING;
	pm.ping = &ping;
	ck_assert_int_eq(hs__wire_send(p.sp[1], &pm, &fd, 1), 0);
	close(fd);
	ck_assert_int_eq(pump(&p), HS_EPROTO);
	ck_assert_int_eq(unit_count_fds(), before);
	expect_error(&p, HS_EPROTO);

	/* and bytes that are no Message */
	peer_close(&p);
	peer_open(&p);
	static const uint8_t junk[] = { 0xff, 0xff, 0xff, 0xff, 0x0f };
	ck_assert_int_eq(hsd_request_input(p.s, junk, sizeof(junk), NULL, 0), HS_EPROTO);
	expect_error(&p, HS_EPROTO);
	peer_close(&p);
}
END_TEST

START_TEST(test_alloc)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "producer");
	int fd = -1;
	uint64_t off;
	uint64_t a = alloc(&p, 1000, &fd, &off);
	ck_assert_int_ge(fd, 0); /* announced with the first tensor */
	int fd2 = -1;
	uint64_t c = alloc(&p, 1000, &fd2, NULL);
	ck_assert_int_eq(fd2, -1); /* same slab: not announced again */
	ck_assert_uint_ne(a, c);
	/* the memory is the client's to write */
	uint8_t *mem = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(mem, MAP_FAILED);
	memset(mem + off, 0xab, 1000);
	munmap(mem, 1 << 20);
	close(fd);
	ck_assert_uint_eq(p.s->held.n, 2);
	ck_assert_uint_eq(b->cpu.used, 2 * 1024);

	/* bad metadata: an error, the session carries on */
	ck_assert_int_eq(send_alloc(&p, -5), 0);
	expect_error(&p, HS_ESHAPE);
	/* too big for any slab under a cap is HS_ENOSPC */
	peer_close(&p);
	hsd_broker_free(b);
	cfg.cpu_cap = 1 << 20;
	make_broker();
	peer_open(&p);
	hello(&p, "capped");
	ck_assert_int_eq(send_alloc(&p, 2 << 20), 0);
	expect_error(&p, HS_ENOSPC);
	alloc(&p, 512 * 1024, NULL, NULL);
	peer_close(&p);
}
END_TEST

START_TEST(test_emit_deliver_release)
{
	make_broker();
	struct peer prod, cons;
	peer_open(&prod);
	peer_open(&cons);
	hello(&prod, "producer");
	hello(&cons, "consumer");
	uint64_t sub = subscribe(&cons, "cam/0", 4, HS__POLICY__POLICY_BLOCK, 8);

	int pfd = -1;
	uint64_t off;
	uint64_t id = alloc(&prod, 4096, &pfd, &off);
	uint8_t *pm = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0);
	ck_assert_ptr_ne(pm, MAP_FAILED);
	for (int i = 0; i < 4096; i++)
		pm[off + (uint64_t)i] = (uint8_t)i;

	ck_assert_int_eq(send_emit(&prod, id, "cam/0"), 0);
	ck_assert_uint_eq(expect_emit_reply(&prod, prod.seq), 1);
	ck_assert_uint_eq(prod.s->held.n, 0); /* the reference moved */

	/* the consumer sees SlabAnnounce with the fd first, then Deliver */
	int fds[HS__WIRE_MAX_FDS], nfds = 0;
	Hs__Message *m = recv_msg(&cons, fds, &nfds);
	ck_assert_ptr_nonnull(m);
	ck_assert_int_eq(m->body_case, HS__MESSAGE__BODY_SLAB);
	ck_assert_int_eq(nfds, 1);
	uint64_t slab_id = m->slab->slab_id;
	hs__wire_free(m);
	m = expect(&cons, HS__MESSAGE__BODY_DELIVER);
	ck_assert_uint_eq(m->seq, 0);
	Hs__TensorRef *t = m->deliver->tensor;
	ck_assert_uint_eq(t->id, id);
	ck_assert_uint_eq(t->seq, 1);
	ck_assert_str_eq(t->topic, "cam/0");
	ck_assert_uint_eq(t->subscription, sub);
	ck_assert_uint_eq(t->block->slab_id, slab_id);
	ck_assert_uint_eq(m->deliver->dropped, 0);
	uint8_t *cm = mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED, fds[0], 0);
	ck_assert_ptr_ne(cm, MAP_FAILED);
	for (int i = 0; i < 4096; i++)
		ck_assert_uint_eq(cm[t->block->offset + (uint64_t)i], (uint8_t)i);
	munmap(cm, 1 << 20);
	munmap(pm, 1 << 20);
	close(fds[0]);
	close(pfd);
	hs__wire_free(m);

	/* the producer can no longer release or emit it: not held */
	ck_assert_int_eq(send_release(&prod, id), 0);
	expect_error(&prod, HS_ENOENT);
	ck_assert_int_eq(send_emit(&prod, id, "cam/0"), 0);
	expect_error(&prod, HS_ENOENT);
	ck_assert_uint_eq(b->tensors.live, 1); /* the owner is unaffected */

	/* the consumer releases it: the block is back */
	ck_assert_int_eq(send_release(&cons, id), 0);
	expect_nothing(&cons);
	ck_assert_uint_eq(b->tensors.live, 0);
	ck_assert_uint_eq(b->cpu.used, 0);
	/* the id is now stale */
	ck_assert_int_eq(send_release(&cons, id), 0);
	expect_error(&cons, HS_ESTALE);
	/* unknown ids */
	ck_assert_int_eq(send_release(&cons, 12345), 0);
	expect_error(&cons, HS_ENOENT);
	ck_assert_int_eq(send_credit(&cons, 999, 1), 0);
	expect_error(&cons, HS_ENOENT);
	peer_close(&prod);
	peer_close(&cons);
}
END_TEST

START_TEST(test_block_reply_held)
{
	make_broker();
	struct peer prod, cons;
	peer_open(&prod);
	peer_open(&cons);
	hello(&prod, "producer");
	hello(&cons, "consumer");
	uint64_t sub = subscribe(&cons, "t", 1, HS__POLICY__POLICY_BLOCK, 1);
	uint64_t ids[3];
	for (int i = 0; i < 3; i++)
		ids[i] = alloc(&prod, 64, NULL, NULL);
	ck_assert_int_eq(send_emit(&prod, ids[0], "t"), 0); /* delivered */
	ck_assert_uint_eq(expect_emit_reply(&prod, prod.seq), 1);
	ck_assert_int_eq(send_emit(&prod, ids[1], "t"), 0); /* queued */
	ck_assert_uint_eq(expect_emit_reply(&prod, prod.seq), 2);
	ck_assert_int_eq(send_emit(&prod, ids[2], "t"), 0); /* held back */
	uint64_t held_seq = prod.seq;
	expect_nothing(&prod);

	/* the consumer takes one more: the held emit is accepted */
	ck_assert_int_eq(send_credit(&cons, sub, 1), 0);
	ck_assert_uint_eq(expect_emit_reply(&prod, held_seq), 3);
	ck_assert_int_eq(send_credit(&cons, sub, 5), 0);
	uint64_t expect_seq = 1;
	Hs__Message *m;
	while ((m = recv_msg(&cons, NULL, NULL))) {
		if (m->body_case == HS__MESSAGE__BODY_DELIVER)
			ck_assert_uint_eq(m->deliver->tensor->seq, expect_seq++);
		hs__wire_free(m);
	}
	ck_assert_uint_eq(expect_seq, 4);
	peer_close(&prod);
	peer_close(&cons);
	ck_assert_uint_eq(b->cpu.used, 0);
}
END_TEST

START_TEST(test_peer_death_releases_everything)
{
	make_broker();
	struct peer prod, cons, other;
	peer_open(&prod);
	peer_open(&cons);
	peer_open(&other);
	hello(&prod, "producer");
	hello(&cons, "consumer");
	hello(&other, "bystander");
	uint64_t keep = alloc(&other, 100, NULL, NULL);
	subscribe(&cons, "t", 2, HS__POLICY__POLICY_BLOCK, 2);
	uint64_t ids[6];
	for (int i = 0; i < 6; i++)
		ids[i] = alloc(&prod, 10000, NULL, NULL);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(send_emit(&prod, ids[i], "t"), 0);
	/* 2 delivered, 2 queued, 1 held back; the producer holds ids[5] */
	ck_assert_uint_eq(cons.s->held.n, 2);
	ck_assert_uint_eq(b->tensors.live, 6 + 1);

	/* the consumer dies: its socket hangs up */
	close(cons.sp[1]);
	cons.sp[1] = -1;
	ck_assert_int_eq(pump(&cons), -EPIPE);
	hsd_broker_session_close(b, cons.s);
	cons.s = NULL;
	/* the held-back emit went through (no subscriber left) */
	ck_assert_uint_eq(b->tensors.live, 1 + 1);

	/* the producer dies too */
	close(prod.sp[1]);
	prod.sp[1] = -1;
	hsd_broker_session_close(b, prod.s);
	prod.s = NULL;
	ck_assert_uint_eq(b->tensors.live, 1);
	ck_assert_uint_eq(b->cpu.used, 256); /* only the bystander's */

	/* the bystander is unaffected and can release its own */
	ck_assert_int_eq(send_release(&other, keep), 0);
	expect_nothing(&other);
	ck_assert_uint_eq(b->cpu.used, 0);
	ck_assert_uint_eq(b->cpu.total, b->cpu.total - b->cpu.used);
	ck_assert_uint_eq(hsd_pool_largest_free(&b->cpu), b->cpu.slab_size);
	peer_close(&other);
	close(cons.sp[0]);
	close(prod.sp[0]);
	ck_assert_uint_eq(b->nsessions, 0);
}
END_TEST

START_TEST(test_limits)
{
	cfg.max_subscriptions = 2;
	cfg.quota_tensors = 2;
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "greedy");
	subscribe(&p, "a", 1, HS__POLICY__POLICY_DROP_OLDEST, 1);
	subscribe(&p, "b", 1, HS__POLICY__POLICY_DROP_OLDEST, 1);
	Hs__SubscribeReq r = HS__SUBSCRIBE_REQ__INIT;
	r.topic = "c";
	r.depth = 1;
	r.credits = 1;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &r;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	expect_error(&p, HS_ELIMIT);
	/* bad topic and depth */
	r.topic = "no spaces";
	m.seq = 0;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	expect_error(&p, HS_ELIMIT); /* the limit is checked first */

	alloc(&p, 10, NULL, NULL);
	alloc(&p, 10, NULL, NULL);
	ck_assert_int_eq(send_alloc(&p, 10), 0);
	expect_error(&p, HS_EDQUOT);
	peer_close(&p);
	hsd_broker_free(b);

	cfg.quota_tensors = 0;
	cfg.quota_bytes = 4096;
	cfg.max_tensors = 3;
	make_broker();
	peer_open(&p);
	hello(&p, "bytes");
	ck_assert_int_eq(send_alloc(&p, 8192), 0);
	expect_error(&p, HS_EDQUOT);
	alloc(&p, 100, NULL, NULL);
	alloc(&p, 100, NULL, NULL);
	alloc(&p, 100, NULL, NULL);
	ck_assert_int_eq(send_alloc(&p, 100), 0);
	expect_error(&p, HS_ELIMIT);
	/* topic checks on subscribe */
	r.topic = "no spaces";
	m.seq = 0;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	expect_error(&p, HS_ETOPIC);
	r.topic = "ok";
	r.depth = 0;
	m.seq = 0;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	expect_error(&p, HS_EINVAL);
	peer_close(&p);
}
END_TEST

START_TEST(test_held_back_emits_count_as_held)
{
	cfg.max_tensors = 2;
	make_broker();
	struct peer prod, cons;
	peer_open(&prod);
	peer_open(&cons);
	hello(&prod, "producer");
	hello(&cons, "consumer");
	uint64_t sub = subscribe(&cons, "t", 1, HS__POLICY__POLICY_BLOCK, 1);
	uint64_t a = alloc(&prod, 64, NULL, NULL);
	uint64_t c = alloc(&prod, 64, NULL, NULL);
	ck_assert_int_eq(send_alloc(&prod, 64), 0);
	expect_error(&prod, HS_ELIMIT);
	ck_assert_int_eq(send_emit(&prod, a, "t"), 0); /* delivered */
	expect_emit_reply(&prod, prod.seq);
	ck_assert_int_eq(send_emit(&prod, c, "t"), 0); /* queued */
	expect_emit_reply(&prod, prod.seq);
	uint64_t d = alloc(&prod, 64, NULL, NULL);
	alloc(&prod, 64, NULL, NULL);
	ck_assert_int_eq(send_emit(&prod, d, "t"), 0); /* held back */
	uint64_t held_seq = prod.seq;
	ck_assert_uint_eq(prod.s->npending, 1);
	/* one reference held + one emit held back = the limit */
	ck_assert_int_eq(send_alloc(&prod, 64), 0);
	expect_error(&prod, HS_ELIMIT);
	ck_assert_int_eq(send_credit(&cons, sub, 1), 0);
	ck_assert_uint_eq(expect_emit_reply(&prod, held_seq), 3);
	ck_assert_uint_eq(prod.s->npending, 0);
	ck_assert_uint_eq(prod.s->pending_bytes, 0);
	alloc(&prod, 64, NULL, NULL);
	peer_close(&prod);
	peer_close(&cons);
	ck_assert_uint_eq(b->cpu.used, 0);
}
END_TEST

START_TEST(test_unsubscribe_and_drops)
{
	make_broker();
	struct peer prod, cons;
	peer_open(&prod);
	peer_open(&cons);
	hello(&prod, "producer");
	hello(&cons, "consumer");
	uint64_t sub = subscribe(&cons, "t", 2, HS__POLICY__POLICY_DROP_OLDEST, 1);
	for (int i = 0; i < 5; i++) {
		uint64_t id = alloc(&prod, 64, NULL, NULL);
		ck_assert_int_eq(send_emit(&prod, id, "t"), 0);
		ck_assert_uint_eq(expect_emit_reply(&prod, prod.seq), (uint64_t)i + 1);
	}
	/* 1 delivered, then 2..5 into a queue of 2: 2 dropped */
	ck_assert_int_eq(send_credit(&cons, sub, 10), 0);
	uint64_t seqs[8], dropped = 0;
	int n = 0;
	Hs__Message *m;
	while ((m = recv_msg(&cons, NULL, NULL))) {
		if (m->body_case == HS__MESSAGE__BODY_DELIVER) {
			seqs[n++] = m->deliver->tensor->seq;
			dropped = m->deliver->dropped;
		}
		hs__wire_free(m);
	}
	ck_assert_int_eq(n, 3);
	ck_assert_uint_eq(seqs[0], 1);
	ck_assert_uint_eq(seqs[1], 4);
	ck_assert_uint_eq(seqs[2], 5);
	ck_assert_uint_eq(dropped, 2);

	/* a second subscription with one credit: 1 delivered, 2 queued;
	 * unsubscribing releases the queued ones, not the delivered one */
	uint64_t sub2 = subscribe(&cons, "u", 4, HS__POLICY__POLICY_BLOCK, 1);
	for (int i = 0; i < 3; i++) {
		uint64_t id = alloc(&prod, 64, NULL, NULL);
		ck_assert_int_eq(send_emit(&prod, id, "u"), 0);
		expect_emit_reply(&prod, prod.seq);
	}
	while ((m = recv_msg(&cons, NULL, NULL)))
		hs__wire_free(m);
	ck_assert_uint_eq(cons.s->held.n, 4);
	ck_assert_uint_eq(b->tensors.live, 6);
	Hs__UnsubscribeReq u = HS__UNSUBSCRIBE_REQ__INIT;
	u.subscription = sub2;
	Hs__Message um = HS__MESSAGE__INIT;
	um.body_case = HS__MESSAGE__BODY_UNSUBSCRIBE;
	um.unsubscribe = &u;
	ck_assert_int_eq(send_msg(&cons, &um), 0);
	m = expect(&cons, HS__MESSAGE__BODY_OK);
	hs__wire_free(m);
	ck_assert_uint_eq(cons.s->nsubs, 1);
	ck_assert_uint_eq(cons.s->held.n, 4);
	ck_assert_uint_eq(b->tensors.live, 4);
	um.seq = 0;
	ck_assert_int_eq(send_msg(&cons, &um), 0);
	expect_error(&cons, HS_ENOENT);
	peer_close(&prod);
	peer_close(&cons);
	ck_assert_uint_eq(b->cpu.used, 0);
}
END_TEST

START_TEST(test_emit_refused_keeps_reference)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "producer");
	uint64_t id = alloc(&p, 64, NULL, NULL);
	ck_assert_int_eq(send_emit(&p, id, "bad topic!"), 0);
	expect_error(&p, HS_ETOPIC);
	ck_assert_int_eq(send_emit(&p, id, ""), 0);
	expect_error(&p, HS_ETOPIC);
	ck_assert_uint_eq(p.s->held.n, 1);
	ck_assert_int_eq(send_release(&p, id), 0);
	expect_nothing(&p);
	ck_assert_uint_eq(b->cpu.used, 0);

	Hs__ListReq lr = HS__LIST_REQ__INIT;
	lr.what = (Hs__ListWhat)99;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &lr;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	expect_error(&p, HS_EINVAL);
	peer_close(&p);
}
END_TEST

START_TEST(test_shutdown_notice)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "listener");
	hsd_broker_shutdown_notice(b, "test says bye");
	Hs__Message *m = expect(&p, HS__MESSAGE__BODY_SHUTDOWN);
	ck_assert_uint_eq(m->seq, 0);
	ck_assert_str_eq(m->shutdown->reason, "test says bye");
	hs__wire_free(m);
	peer_close(&p);
}
END_TEST

START_TEST(test_access_denied)
{
	cfg.allow_uids[0] = getuid() + 1;
	cfg.n_allow_uids = 1;
	make_broker();
	struct peer p;
	peer_open(&p);
	ck_assert_int_eq(send_hello(&p, HS_PROTOCOL_VERSION, "intruder"), HS_EPERM);
	Hs__Message *m = expect(&p, HS__MESSAGE__BODY_ERROR);
	ck_assert_int_eq(m->error->code, HS_EPERM);
	ck_assert_ptr_nonnull(strstr(m->error->message, "not allowed"));
	hs__wire_free(m);
	peer_close(&p);
	hsd_broker_free(b);

	/* allowed by gid */
	cfg.allow_gids[0] = getgid();
	cfg.n_allow_gids = 1;
	make_broker();
	peer_open(&p);
	hello(&p, "friend");
	peer_close(&p);
}
END_TEST

START_TEST(test_list)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "lister");
	uint64_t id = alloc(&p, 1000, NULL, NULL);
	subscribe(&p, "x", 2, HS__POLICY__POLICY_DROP_NEWEST, 1);
	Hs__ListReq lr = HS__LIST_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &lr;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	Hs__Message *r = expect(&p, HS__MESSAGE__BODY_LIST_REPLY);
	Hs__ListReply *l = r->list_reply;
	ck_assert_uint_eq(l->epoch, b->epoch);
	ck_assert_uint_eq(l->n_pools, 1);
	ck_assert_uint_eq(l->pools[0]->used, 1024);
	ck_assert_uint_eq(l->pools[0]->total, 1 << 20);
	ck_assert_uint_eq(l->pools[0]->free, (1 << 20) - 1024);
	ck_assert_uint_eq(l->n_clients, 1);
	ck_assert_str_eq(l->clients[0]->name, "lister");
	ck_assert_uint_eq(l->clients[0]->tensors_held, 1);
	ck_assert_uint_eq(l->n_topics, 1);
	ck_assert_uint_eq(l->topics[0]->n_subs, 1);
	ck_assert_uint_eq(l->n_tensors, 1);
	ck_assert_uint_eq(l->tensors[0]->id, id);
	ck_assert_uint_eq(l->tensors[0]->refs, 1);
	ck_assert_str_eq(l->tensors[0]->owner_name, "lister");
	hs__wire_free(r);

	/* many tensors: the reply is trimmed to fit */
	for (int i = 0; i < 12000; i++) {
		ck_assert_int_eq(send_alloc(&p, 1), 0);
		Hs__Message *x;
		while ((x = recv_msg(&p, NULL, NULL)))
			hs__wire_free(x);
	}
	lr.what = HS__LIST_WHAT__LIST_TENSORS;
	m.seq = 0;
	ck_assert_int_eq(send_msg(&p, &m), 0);
	r = expect(&p, HS__MESSAGE__BODY_LIST_REPLY);
	ck_assert_uint_gt(r->list_reply->n_tensors, 1000);
	ck_assert_uint_lt(r->list_reply->n_tensors, 12001);
	ck_assert_uint_eq(r->list_reply->n_pools, 0);
	hs__wire_free(r);
	peer_close(&p);
}
END_TEST

START_TEST(test_outbox)
{
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "slow");
	/* The client does not read: replies pile up in the socket, then in
	 * the outbox, in order. */
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	uint64_t first = p.seq + 1;
	for (int i = 0; i < 2000; i++) {
		m.seq = 0;
		ck_assert_int_eq(send_msg(&p, &m), 0);
	}
	ck_assert_uint_gt(p.s->out.nmsgs, 0);
	uint64_t expect_seq = first;
	Hs__Message *r;
	for (;;) {
		while ((r = recv_msg(&p, NULL, NULL))) {
			ck_assert_uint_eq(r->seq, expect_seq++);
			hs__wire_free(r);
		}
		if (hsd_outbox_flush(p.s) == 0 && !(r = recv_msg(&p, NULL, NULL)))
			break;
		if (r) {
			ck_assert_uint_eq(r->seq, expect_seq++);
			hs__wire_free(r);
		}
	}
	ck_assert_uint_eq(expect_seq, first + 2000);
	ck_assert_uint_eq(p.s->out.nmsgs, 0);
	peer_close(&p);
}
END_TEST

START_TEST(test_outbox_overflow_kills)
{
	cfg.outbox_max_msgs = 10;
	make_broker();
	struct peer p;
	peer_open(&p);
	hello(&p, "deaf");
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	for (int i = 0; i < 5000 && !p.s->dead; i++) {
		m.seq = 0;
		send_msg(&p, &m);
	}
	ck_assert(p.s->dead);
	peer_close(&p);
}
END_TEST

/* ---- issue 11: per-uid caps and the total outbox ---- */

static void subscribe_refused(struct peer *p, const char *topic)
{
	Hs__SubscribeReq r = HS__SUBSCRIBE_REQ__INIT;
	r.topic = (char *)topic;
	r.depth = 1;
	r.credits = 1;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &r;
	ck_assert_int_eq(send_msg(p, &m), 0);
	expect_error(p, HS_ELIMIT);
}

/* A PingReq; the daemon's answer is left where it is. */
static void send_ping(struct peer *p)
{
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	send_msg(p, &m);
}

START_TEST(test_uid_caps)
{
	cfg.uid_max_connections = 2;
	cfg.uid_max_subscriptions = 3;
	cfg.uid_max_topics = 2;
	cfg.exempt_set = true; /* nobody exempt: this process's uid is held */
	make_broker();
	struct peer a, c, over;
	peer_open(&a);
	peer_open(&c);
	/* A third connection is told why at its first datagram, unread. */
	peer_open(&over);
	ck_assert_int_eq(over.s->refuse, HS_ELIMIT);
	ck_assert_int_eq(send_hello(&over, HS_PROTOCOL_VERSION, "over"), HS_ELIMIT);
	Hs__Message *m = expect(&over, HS__MESSAGE__BODY_ERROR);
	ck_assert_int_eq(m->error->code, HS_ELIMIT);
	ck_assert_uint_eq(m->seq, 0);
	hs__wire_free(m);
	peer_close(&over);
	/* Past BROKER_MAX_REFUSING waiting ones: refused at once. */
	struct hsd_session *refusing[BROKER_MAX_REFUSING], *third;
	for (int i = 0; i < BROKER_MAX_REFUSING; i++)
		ck_assert_int_eq(hsd_broker_session_open(b, a.sp[0], 1, getuid(), getgid(), &refusing[i]), 0);
	ck_assert_int_eq(hsd_broker_session_open(b, a.sp[0], 1, getuid(), getgid(), &third), HS_ELIMIT);
	for (int i = 0; i < BROKER_MAX_REFUSING; i++)
		hsd_broker_session_close(b, refusing[i]);
	/* another uid is not held back */
	ck_assert_int_eq(hsd_broker_session_open(b, a.sp[0], 1, getuid() + 1, getgid(), &third), 0);
	ck_assert_int_eq(third->refuse, 0);
	hsd_broker_session_close(b, third);
	hello(&a, "a");
	hello(&c, "c");
	subscribe(&a, "t/1", 1, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&c, "t/2", 1, HS__POLICY__POLICY_BLOCK, 1);
	subscribe_refused(&a, "t/3"); /* a third topic for the uid */
	subscribe(&c, "t/1", 1, HS__POLICY__POLICY_BLOCK, 1);
	subscribe_refused(&a, "t/2"); /* a fourth subscription for the uid */
	ck_assert_uint_eq(a.s->usage->subs, 3);
	ck_assert_uint_eq(a.s->usage->topics, 2);
	ck_assert_uint_eq(a.s->usage->conns, 2);
	/* a session closed gives its share back; its idle topic is freed
	 * when a new one is wanted */
	peer_close(&c);
	ck_assert_uint_eq(a.s->usage->subs, 1);
	/* the scan that found nothing idle is not repeated for 100 ms */
	subscribe_refused(&a, "t/3");
	a.s->usage->evict_after_us = 0; /* as when they have passed */
	subscribe(&a, "t/3", 1, HS__POLICY__POLICY_BLOCK, 1);
	ck_assert_uint_eq(a.s->usage->topics, 2);
	peer_close(&a);
	/* its topics stay counted until freed */
	ck_assert_uint_eq(b->usage.map.n, 1);
	ck_assert_uint_eq(hsd_topics_evict_idle(&b->topics), 2);
	ck_assert_uint_eq(b->usage.map.n, 0);
}
END_TEST

START_TEST(test_outbox_total)
{
	cfg.outbox_total_bytes = 16 << 10; /* below 8192 replies to pings */
	make_broker();
	struct peer slow, good;
	peer_open(&slow);
	peer_open(&good);
	hello(&slow, "slow");
	hello(&good, "good");
	/* Pings until the socket is full and the outbox past the total. */
	for (int i = 0; i < 100000 && !slow.s->dead; i++)
		send_ping(&slow);
	ck_assert_msg(slow.s->dead, "the largest outbox was not dropped");
	ck_assert_uint_eq(slow.s->out.bytes, 0); /* freed at once */
	ck_assert_uint_eq(b->out_bytes, 0);
	send_ping(&good);
	hs__wire_free(expect(&good, HS__MESSAGE__BODY_OK));
	peer_close(&slow);
	peer_close(&good);
}
END_TEST

static Suite *session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_hello);
	tcase_add_test(tc, test_uid_caps);
	tcase_add_test(tc, test_outbox_total);
	tcase_add_test(tc, test_long_name_cut);
	tcase_add_test(tc, test_bad_version);
	tcase_add_test(tc, test_before_hello);
	tcase_add_test(tc, test_daemon_body_and_fds_rejected);
	tcase_add_test(tc, test_alloc);
	tcase_add_test(tc, test_emit_deliver_release);
	tcase_add_test(tc, test_block_reply_held);
	tcase_add_test(tc, test_peer_death_releases_everything);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_held_back_emits_count_as_held);
	tcase_add_test(tc, test_unsubscribe_and_drops);
	tcase_add_test(tc, test_emit_refused_keeps_reference);
	tcase_add_test(tc, test_shutdown_notice);
	tcase_add_test(tc, test_access_denied);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_outbox);
	tcase_add_test(tc, test_outbox_overflow_kills);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(session_suite)
