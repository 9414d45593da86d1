/* Idle subscriptions cost nothing per hand-off (issue 11 row 7): the
 * daemon's channel pass walks the channels with work, not every session
 * and subscription. A producer-consumer loop is timed alone, then again
 * while 128 idle clients hold 256 subscriptions each (32,768), all on
 * shared-memory channels; the second must stay within 3x of the first
 * (on b0d654f every pass walked every subscription: ~10x here). Both are
 * measured in the same run, best of three, so a slow machine slows both. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "itest.h"
#include "roles.h"

#define IDLE_CLIENTS 128
#define IDLE_SUBS 256
#define HANDOFFS 1000
#define ROUNDS 3

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

struct handoff {
	const char *sock;
	struct ht_chan result; /* the best round's ns, 8 bytes */
};

/* HANDOFFS alloc -> emit -> receive -> release, ROUNDS times; writes the
 * fastest round's nanoseconds. */
static int handoff_loop(void *arg)
{
	struct handoff *h = arg;
	hs_client *c;
	if (ht_connect(h->sock, "idle-handoff", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 4, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, "idle/handoff", &opts, &sub);
	if (rc < 0)
		return ht_child_fail("handoff", "subscribe: %s", hs_strerror(rc));
	int64_t best = INT64_MAX;
	for (int round = 0; round < ROUNDS; round++) {
		int64_t t0 = now_ns();
		for (int k = 1; k <= HANDOFFS; k++) {
			hs_tensor *t, *r;
			if ((rc = ht_tensor_make(c, (uint64_t)k, 16, &t)) < 0 ||
			    (rc = hs_tensor_emit(t, "idle/handoff", NULL, NULL)) < 0 ||
			    (rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &r)) < 0)
				return ht_child_fail("handoff", "hand-off %d: %s", k, hs_strerror(rc));
			hs_tensor_release(r, NULL);
		}
		int64_t dt = now_ns() - t0;
		if (dt < best)
			best = dt;
	}
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return write(h->result.wr, &best, sizeof(best)) == sizeof(best) ? 0 : 1;
}

static int64_t time_handoffs(const char *sock)
{
	struct handoff h = { .sock = sock };
	ht_chan_open(&h.result);
	pid_t pid = ht_fork(handoff_loop, &h);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(ht_wait(pid, HT_LONG_DEADLINE_MS), 0);
	int64_t ns = 0;
	ck_assert_int_eq(read(h.result.rd, &ns, sizeof(ns)), sizeof(ns));
	ht_chan_close(&h.result);
	return ns;
}

struct idle {
	const char *sock;
	struct ht_chan ready, done;
};

/* IDLE_CLIENTS clients in this one process (libhsclient has no thread of
 * its own), IDLE_SUBS subscriptions each, then nothing until told. */
static int idle_crowd(void *arg)
{
	struct idle *s = arg;
	static hs_client *clients[IDLE_CLIENTS];
	for (int i = 0; i < IDLE_CLIENTS; i++) {
		if (ht_connect(s->sock, "idle", &clients[i]) < 0)
			return 1;
		for (int k = 0; k < IDLE_SUBS; k++) {
			char topic[64];
			snprintf(topic, sizeof(topic), "idle/%d/%d", i, k);
			hs_subscription *sub;
			int rc = hs_subscribe(clients[i], topic, NULL, &sub);
			if (rc < 0)
				return ht_child_fail("idle", "subscribe %d/%d: %s", i, k,
						     hs_strerror(rc));
		}
	}
	ht_chan_send(&s->ready, 'R');
	ht_chan_recv(&s->done, HT_LONG_DEADLINE_MS);
	for (int i = 0; i < IDLE_CLIENTS; i++)
		hs_client_disconnect(clients[i]);
	return 0;
}

START_TEST(test_idle_subscriptions)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	int64_t alone = time_handoffs(d.sock);

	struct idle s = { .sock = d.sock };
	ht_chan_open(&s.ready);
	ht_chan_open(&s.done);
	pid_t crowd = ht_fork(idle_crowd, &s);
	ck_assert_int_gt(crowd, 0);
	ck_assert_int_eq(ht_chan_recv(&s.ready, HT_LONG_DEADLINE_MS), 'R');
	int64_t crowded = time_handoffs(d.sock);
	ck_assert_int_eq(ht_chan_send(&s.done, 'D'), 0);
	ck_assert_int_eq(ht_wait(crowd, HT_LONG_DEADLINE_MS), 0);
	ht_chan_close(&s.ready);
	ht_chan_close(&s.done);

	double ratio = (double)crowded / (double)alone;
	fprintf(stderr, "%d hand-offs: %.1f ms alone, %.1f ms beside %d idle subscriptions "
		"(x%.2f)\n", HANDOFFS, alone / 1e6, crowded / 1e6, IDLE_CLIENTS * IDLE_SUBS, ratio);
	ck_assert_msg(ratio < 3.0, "idle subscriptions slowed hand-offs x%.2f", ratio);
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("idle");
	ht_case(s, "idle_subscriptions", test_idle_subscriptions);
	return ht_main(s);
}
