/* Writes the seed corpus of fuzz-broker (tests/fuzz/corpus) from real
 * encoded messages: scripted scenarios (a pipeline per policy, depth and
 * credits; every refusal the daemon has; slow readers; hang-ups) and a few
 * random compositions of valid messages, deterministically.
 *   hs-fuzz-gen-corpus DIR */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hs-config.h"
#include "hsbroker/client.h"
#include "wire.h"

/* record ctl bits, as fuzz-broker.c reads them */
#define S(k) (k)
#define FIX 0x04
#define TOGGLE_READ 0x08
#define WITH_FD 0x10
#define HANGUP 0x20
#define SHUTDOWN 0x40

struct seed {
	uint8_t buf[1 << 16];
	size_t len;
	uint64_t seq;
};

static const char *out_dir;
static int nfiles;

static void begin(struct seed *s, uint8_t setup)
{
	s->len = 0;
	s->seq = 10;
	s->buf[s->len++] = setup;
}

static void raw(struct seed *s, uint8_t ctl, const void *bytes, size_t len)
{
	if (s->len + 3 + len > sizeof(s->buf)) {
		fprintf(stderr, "gen-corpus: seed too large\n");
		exit(1);
	}
	s->buf[s->len++] = ctl;
	s->buf[s->len++] = (uint8_t)(len & 0xff);
	s->buf[s->len++] = (uint8_t)(len >> 8);
	memcpy(s->buf + s->len, bytes, len);
	s->len += len;
}

static void rec(struct seed *s, uint8_t ctl, Hs__Message *m)
{
	static uint8_t tmp[1 << 16];
	if (!m->seq)
		m->seq = s->seq++;
	size_t n = hs__message__get_packed_size(m);
	if (n > sizeof(tmp)) {
		fprintf(stderr, "gen-corpus: message too large\n");
		exit(1);
	}
	hs__message__pack(m, tmp);
	raw(s, ctl, tmp, n);
}

static void save(struct seed *s, const char *fmt, ...)
{
	char name[128], path[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%03d-%s", out_dir, nfiles++, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(s->buf, 1, s->len, f) != s->len || fclose(f) != 0) {
		fprintf(stderr, "gen-corpus: %s: %s\n", path, strerror(errno));
		exit(1);
	}
}

/* ---- messages ---- */

static void hello(struct seed *s, uint8_t ctl, uint32_t version, const char *name)
{
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = version;
	h.client_name = (char *)name;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	rec(s, ctl, &m);
}

struct meta_spec {
	int32_t dev_type, dev_id;
	uint32_t code, bits, lanes;
	size_t ndim;
	int64_t shape[40];
	size_t nstrides;
	int64_t strides[40];
	uint64_t byte_offset;
};

static void alloc_meta(struct seed *s, uint8_t ctl, const struct meta_spec *ms)
{
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = ms->dev_type;
	dev.id = ms->dev_id;
	Hs__DType dt = HS__DTYPE__INIT;
	dt.code = ms->code;
	dt.bits = ms->bits;
	dt.lanes = ms->lanes;
	Hs__Meta meta = HS__META__INIT;
	meta.device = &dev;
	meta.dtype = &dt;
	meta.n_shape = ms->ndim;
	meta.shape = (int64_t *)ms->shape;
	meta.n_strides = ms->nstrides;
	meta.strides = (int64_t *)ms->strides;
	meta.byte_offset = ms->byte_offset;
	Hs__AllocReq a = HS__ALLOC_REQ__INIT;
	a.meta = &meta;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ALLOC;
	m.alloc = &a;
	rec(s, ctl, &m);
}

/* A host float32[n]. */
static void alloc(struct seed *s, uint8_t ctl, int64_t n)
{
	struct meta_spec ms = { .dev_type = 1, .code = 2, .bits = 32, .lanes = 1, .ndim = 1,
				.shape = { n } };
	alloc_meta(s, ctl, &ms);
}

static void emit(struct seed *s, uint8_t ctl, uint64_t id, const char *topic)
{
	Hs__EmitReq e = HS__EMIT_REQ__INIT;
	e.tensor_id = id;
	e.topic = (char *)topic;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_EMIT;
	m.emit = &e;
	rec(s, ctl, &m);
}

static void subscribe(struct seed *s, uint8_t ctl, const char *topic, uint32_t depth,
		      Hs__Policy policy, uint32_t credits)
{
	Hs__SubscribeReq r = HS__SUBSCRIBE_REQ__INIT;
	r.topic = (char *)topic;
	r.depth = depth;
	r.policy = policy;
	r.credits = credits;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &r;
	rec(s, ctl, &m);
}

