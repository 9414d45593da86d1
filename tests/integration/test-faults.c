/* Processes that die or lose their daemon: a consumer SIGKILLed while it
 * holds tensors, a producer SIGKILLed mid-stream, a daemon that stops
 * under its clients and a new one that takes its place. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "itest.h"
#include "roles.h"

#define HOLD 20
#define OWN 3

/* JSON helpers: the client entry with this pid, or NULL. */
static json_t *client_by_pid(json_t *j, pid_t pid)
{
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(j, "clients"), i, v)
		if (json_integer_value(json_object_get(v, "pid")) == pid)
			return v;
	return NULL;
}

static size_t tensors_on_topic(json_t *j, const char *topic)
{
	size_t i, n = 0;
	json_t *v;
	json_array_foreach(json_object_get(j, "tensors"), i, v)
		if (strcmp(json_string_value(json_object_get(v, "topic")) ?: "", topic) == 0)
			n++;
	return n;
}

static void sleep_forever(void)
{
	for (;;)
		pause();
}

/* ---- a consumer killed while holding tensors ---- */

struct holder {
	const char *sock;
	struct ht_chan ready, holding;
};

static int holder(void *arg)
{
	struct holder *h = arg;
	hs_client *c;
	/* It counts every tensor it holds: no spare allocations. */
	setenv("HSBROKER_SPARES", "0", 1);
	if (ht_connect(h->sock, "it-holder", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 64, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, "it/kill", &opts, &sub);
	if (rc < 0)
		return ht_child_fail("holder", "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&h->ready, 'R');
	/* Received tensors, a subscription and tensors of its own that it
	 * never emits: every kind of reference a session can hold. */
	for (int k = 1; k <= HOLD; k++) {
		hs_tensor *t;
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t);
		if (rc < 0)
			return ht_child_fail("holder", "receive %d: %s", k, hs_strerror(rc));
		if (hs_tensor_seq(t) != (uint64_t)k || ht_tensor_check(t, k, HT_ELEMS))
			return ht_child_fail("holder", "tensor %d is wrong", k);
	}
	for (int k = 0; k < OWN; k++) {
		hs_tensor *t;
		rc = ht_tensor_make(c, 1000 + k, HT_ELEMS, &t);
		if (rc < 0)
			return ht_child_fail("holder", "alloc: %s", hs_strerror(rc));
	}
	ht_chan_send(&h->holding, 'H');
	sleep_forever(); /* until SIGKILL */
	return 1;
}

START_TEST(test_consumer_killed)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct holder h = { .sock = d.sock };
	ht_chan_open(&h.ready);
	ht_chan_open(&h.holding);
	pid_t consumer = ht_fork(holder, &h);
	ck_assert_int_gt(consumer, 0);
	ck_assert_int_eq(ht_chan_recv(&h.ready, HT_DEADLINE_MS), 'R');

	struct ht_producer p = { .sock = d.sock, .topic = "it/kill", .count = HOLD };
	pid_t producer = ht_fork(ht_role_producer, &p);
	ck_assert_int_eq(ht_wait(producer, HT_LONG_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_chan_recv(&h.holding, HT_DEADLINE_MS), 'H');

	/* The daemon sees what it holds... */
	const char *ls[] = { "ls", NULL };
	json_t *j = ht_hsctl_json(d.sock, ls);
	ck_assert_ptr_nonnull(j);
	json_t *cl = client_by_pid(j, consumer);
	ck_assert_msg(cl, "the consumer is not in hsctl ls clients");
	ck_assert_int_eq(json_integer_value(json_object_get(cl, "tensors_held")), HOLD + OWN);
	ck_assert_int_eq(json_integer_value(json_object_get(cl, "subscriptions")), 1);
	ck_assert_int_eq(json_array_size(json_object_get(j, "tensors")), HOLD + OWN);
	ck_assert_uint_eq(tensors_on_topic(j, "it/kill"), HOLD);
	json_t *pool = json_array_get(json_object_get(j, "pools"), 0);
	ck_assert_ptr_nonnull(pool);
	ck_assert_int_gt(json_integer_value(json_object_get(pool, "used")), 0);
	json_decref(j);

	/* ...and lets all of it go once the process dies. */
	ck_assert_int_eq(kill(consumer, SIGKILL), 0);
	ck_assert_int_eq(ht_wait(consumer, HT_DEADLINE_MS), 128 + SIGKILL);
	ck_assert_int_eq(ht_wait_idle(d.sock, HT_DEADLINE_MS), 0);

	ht_chan_close(&h.ready);
	ht_chan_close(&h.holding);
	HT_END(&d);
}
END_TEST

/* ---- a producer killed mid-stream ---- */

#define KEEP 24
#define READERS 2

struct keeper {
	const char *sock;
	struct ht_chan ready, holding, killed;
};

static int keeper(void *arg)
{
	struct keeper *k = arg;
	int fds0 = ht_count_fds();
	hs_client *c;
	if (ht_connect(k->sock, "it-keeper", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 4, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, "it/pkill", &opts, &sub);
	if (rc < 0)
		return ht_child_fail("keeper", "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&k->ready, 'R');
	hs_tensor *held[KEEP];
	for (int i = 0; i < KEEP; i++) {
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &held[i]);
		if (rc < 0)
			return ht_child_fail("keeper", "receive %d: %s", i + 1, hs_strerror(rc));
		if (hs_tensor_seq(held[i]) != (uint64_t)i + 1)
			return ht_child_fail("keeper", "seq %" PRIu64 " for #%d",
					     hs_tensor_seq(held[i]), i + 1);
	}
	ht_chan_send(&k->holding, 'H');
	if (ht_chan_recv(&k->killed, HT_DEADLINE_MS) < 0)
		return ht_child_fail("keeper", "no word of the producer's death");

	/* The producer is gone; what we hold is still ours and intact. */
	uint64_t bad = 0;
	for (int i = 0; i < KEEP; i++)
		bad += ht_tensor_check(held[i], (uint64_t)i + 1, HT_ELEMS);
	for (int i = 0; i < KEEP; i++)
		hs_tensor_release(held[i], NULL);
	/* The daemon still answers this session. */
	rc = hs_client_ping(c);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	if (bad)
		return ht_child_fail("keeper", "%" PRIu64 " elements changed after the producer died", bad);
	if (rc < 0)
		return ht_child_fail("keeper", "ping: %s", hs_strerror(rc));
	if (ht_count_fds() != fds0)
		return ht_child_fail("keeper", "fds: %d before connect, %d after disconnect",
				     fds0, ht_count_fds());
	return 0;
}

START_TEST(test_producer_killed)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct keeper k = { .sock = d.sock };
	ht_chan_open(&k.ready);
	ht_chan_open(&k.holding);
	ht_chan_open(&k.killed);
	pid_t readers[READERS];
	for (int i = 0; i < READERS; i++) {
		readers[i] = ht_fork(keeper, &k);
		ck_assert_int_gt(readers[i], 0);
	}
	for (int i = 0; i < READERS; i++)
		ck_assert_int_eq(ht_chan_recv(&k.ready, HT_DEADLINE_MS), 'R');

	/* Emits forever; once the readers stop reading, their full queues
	 * hold it back inside an emit, where the kill finds it. */
	struct ht_producer p = { .sock = d.sock, .topic = "it/pkill", .count = 0, .period_us = 1000 };
	pid_t producer = ht_fork(ht_role_producer, &p);
	ck_assert_int_gt(producer, 0);
	for (int i = 0; i < READERS; i++)
		ck_assert_int_eq(ht_chan_recv(&k.holding, HT_LONG_DEADLINE_MS), 'H');
	ck_assert_int_eq(kill(producer, SIGKILL), 0);
	ck_assert_int_eq(ht_wait(producer, HT_DEADLINE_MS), 128 + SIGKILL);

	/* The producer's session is gone (poll: the daemon notices the hang-up
	 * on its own time); the readers' tensors are not. */
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		const char *ls[] = { "ls", NULL };
		json_t *j = ht_hsctl_json(d.sock, ls);
		ck_assert_ptr_nonnull(j);
		bool gone = client_by_pid(j, producer) == NULL;
		size_t held = tensors_on_topic(j, "it/pkill");
		json_decref(j);
		ck_assert_uint_ge(held, KEEP);
		if (gone)
			break;
		ck_assert_msg(ht_now_ms() < end, "the killed producer's session is still listed");
		ht_sleep_ms(20);
	}
	for (int i = 0; i < READERS; i++)
		ck_assert_int_eq(ht_chan_send(&k.killed, 'K'), 0);
	for (int i = 0; i < READERS; i++)
		ck_assert_int_eq(ht_wait(readers[i], HT_DEADLINE_MS), 0);

	ht_chan_close(&k.ready);
	ht_chan_close(&k.holding);
	ht_chan_close(&k.killed);
	HT_END(&d);
}
END_TEST

