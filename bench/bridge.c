/* hs-bench-bridge: the ends of bench/bridge.sh's measurements through
 * hsbridge. Each prints one JSON line.
 *   send SOCKET TOPIC N BYTES   emits N uint8 tensors of BYTES (block policy
 *                               downstream sets the pace)
 *   recv SOCKET TOPIC N [SKIP]  receives SKIP + N; times the N - 1 intervals
 *                               after the first SKIP (a warm-up: both ends'
 *                               pages mapped in, the pools at their size)
 *   ping SOCKET N BYTES [P]     emits on P/ping (P: bench), waits for
 *                               P/pong: round trips, p50 and mean
 *   echo SOCKET N [P]           forwards N (0: every) P/ping to P/pong
 *                               (emit of the received tensor: no copy)
 * The sender writes one byte per page, so pages are touched as a real
 * producer's would be without the write costing the measurement. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsbroker/client.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "hs-bench-bridge: %s: %s\n", what, hs_strerror(err));
	return 1;
}

static int alloc(hs_client *c, int64_t bytes, uint64_t i, hs_tensor **t)
{
	DLDataType u8 = { kDLUInt, 8, 1 };
	int err = hs_tensor_alloc(c, (DLDevice){ kDLCPU, 0 }, u8, 1, &bytes, NULL, t);
	if (err < 0)
		return err;
	uint8_t *p = hs_tensor_data(*t);
	for (int64_t j = 0; j < bytes; j += 4096)
		p[j] = (uint8_t)i;
	return 0;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: see bench/bridge.c\n");
		return 2;
	}
	const char *mode = argv[1];
	hs_client *c;
	int err = hs_client_connect(argv[2], "hs-bench-bridge", &c);
	if (err < 0)
		return die("connect", err);
	hs_subscribe_opts o = { .depth = 8, .policy = HS_POLICY_BLOCK };
	hs_subscription *s = NULL;
	hs_tensor *t;
	char ping_topic[64], pong_topic[64];
	const char *prefix = !strcmp(mode, "ping") && argc == 6 ? argv[5]
			     : !strcmp(mode, "echo") && argc == 5 ? argv[4] : "bench";
	snprintf(ping_topic, sizeof(ping_topic), "%s/ping", prefix);
	snprintf(pong_topic, sizeof(pong_topic), "%s/pong", prefix);
	if (!strcmp(mode, "send") && argc == 6) {
		uint64_t n = strtoull(argv[4], NULL, 10);
		int64_t bytes = strtoll(argv[5], NULL, 10);
		double t0 = now_s();
		for (uint64_t i = 0; i < n; i++) {
			if ((err = alloc(c, bytes, i, &t)) < 0 ||
			    (err = hs_tensor_emit(t, argv[3], NULL, NULL)) < 0)
				return die("send", err);
		}
		printf("{\"sent\": %llu, \"seconds\": %.6f}\n", (unsigned long long)n, now_s() - t0);
	} else if (!strcmp(mode, "recv") && (argc == 5 || argc == 6)) {
		uint64_t n = strtoull(argv[4], NULL, 10), bytes = 0;
		uint64_t skip = argc == 6 ? strtoull(argv[5], NULL, 10) : 0;
		if ((err = hs_subscribe(c, argv[3], &o, &s)) < 0)
			return die("subscribe", err);
		printf("{\"subscribed\": true}\n");
		fflush(stdout);
		double t0 = 0, t1 = 0;
		for (uint64_t i = 0; i < skip; i++) {
			if ((err = hs_subscription_receive(s, 60000, &t)) < 0)
				return die("receive", err);
			hs_tensor_release(t, NULL);
		}
		for (uint64_t i = 0; i < n; i++) {
			if ((err = hs_subscription_receive(s, 60000, &t)) < 0)
				return die("receive", err);
			t1 = now_s();
			if (i == 0)
				t0 = t1;
			else
				bytes += hs_tensor_nbytes(t);
			hs_tensor_release(t, NULL);
		}
		/* the first tensor starts the clock: n - 1 intervals */
		double dt = t1 - t0;
		printf("{\"tensors\": %llu, \"seconds\": %.6f, \"tensors_per_s\": %.1f, \"GB_per_s\": %.4f}\n",
		       (unsigned long long)n, dt, dt > 0 ? (double)(n - 1) / dt : 0,
		       dt > 0 ? (double)bytes / dt / 1e9 : 0);
	} else if (!strcmp(mode, "ping") && (argc == 5 || argc == 6)) {
		uint64_t n = strtoull(argv[3], NULL, 10);
		int64_t bytes = strtoll(argv[4], NULL, 10);
		double *rtt = calloc(n, sizeof(double)), sum = 0;
		if (!rtt || (err = hs_subscribe(c, pong_topic, &o, &s)) < 0)
			return die("subscribe", err < 0 ? err : HS_ENOMEM);
		/* until the bridges subscribed both ways: a ping every 100 ms
		 * until one comes back */
		for (int tries = 0;; tries++) {
			if ((err = alloc(c, bytes, 0, &t)) < 0 ||
			    (err = hs_tensor_emit(t, ping_topic, NULL, NULL)) < 0)
				return die("ping", err);
			if (hs_subscription_receive(s, 100, &t) == 0) {
				hs_tensor_release(t, NULL);
				break;
			}
			if (tries > 300)
				return die("no pong", HS_ETIMEDOUT);
		}
		for (int i = 0; i < 20; i++) /* late pongs of the warm-up */
			if (hs_subscription_receive(s, 50, &t) == 0)
				hs_tensor_release(t, NULL);
		for (uint64_t i = 0; i < n; i++) {
			if ((err = alloc(c, bytes, i, &t)) < 0)
				return die("alloc", err);
			double t0 = now_s();
			if ((err = hs_tensor_emit(t, ping_topic, NULL, NULL)) < 0 ||
			    (err = hs_subscription_receive(s, 10000, &t)) < 0)
				return die("round trip", err);
			rtt[i] = now_s() - t0;
			sum += rtt[i];
			hs_tensor_release(t, NULL);
		}
		qsort(rtt, n, sizeof(double), cmp);
		printf("{\"round_trips\": %llu, \"rtt_p50_us\": %.1f, \"rtt_mean_us\": %.1f}\n",
		       (unsigned long long)n, rtt[n / 2] * 1e6, sum / (double)n * 1e6);
		free(rtt);
	} else if (!strcmp(mode, "echo") && (argc == 4 || argc == 5)) {
		uint64_t n = strtoull(argv[3], NULL, 10);
		if ((err = hs_subscribe(c, ping_topic, &o, &s)) < 0)
			return die("subscribe", err);
		printf("{\"subscribed\": true}\n");
		fflush(stdout);
		for (uint64_t i = 0; n == 0 || i < n; i++) { /* 0: until killed */
			if ((err = hs_subscription_receive(s, 60000, &t)) < 0)
				return die("echo receive", err);
			if ((err = hs_tensor_emit(t, pong_topic, NULL, NULL)) < 0)
				return die("echo emit", err);
		}
	} else {
		fprintf(stderr, "hs-bench-bridge: bad arguments\n");
		return 2;
	}
	if (s)
		hs_subscription_close(s);
	hs_client_disconnect(c);
	return 0;
}
