/* Guards on topics against other users' clients (docs/security.md):
 *  - block_timeout_config / block_timeout_option: a BLOCK subscriber of
 *    another uid that never reads holds the producer back only for its
 *    block_timeout (from the config, or asked for in hs_subscribe_opts
 *    when the config sets none): every emit of the producer returns, a
 *    BLOCK subscriber that reads gets every tensor in order, and the
 *    stalled one, when it reads at last, counts what it lost (received +
 *    dropped = emitted);
 *  - block_timeout_other_uid: the same with nothing but the config's
 *    bound for subscribers of another uid (block_timeout_other_uid_ms);
 *  - block_same_uid_waits: under that bound alone, a stalled subscriber
 *    of the producer's own uid is waited for: the producer is still
 *    blocked a second later, and once the subscriber reads it gets every
 *    tensor, none dropped;
 *  - acl: [acl] lines refuse a subscribe and an emit of a uid not listed
 *    (HS_EPERM; the session goes on), let a listed uid and a listed
 *    group through, and leave other topics open. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "itest.h"
#include "roles.h"
#include "twouid.h"

#define SLOW_COUNT 20
#define TIMEOUT_MS 200

struct stalled {
	const char *sock;
	uint32_t block_timeout_ms;  /* asked for; 0: the daemon's */
	bool same_uid;              /* stays root, and must lose nothing */
	struct ht_chan ready, go;
};

