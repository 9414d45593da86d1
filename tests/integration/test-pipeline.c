/* Streams between processes: one producer and one consumer, a stage that
 * passes tensors on, fan-out to three blocking subscribers, and the two
 * drop policies. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "itest.h"
#include "roles.h"

#define PIPE_COUNT 10000
#define FANOUT_COUNT 3000
#define FORWARD_COUNT 2000
#define FANOUT_SUBS 3
#define DROP_COUNT 500
#define DROP_DEPTH 4

START_TEST(test_producer_consumer)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct ht_chan ready;
	ht_chan_open(&ready);

	struct ht_consumer q = {
		.sock = d.sock, .topic = "it/pipe", .depth = 16,
		.policy = HS_POLICY_BLOCK, .count = PIPE_COUNT, .ready = &ready,
	};
	pid_t consumer = ht_fork(ht_role_consumer, &q);
	ck_assert_int_gt(consumer, 0);
	ck_assert_int_eq(ht_chan_recv(&ready, HT_DEADLINE_MS), 'R');

	struct ht_producer p = { .sock = d.sock, .topic = "it/pipe", .count = PIPE_COUNT };
	pid_t producer = ht_fork(ht_role_producer, &p);
	ck_assert_int_gt(producer, 0);

	ck_assert_int_eq(ht_wait(producer, HT_LONG_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(consumer, HT_LONG_DEADLINE_MS), 0);
	ht_chan_close(&ready);
	HT_END(&d);
}
END_TEST

/* producer -> forwarder -> consumer: the consumer reads memory it learns
 * of only through the forwarder's emits (with pair rings, the daemon must
 * tell it of every slab the forwarder was told of, however it was). */
START_TEST(test_forward)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct ht_chan ready;
	ht_chan_open(&ready);

	struct ht_consumer q = {
		.sock = d.sock, .topic = "it/fwd-out", .depth = 8,
		.policy = HS_POLICY_BLOCK, .count = FORWARD_COUNT, .ready = &ready,
	};
	pid_t consumer = ht_fork(ht_role_consumer, &q);
	ck_assert_int_gt(consumer, 0);
	ck_assert_int_eq(ht_chan_recv(&ready, HT_DEADLINE_MS), 'R');
	struct ht_forwarder f = { .sock = d.sock, .from = "it/fwd-in", .to = "it/fwd-out",
				  .count = FORWARD_COUNT, .ready = &ready };
	pid_t forwarder = ht_fork(ht_role_forwarder, &f);
	ck_assert_int_gt(forwarder, 0);
	ck_assert_int_eq(ht_chan_recv(&ready, HT_DEADLINE_MS), 'R');

	struct ht_producer p = { .sock = d.sock, .topic = "it/fwd-in", .count = FORWARD_COUNT };
	pid_t producer = ht_fork(ht_role_producer, &p);
	ck_assert_int_gt(producer, 0);

	ck_assert_int_eq(ht_wait(producer, HT_LONG_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(forwarder, HT_LONG_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(consumer, HT_LONG_DEADLINE_MS), 0);
	ht_chan_close(&ready);
	HT_END(&d);
}
END_TEST

START_TEST(test_fan_out_block)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct ht_chan ready;
	ht_chan_open(&ready);

	/* depth 2: the producer is held back often, which is the point */
	struct ht_consumer q = {
		.sock = d.sock, .topic = "it/fanout", .depth = 2,
		.policy = HS_POLICY_BLOCK, .count = FANOUT_COUNT, .ready = &ready,
	};
	pid_t consumers[FANOUT_SUBS];
	for (int i = 0; i < FANOUT_SUBS; i++) {
		consumers[i] = ht_fork(ht_role_consumer, &q);
		ck_assert_int_gt(consumers[i], 0);
	}
	for (int i = 0; i < FANOUT_SUBS; i++)
		ck_assert_int_eq(ht_chan_recv(&ready, HT_DEADLINE_MS), 'R');

	struct ht_producer p = { .sock = d.sock, .topic = "it/fanout", .count = FANOUT_COUNT };
	pid_t producer = ht_fork(ht_role_producer, &p);
	ck_assert_int_gt(producer, 0);

	ck_assert_int_eq(ht_wait(producer, HT_LONG_DEADLINE_MS), 0);
	for (int i = 0; i < FANOUT_SUBS; i++)
		ck_assert_int_eq(ht_wait(consumers[i], HT_LONG_DEADLINE_MS), 0);
	ht_chan_close(&ready);
	HT_END(&d);
}
END_TEST

/* A consumer too slow to keep up: it subscribes with a small queue and
 * reads nothing until the producer is done. */
struct slow_consumer {
	const char *sock;
	enum hs_policy policy;
	struct ht_chan ready, go;
};

