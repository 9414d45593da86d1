/* Fault injection: a long-lived producer feeds topic f/main to a long-lived
 * blocking subscriber while short-lived clients come and are SIGKILLed at
 * random points: mid-alloc, mid-emit, holding tensors, mid-receive,
 * mid-list, even mid-connect.
 *
 *   hs-stress-faults [KILLS [SEED]]      (default 100 kills, seed from the
 *                                         clock or HS_STRESS_SEED)
 *
 * What "survived" means, checked at the end:
 *  - every victim died of our SIGKILL (a victim that saw something wrong
 *    exits 1 on its own, with the reason on stderr, and fails the run);
 *  - the long-lived subscriber saw 1..N with no gap, no drop and every
 *    element right, N being the last seq the long-lived producer got
 *    (its stream stalls while a blocking victim holds the queue, never
 *    breaks); a victim subscribed with the block policy saw consecutive
 *    seqs from its first one until it died, a drop-oldest one increasing
 *    seqs; every tensor received had the producer's pattern;
 *  - every 100 kills and at the end, no session of a dead process holds a
 *    tensor (hs_client_get_info), once the daemon has seen the hang-ups;
 *  - at the end the daemon still serves (a fresh client's round trip),
 *    holds 0 tensors with every pool back to full (used 0, free == total),
 *    and stops cleanly (exit 0).
 * The seed is printed; the schedule of roles and delays is reproducible
 * from it (the interleaving with the daemon is not). */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "roles.h"
#include "stress.h"

#define MAIN_TOPIC "f/main"
#define SIDE_TOPIC "f/side"
#define MAIN_ELEMS 64
#define VICTIMS 6
#define MAX_DELAY_MS 40

enum role { R_ALLOC, R_EMIT, R_HOLD, R_RECV, R_DROP, R_LIST, R_COUNT };
static const char *const role_names[R_COUNT] = { "alloc", "emit", "hold", "recv", "drop", "list" };

/* ---- the long-lived pair ---- */

struct main_pair {
	const char *sock;
	struct ht_chan ready;  /* consumer -> parent: subscribed */
	struct ht_chan stop;   /* parent -> producer */
	struct ht_chan last;   /* producer -> parent: last seq (u64) */
	struct ht_chan expect; /* parent -> consumer: last seq (u64) */
	struct ht_chan got;    /* consumer -> parent: tensors received (u64) */
};

static int main_producer(void *arg)
{
	struct main_pair *mp = arg;
	hs_client *c;
	if (ht_connect(mp->sock, "faults-main-producer", &c) < 0)
		return 1;
	uint64_t k = 0;
	for (;;) {
		if ((k & 7) == 0 && ht_chan_recv(&mp->stop, 0) >= 0)
			break;
		k++;
		hs_tensor *t;
		int rc = ht_tensor_make(c, k, MAIN_ELEMS, &t);
		if (rc < 0)
			return ht_child_fail("main producer", "alloc #%" PRIu64 ": %s", k, hs_strerror(rc));
		uint64_t seq = 0;
		rc = hs_tensor_emit(t, MAIN_TOPIC, NULL, &seq);
		if (rc < 0)
			return ht_child_fail("main producer", "emit #%" PRIu64 ": %s", k, hs_strerror(rc));
		if (seq != k)
			return ht_child_fail("main producer", "emit #%" PRIu64 " got seq %" PRIu64, k, seq);
		ht_sleep_ms(1);
	}
	hs_client_disconnect(c);
	return st_put_u64(mp->last.wr, k) == 0 ? 0 : 1;
}

