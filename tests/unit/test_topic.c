/* Topics and subscription queues: BLOCK holds emits back in order;
 * DROP_OLDEST keeps the newest `depth`; DROP_NEWEST keeps the oldest;
 * credits gate deliveries; every reference ends back in the pool. */
#include <stdbool.h>
#include <stdint.h>

#include "hsbroker/error.h"
#include "pool.h"
#include "tensor.h"
#include "topic.h"
#include "unit.h"

static uint64_t next_slab;
static struct hsd_pool pool;
static struct hsd_tensor_table tt;
static struct hsd_topics ts;

struct delivery {
	uint64_t sub;
	uint64_t seq;
	struct hsd_tensor *t;
};
static struct delivery got[256];
static int ngot;
static uint64_t accepted_req[64], accepted_seq[64];
static int naccepted;

static void on_deliver(void *data, struct hsd_sub *sub, struct hsd_tensor *t, uint64_t seq)
{
	ck_assert_int_lt(ngot, 256);
	got[ngot++] = (struct delivery){ sub->id, seq, t };
}

static void on_accepted(void *data, struct hsd_pending_emit *pe, uint64_t seq)
{
	accepted_req[naccepted] = pe->req_seq;
	accepted_seq[naccepted++] = seq;
}

static void setup(void)
{
	next_slab = 0;
	ngot = naccepted = 0;
	hsd_pool_init(&pool, (DLDevice){ kDLCPU, 0 }, &hsd_slab_host_ops, 1 << 20, 0, &next_slab);
	hsd_tensor_table_init(&tt, 0);
	struct hsd_topic_hooks h = { .deliver = on_deliver, .accepted = on_accepted };
	hsd_topics_init(&ts, &tt, 0, 4, &h);
}

static void teardown(void)
{
	hsd_topics_fini(&ts);
	hsd_tensor_table_fini(&tt);
	hsd_pool_fini(&pool);
}

static struct hsd_tensor *new_tensor(void)
{
	Hs__Device dev = HS__DEVICE__INIT;
	Hs__DType dt = HS__DTYPE__INIT;
	Hs__Meta meta = HS__META__INIT;
	int64_t shape[] = { 64 };
	dev.type = kDLCPU;
	dt.code = kDLUInt;
	dt.bits = 8;
	dt.lanes = 1;
	meta.device = &dev;
	meta.dtype = &dt;
	meta.n_shape = 1;
	meta.shape = shape;
	struct hsd_tensor *t;
	ck_assert_int_eq(hsd_tensor_create(&tt, &pool, &meta, 0, &t), 0);
	return t;
}

/* Emits a new tensor; returns hsd_topic_emit's result. */
static int emit(struct hsd_topic *tp, uint64_t req, uint64_t *seq)
{
	struct hsd_pending_emit *pe = NULL;
	struct hsd_tensor *t = new_tensor();
	int r = hsd_topic_emit(&ts, tp, t, NULL, req, seq, &pe);
	if (r < 0)
		hsd_tensor_unref(&tt, t); /* refused: the reference stayed ours */
	return r;
}

static void release_deliveries(void)
{
	for (int i = 0; i < ngot; i++)
		if (got[i].t)
			hsd_tensor_unref(&tt, got[i].t);
	for (int i = 0; i < ngot; i++)
		got[i].t = NULL;
}

START_TEST(test_names)
{
	struct hsd_topic *a, *b;
	ck_assert_int_eq(hsd_topics_get(&ts, "x", false, &a), HS_ENOENT);
	ck_assert_int_eq(hsd_topics_get(&ts, "bad name", true, &a), HS_ETOPIC);
	ck_assert_int_eq(hsd_topics_get(&ts, "x", true, &a), 0);
	ck_assert_int_eq(hsd_topics_get(&ts, "x", false, &b), 0);
	ck_assert_ptr_eq(a, b);
	ck_assert_int_eq(hsd_topics_get(&ts, "y", true, &b), 0);
	ck_assert_ptr_ne(a, b);
	ck_assert_uint_eq(ts.n, 2);
}
END_TEST

