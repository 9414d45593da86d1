/* Load: CLIENTS concurrent client processes, a quarter producers (one
 * topic each) and the rest consumers spread over those topics, all under
 * the block policy; TENSORS emitted in total.
 *
 *   hs-stress-load [CLIENTS [TENSORS]]     (default 16 clients, 10,000)
 *   scripts/load.sh runs 64 clients, 100,000 tensors.
 *
 * Checked: every producer's k-th emit got seq k; every consumer received
 * seq 1..N of its topic with no gap, no duplicate, no drop and every
 * element right (tests/integration/roles.c); afterwards the daemon holds
 * no tensor, every pool is full, and its resident memory (VmRSS) is back
 * to what it was idle after a warm-up round of the same shape, within
 * RSS_SLACK_KIB. Why a warm-up and a slack: the first clients make the
 * daemon's heap grow (sessions, idmaps, the tensor table, queues, the
 * receive buffer) and glibc keeps freed heap for reuse instead of giving
 * every page back, so "idle" is measured once that has happened; what
 * remains is allocator noise: a few pages of malloc's bins moving (+16
 * to +24 KiB measured here). The slack, 256 KiB, is ten times that and
 * still below what the smallest real leak would add: 3 bytes per tensor
 * over the full run's 100,000 tensors, 27 bytes per tensor over CI's
 * 10,000 (a lost malloc is at least 32 bytes). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "roles.h"
#include "stress.h"

#define RSS_SLACK_KIB 256
#define ELEMS 256
#define DEPTH 8

struct round {
	const char *sock;
	const char *prefix; /* topics are PREFIX/0.. (seqs start at 1 on new topics) */
	int producers, consumers;
	uint64_t per_producer;
};

/* One round: consumers subscribe, then the producers go; 0 when every
 * process exited 0. */
static int run_round(const struct round *r, double *seconds)
{
	int n = r->producers + r->consumers;
	pid_t *pids = calloc((size_t)n, sizeof(*pids));
	struct ht_producer *prod = calloc((size_t)r->producers, sizeof(*prod));
	struct ht_consumer *cons = calloc((size_t)r->consumers, sizeof(*cons));
	char(*topics)[32] = calloc((size_t)r->producers, sizeof(*topics));
	if (!pids || !prod || !cons || !topics) {
		fprintf(stderr, "load: out of memory\n");
		return -1;
	}
	struct ht_chan ready, go;
	ht_chan_open(&ready);
	ht_chan_open(&go);
	int failed = 0, started = 0;
	for (int i = 0; i < r->producers; i++)
		snprintf(topics[i], sizeof(topics[i]), "%s/%d", r->prefix, i);
	for (int i = 0; i < r->consumers; i++) {
		cons[i] = (struct ht_consumer){ .sock = r->sock, .topic = topics[i % r->producers],
						.depth = DEPTH, .policy = HS_POLICY_BLOCK,
						.count = r->per_producer, .elems = ELEMS,
						.ready = &ready };
		pids[started] = ht_fork(ht_role_consumer, &cons[i]);
		if (pids[started] < 0) {
			failed = 1;
			break;
		}
		started++;
	}
	for (int i = 0; i < r->consumers && !failed; i++)
		if (ht_chan_recv(&ready, HT_LONG_DEADLINE_MS) != 'R') {
			fprintf(stderr, "load: consumer %d did not subscribe\n", i);
			failed = 1;
		}
	for (int i = 0; i < r->producers && !failed; i++) {
		prod[i] = (struct ht_producer){ .sock = r->sock, .topic = topics[i],
						.count = r->per_producer, .elems = ELEMS, .go = &go };
		pids[started] = ht_fork(ht_role_producer, &prod[i]);
		if (pids[started] < 0) {
			failed = 1;
			break;
		}
		started++;
	}
	int64_t t0 = ht_now_ms();
	for (int i = 0; i < r->producers && !failed; i++)
		ht_chan_send(&go, 'G');
	for (int i = 0; i < started; i++) {
		/* a producer or consumer that failed said why on stderr */
		int rc = ht_wait(pids[i], HT_LONG_DEADLINE_MS * 2);
		if (rc != 0) {
			fprintf(stderr, "load: %s %d (pid %d) ended with %d\n",
				i < r->consumers ? "consumer" : "producer",
				i < r->consumers ? i : i - r->consumers, (int)pids[i], rc);
			failed = 1;
		}
	}
	*seconds = (ht_now_ms() - t0) / 1000.0;
	ht_chan_close(&ready);
	ht_chan_close(&go);
	free(pids);
	free(prod);
	free(cons);
	free(topics);
	return failed ? -1 : 0;
}