/* Subscribes BLOCK with depth 1 and reads nothing until told to. */
static int stalled_role(void *arg)
{
	struct stalled *st = arg;
	if (!st->same_uid && tu_become(TU_OTHER_UID, TU_OTHER_GID) < 0)
		return 1;
	hs_client *c;
	if (ht_connect(st->sock, "guards-stalled", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 1, .policy = HS_POLICY_BLOCK,
				   .block_timeout_ms = st->block_timeout_ms };
	hs_subscription *sub;
	int rc = hs_subscribe(c, "guards/slow", &opts, &sub);
	if (rc < 0)
		return ht_child_fail("stalled", "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&st->ready, 'R');
	if (ht_chan_recv(&st->go, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail("stalled", "no go signal");
	/* What it holds (one in its buffer, one in the daemon's queue),
	 * then nothing: the rest went on without it. */
	uint64_t got = 0, last = 0;
	hs_tensor *t;
	while (hs_subscription_receive(sub, 500, &t) == 0) {
		got++;
		last = hs_tensor_seq(t);
		hs_tensor_release(t, NULL);
	}
	uint64_t dropped = hs_subscription_dropped(sub);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	if (got == 0 || got + dropped != SLOW_COUNT || (st->same_uid && dropped))
		return ht_child_fail("stalled", "received %" PRIu64 " (last seq %" PRIu64
				     ") and %" PRIu64 " dropped of %d emitted",
				     got, last, dropped, SLOW_COUNT);
	return 0;
}

static void block_timeout_case(const char *config, uint32_t asked_ms)
{
	TU_NEED_ROOT();
	struct ht_daemon d;
	char log[300];
	TU_BEGIN(&d, config, log);

	struct stalled st = { .sock = d.sock, .block_timeout_ms = asked_ms };
	struct ht_chan ready, go;
	ht_chan_open(&st.ready);
	ht_chan_open(&st.go);
	ht_chan_open(&ready);
	ht_chan_open(&go);
	struct ht_consumer reader = { .sock = d.sock, .topic = "guards/slow", .depth = 4,
				      .policy = HS_POLICY_BLOCK, .count = SLOW_COUNT,
				      .ready = &ready };
	struct ht_producer prod = { .sock = d.sock, .topic = "guards/slow",
				    .count = SLOW_COUNT, .go = &go };
	pid_t stalled = ht_fork(stalled_role, &st);
	pid_t cons = ht_fork(ht_role_consumer, &reader);
	pid_t producer = ht_fork(ht_role_producer, &prod);
	ck_assert_int_eq(ht_chan_recv(&st.ready, HT_DEADLINE_MS), 'R');
	ck_assert_int_eq(ht_chan_recv(&ready, HT_DEADLINE_MS), 'R');
	ht_chan_send(&go, 'G');
	/* Every emit returns with its seq although one subscriber never
	 * reads, and the subscriber that reads loses nothing. */
	ck_assert_int_eq(ht_wait(producer, HT_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(cons, HT_DEADLINE_MS), 0);
	ht_chan_send(&st.go, 'G');
	ck_assert_int_eq(ht_wait(stalled, HT_DEADLINE_MS), 0);
	ck_assert_msg(ht_log_has(log, "guards/slow", "block_timeout"),
		      "no log line about the stalled subscription");
	ht_chan_close(&st.ready);
	ht_chan_close(&st.go);
	ht_chan_close(&ready);
	ht_chan_close(&go);
	HT_END(&d);
}

START_TEST(test_block_timeout_config)
{
	block_timeout_case("[subscribe]\nblock_timeout_ms = 200\n", 0);
}
END_TEST

START_TEST(test_block_timeout_other_uid)
{
	block_timeout_case("[subscribe]\nblock_timeout_other_uid_ms = 200\n", 0);
}
END_TEST

START_TEST(test_block_same_uid_waits)
{
	struct ht_daemon d;
	char log[300];
	TU_BEGIN(&d, "[subscribe]\nblock_timeout_other_uid_ms = 200\n", log);
	struct stalled st = { .sock = d.sock, .same_uid = true };
	struct ht_chan go;
	ht_chan_open(&st.ready);
	ht_chan_open(&st.go);
	ht_chan_open(&go);
	struct ht_producer prod = { .sock = d.sock, .topic = "guards/slow",
				    .count = SLOW_COUNT, .go = &go };
	pid_t stalled = ht_fork(stalled_role, &st);
	pid_t producer = ht_fork(ht_role_producer, &prod);
	ck_assert_int_eq(ht_chan_recv(&st.ready, HT_DEADLINE_MS), 'R');
	ht_chan_send(&go, 'G');
	/* Five times the other-uid bound: the producer still waits. */
	ht_sleep_ms(1000);
	int status;
	ck_assert_msg(waitpid(producer, &status, WNOHANG) == 0,
		      "the producer went on without its own uid's blocking subscriber");
	ht_chan_send(&st.go, 'G');
	ck_assert_int_eq(ht_wait(producer, HT_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(stalled, HT_DEADLINE_MS), 0);
	ht_chan_close(&st.ready);
	ht_chan_close(&st.go);
	ht_chan_close(&go);
	HT_END(&d);
}
END_TEST

START_TEST(test_block_timeout_option)
{
	/* no timeout by default: the subscriber's own one applies */
	block_timeout_case("[subscribe]\nblock_timeout_ms = 0\n", TIMEOUT_MS);
}
END_TEST

/* ---- allow lists ---- */

struct acl_client {
	const char *sock;
	uid_t uid;
	gid_t gid;
	bool guarded_ok;  /* may publish and subscribe on guarded/x */
	bool shared_ok;   /* may subscribe to shared/x */
};

static int expect_rc(const char *what, int rc, bool ok)
{
	if (ok ? rc == 0 : rc == HS_EPERM)
		return 0;
	return ht_child_fail("acl", "%s returned %s, expected %s", what,
			     rc == 0 ? "success" : hs_strerror(rc), ok ? "success" : "HS_EPERM");
}

static int acl_role(void *arg)
{
	struct acl_client *a = arg;
	if ((a->uid || a->gid) && tu_become(a->uid, a->gid) < 0)
		return 1;
	hs_client *c;
	if (ht_connect(a->sock, "guards-acl", &c) < 0)
		return 1;
	hs_subscription *sub = NULL;
	int rc = hs_subscribe(c, "guarded/x", NULL, &sub);
	if (expect_rc("subscribe guarded/x", rc, a->guarded_ok))
		return 1;
	if (sub)
		hs_subscription_close(sub);
	sub = NULL;
	hs_tensor *t;
	if ((rc = ht_tensor_make(c, 1, HT_ELEMS, &t)) < 0)
		return ht_child_fail("acl", "alloc: %s", hs_strerror(rc));
	uint64_t seq;
	rc = hs_tensor_emit(t, "guarded/x", NULL, &seq);
	if (expect_rc("emit on guarded/x", rc, a->guarded_ok))
		return 1;
	rc = hs_subscribe(c, "shared/x", NULL, &sub);
	if (expect_rc("subscribe shared/x", rc, a->shared_ok))
		return 1;
	if (sub)
		hs_subscription_close(sub);
	/* refused or not, the session goes on, and open topics are open */
	if ((rc = ht_round_trip(c, "open/x")) < 0)
		return ht_child_fail("acl", "round trip on an open topic: %s", hs_strerror(rc));
	hs_client_disconnect(c);
	return 0;
}

static int run_acl(const char *sock, uid_t uid, gid_t gid, bool guarded_ok, bool shared_ok)
{
	struct acl_client a = { sock, uid, gid, guarded_ok, shared_ok };
	pid_t pid = ht_fork(acl_role, &a);
	ck_assert_int_gt(pid, 0);
	return ht_wait(pid, HT_DEADLINE_MS);
}

START_TEST(test_acl)
{
	TU_NEED_ROOT();
	struct ht_daemon d;
	char log[300];
	TU_BEGIN(&d,
		 "[acl]\n"
		 "publish = guarded/*: 0, 4242\n"
		 "subscribe = guarded/*: root\n"
		 "subscribe = shared/*: 0, @4343\n",
		 log);
	ck_assert_int_eq(run_acl(d.sock, 0, 0, true, true), 0);
	ck_assert_int_eq(run_acl(d.sock, TU_OTHER_UID, TU_OTHER_GID, false, false), 0);
	/* its group is listed for the shared topics, not for the guarded ones */
	ck_assert_int_eq(run_acl(d.sock, 4243, 4343, false, true), 0);
	ck_assert_msg(ht_log_has(log, "refused by [acl]", "uid 65534"),
		      "no log line names the refused uid");
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("guards");
	ht_case(s, "block_timeout_config", test_block_timeout_config);
	ht_case(s, "block_timeout_option", test_block_timeout_option);
	ht_case(s, "block_timeout_other_uid", test_block_timeout_other_uid);
	ht_case(s, "block_same_uid_waits", test_block_same_uid_waits);
	ht_case(s, "acl", test_acl);
	return ht_main(s);
}
