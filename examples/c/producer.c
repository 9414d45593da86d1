/* hs-example-producer: allocates float32 [4, 256] host tensors in broker
 * memory, fills each with a pattern from its index and emits it.
 *
 *   hs-example-producer [--topic T] [--count N] [--rate HZ]
 *                       [--wait-subscribers K] [--socket PATH]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hsbroker/hsbroker.h>

#include "pattern.h"

static int fail(const char *what, int err)
{
	fprintf(stderr, "hs-example-producer: %s: %s\n", what, hs_strerror(err));
	return 1;
}

/* Waits until the topic has k subscribers, so a consumer started just
 * before us sees the stream from its first tensor. */
static int wait_subscribers(hs_client *c, const char *topic, long k)
{
	for (int tries = 0; tries < 1000; tries++) {
		hs_info *info;
		int err = hs_client_get_info(c, HS_INFO_TOPICS, &info);
		if (err)
			return err;
		long n = 0;
		for (size_t i = 0; i < info->n_topics; i++)
			if (strcmp(info->topics[i].name, topic) == 0)
				n = info->topics[i].n_subscribers;
		hs_info_free(info);
		if (n >= k)
			return 0;
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000000 }, NULL);
	}
	return HS_ETIMEDOUT;
}

int main(int argc, char **argv)
{
	const char *topic = "demo/frames", *socket = NULL;
	long count = 100, wait_subs = 0;
	double rate = 0; /* 0: as fast as the broker takes them */
	/* Options come in pairs: --name value. */
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "usage: %s [--topic T] [--count N] [--rate HZ] "
				"[--wait-subscribers K] [--socket PATH]\n", argv[0]);
			return 1;
		}
		if (!strcmp(argv[i], "--topic"))
			topic = v;
		else if (!strcmp(argv[i], "--count"))
			count = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "--rate"))
			rate = strtod(v, NULL);
		else if (!strcmp(argv[i], "--wait-subscribers"))
			wait_subs = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "--socket"))
			socket = v;
		else
			return fail(argv[i], HS_EINVAL);
	}

	hs_client *c;
	int err = hs_client_connect(socket, NULL, &c);
	if (err)
		return fail("connect", err);
	if (wait_subs > 0 && (err = wait_subscribers(c, topic, wait_subs)))
		return fail("waiting for subscribers", err);

	struct timespec next;
	clock_gettime(CLOCK_MONOTONIC, &next);
	const int64_t shape[2] = { EXAMPLE_ROWS, EXAMPLE_COLS };
	const DLDevice cpu = { kDLCPU, 0 };
	const DLDataType f32 = { kDLFloat, 32, 1 };
	long i;
	for (i = 0; i < count; i++) {
		hs_tensor *t;
		err = hs_tensor_alloc(c, cpu, f32, 2, shape, NULL, &t);
		if (err)
			break;
		float *v = hs_tensor_data(t);
		for (uint64_t e = 0; e < EXAMPLE_ROWS * EXAMPLE_COLS; e++)
			v[e] = example_value((uint64_t)i, e);

		uint64_t seq;
		err = hs_tensor_emit(t, topic, NULL, &seq); /* t is gone now */
		if (err)
			break;
		if (seq != (uint64_t)i + 1 && i == 0)
			fprintf(stderr, "hs-example-producer: %s already had %llu emits; "
				"consumers checking seq = index + 1 will disagree\n",
				topic, (unsigned long long)seq - 1);

		if (rate > 0) {
			long ns = (long)(1e9 / rate);
			next.tv_sec += ns / 1000000000;
			next.tv_nsec += ns % 1000000000;
			if (next.tv_nsec >= 1000000000) {
				next.tv_sec++;
				next.tv_nsec -= 1000000000;
			}
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR)
				;
		}
	}
	hs_client_disconnect(c);
	printf("emitted %ld tensors on %s\n", i, topic);
	return err ? fail("emit", err) : 0;
}