/* ---- the daemon goes away ---- */

struct orphan {
	const char *sock;
	bool blocked; /* waits in receive(-1) while the daemon stops */
	struct ht_chan ready, stopped, done, restarted;
};

static bool gone_code(int rc)
{
	return rc == HS_ESHUTDOWN || rc == HS_EPIPE;
}

static int orphan(void *arg)
{
	struct orphan *o = arg;
	const char *who = o->blocked ? "orphan-blocked" : "orphan";
	int fds0 = ht_count_fds();
	hs_client *c;
	if (ht_connect(o->sock, who, &c) < 0)
		return 1;
	hs_client_stats st;
	int rc = hs_client_get_stats(c, &st);
	if (rc < 0)
		return ht_child_fail(who, "stats: %s", hs_strerror(rc));
	uint64_t epoch = st.epoch;
	hs_subscription *sub;
	rc = hs_subscribe(c, "it/gone", NULL, &sub);
	if (rc < 0)
		return ht_child_fail(who, "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&o->ready, 'R');

	hs_tensor *t = NULL;
	if (o->blocked) {
		/* no deadline of ours: the daemon's exit must end the wait */
		rc = hs_subscription_receive(sub, -1, &t);
		if (!gone_code(rc))
			return ht_child_fail(who, "receive(-1) while the daemon stopped: %s", hs_strerror(rc));
	} else {
		if (ht_chan_recv(&o->stopped, HT_DEADLINE_MS) < 0)
			return ht_child_fail(who, "no word of the stop");
		rc = hs_client_ping(c);
		if (!gone_code(rc))
			return ht_child_fail(who, "ping after the stop: %s", hs_strerror(rc));
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t);
		if (!gone_code(rc))
			return ht_child_fail(who, "receive after the stop: %s", hs_strerror(rc));
		rc = ht_tensor_make(c, 1, HT_ELEMS, &t);
		if (!gone_code(rc))
			return ht_child_fail(who, "alloc after the stop: %s", hs_strerror(rc));
	}
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	if (ht_count_fds() != fds0)
		return ht_child_fail(who, "fds: %d before connect, %d after disconnect", fds0, ht_count_fds());
	ht_chan_send(&o->done, 'D');

	/* A new daemon on the same path: a new epoch, and everything works. */
	if (ht_chan_recv(&o->restarted, HT_DEADLINE_MS) < 0)
		return ht_child_fail(who, "no word of the restart");
	if (ht_connect(o->sock, who, &c) < 0)
		return 1;
	rc = hs_client_get_stats(c, &st);
	if (rc < 0 || st.epoch == epoch)
		return ht_child_fail(who, "epoch %" PRIu64 " after a restart (was %" PRIu64 ")", st.epoch, epoch);
	char topic[64];
	snprintf(topic, sizeof(topic), "it/again.%d", (int)getpid());
	rc = ht_round_trip(c, topic);
	hs_client_disconnect(c);
	if (rc < 0)
		return ht_child_fail(who, "round trip with the new daemon: %s", hs_strerror(rc));
	return 0;
}