static void unsubscribe(struct seed *s, uint8_t ctl, uint64_t sub)
{
	Hs__UnsubscribeReq r = HS__UNSUBSCRIBE_REQ__INIT;
	r.subscription = sub;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_UNSUBSCRIBE;
	m.unsubscribe = &r;
	rec(s, ctl, &m);
}

static void release(struct seed *s, uint8_t ctl, const uint64_t *ids, size_t n)
{
	Hs__ReleaseNote r = HS__RELEASE_NOTE__INIT;
	r.n_tensor_ids = n;
	r.tensor_ids = (uint64_t *)ids;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_RELEASE;
	m.release = &r;
	rec(s, ctl, &m);
}

static void release1(struct seed *s, uint8_t ctl, uint64_t id)
{
	release(s, ctl, &id, 1);
}

static void credit(struct seed *s, uint8_t ctl, uint64_t sub, uint32_t n)
{
	Hs__CreditNote c = HS__CREDIT_NOTE__INIT;
	c.subscription = sub;
	c.credits = n;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_CREDIT;
	m.credit = &c;
	rec(s, ctl, &m);
}

static void list(struct seed *s, uint8_t ctl, Hs__ListWhat what)
{
	Hs__ListReq l = HS__LIST_REQ__INIT;
	l.what = what;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &l;
	rec(s, ctl, &m);
}

/* A ListReq resuming at a cursor (a later page). */
static void list_from(struct seed *s, uint8_t ctl, Hs__ListWhat what, uint32_t section,
		      uint64_t key, uint64_t sub_key)
{
	Hs__ListCursor c = HS__LIST_CURSOR__INIT;
	c.section = section;
	c.key = key;
	c.sub_key = sub_key;
	Hs__ListReq l = HS__LIST_REQ__INIT;
	l.what = what;
	l.from = &c;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &l;
	rec(s, ctl, &m);
}

static void ping(struct seed *s, uint8_t ctl)
{
	Hs__PingReq p = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &p;
	rec(s, ctl, &m);
}

/* ---- scenarios ---- */

/* s1 subscribes, s0 produces n tensors, s1 takes and releases some,
 * s2 looks; ids through FIX (0 = the newest id seen). */
static void pipeline(Hs__Policy policy, uint32_t depth, uint32_t credits, int n, bool hangup)
{
	struct seed s;
	begin(&s, 0);
	subscribe(&s, S(1), "cam/0", depth, policy, credits);
	for (int i = 0; i < n; i++) {
		alloc(&s, S(0), 64 + 64 * i);
		emit(&s, S(0) | FIX, 0, "cam/0");
	}
	list(&s, S(2), HS__LIST_WHAT__LIST_ALL);
	credit(&s, S(1) | FIX, 0, 2);
	for (int i = 0; i < n; i++)
		release1(&s, S(1) | FIX, (uint64_t)i);
	credit(&s, S(1) | FIX, 0, 8);
	list(&s, S(2), HS__LIST_WHAT__LIST_TOPICS);
	if (hangup)
		ping(&s, S(1) | HANGUP);
	else
		unsubscribe(&s, S(1) | FIX, 0);
	alloc(&s, S(0), 16);
	emit(&s, S(0) | FIX, 0, "cam/0");
	save(&s, "pipeline-p%d-d%u-c%u%s", (int)policy, depth, credits, hangup ? "-hup" : "");
}