START_TEST(test_no_subscribers)
{
	struct hsd_topic *tp;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(emit(tp, 1, &seq), 0);
	ck_assert_uint_eq(seq, 1);
	ck_assert_int_eq(emit(tp, 2, &seq), 0);
	ck_assert_uint_eq(seq, 2);
	/* nobody took a reference: the blocks are back */
	ck_assert_uint_eq(pool.used, 0);
	ck_assert_int_eq(tt.live, 0);
}
END_TEST

START_TEST(test_drop_oldest)
{
	struct hsd_topic *tp;
	struct hsd_sub *s;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 3, HS__POLICY__POLICY_DROP_OLDEST, 1, 0, &s), 0);
	for (uint64_t i = 1; i <= 6; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 0);
	ck_assert_int_eq(ngot, 1); /* one credit: seq 1 */
	ck_assert_uint_eq(got[0].seq, 1);
	ck_assert_uint_eq(s->count, 3);
	ck_assert_uint_eq(s->dropped, 2);
	hsd_sub_credit(&ts, s, 10);
	ck_assert_int_eq(ngot, 4);
	ck_assert_uint_eq(got[1].seq, 4); /* the newest three */
	ck_assert_uint_eq(got[2].seq, 5);
	ck_assert_uint_eq(got[3].seq, 6);
	ck_assert_uint_eq(tp->dropped, 2);
	release_deliveries();
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

START_TEST(test_drop_newest)
{
	struct hsd_topic *tp;
	struct hsd_sub *s;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 3, HS__POLICY__POLICY_DROP_NEWEST, 1, 0, &s), 0);
	for (uint64_t i = 1; i <= 6; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 0);
	ck_assert_uint_eq(s->dropped, 2);
	hsd_sub_credit(&ts, s, 10);
	ck_assert_int_eq(ngot, 4);
	ck_assert_uint_eq(got[0].seq, 1);
	ck_assert_uint_eq(got[1].seq, 2); /* the oldest three */
	ck_assert_uint_eq(got[2].seq, 3);
	ck_assert_uint_eq(got[3].seq, 4);
	release_deliveries();
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

START_TEST(test_block_in_order)
{
	struct hsd_topic *tp;
	struct hsd_sub *blk, *fast;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 2, HS__POLICY__POLICY_BLOCK, 1, 0, &blk), 0);
	/* a drop-oldest subscriber beside it never holds emits back */
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 1, HS__POLICY__POLICY_DROP_OLDEST, 100, 0, &fast), 0);

	ck_assert_int_eq(emit(tp, 1, &seq), 0); /* delivered to both */
	ck_assert_int_eq(emit(tp, 2, &seq), 0); /* queued for blk */
	ck_assert_int_eq(emit(tp, 3, &seq), 0); /* queued: blk full */
	ck_assert_uint_eq(blk->count, 2);
	ck_assert_int_eq(emit(tp, 4, &seq), 1); /* held back */
	ck_assert_int_eq(emit(tp, 5, &seq), 1); /* held back, behind 4 */
	ck_assert_uint_eq(tp->npending, 2);
	ck_assert_uint_eq(tp->emitted, 3);
	ck_assert_int_eq(naccepted, 0);

	hsd_sub_credit(&ts, blk, 1); /* delivers 2; room for 4 only */
	ck_assert_int_eq(naccepted, 1);
	ck_assert_uint_eq(accepted_req[0], 4);
	ck_assert_uint_eq(accepted_seq[0], 4);
	ck_assert_uint_eq(tp->npending, 1);

	hsd_sub_credit(&ts, blk, 10); /* delivers 3, 4; then 5 is accepted and delivered */
	ck_assert_int_eq(naccepted, 2);
	ck_assert_uint_eq(accepted_req[1], 5);
	ck_assert_uint_eq(accepted_seq[1], 5);
	ck_assert_uint_eq(tp->npending, 0);

	uint64_t expect = 1;
	for (int i = 0; i < ngot; i++)
		if (got[i].sub == blk->id)
			ck_assert_uint_eq(got[i].seq, expect++);
	ck_assert_uint_eq(expect, 6); /* 1..5, every one, in order */
	ck_assert_uint_eq(blk->dropped, 0);
	release_deliveries();
	hsd_topic_unsubscribe(&ts, blk);
	hsd_topic_unsubscribe(&ts, fast);
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