START_TEST(test_daemon_gone)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct orphan o[2] = { { .sock = d.sock, .blocked = false }, { .sock = d.sock, .blocked = true } };
	pid_t pids[2];
	for (int i = 0; i < 2; i++) {
		ht_chan_open(&o[i].ready);
		ht_chan_open(&o[i].stopped);
		ht_chan_open(&o[i].done);
		ht_chan_open(&o[i].restarted);
		pids[i] = ht_fork(orphan, &o[i]);
		ck_assert_int_gt(pids[i], 0);
		ck_assert_int_eq(ht_chan_recv(&o[i].ready, HT_DEADLINE_MS), 'R');
	}

	HT_STOP(&d);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(ht_chan_send(&o[i].stopped, 'T'), 0);
		ck_assert_int_eq(ht_chan_recv(&o[i].done, HT_DEADLINE_MS), 'D');
	}

	ck_assert_int_eq(ht_daemon_start_at(&d, d.sock, NULL), 0);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(ht_chan_send(&o[i].restarted, 'N'), 0);
		ck_assert_int_eq(ht_wait(pids[i], HT_DEADLINE_MS), 0);
		ht_chan_close(&o[i].ready);
		ht_chan_close(&o[i].stopped);
		ht_chan_close(&o[i].done);
		ht_chan_close(&o[i].restarted);
	}
	HT_END(&d);
}
END_TEST