static int main_consumer(void *arg)
{
	struct main_pair *mp = arg;
	hs_client *c;
	if (ht_connect(mp->sock, "faults-main-consumer", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 8, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, MAIN_TOPIC, &opts, &sub);
	if (rc < 0)
		return ht_child_fail("main consumer", "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&mp->ready, 'R');
	uint64_t k = 0, last = UINT64_MAX;
	while (k < last) {
		if (last == UINT64_MAX && st_get_u64(mp->expect.rd, &last, 0) == 0 && k >= last)
			break;
		hs_tensor *t;
		rc = hs_subscription_receive(sub, 100, &t);
		if (rc == HS_ETIMEDOUT)
			continue;
		if (rc < 0)
			return ht_child_fail("main consumer", "receive after seq %" PRIu64 ": %s", k,
					     hs_strerror(rc));
		uint64_t seq = hs_tensor_seq(t);
		if (seq != k + 1)
			return ht_child_fail("main consumer", "gap: seq %" PRIu64 " after %" PRIu64, seq, k);
		if (ht_tensor_check(t, seq, MAIN_ELEMS))
			return ht_child_fail("main consumer", "tensor %" PRIu64 " has wrong elements", seq);
		hs_tensor_release(t, NULL);
		k = seq;
	}
	if (hs_subscription_dropped(sub))
		return ht_child_fail("main consumer", "%" PRIu64 " dropped under the block policy",
				     hs_subscription_dropped(sub));
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return st_put_u64(mp->got.wr, k) == 0 ? 0 : 1;
}

/* ---- victims: loop until killed; exit 1 only when something is wrong ---- */

struct victim {
	const char *sock;
	enum role role;
	uint64_t seed;
	int index;
};

static void pause_a_little(struct st_rng *r)
{
	if (st_rng_below(r, 4) == 0)
		ht_sleep_ms((int)st_rng_below(r, 3));
}

static int victim_alloc(hs_client *c, struct st_rng *r)
{
	hs_tensor *held[8] = { 0 };
	for (;;) {
		uint32_t i = st_rng_below(r, 8);
		if (held[i]) {
			hs_tensor_release(held[i], NULL);
			held[i] = NULL;
		}
		/* 1 element to 2 Mi elements (up to 8 MiB: past the 4 MiB slabs,
		 * so dedicated slabs come and go as well) */
		uint32_t elems = 1u << st_rng_below(r, 21);
		elems += st_rng_below(r, elems);
		int rc = ht_tensor_make(c, i, elems, &held[i]);
		if (rc < 0)
			return ht_child_fail("victim alloc", "alloc of %u elements: %s", elems,
					     hs_strerror(rc));
		pause_a_little(r);
	}
}

static int victim_emit(hs_client *c, struct st_rng *r)
{
	hs_subscribe_opts opts = { .depth = 4, .policy = HS_POLICY_DROP_OLDEST };
	hs_subscription *sub;
	int rc = hs_subscribe(c, SIDE_TOPIC, &opts, &sub);
	if (rc < 0)
		return ht_child_fail("victim emit", "subscribe: %s", hs_strerror(rc));
	for (uint64_t k = 1;; k++) {
		hs_tensor *t;
		rc = ht_tensor_make(c, k, 1 + st_rng_below(r, 4096), &t);
		if (rc < 0)
			return ht_child_fail("victim emit", "alloc: %s", hs_strerror(rc));
		rc = hs_tensor_emit(t, SIDE_TOPIC, NULL, NULL);
		if (rc < 0)
			return ht_child_fail("victim emit", "emit: %s", hs_strerror(rc));
		if (st_rng_below(r, 2)) {
			hs_tensor *in;
			if (hs_subscription_receive(sub, 0, &in) == 0)
				hs_tensor_release(in, NULL);
		}
		pause_a_little(r);
	}
}

/* Block or drop-oldest subscriber of the main topic; hold > 0 keeps up to
 * that many tensors before releasing them all. */
static int victim_sub(hs_client *c, struct st_rng *r, enum hs_policy policy, uint32_t hold)
{
	const char *who = policy == HS_POLICY_BLOCK ? (hold ? "victim hold" : "victim recv")
						    : "victim drop";
	hs_subscribe_opts opts = { .depth = 1 + st_rng_below(r, 8), .policy = policy };
	hs_subscription *sub;
	int rc = hs_subscribe(c, MAIN_TOPIC, &opts, &sub);
	if (rc < 0)
		return ht_child_fail(who, "subscribe: %s", hs_strerror(rc));
	hs_tensor *held[16] = { 0 };
	uint32_t nheld = 0;
	uint64_t prev = 0;
	for (;;) {
		hs_tensor *t;
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t);
		if (rc < 0)
			return ht_child_fail(who, "receive after seq %" PRIu64 ": %s", prev,
					     hs_strerror(rc));
		uint64_t seq = hs_tensor_seq(t);
		if (prev && policy == HS_POLICY_BLOCK && seq != prev + 1)
			return ht_child_fail(who, "gap: seq %" PRIu64 " after %" PRIu64, seq, prev);
		if (prev && seq <= prev)
			return ht_child_fail(who, "seq %" PRIu64 " after %" PRIu64, seq, prev);
		if (ht_tensor_check(t, seq, MAIN_ELEMS))
			return ht_child_fail(who, "tensor %" PRIu64 " has wrong elements", seq);
		prev = seq;
		if (hold) {
			held[nheld++] = t;
			if (nheld >= hold) {
				while (nheld)
					hs_tensor_release(held[--nheld], NULL);
			}
		} else {
			hs_tensor_release(t, NULL);
		}
		if (policy == HS_POLICY_DROP_OLDEST)
			ht_sleep_ms(2);
		else
			pause_a_little(r);
	}
}

static int victim_list(hs_client *c, struct st_rng *r)
{
	for (;;) {
		hs_info *info;
		int rc = hs_client_get_info(c, (enum hs_info_what)st_rng_below(r, 5), &info);
		if (rc < 0)
			return ht_child_fail("victim list", "get_info: %s", hs_strerror(rc));
		hs_info_free(info);
		rc = hs_client_ping(c);
		if (rc < 0)
			return ht_child_fail("victim list", "ping: %s", hs_strerror(rc));
		pause_a_little(r);
	}
}

static int victim_main(void *arg)
{
	struct victim *v = arg;
	struct st_rng r;
	st_rng_seed(&r, v->seed);
	char name[32];
	snprintf(name, sizeof(name), "victim-%s", role_names[v->role]);
	hs_client *c;
	if (ht_connect(v->sock, name, &c) < 0)
		return 1;
	switch (v->role) {
	case R_ALLOC:
		return victim_alloc(c, &r);
	case R_EMIT:
		return victim_emit(c, &r);
	case R_HOLD:
		return victim_sub(c, &r, HS_POLICY_BLOCK, 1 + st_rng_below(&r, 16));
	case R_RECV:
		return victim_sub(c, &r, HS_POLICY_BLOCK, 0);
	case R_DROP:
		return victim_sub(c, &r, HS_POLICY_DROP_OLDEST, 0);
	default:
		return victim_list(c, &r);
	}
}

/* ---- the run ---- */

struct slot {
	pid_t pid;
	struct victim v;
};

static pid_t spawn(struct slot *s, const char *sock, struct st_rng *r, int index)
{
	s->v = (struct victim){ .sock = sock, .role = (enum role)st_rng_below(r, R_COUNT),
				.seed = st_rng_next(r), .index = index };
	s->pid = ht_fork(victim_main, &s->v);
	return s->pid;
}

/* Tensors held by sessions whose process is gone, once the daemon has seen
 * the hang-ups (polled up to the deadline). live: pids still running. */
static int dead_holdings(const char *sock, const pid_t *live, int nlive, uint64_t *held)
{
	hs_client *c;
	int rc = hs_client_connect(sock, "faults-check", &c);
	if (rc < 0) {
		fprintf(stderr, "faults: check: connect: %s\n", hs_strerror(rc));
		return -1;
	}
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	int ret = -1;
	for (;;) {
		hs_info *info;
		rc = hs_client_get_info(c, HS_INFO_CLIENTS, &info);
		if (rc < 0) {
			fprintf(stderr, "faults: check: get_info: %s\n", hs_strerror(rc));
			break;
		}
		uint64_t dead_sessions = 0;
		*held = 0;
		for (size_t i = 0; i < info->n_clients; i++) {
			pid_t pid = info->clients[i].pid;
			bool alive = pid == getpid();
			for (int j = 0; j < nlive && !alive; j++)
				alive = live[j] == pid;
			if (!alive) {
				dead_sessions++;
				*held += info->clients[i].tensors_held;
			}
		}
		hs_info_free(info);
		if (dead_sessions == 0) {
			ret = 0;
			break;
		}
		if (ht_now_ms() >= end) {
			fprintf(stderr, "faults: %" PRIu64 " sessions of dead processes still hold %" PRIu64
				" tensors\n", dead_sessions, *held);
			break;
		}
		ht_sleep_ms(10);
	}
	hs_client_disconnect(c);
	return ret;
}

int main(int argc, char **argv)
{
	long kills = argc > 1 ? atol(argv[1]) : 100;
	uint64_t seed = st_seed(argc > 2 ? argv[2] : NULL);
	if (kills < 1) {
		fprintf(stderr, "usage: %s [KILLS [SEED]]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("faults: %ld kills, seed 0x%016" PRIx64 " (rerun: %s %ld 0x%016" PRIx64 ")\n",
	       kills, seed, argv[0], kills, seed);
	struct st_rng rng;
	st_rng_seed(&rng, seed);
	ht_init();
	int64_t t0 = ht_now_ms();

	struct ht_daemon d;
	const char *extra[] = { "--log-level", "warn", "--slab-size", "4M", NULL };
	if (ht_daemon_start(&d, extra) < 0) {
		fprintf(stderr, "faults: hsbrokerd did not start\n");
		return 1;
	}

	struct main_pair mp = { .sock = d.sock };
	ht_chan_open(&mp.ready);
	ht_chan_open(&mp.stop);
	ht_chan_open(&mp.last);
	ht_chan_open(&mp.expect);
	ht_chan_open(&mp.got);
	pid_t consumer = ht_fork(main_consumer, &mp);
	if (consumer < 0 || ht_chan_recv(&mp.ready, HT_DEADLINE_MS) != 'R') {
		fprintf(stderr, "faults: the main consumer did not subscribe\n");
		return 1;
	}
	pid_t producer = ht_fork(main_producer, &mp);
	if (producer < 0)
		return 1;

	struct slot slots[VICTIMS];
	for (int i = 0; i < VICTIMS; i++)
		if (spawn(&slots[i], d.sock, &rng, i) < 0)
			return 1;

	long by_role[R_COUNT] = { 0 };
	long immediate = 0;
	int failed = 0;
	for (long n = 1; n <= kills && !failed; n++) {
		int i = (int)st_rng_below(&rng, VICTIMS);
		/* one kill in eight right away: mid-connect, mid-hello */
		int delay = st_rng_below(&rng, 8) == 0 ? 0 : (int)st_rng_below(&rng, MAX_DELAY_MS);
		if (delay)
			ht_sleep_ms(delay);
		else
			immediate++;
		kill(slots[i].pid, SIGKILL);
		int rc = ht_wait(slots[i].pid, HT_DEADLINE_MS);
		if (rc != 128 + SIGKILL) {
			fprintf(stderr, "faults: kill %ld: victim %s (pid %d) ended with %d before the kill\n",
				n, role_names[slots[i].v.role], (int)slots[i].pid, rc);
			failed = 1;
			break;
		}
		by_role[slots[i].v.role]++;
		if (!ht_daemon_alive(&d)) {
			fprintf(stderr, "faults: hsbrokerd died after kill %ld\n", n);
			failed = 1;
			break;
		}
		if (spawn(&slots[i], d.sock, &rng, i) < 0) {
			failed = 1;
			break;
		}
		if (n % 100 == 0) {
			pid_t live[VICTIMS + 2] = { producer, consumer };
			for (int j = 0; j < VICTIMS; j++)
				live[2 + j] = slots[j].pid;
			uint64_t held;
			if (dead_holdings(d.sock, live, VICTIMS + 2, &held) < 0) {
				failed = 1;
				break;
			}
			printf("faults: %ld kills, daemon serving, 0 tensors held by dead sessions\n", n);
		}
	}

	/* The remaining victims go the same way. */
	for (int i = 0; i < VICTIMS; i++) {
		kill(slots[i].pid, SIGKILL);
		int rc = ht_wait(slots[i].pid, HT_DEADLINE_MS);
		if (rc != 128 + SIGKILL && !failed) {
			fprintf(stderr, "faults: victim %s (pid %d) ended with %d before the kill\n",
				role_names[slots[i].v.role], (int)slots[i].pid, rc);
			failed = 1;
		}
	}

	/* The long-lived stream: stop it and compare ends. */
	uint64_t last = 0, got = 0;
	if (ht_chan_send(&mp.stop, 'S') < 0 || st_get_u64(mp.last.rd, &last, HT_LONG_DEADLINE_MS) < 0) {
		fprintf(stderr, "faults: the main producer did not stop\n");
		failed = 1;
	} else if (st_put_u64(mp.expect.wr, last) < 0 ||
		   st_get_u64(mp.got.rd, &got, HT_LONG_DEADLINE_MS) < 0) {
		fprintf(stderr, "faults: the main consumer did not finish (last seq %" PRIu64 ")\n", last);
		failed = 1;
	}
	if (ht_wait(producer, HT_DEADLINE_MS) != 0 || ht_wait(consumer, HT_DEADLINE_MS) != 0) {
		fprintf(stderr, "faults: the main producer or consumer failed\n");
		failed = 1;
	}
	if (!failed && got != last) {
		fprintf(stderr, "faults: main stream: emitted 1..%" PRIu64 ", received 1..%" PRIu64 "\n",
			last, got);
		failed = 1;
	}

	/* The daemon still serves a newcomer, and holds nothing. */
	if (!failed) {
		hs_client *c;
		if (ht_connect(d.sock, "faults-fresh", &c) < 0) {
			failed = 1;
		} else {
			int rc = ht_round_trip(c, "f/fresh");
			if (rc < 0) {
				fprintf(stderr, "faults: fresh round trip: %s\n", hs_strerror(rc));
				failed = 1;
			}
			hs_client_disconnect(c);
		}
	}
	struct st_usage u = { 0 };
	if (!failed && st_wait_idle(d.sock, HT_DEADLINE_MS, &u) < 0)
		failed = 1;
	int stop = ht_daemon_stop(&d);
	if (stop != 0) {
		fprintf(stderr, "faults: hsbrokerd stopped with %d (0 is a clean shutdown)\n", stop);
		failed = 1;
	}
	ht_chan_close(&mp.ready);
	ht_chan_close(&mp.stop);
	ht_chan_close(&mp.last);
	ht_chan_close(&mp.expect);
	ht_chan_close(&mp.got);

	printf("faults: kills by role:");
	for (int r = 0; r < R_COUNT; r++)
		printf(" %s %ld", role_names[r], by_role[r]);
	printf("; %ld right after the fork\n", immediate);
	if (failed) {
		printf("faults: FAILED (seed 0x%016" PRIx64 ")\n", seed);
		return 1;
	}
	printf("faults: %ld kills survived; main stream 1..%" PRIu64 " unbroken; "
	       "tensors leaked 0; pools full (used 0, free %" PRIu64 " of %" PRIu64 " bytes, %u slabs); "
	       "%.1f s\n",
	       kills, last, u.pool_free, u.pool_total, u.slabs, (ht_now_ms() - t0) / 1000.0);
	return 0;
}