static void bad_meta(void)
{
	struct meta_spec base = { .dev_type = 1, .code = 2, .bits = 32, .lanes = 1, .ndim = 2,
				  .shape = { 4, 4 } };
	struct {
		const char *name;
		struct meta_spec ms;
	} cases[8];
	int n = 0;
	cases[n].name = "ndim33";
	cases[n].ms = base;
	cases[n].ms.ndim = 33;
	for (int i = 0; i < 33; i++)
		cases[n].ms.shape[i] = 1;
	n++;
	cases[n].name = "overflow";
	cases[n].ms = base;
	cases[n].ms.shape[0] = INT64_MAX / 2;
	cases[n].ms.shape[1] = 5;
	n++;
	cases[n].name = "negshape";
	cases[n].ms = base;
	cases[n].ms.shape[0] = -1;
	n++;
	cases[n].name = "negstride";
	cases[n].ms = base;
	cases[n].ms.nstrides = 2;
	cases[n].ms.strides[0] = -4;
	cases[n].ms.strides[1] = 1;
	n++;
	cases[n].name = "bigstride";
	cases[n].ms = base;
	cases[n].ms.nstrides = 2;
	cases[n].ms.strides[0] = INT64_MAX;
	cases[n].ms.strides[1] = 1;
	n++;
	cases[n].name = "dtype";
	cases[n].ms = base;
	cases[n].ms.code = 99;
	cases[n].ms.bits = 7;
	n++;
	cases[n].name = "cuda";
	cases[n].ms = base;
	cases[n].ms.dev_type = 2;
	cases[n].ms.dev_id = 3;
	n++;
	cases[n].name = "offset";
	cases[n].ms = base;
	cases[n].ms.byte_offset = 256;
	n++;
	for (int i = 0; i < n; i++) {
		struct seed s;
		begin(&s, 0);
		alloc_meta(&s, S(0), &cases[i].ms);
		ping(&s, S(0));
		save(&s, "meta-%s", cases[i].name);
	}
	/* empty tensor, a strided view, and a large (dedicated slab) one */
	struct seed s;
	begin(&s, 0);
	struct meta_spec e = base;
	e.shape[0] = 0;
	alloc_meta(&s, S(0), &e);
	struct meta_spec st = base;
	st.nstrides = 2;
	st.strides[0] = 1;
	st.strides[1] = 8;
	alloc_meta(&s, S(0), &st);
	alloc(&s, S(0), 300000);
	emit(&s, S(0) | FIX, 0, "big");
	release1(&s, S(0) | FIX, 1);
	list(&s, S(1), HS__LIST_WHAT__LIST_POOLS);
	save(&s, "meta-good");
}

static void protocol_errors(void)
{
	struct seed s;
	begin(&s, 0x1); /* session 0 without Hello */
	alloc(&s, S(0), 4);
	save(&s, "before-hello");

	begin(&s, 0x1);
	hello(&s, S(0), HS_PROTOCOL_VERSION + 1, "future");
	save(&s, "wrong-version");

	begin(&s, 0x1);
	hello(&s, S(0), HS_PROTOCOL_VERSION, "a\nname\x01with control characters and more than 63 bytes in it......");
	ping(&s, S(0));
	hello(&s, S(0), HS_PROTOCOL_VERSION, "again");
	save(&s, "hello-twice");

	begin(&s, 0x8 | 0x1); /* session 0 is uid 65534 */
	hello(&s, S(0), HS_PROTOCOL_VERSION, "nobody");
	ping(&s, S(1));
	save(&s, "denied");

	begin(&s, 0);
	ping(&s, S(0) | WITH_FD);
	ping(&s, S(0));
	save(&s, "with-fd");

	begin(&s, 0);
	static const uint8_t garbage[] = { 0xff, 0xff, 0xff, 0xff, 0x0f, 0x52, 0x80 };
	raw(&s, S(0), garbage, sizeof(garbage));
	raw(&s, S(1), garbage, 0);
	ping(&s, S(2));
	save(&s, "garbage");

	begin(&s, 0);
	{
		Hs__OkReply ok = HS__OK_REPLY__INIT;
		Hs__Message m = HS__MESSAGE__INIT;
		m.body_case = HS__MESSAGE__BODY_OK;
		m.ok = &ok;
		rec(&s, S(0), &m);
	}
	save(&s, "server-message");

	begin(&s, 0);
	subscribe(&s, S(0), "", 1, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&s, S(0), "bad topic!", 1, HS__POLICY__POLICY_BLOCK, 1);
	char longname[300];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	subscribe(&s, S(0), longname, 1, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&s, S(0), "t", 0, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&s, S(0), "t", 70000, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&s, S(0), "t", 1, HS__POLICY__POLICY_BLOCK, 0);
	subscribe(&s, S(0), "t", 1, (Hs__Policy)7, 1);
	unsubscribe(&s, S(0), 99);
	credit(&s, S(0), 99, 1);
	save(&s, "subscribe-errors");

	/* one session names another's tensor */
	begin(&s, 0);
	alloc(&s, S(0), 32);
	emit(&s, S(1) | FIX, 0, "stolen");
	release1(&s, S(1) | FIX, 0);
	uint64_t ids[] = { 0, 0x12345678, (7ull << 32) | 3, 0 };
	release(&s, S(1) | FIX, ids, 4);
	release1(&s, S(0) | FIX, 0);
	release1(&s, S(0) | FIX, 0); /* stale now */
	emit(&s, S(0) | FIX, 0, "gone");
	save(&s, "foreign-ids");
}