static int slow_consumer(void *arg)
{
	struct slow_consumer *s = arg;
	const char *who = s->policy == HS_POLICY_DROP_OLDEST ? "drop-oldest" : "drop-newest";
	hs_client *c;
	if (ht_connect(s->sock, who, &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = DROP_DEPTH, .policy = s->policy };
	hs_subscription *sub;
	int rc = hs_subscribe(c, "it/drop", &opts, &sub);
	if (rc < 0) {
		hs_client_disconnect(c);
		return ht_child_fail(who, "subscribe: %s", hs_strerror(rc));
	}
	ht_chan_send(&s->ready, 'R');
	if (ht_chan_recv(&s->go, HT_LONG_DEADLINE_MS) < 0) {
		hs_client_disconnect(c);
		return ht_child_fail(who, "no go signal");
	}

	/* Every emitted tensor was either dropped for us or is on its way:
	 * read until received + dropped accounts for all of them. */
	int ret = 0;
	uint64_t received = 0, first = 0, last = 0, bad = 0;
	while (received + hs_subscription_dropped(sub) < DROP_COUNT) {
		hs_tensor *t;
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t);
		if (rc < 0) {
			ret = ht_child_fail(who, "receive after %" PRIu64 " (dropped %" PRIu64 "): %s",
					    received, hs_subscription_dropped(sub), hs_strerror(rc));
			break;
		}
		uint64_t seq = hs_tensor_seq(t);
		if (seq <= last || seq > DROP_COUNT) {
			ret = ht_child_fail(who, "seq %" PRIu64 " after %" PRIu64, seq, last);
			hs_tensor_release(t, NULL);
			break;
		}
		if (!first)
			first = seq;
		last = seq;
		bad += ht_tensor_check(t, seq, HT_ELEMS);
		received++;
		hs_tensor_release(t, NULL);
	}
	uint64_t dropped = hs_subscription_dropped(sub);
	fprintf(stderr, "[%s] received %" PRIu64 " (seq %" PRIu64 "..%" PRIu64 "), dropped %" PRIu64 "\n",
		who, received, first, last, dropped);
	if (!ret && bad)
		ret = ht_child_fail(who, "%" PRIu64 " elements differ", bad);
	if (!ret && dropped == 0)
		ret = ht_child_fail(who, "nothing dropped with depth %d and %d tensors", DROP_DEPTH, DROP_COUNT);
	if (!ret && received + dropped != DROP_COUNT)
		ret = ht_child_fail(who, "received %" PRIu64 " + dropped %" PRIu64 " != %d", received, dropped, DROP_COUNT);
	if (!ret && s->policy == HS_POLICY_DROP_OLDEST && last != DROP_COUNT)
		ret = ht_child_fail(who, "the newest tensor (seq %d) was not kept: last %" PRIu64, DROP_COUNT, last);
	if (!ret && s->policy == HS_POLICY_DROP_NEWEST && (first != 1 || last == DROP_COUNT))
		ret = ht_child_fail(who, "drop-newest should keep the oldest: got seq %" PRIu64 "..%" PRIu64, first, last);
	if (!ret) {
		/* nothing more may arrive */
		hs_tensor *t;
		rc = hs_subscription_receive(sub, 0, &t);
		if (rc == 0) {
			ret = ht_child_fail(who, "an extra tensor (seq %" PRIu64 ")", hs_tensor_seq(t));
			hs_tensor_release(t, NULL);
		} else if (rc != HS_ETIMEDOUT) {
			ret = ht_child_fail(who, "receive(0): %s", hs_strerror(rc));
		}
	}
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return ret;
}

static void run_drop(enum hs_policy policy, const char *policy_name)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct slow_consumer s = { .sock = d.sock, .policy = policy };
	ht_chan_open(&s.ready);
	ht_chan_open(&s.go);
	pid_t consumer = ht_fork(slow_consumer, &s);
	ck_assert_int_gt(consumer, 0);
	ck_assert_int_eq(ht_chan_recv(&s.ready, HT_DEADLINE_MS), 'R');

	struct ht_producer p = { .sock = d.sock, .topic = "it/drop", .count = DROP_COUNT };
	pid_t producer = ht_fork(ht_role_producer, &p);
	ck_assert_int_gt(producer, 0);
	/* never held back: a drop policy does not block the producer */
	ck_assert_int_eq(ht_wait(producer, HT_LONG_DEADLINE_MS), 0);

	/* The daemon's view while the consumer sleeps: its queue is at
	 * most depth long and drops are counted. */
	const char *args[] = { "ls", "topics", NULL };
	json_t *j = ht_hsctl_json(d.sock, args);
	ck_assert_ptr_nonnull(j);
	json_t *topics = json_object_get(j, "topics");
	ck_assert(json_is_array(topics));
	json_t *topic = NULL, *v;
	size_t i;
	json_array_foreach(topics, i, v)
		if (strcmp(json_string_value(json_object_get(v, "name")) ?: "", "it/drop") == 0)
			topic = v;
	ck_assert_msg(topic, "topic it/drop missing from hsctl ls topics");
	ck_assert_int_eq(json_integer_value(json_object_get(topic, "emitted")), DROP_COUNT);
	json_t *subs = json_object_get(topic, "subscribers");
	ck_assert_int_eq(json_array_size(subs), 1);
	json_t *sub = json_array_get(subs, 0);
	ck_assert_str_eq(json_string_value(json_object_get(sub, "policy")) ?: "", policy_name);
	ck_assert_int_eq(json_integer_value(json_object_get(sub, "depth")), DROP_DEPTH);
	ck_assert_int_le(json_integer_value(json_object_get(sub, "queued")), DROP_DEPTH);
	ck_assert_int_gt(json_integer_value(json_object_get(sub, "dropped")), 0);
	json_decref(j);

	ck_assert_int_eq(ht_chan_send(&s.go, 'G'), 0);
	ck_assert_int_eq(ht_wait(consumer, HT_LONG_DEADLINE_MS), 0);
	ht_chan_close(&s.ready);
	ht_chan_close(&s.go);
	HT_END(&d);
}

START_TEST(test_drop_oldest)
{
	run_drop(HS_POLICY_DROP_OLDEST, "drop-oldest");
}
END_TEST

START_TEST(test_drop_newest)
{
	run_drop(HS_POLICY_DROP_NEWEST, "drop-newest");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pipeline");
	ht_case(s, "producer_consumer", test_producer_consumer);
	ht_case(s, "forward", test_forward);
	ht_case(s, "fan_out_block", test_fan_out_block);
	ht_case(s, "drop_oldest", test_drop_oldest);
	ht_case(s, "drop_newest", test_drop_newest);
	return ht_main(s);
}