/* ---- one daemon per socket; a stale socket is taken over ---- */

struct rt_child {
	const char *sock;
};

static int round_trip_child(void *arg)
{
	struct rt_child *r = arg;
	hs_client *c;
	if (ht_connect(r->sock, "it-rt", &c) < 0)
		return 1;
	int rc = ht_round_trip(c, "it/rt");
	hs_client_disconnect(c);
	if (rc < 0)
		return ht_child_fail("rt", "round trip: %s", hs_strerror(rc));
	return 0;
}

START_TEST(test_one_daemon_per_socket)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	const char *daemon = ht_prog("HSBROKERD");
	ck_assert_ptr_nonnull(daemon);

	/* A second daemon on the same path refuses to start... */
	char *argv[] = { (char *)daemon, (char *)"--socket", d.sock, NULL };
	pid_t second = ht_spawn(argv, NULL, -1, -1);
	ck_assert_int_gt(second, 0);
	ck_assert_int_eq(ht_wait(second, HT_DEADLINE_MS), 1);
	/* ...and the first one keeps serving. */
	ck_assert(ht_daemon_alive(&d));
	struct rt_child r = { .sock = d.sock };
	pid_t child = ht_fork(round_trip_child, &r);
	ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);

	/* A daemon that dies leaves its socket file; the next one takes the
	 * path over (its lock is free again). */
	ck_assert_int_eq(kill(d.pid, SIGKILL), 0);
	ck_assert_int_eq(ht_wait(d.pid, HT_DEADLINE_MS), 128 + SIGKILL);
	d.pid = -1;
	ck_assert_msg(access(d.sock, F_OK) == 0, "a SIGKILLed daemon cannot remove its socket");
	ck_assert_int_eq(ht_daemon_start_at(&d, d.sock, NULL), 0);
	child = ht_fork(round_trip_child, &r);
	ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);

	HT_END(&d);
	char lock[320];
	snprintf(lock, sizeof(lock), "%s.lock", d.sock);
	ck_assert_msg(access(lock, F_OK) < 0, "%s left behind", lock);
}
END_TEST

/* ---- a capped pool runs out: an error to that client, nothing else ---- */

struct hog {
	const char *sock;
	struct ht_chan ready, go;
};