static void limits(void)
{
	struct seed s;
	/* quotas (setup bits 6, 7), max_tensors and the pool cap */
	begin(&s, 0xc0);
	for (int i = 0; i < 6; i++)
		alloc(&s, S(0), 1024);
	alloc(&s, S(1), 1 << 20);
	save(&s, "quotas");

	begin(&s, 0);
	for (int i = 0; i < 18; i++)
		alloc(&s, S(0), 8);
	save(&s, "max-tensors");

	begin(&s, 0);
	for (int i = 0; i < 4; i++)
		alloc(&s, S(i % 3), 1 << 20);
	alloc(&s, S(0), 3 << 20);
	save(&s, "pool-cap");

	begin(&s, 0);
	for (int i = 0; i < 5; i++) {
		char t[8];
		snprintf(t, sizeof(t), "t%d", i);
		subscribe(&s, S(0), t, 1, HS__POLICY__POLICY_DROP_NEWEST, 1);
	}
	for (int i = 0; i < 6; i++) {
		char t[8];
		snprintf(t, sizeof(t), "u%d", i);
		alloc(&s, S(1), 8);
		emit(&s, S(1) | FIX, 0, t);
	}
	save(&s, "max-subs-topics");

	/* a full blocking subscriber holds emits back, past max_pending */
	begin(&s, 0);
	subscribe(&s, S(1), "blk", 1, HS__POLICY__POLICY_BLOCK, 1);
	for (int i = 0; i < 8; i++) {
		alloc(&s, S(0), 16);
		emit(&s, S(0) | FIX, 0, "blk");
	}
	list(&s, S(2), HS__LIST_WHAT__LIST_ALL);
	ping(&s, S(0) | HANGUP); /* the emitter goes with emits held back */
	credit(&s, S(1) | FIX, 0, 100);
	save(&s, "pending-hangup");

	/* a subscriber that does not read: its outbox fills and it is cut */
	begin(&s, 0);
	subscribe(&s, S(1) | TOGGLE_READ, "flood", 64, HS__POLICY__POLICY_DROP_OLDEST, 1000);
	for (int i = 0; i < 90; i++) {
		alloc(&s, S(0), 8);
		emit(&s, S(0) | FIX, 0, "flood");
	}
	ping(&s, S(1) | TOGGLE_READ);
	save(&s, "slow-reader");

	/* a peer that does not read asks for lists */
	begin(&s, 0);
	alloc(&s, S(0), 8);
	for (int i = 0; i < 70; i++)
		list(&s, S(2) | (i == 0 ? TOGGLE_READ : 0), HS__LIST_WHAT__LIST_ALL);
	save(&s, "slow-lister");

	/* the daemon stops with everything in flight */
	begin(&s, 0);
	subscribe(&s, S(1), "stop", 1, HS__POLICY__POLICY_BLOCK, 1);
	for (int i = 0; i < 4; i++) {
		alloc(&s, S(0), 64);
		emit(&s, S(0) | FIX, 0, "stop");
	}
	alloc(&s, S(2), 64);
	list(&s, S(2) | TOGGLE_READ, HS__LIST_WHAT__LIST_ALL);
	ping(&s, S(0) | SHUTDOWN);
	save(&s, "shutdown");
}

/* Random compositions of valid messages, seeded. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static void random_mix(int count)
{
	static const char *topics[] = { "a", "b/c", "d:e", "f.g", "h-i" };
	for (int f = 0; f < count; f++) {
		struct seed s;
		begin(&s, (uint8_t)(rnd(4) == 0 ? 0x40 : 0));
		int steps = 8 + (int)rnd(40);
		for (int i = 0; i < steps; i++) {
			uint8_t k = (uint8_t)rnd(3);
			uint8_t extra = rnd(12) == 0 ? TOGGLE_READ : 0;
			if (rnd(30) == 0)
				extra |= HANGUP;
			switch (rnd(9)) {
			case 0:
			case 1:
				alloc(&s, k | extra, 1 + rnd(4096));
				break;
			case 2:
			case 3:
				emit(&s, k | FIX | extra, rnd(8), topics[rnd(5)]);
				break;
			case 4:
				subscribe(&s, k | extra, topics[rnd(5)], 1 + rnd(4), (Hs__Policy)rnd(3),
					  1 + rnd(3));
				break;
			case 5:
				credit(&s, k | FIX | extra, rnd(4), 1 + rnd(4));
				break;
			case 6:
				release1(&s, k | FIX | extra, rnd(8));
				break;
			case 7:
				unsubscribe(&s, k | FIX | extra, rnd(4));
				break;
			default:
				list(&s, k | extra, (Hs__ListWhat)rnd(5));
				break;
			}
		}
		save(&s, "mix");
	}
}

/* Extents that wrapped before issue 11: shape, strides, lanes and
 * byte_offset chosen so that 128-bit arithmetic overflows (the report's
 * complex128 x 64 lanes reaching 2^128 bytes), spans that fit alone but
 * not summed, the same on the negative side, and INT64_MIN strides. */