START_TEST(test_block_bounded_and_cancel)
{
	struct hsd_topic *tp;
	struct hsd_sub *blk;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 1, HS__POLICY__POLICY_BLOCK, 1, 0, &blk), 0);
	ck_assert_int_eq(emit(tp, 1, &seq), 0); /* delivered */
	ck_assert_int_eq(emit(tp, 2, &seq), 0); /* queued */
	struct hsd_pending_emit *first = NULL;
	struct hsd_tensor *t = new_tensor();
	ck_assert_int_eq(hsd_topic_emit(&ts, tp, t, NULL, 3, &seq, &first), 1);
	for (uint64_t i = 4; i <= 6; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 1);
	ck_assert_int_eq(emit(tp, 7, &seq), HS_EBUSY); /* max_pending 4 */
	ck_assert_uint_eq(tp->npending, 4);
	hsd_topic_cancel(&ts, first); /* its reference is released */
	ck_assert_uint_eq(tp->npending, 3);
	/* Unsubscribing the blocker lets the rest through, in order. */
	hsd_topic_unsubscribe(&ts, blk);
	ck_assert_uint_eq(tp->npending, 0);
	ck_assert_int_eq(naccepted, 3);
	ck_assert_uint_eq(accepted_req[0], 4);
	ck_assert_uint_eq(accepted_req[2], 6);
	ck_assert_uint_eq(accepted_seq[0], 3); /* the cancelled one never got a seq */
	release_deliveries();
	ck_assert_uint_eq(pool.used, 0);
	ck_assert_int_eq(tt.live, 0);
}
END_TEST

static int nstalled;
static void on_stalled(void *data, struct hsd_sub *sub)
{
	(void)data;
	(void)sub;
	nstalled++;
}

START_TEST(test_block_timeout)
{
	ts.hooks.stalled = on_stalled;
	nstalled = 0;
	struct hsd_topic *tp;
	struct hsd_sub *blk, *forever;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 1, HS__POLICY__POLICY_BLOCK, 1, 100, &blk), 0);
	ck_assert_uint_eq(hsd_topics_expire(&ts, hsd_tensor_now_us()), UINT64_MAX); /* nothing held */
	ck_assert_int_eq(emit(tp, 1, &seq), 0); /* delivered */
	ck_assert_int_eq(emit(tp, 2, &seq), 0); /* queued: blk full */
	struct hsd_pending_emit *pe = NULL;
	ck_assert_int_eq(hsd_topic_emit(&ts, tp, new_tensor(), NULL, 3, &seq, &pe), 1);
	uint64_t since = pe->since_us;
	/* not yet: it says when to look again */
	ck_assert_uint_eq(hsd_topics_expire(&ts, since + 50000), since + 100000);
	ck_assert_int_eq(naccepted, 0);
	/* past the timeout: blk is dropped from emit 3, which is accepted */
	ck_assert_uint_eq(hsd_topics_expire(&ts, since + 100000), UINT64_MAX);
	ck_assert_int_eq(naccepted, 1);
	ck_assert_uint_eq(accepted_req[0], 3);
	ck_assert(blk->stalled);
	ck_assert_uint_eq(blk->dropped, 1);
	ck_assert_uint_eq(blk->stalls, 1);
	ck_assert_int_eq(nstalled, 1);
	/* stalled: later emits skip it at once, counted */
	ck_assert_int_eq(emit(tp, 4, &seq), 0);
	ck_assert_uint_eq(blk->dropped, 2);
	/* it reads again: 2 is delivered, and it holds emits back again */
	hsd_sub_credit(&ts, blk, 1);
	ck_assert(!blk->stalled);
	ck_assert_int_eq(emit(tp, 5, &seq), 0); /* queued */
	ck_assert_int_eq(emit(tp, 6, &seq), 1); /* held back */
	hsd_topic_unsubscribe(&ts, blk);
	ck_assert_uint_eq(tp->npending, 0);

	/* block_timeout 0: held back for as long as it takes */
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 1, HS__POLICY__POLICY_BLOCK, 1, 0, &forever), 0);
	ck_assert_int_eq(emit(tp, 7, &seq), 0);
	ck_assert_int_eq(emit(tp, 8, &seq), 0);
	ck_assert_int_eq(emit(tp, 9, &seq), 1);
	ck_assert_uint_eq(hsd_topics_expire(&ts, UINT64_MAX - 1), UINT64_MAX);
	ck_assert_uint_eq(tp->npending, 1);
	ck_assert(!forever->stalled);
	hsd_topic_unsubscribe(&ts, forever);
	release_deliveries();
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

