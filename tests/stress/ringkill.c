/* Pair rings under kill -9 (docs/design.md, "pair rings"): with rings on
 * (HSBROKER_RINGS=1, set here for the daemon and every client), producers
 * and subscribers of one topic are SIGKILLed at random points, so kills
 * land between a note's write and its publication, between a drop and
 * its id, mid-settle, mid-release.
 *
 *   hs-stress-ringkill [KILLS [SEED]]   (default 60 kills)
 *
 * A long-lived subscriber (block, depth 4) reads every tensor of the
 * topic and keeps the last few, checking each again before it lets it go:
 * a block freed while it still holds it would be reused by a producer and
 * change under it. Victims: producers emitting as fast as they can
 * (posted emits), block subscribers that read and hold a few, and
 * drop-oldest subscribers that never read. Checked at the end: no victim
 * saw anything wrong (they exit 1 if so; only our SIGKILL may end them),
 * the long-lived subscriber saw only sound tensors, in increasing order
 * per producer, and kept no ring of a producer gone (its fds stay
 * bounded), and once everyone is gone the daemon holds no tensor and
 * every pool is full again: nothing leaked, nothing freed early. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "roles.h"
#include "stress.h"

#define TOPIC "rk/main"
#define ELEMS 64
#define VICTIMS 5
#define KEEP 3
#define MAX_PRODUCERS 4096

static const DLDevice cpu = { kDLCPU, 0 };
static const DLDataType u32 = { kDLUInt, 32, 1 };

/* Element i of a tensor tagged tag (a producer's id and its count). */
static uint32_t elem(uint64_t tag, uint32_t i)
{
	return (uint32_t)(tag * 2654435761u) ^ (i * 40503u) ^ (uint32_t)(tag >> 32);
}

static int make(hs_client *c, uint64_t tag, hs_tensor **out)
{
	int64_t shape[1] = { ELEMS + 2 };
	int rc = hs_tensor_alloc(c, cpu, u32, 1, shape, NULL, out);
	if (rc < 0)
		return rc;
	uint32_t *v = hs_tensor_data(*out);
	v[0] = (uint32_t)tag;
	v[1] = (uint32_t)(tag >> 32);
	for (uint32_t i = 0; i < ELEMS; i++)
		v[2 + i] = elem(tag, i);
	return 0;
}

/* The tag of a sound tensor, or 0. */
static uint64_t check(const hs_tensor *t)
{
	const DLTensor *dl = hs_tensor_dltensor(t);
	if (dl->ndim != 1 || dl->shape[0] != ELEMS + 2 || dl->dtype.bits != 32)
		return 0;
	const uint32_t *v = hs_tensor_data(t);
	uint64_t tag = v[0] | (uint64_t)v[1] << 32;
	for (uint32_t i = 0; i < ELEMS; i++)
		if (v[2 + i] != elem(tag, i))
			return 0;
	return tag;
}

struct keeper {
	const char *sock;
	struct ht_chan ready, stop, got;
};