static void wrapping_meta(void)
{
	struct meta_spec c = { .dev_type = 1, .code = 5, .bits = 128, .lanes = 64, .ndim = 2,
			       .nstrides = 2 };
	struct meta_spec cases[5];
	static const char *names[5] = { "wrap128", "wrap-few", "wrap-low", "wrap-sum", "min-stride" };
	cases[0] = c;
	cases[0].shape[0] = 2;
	cases[0].shape[1] = (1ll << 20) * ((1ll << 39) - 1) + 1;
	cases[0].strides[0] = 1ll << 40;
	cases[0].strides[1] = (1ll << 20) * ((1ll << 39) + 1);
	cases[1] = cases[0];
	cases[1].shape[1] = 3;
	cases[2] = cases[1];
	cases[2].strides[0] = -cases[2].strides[0];
	cases[2].strides[1] = -cases[2].strides[1];
	struct meta_spec u8 = { .dev_type = 1, .code = 1, .bits = 8, .lanes = 1, .ndim = 2,
				.shape = { 3, 3 }, .nstrides = 2,
				.strides = { INT64_MAX, INT64_MAX } };
	cases[3] = u8;
	cases[4] = u8;
	cases[4].ndim = 1;
	cases[4].nstrides = 1;
	cases[4].shape[0] = 2;
	cases[4].strides[0] = INT64_MIN;
	for (int i = 0; i < 5; i++) {
		struct seed s;
		begin(&s, 0);
		alloc_meta(&s, S(0), &cases[i]);
		ping(&s, S(0));
		save(&s, "meta-%s", names[i]);
	}
}

/* Listings resumed at cursors in every section, one past the end, and
 * one naming no section (issue 11: ListReply pages). */
static void list_pages(void)
{
	struct seed s;
	begin(&s, 0);
	subscribe(&s, S(1), "page/a", 2, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&s, S(0), "page/a", 2, HS__POLICY__POLICY_BLOCK, 1);
	subscribe(&s, S(0), "page/b", 2, HS__POLICY__POLICY_BLOCK, 1);
	alloc(&s, S(0), 16);
	list_from(&s, S(0), HS__LIST_WHAT__LIST_ALL, 1, 1, 2);
	list_from(&s, S(0), HS__LIST_WHAT__LIST_TOPICS, 1, 2, 0);
	list_from(&s, S(0), HS__LIST_WHAT__LIST_ALL, 2, 2, 0);
	list_from(&s, S(0), HS__LIST_WHAT__LIST_TENSORS, 3, 0, 0);
	list_from(&s, S(0), HS__LIST_WHAT__LIST_ALL, 3, 1000, 0);
	list_from(&s, S(0), HS__LIST_WHAT__LIST_ALL, 9, 0, 0);
	ping(&s, S(0));
	save(&s, "list-pages");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	out_dir = argv[1];
	if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "gen-corpus: %s: %s\n", out_dir, strerror(errno));
		return 1;
	}
	for (int p = 0; p < 3; p++)
		for (uint32_t depth = 1; depth <= 3; depth += 2)
			for (uint32_t credits = 1; credits <= 4; credits += 3)
				pipeline((Hs__Policy)p, depth, credits, 5, false);
	pipeline(HS__POLICY__POLICY_BLOCK, 1, 1, 6, true);
	pipeline(HS__POLICY__POLICY_DROP_OLDEST, 2, 1, 6, true);
	bad_meta();
	protocol_errors();
	limits();
	random_mix(40);
	wrapping_meta(); /* last: earlier seeds keep their numbers */
	list_pages();
	printf("gen-corpus: %d seeds in %s\n", nfiles, out_dir);
	return 0;
}