static int hog(void *arg)
{
	struct hog *h = arg;
	hs_client *c;
	if (ht_connect(h->sock, "it-hog", &c) < 0)
		return 1;
	/* 256 KiB tensors into a pool capped at 2 MiB */
	DLDevice cpu = { kDLCPU, 0 };
	DLDataType u8 = { kDLUInt, 8, 1 };
	int64_t shape[1] = { 256 << 10 };
	hs_tensor *held[64];
	int n = 0, rc = 0;
	while (n < 64) {
		rc = hs_tensor_alloc(c, cpu, u8, 1, shape, NULL, &held[n]);
		if (rc < 0)
			break;
		memset(hs_tensor_data(held[n]), n, (size_t)shape[0]);
		n++;
	}
	if (rc != HS_ENOSPC)
		return ht_child_fail("hog", "after %d tensors: %s (expected HS_ENOSPC)", n, hs_strerror(rc));
	if (n < 1 || n > 8)
		return ht_child_fail("hog", "%d tensors of 256 KiB fit in a 2 MiB cap", n);
	fprintf(stderr, "[hog] %d tensors of 256 KiB, then %s\n", n, hs_err_name(rc));
	ht_chan_send(&h->ready, 'R');
	if (ht_chan_recv(&h->go, HT_DEADLINE_MS) < 0)
		return ht_child_fail("hog", "no go signal");
	/* what it holds is intact; freeing one makes room for one */
	for (int i = 0; i < n; i++) {
		const uint8_t *p = hs_tensor_data(held[i]);
		for (int64_t k = 0; k < shape[0]; k += 4093)
			if (p[k] != (uint8_t)i)
				return ht_child_fail("hog", "tensor %d changed", i);
	}
	hs_tensor_release(held[n - 1], NULL);
	rc = hs_tensor_alloc(c, cpu, u8, 1, shape, NULL, &held[n - 1]);
	if (rc < 0)
		return ht_child_fail("hog", "alloc after a release: %s", hs_strerror(rc));
	rc = hs_client_ping(c);
	hs_client_disconnect(c);
	return rc < 0 ? ht_child_fail("hog", "ping: %s", hs_strerror(rc)) : 0;
}

START_TEST(test_pool_exhausted)
{
	struct ht_daemon d;
	const char *opts[] = { "--slab-size", "1M", "--host-cap", "2M", NULL };
	HT_BEGIN(&d, opts);
	struct hog h = { .sock = d.sock };
	ht_chan_open(&h.ready);
	ht_chan_open(&h.go);
	pid_t pid = ht_fork(hog, &h);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(ht_chan_recv(&h.ready, HT_DEADLINE_MS), 'R');

	/* the pool as hsctl shows it: at its cap */
	const char *args[] = { "ls", "pools", NULL };
	json_t *j = ht_hsctl_json(d.sock, args);
	ck_assert_ptr_nonnull(j);
	json_t *pool = json_array_get(json_object_get(j, "pools"), 0);
	ck_assert_ptr_nonnull(pool);
	ck_assert_int_eq(json_integer_value(json_object_get(pool, "cap")), 2 << 20);
	ck_assert_int_le(json_integer_value(json_object_get(pool, "total")), 2 << 20);
	ck_assert_int_gt(json_integer_value(json_object_get(pool, "used")), 0);
	json_decref(j);

	/* other clients are not affected beyond the cap itself */
	struct rt_child r = { .sock = d.sock };
	pid_t other = ht_fork(round_trip_child, &r);
	int rc = ht_wait(other, HT_DEADLINE_MS);
	ck_assert_msg(rc == 0 || rc == 1, "a second client crashed (%d)", rc);

	ck_assert_int_eq(ht_chan_send(&h.go, 'G'), 0);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	ht_chan_close(&h.ready);
	ht_chan_close(&h.go);
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("faults");
	ht_case(s, "consumer_killed", test_consumer_killed);
	ht_case(s, "producer_killed", test_producer_killed);
	ht_case(s, "daemon_gone", test_daemon_gone);
	ht_case(s, "one_daemon_per_socket", test_one_daemon_per_socket);
	ht_case(s, "pool_exhausted", test_pool_exhausted);
	return ht_main(s);
}