/* The long-lived subscriber. */
static int keeper_main(void *arg)
{
	struct keeper *k = arg;
	hs_client *c;
	if (ht_connect(k->sock, "ringkill-keeper", &c) < 0)
		return 1;
	hs_subscribe_opts o = { .depth = 4, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, TOPIC, &o, &sub);
	if (rc < 0)
		return ht_child_fail("keeper", "subscribe: %s", hs_strerror(rc));
	ht_chan_send(&k->ready, 'R');
	int fds_base = ht_count_fds();
	static uint32_t last[MAX_PRODUCERS];
	hs_tensor *kept[KEEP] = { 0 };
	uint64_t tags[KEEP] = { 0 };
	uint64_t n = 0, seq_last = 0;
	bool stopping = false;
	for (;;) {
		if (!stopping && ht_chan_recv(&k->stop, 0) >= 0)
			stopping = true;
		hs_tensor *t;
		rc = hs_subscription_receive(sub, stopping ? 300 : 50, &t);
		if (rc == HS_ETIMEDOUT) {
			if (stopping)
				break;
			continue;
		}
		if (rc < 0)
			return ht_child_fail("keeper", "receive after %" PRIu64 ": %s", n,
					     hs_strerror(rc));
		uint64_t tag = check(t);
		uint32_t who = (uint32_t)(tag >> 32), count = (uint32_t)tag;
		if (!tag || who >= MAX_PRODUCERS)
			return ht_child_fail("keeper", "tensor seq %" PRIu64 " is not sound",
					     hs_tensor_seq(t));
		if (count <= last[who])
			return ht_child_fail("keeper", "producer %u: %u after %u", who, count,
					     last[who]);
		last[who] = count;
		if (hs_tensor_seq(t) == seq_last)
			return ht_child_fail("keeper", "seq %" PRIu64 " twice", seq_last);
		seq_last = hs_tensor_seq(t);
		/* Held a while: still what it was when it came. */
		uint32_t slot = (uint32_t)(n % KEEP);
		if (kept[slot]) {
			if (check(kept[slot]) != tags[slot])
				return ht_child_fail("keeper", "a tensor it holds changed");
			hs_tensor_release(kept[slot], NULL);
		}
		kept[slot] = t;
		tags[slot] = tag;
		n++;
	}
	for (int i = 0; i < KEEP; i++) {
		if (kept[i] && check(kept[i]) != tags[i])
			return ht_child_fail("keeper", "a tensor it holds changed");
		hs_tensor_release(kept[i], NULL);
	}
	/* The rings of producers that died were let go while subscribed:
	 * what is open is about what the live ones hold (one fd a ring). */
	int fds = ht_count_fds();
	if (fds > fds_base + 2 * VICTIMS + 8)
		return ht_child_fail("keeper", "%d fds open after the kills, %d before: rings kept",
				     fds, fds_base);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return st_put_u64(k->got.wr, n) == 0 ? 0 : 1;
}

enum role { V_PRODUCER, V_READER, V_STALLED, V_COUNT };
static const char *const role_names[V_COUNT] = { "producer", "reader", "stalled" };

struct victim {
	const char *sock;
	enum role role;
	uint32_t id;
	uint64_t seed;
};

static int victim_main(void *arg)
{
	struct victim *v = arg;
	hs_client *c;
	if (ht_connect(v->sock, role_names[v->role], &c) < 0)
		return 1;
	struct st_rng r;
	st_rng_seed(&r, v->seed);
	if (v->role == V_PRODUCER) {
		for (uint32_t k = 1;; k++) {
			hs_tensor *t;
			int rc = make(c, (uint64_t)v->id << 32 | k, &t);
			if (rc < 0)
				return ht_child_fail("producer", "alloc #%u: %s", k, hs_strerror(rc));
			rc = hs_tensor_emit(t, TOPIC, NULL, NULL);
			if (rc < 0)
				return ht_child_fail("producer", "emit #%u: %s", k, hs_strerror(rc));
		}
	}
	hs_subscribe_opts o = { .depth = v->role == V_READER ? 1 : 2,
				.policy = v->role == V_READER ? HS_POLICY_BLOCK
							      : HS_POLICY_DROP_OLDEST };
	hs_subscription *sub;
	int rc = hs_subscribe(c, TOPIC, &o, &sub);
	if (rc < 0)
		return ht_child_fail(role_names[v->role], "subscribe: %s", hs_strerror(rc));
	if (v->role == V_STALLED)
		for (;;)
			ht_sleep_ms(1000);
	hs_tensor *held[4] = { 0 };
	for (;;) {
		hs_tensor *t;
		rc = hs_subscription_receive(sub, -1, &t);
		if (rc < 0)
			return ht_child_fail("reader", "receive: %s", hs_strerror(rc));
		if (!check(t))
			return ht_child_fail("reader", "tensor seq %" PRIu64 " is not sound",
					     hs_tensor_seq(t));
		uint32_t i = st_rng_below(&r, 4);
		hs_tensor_release(held[i], NULL);
		held[i] = t;
	}
}

