/* hsb-probe: the bridge tests' producer and consumer. Tensor i (from 1)
 * is BYTES uint8 whose first 8 bytes hold i and whose byte j holds
 * (i * 131 + j * 7) & 0xff, so the consumer checks every byte and the
 * order without sharing anything with the producer.
 *   hsb-probe produce SOCKET TOPIC COUNT BYTES [HZ [FIRST]]
 *   hsb-probe consume SOCKET TOPIC COUNT IDLE_S [gaps|nogaps [DELAY_MS]]
 * consume ends when tensor COUNT arrived or nothing came for IDLE_S; it
 * exits 0 when every byte was right, the counters rose, the last was COUNT,
 * and (without "gaps") the counters it saw were contiguous. DELAY_MS: a
 * slow consumer, sleeping that long after each tensor. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsbroker/client.h"

static uint8_t pattern(uint64_t i, uint64_t j)
{
	return (uint8_t)((i * 131 + j * 7) & 0xff);
}

static int produce(hs_client *c, const char *topic, uint64_t first, uint64_t count,
		   int64_t bytes, double hz)
{
	DLDataType u8 = { kDLUInt, 8, 1 };
	for (uint64_t i = first; i <= count; i++) {
		hs_tensor *t;
		int err = hs_tensor_alloc(c, (DLDevice){ kDLCPU, 0 }, u8, 1, &bytes, NULL, &t);
		if (err < 0) {
			fprintf(stderr, "produce: alloc: %s\n", hs_strerror(err));
			return 1;
		}
		uint8_t *p = hs_tensor_data(t);
		for (int64_t j = 8; j < bytes; j++)
			p[j] = pattern(i, (uint64_t)j);
		memcpy(p, &i, bytes < 8 ? (size_t)bytes : 8);
		uint64_t seq;
		if ((err = hs_tensor_emit(t, topic, NULL, &seq)) < 0) {
			fprintf(stderr, "produce: emit: %s\n", hs_strerror(err));
			return 1;
		}
		if (hz > 0) {
			struct timespec ts = { 0, (long)(1e9 / hz) };
			nanosleep(&ts, NULL);
		}
	}
	printf("produced %llu\n", (unsigned long long)count);
	return 0;
}

static int consume(hs_client *c, const char *topic, uint64_t count, int idle_s, bool gaps_ok,
		   int delay_ms)
{
	hs_subscription *s;
	hs_subscribe_opts o = { .depth = 8, .policy = HS_POLICY_BLOCK };
	int err = hs_subscribe(c, topic, &o, &s);
	if (err < 0) {
		fprintf(stderr, "consume: subscribe: %s\n", hs_strerror(err));
		return 1;
	}
	printf("subscribed\n");
	fflush(stdout);
	uint64_t n = 0, first = 0, last = 0, gaps = 0, bad = 0;
	while (last < count) {
		hs_tensor *t;
		err = hs_subscription_receive(s, idle_s * 1000, &t);
		if (err < 0) {
			fprintf(stderr, "consume: receive: %s\n", hs_strerror(err));
			break;
		}
		uint64_t bytes = hs_tensor_nbytes(t), i = 0;
		const uint8_t *p = hs_tensor_data(t);
		memcpy(&i, p, bytes < 8 ? bytes : 8);
		bool ok = strcmp(hs_tensor_topic(t), topic) == 0 && i > last;
		for (uint64_t j = 8; ok && j < bytes; j++)
			ok = p[j] == pattern(i, j);
		if (!ok) {
			if (bad++ < 5)
				fprintf(stderr, "consume: tensor %llu (after %llu) is wrong\n",
					(unsigned long long)i, (unsigned long long)last);
		} else {
			if (n && i != last + 1)
				gaps++;
			if (!n)
				first = i;
			last = i;
			n++;
		}
		hs_tensor_release(t, NULL);
		if (delay_ms > 0) {
			struct timespec ts = { delay_ms / 1000, (long)(delay_ms % 1000) * 1000000 };
			nanosleep(&ts, NULL);
		}
	}
	hs_subscription_close(s);
	printf("received %llu first %llu last %llu gaps %llu bad %llu\n", (unsigned long long)n,
	       (unsigned long long)first, (unsigned long long)last, (unsigned long long)gaps,
	       (unsigned long long)bad);
	return bad == 0 && last == count && (gaps_ok || gaps == 0) ? 0 : 1;
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: hsb-probe produce SOCKET TOPIC COUNT BYTES [HZ [FIRST]]\n"
				"       hsb-probe consume SOCKET TOPIC COUNT IDLE_S [gaps|nogaps [DELAY_MS]]\n");
		return 2;
	}
	hs_client *c;
	int err = hs_client_connect(argv[2], "hsb-probe", &c);
	if (err < 0) {
		fprintf(stderr, "hsb-probe: %s\n", hs_strerror(err));
		return 1;
	}
	uint64_t count = strtoull(argv[4], NULL, 10);
	int rc;
	if (!strcmp(argv[1], "produce"))
		rc = produce(c, argv[3], argc > 7 ? strtoull(argv[7], NULL, 10) : 1, count,
			     (int64_t)strtoll(argv[5], NULL, 10), argc > 6 ? atof(argv[6]) : 0);
	else
		rc = consume(c, argv[3], count, atoi(argv[5]), argc > 6 && !strcmp(argv[6], "gaps"),
			     argc > 7 ? atoi(argv[7]) : 0);
	hs_client_disconnect(c);
	return rc;
}