START_TEST(test_credits)
{
	struct hsd_topic *tp;
	struct hsd_sub *s;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 10, HS__POLICY__POLICY_BLOCK, 2, 0, &s), 0);
	for (uint64_t i = 1; i <= 5; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 0);
	ck_assert_int_eq(ngot, 2);
	ck_assert_uint_eq(s->credits, 0);
	ck_assert_uint_eq(s->count, 3);
	hsd_sub_credit(&ts, s, 1);
	ck_assert_int_eq(ngot, 3);
	hsd_sub_credit(&ts, s, 0);
	ck_assert_int_eq(ngot, 3);
	hsd_sub_credit(&ts, s, 5);
	ck_assert_int_eq(ngot, 5);
	ck_assert_uint_eq(s->credits, 3); /* left over for later emits */
	ck_assert_int_eq(emit(tp, 6, &seq), 0);
	ck_assert_int_eq(ngot, 6);
	ck_assert_uint_eq(s->delivered, 6);
	hsd_sub_credit(&ts, s, UINT32_MAX); /* saturates */
	ck_assert_uint_eq(s->credits, SUB_MAX_CREDITS);
	/* bad subscriptions */
	struct hsd_sub *x;
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 0, HS__POLICY__POLICY_BLOCK, 1, 0, &x), HS_EINVAL);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 1, HS__POLICY__POLICY_BLOCK, 0, 0, &x), HS_EINVAL);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 1, (Hs__Policy)7, 1, 0, &x), HS_EINVAL);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, SUB_MAX_DEPTH + 1, HS__POLICY__POLICY_BLOCK, 1, 0, &x),
			 HS_EINVAL);
	release_deliveries();
}
END_TEST

START_TEST(test_unsubscribe_releases_queue)
{
	struct hsd_topic *tp;
	struct hsd_sub *s;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 8, HS__POLICY__POLICY_DROP_OLDEST, 1, 0, &s), 0);
	for (uint64_t i = 1; i <= 5; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 0);
	ck_assert_uint_eq(tt.live, 5);
	hsd_topic_unsubscribe(&ts, s);
	ck_assert_uint_eq(tt.live, 1); /* only the delivered one */
	release_deliveries();
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