int main(int argc, char **argv)
{
	int clients = argc > 1 ? atoi(argv[1]) : 16;
	uint64_t tensors = argc > 2 ? strtoull(argv[2], NULL, 0) : 10000;
	int producers = clients / 4;
	if (clients < 2 || producers < 1 || tensors < (uint64_t)producers) {
		fprintf(stderr, "usage: %s [CLIENTS >= 4 [TENSORS]]\n", argv[0]);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct round full = { .prefix = "load", .producers = producers, .consumers = clients - producers,
			      .per_producer = tensors / (uint64_t)producers };
	uint64_t total = full.per_producer * (uint64_t)producers;
	printf("load: %d clients (%d producers, %d consumers on %d topics), %" PRIu64
	       " tensors of %d bytes, block policy, depth %d\n",
	       clients, full.producers, full.consumers, producers, total, ELEMS * 4, DEPTH);

	ht_init();
	struct ht_daemon d;
	const char *extra[] = { "--log-level", "warn", NULL };
	if (ht_daemon_start(&d, extra) < 0) {
		fprintf(stderr, "load: hsbrokerd did not start\n");
		return 1;
	}
	full.sock = d.sock;
	long rss_start = st_rss_kib(d.pid);

	/* Warm-up: the same shape, 1% of the tensors. */
	struct round warm = full;
	warm.prefix = "warm-up";
	warm.per_producer = full.per_producer / 100 ? full.per_producer / 100 : 1;
	double secs;
	struct st_usage u;
	int failed = 0;
	if (run_round(&warm, &secs) < 0 || st_wait_idle(d.sock, HT_DEADLINE_MS, &u) < 0) {
		fprintf(stderr, "load: the warm-up round failed\n");
		failed = 1;
	}
	long rss_idle = st_rss_kib(d.pid);
	if (!failed)
		printf("load: daemon VmRSS %ld KiB at start, %ld KiB idle after the warm-up "
		       "(%" PRIu64 " tensors)\n",
		       rss_start, rss_idle, warm.per_producer * (uint64_t)producers);

	long rss_after = -1;
	if (!failed) {
		if (run_round(&full, &secs) < 0) {
			fprintf(stderr, "load: the load round failed\n");
			failed = 1;
		} else if (st_wait_idle(d.sock, HT_DEADLINE_MS, &u) < 0) {
			fprintf(stderr, "load: the daemon is not idle after the load\n");
			failed = 1;
		}
		rss_after = st_rss_kib(d.pid);
	}
	if (!failed) {
		printf("load: %" PRIu64 " tensors emitted, %" PRIu64 " deliveries checked in %.1f s "
		       "(%.0f tensors/s); nothing lost or duplicated\n",
		       total, full.per_producer * (uint64_t)full.consumers, secs, total / secs);
		printf("load: after: 0 tensors, pools full (free %" PRIu64 " of %" PRIu64
		       " bytes, %u slabs); daemon VmRSS %ld KiB (idle %ld KiB, %+ld KiB, slack %d KiB)\n",
		       u.pool_free, u.pool_total, u.slabs, rss_after, rss_idle, rss_after - rss_idle,
		       RSS_SLACK_KIB);
		const char *w = getenv("HS_TEST_DAEMON_WRAPPER");
		if (!RSS_COMPARABLE || (w && *w)) {
			printf("load: built with ASan or run under a wrapper: RSS not compared\n");
		} else if (rss_idle < 0 || rss_after < 0 || rss_after > rss_idle + RSS_SLACK_KIB) {
			fprintf(stderr, "load: daemon memory did not come back to its idle level\n");
			failed = 1;
		}
	}
	int stop = ht_daemon_stop(&d);
	if (stop != 0) {
		fprintf(stderr, "load: hsbrokerd stopped with %d (0 is a clean shutdown)\n", stop);
		failed = 1;
	}
	printf("load: %s\n", failed ? "FAILED" : "completed");
	return failed;
}