int main(int argc, char **argv)
{
	long kills = argc > 1 ? atol(argv[1]) : 60;
	uint64_t seed = st_seed(argc > 2 ? argv[2] : NULL);
	if (kills < 1) {
		fprintf(stderr, "usage: %s [KILLS [SEED]]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ringkill: %ld kills, seed 0x%016" PRIx64 " (rerun: %s %ld 0x%016" PRIx64 ")\n",
	       kills, seed, argv[0], kills, seed);
	/* For the daemon and every client forked below. */
	setenv("HSBROKER_RINGS", "1", 1);
	struct st_rng rng;
	st_rng_seed(&rng, seed);
	ht_init();

	struct ht_daemon d;
	const char *extra[] = { "--log-level", "warn", "--slab-size", "4M", NULL };
	if (ht_daemon_start(&d, extra) < 0) {
		fprintf(stderr, "ringkill: hsbrokerd did not start\n");
		return 1;
	}
	struct keeper k = { .sock = d.sock };
	ht_chan_open(&k.ready);
	ht_chan_open(&k.stop);
	ht_chan_open(&k.got);
	pid_t keeper = ht_fork(keeper_main, &k);
	if (keeper < 0 || ht_chan_recv(&k.ready, HT_DEADLINE_MS) != 'R') {
		fprintf(stderr, "ringkill: the keeper did not subscribe\n");
		return 1;
	}

	struct victim vs[VICTIMS];
	pid_t pids[VICTIMS];
	uint32_t next_id = 1;
	long by_role[V_COUNT] = { 0 };
	for (int i = 0; i < VICTIMS; i++) {
		/* Two producers at least, always. */
		vs[i] = (struct victim){ d.sock, i < 2 ? V_PRODUCER : (enum role)st_rng_below(&rng, V_COUNT),
					 next_id++, st_rng_next(&rng) };
		pids[i] = ht_fork(victim_main, &vs[i]);
		if (pids[i] < 0)
			return 1;
	}
	int failed = 0;
	for (long n = 1; n <= kills && !failed; n++) {
		int i = (int)st_rng_below(&rng, VICTIMS);
		ht_sleep_ms(1 + (int)st_rng_below(&rng, 25));
		kill(pids[i], SIGKILL);
		int rc = ht_wait(pids[i], HT_DEADLINE_MS);
		if (rc != 128 + SIGKILL) {
			fprintf(stderr, "ringkill: kill %ld: %s victim ended with %d before the kill\n",
				n, role_names[vs[i].role], rc);
			failed = 1;
			break;
		}
		by_role[vs[i].role]++;
		if (!ht_daemon_alive(&d)) {
			fprintf(stderr, "ringkill: hsbrokerd died after kill %ld\n", n);
			failed = 1;
			break;
		}
		enum role role = i < 2 ? V_PRODUCER : (enum role)st_rng_below(&rng, V_COUNT);
		if (next_id >= MAX_PRODUCERS)
			next_id = 1; /* counts restart: the keeper may see a reused id */
		vs[i] = (struct victim){ d.sock, role, next_id++, st_rng_next(&rng) };
		pids[i] = ht_fork(victim_main, &vs[i]);
		if (pids[i] < 0)
			failed = 1;
	}
	for (int i = 0; i < VICTIMS; i++) {
		kill(pids[i], SIGKILL);
		int rc = ht_wait(pids[i], HT_DEADLINE_MS);
		if (rc != 128 + SIGKILL && !failed) {
			fprintf(stderr, "ringkill: %s victim ended with %d before the kill\n",
				role_names[vs[i].role], rc);
			failed = 1;
		}
	}
	ht_chan_send(&k.stop, 'S');
	uint64_t got = 0;
	if (st_get_u64(k.got.rd, &got, HT_LONG_DEADLINE_MS) < 0 || ht_wait(keeper, HT_DEADLINE_MS)) {
		fprintf(stderr, "ringkill: the keeper failed\n");
		failed = 1;
	}
	struct st_usage u;
	if (!failed && st_wait_idle(d.sock, HT_LONG_DEADLINE_MS, &u) < 0) {
		fprintf(stderr, "ringkill: the daemon still holds something\n");
		failed = 1;
	}
	if (!failed)
		printf("ringkill: %ld kills (%ld producers, %ld readers, %ld stalled); the keeper "
		       "read %" PRIu64 " sound tensors; the daemon holds 0 tensors, pools full "
		       "(%" PRIu64 " bytes)\n",
		       kills, by_role[V_PRODUCER], by_role[V_READER], by_role[V_STALLED], got,
		       u.pool_total);
	if (ht_daemon_stop(&d) != 0) {
		fprintf(stderr, "ringkill: hsbrokerd did not stop cleanly\n");
		failed = 1;
	}
	printf("ringkill: %s\n", failed ? "FAILED" : "passed");
	return failed;
}