START_TEST(test_deep_queue_grows_in_order)
{
	struct hsd_topic *tp;
	struct hsd_sub *s;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&ts, "t", true, &tp), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&ts, tp, NULL, 100, HS__POLICY__POLICY_BLOCK, 1, 0, &s), 0);
	ck_assert_uint_le(s->qcap, 16); /* not 100 up front */
	for (uint64_t i = 1; i <= 10; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 0);
	hsd_sub_credit(&ts, s, 5); /* the ring's head moves */
	for (uint64_t i = 11; i <= 40; i++)
		ck_assert_int_eq(emit(tp, i, &seq), 0); /* grows across the wrap */
	ck_assert_uint_eq(s->count, 34);
	ck_assert_uint_ge(s->qcap, 34);
	ck_assert_uint_le(s->qcap, 100);
	hsd_sub_credit(&ts, s, 100);
	ck_assert_int_eq(ngot, 40);
	bool in_order = true;
	for (int i = 0; i < ngot; i++)
		in_order &= got[i].seq == (uint64_t)i + 1;
	ck_assert(in_order);
	release_deliveries();
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

START_TEST(test_idle_topics_evicted_at_limit)
{
	struct hsd_topics small;
	struct hsd_topic_hooks h = { .deliver = on_deliver, .accepted = on_accepted };
	hsd_topics_init(&small, &tt, 3, 4, &h);
	struct hsd_topic *a, *bt, *c, *x;
	struct hsd_sub *s;
	uint64_t seq;
	ck_assert_int_eq(hsd_topics_get(&small, "a", true, &a), 0);
	ck_assert_int_eq(hsd_topics_get(&small, "b", true, &bt), 0);
	ck_assert_int_eq(hsd_topics_get(&small, "c", true, &c), 0);
	/* a has a subscriber; b names a live tensor; c is idle */
	ck_assert_int_eq(hsd_topic_subscribe(&small, a, NULL, 1, HS__POLICY__POLICY_DROP_OLDEST, 1, 0, &s), 0);
	struct hsd_tensor *t = new_tensor();
	hsd_tensor_ref(t); /* keep it alive past the emit */
	struct hsd_pending_emit *pe;
	ck_assert_int_eq(hsd_topic_emit(&small, bt, t, NULL, 1, &seq, &pe), 0);
	ck_assert_ptr_eq(t->topic, bt->name);
	ck_assert_int_eq(hsd_topics_get(&small, "d", true, &x), 0); /* c evicted */
	ck_assert_uint_eq(small.n, 3);
	ck_assert_int_eq(hsd_topics_get(&small, "c", false, &x), HS_ENOENT);
	ck_assert_int_eq(hsd_topics_get(&small, "a", false, &x), 0);
	ck_assert_int_eq(hsd_topics_get(&small, "b", false, &x), 0);
	ck_assert_str_eq(t->topic, "b");
	/* nothing idle: the limit holds */
	struct hsd_topic *dd;
	ck_assert_int_eq(hsd_topics_get(&small, "d", false, &dd), 0);
	ck_assert_int_eq(hsd_topic_subscribe(&small, dd, NULL, 1, HS__POLICY__POLICY_DROP_OLDEST, 1, 0, &s), 0);
	ck_assert_int_eq(hsd_topics_get(&small, "e", true, &x), HS_ELIMIT);
	/* once the tensor naming b is gone, b can go */
	hsd_tensor_unref(&tt, t);
	ck_assert_int_eq(hsd_topics_get(&small, "e", true, &x), 0);
	ck_assert_int_eq(hsd_topics_get(&small, "b", false, &x), HS_ENOENT);
	hsd_topics_fini(&small);
	ck_assert_uint_eq(pool.used, 0);
}
END_TEST

static Suite *topic_suite(void)
{
	Suite *s = suite_create("topic");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_no_subscribers);
	tcase_add_test(tc, test_drop_oldest);
	tcase_add_test(tc, test_drop_newest);
	tcase_add_test(tc, test_block_in_order);
	tcase_add_test(tc, test_block_bounded_and_cancel);
	tcase_add_test(tc, test_block_timeout);
	tcase_add_test(tc, test_credits);
	tcase_add_test(tc, test_unsubscribe_releases_queue);
	tcase_add_test(tc, test_deep_queue_grows_in_order);
	tcase_add_test(tc, test_idle_topics_evicted_at_limit);
	suite_add_tcase(s, tc);
	return s;
}

UNIT_MAIN(topic_suite)
