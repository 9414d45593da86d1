/* hs-example-consumer: subscribes to a topic, receives tensors, checks
 * every value against the producer's pattern and releases them.
 *
 *   hs-example-consumer [--topic T] [--count N] [--depth D]
 *                       [--policy block|drop-oldest|drop-newest]
 *                       [--delay MS] [--timeout MS] [--socket PATH]
 *
 * Prints "received N tensors, M mismatches, dropped D"; exits 1 on any
 * mismatch or error.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hsbroker/hsbroker.h>

#include "pattern.h"

static int fail(const char *what, int err)
{
	fprintf(stderr, "hs-example-consumer: %s: %s\n", what, hs_strerror(err));
	return 1;
}

/* Values and metadata as the producer made them; true when all match. */
static bool check(const hs_tensor *t)
{
	const DLTensor *dl = hs_tensor_dltensor(t);
	if (dl->dtype.code != kDLFloat || dl->dtype.bits != 32 || dl->ndim != 2 ||
	    dl->shape[0] != EXAMPLE_ROWS || dl->shape[1] != EXAMPLE_COLS)
		return false;
	const float *v = hs_tensor_data(t);
	uint64_t index = hs_tensor_seq(t) - 1;
	for (uint64_t e = 0; e < EXAMPLE_ROWS * EXAMPLE_COLS; e++)
		if (v[e] != example_value(index, e))
			return false;
	return true;
}

int main(int argc, char **argv)
{
	const char *topic = "demo/frames", *socket = NULL;
	long count = 100, delay_ms = 0, timeout_ms = 10000;
	hs_subscribe_opts opts = { .depth = 8, .policy = HS_POLICY_BLOCK };
	/* Options come in pairs: --name value. */
	for (int i = 1; i < argc; i += 2) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v) {
			fprintf(stderr, "usage: %s [--topic T] [--count N] [--depth D] "
				"[--policy block|drop-oldest|drop-newest] [--delay MS] "
				"[--timeout MS] [--socket PATH]\n", argv[0]);
			return 1;
		}
		if (!strcmp(argv[i], "--topic"))
			topic = v;
		else if (!strcmp(argv[i], "--count"))
			count = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "--depth"))
			opts.depth = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(argv[i], "--delay"))
			delay_ms = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "--timeout"))
			timeout_ms = strtol(v, NULL, 10);
		else if (!strcmp(argv[i], "--socket"))
			socket = v;
		else if (!strcmp(argv[i], "--policy") && !strcmp(v, "block"))
			opts.policy = HS_POLICY_BLOCK;
		else if (!strcmp(argv[i], "--policy") && !strcmp(v, "drop-oldest"))
			opts.policy = HS_POLICY_DROP_OLDEST;
		else if (!strcmp(argv[i], "--policy") && !strcmp(v, "drop-newest"))
			opts.policy = HS_POLICY_DROP_NEWEST;
		else
			return fail(argv[i], HS_EINVAL);
	}

	hs_client *c;
	hs_subscription *sub;
	int err = hs_client_connect(socket, NULL, &c);
	if (err)
		return fail("connect", err);
	if ((err = hs_subscribe(c, topic, &opts, &sub)))
		return fail("subscribe", err);

	long received = 0, mismatches = 0;
	uint64_t last_seq = 0;
	/* Done when every tensor of the stream was received or dropped. */
	while (received + (long)hs_subscription_dropped(sub) < count) {
		hs_tensor *t;
		err = hs_subscription_receive(sub, (int)timeout_ms, &t);
		if (err)
			break;
		uint64_t seq = hs_tensor_seq(t);
		/* In order always; without gaps unless the policy drops. */
		bool order = opts.policy == HS_POLICY_BLOCK ? seq == last_seq + 1 : seq > last_seq;
		if (!order || !check(t)) {
			if (mismatches++ < 10)
				fprintf(stderr, "hs-example-consumer: tensor seq %llu (after %llu) "
					"does not match\n", (unsigned long long)seq,
					(unsigned long long)last_seq);
		}
		last_seq = seq;
		received++;
		hs_tensor_release(t, NULL);
		if (delay_ms > 0)
			nanosleep(&(struct timespec){ .tv_sec = delay_ms / 1000,
						      .tv_nsec = delay_ms % 1000 * 1000000 }, NULL);
	}
	uint64_t dropped = hs_subscription_dropped(sub);
	printf("received %ld tensors, %ld mismatches, dropped %llu\n", received, mismatches,
	       (unsigned long long)dropped);
	hs_subscription_close(sub);
	hs_client_disconnect(c);

	/* A drop-newest stream may end in drops no delivery reports: a
	 * timeout after the stream started is its end there. */
	if (err == HS_ETIMEDOUT && opts.policy == HS_POLICY_DROP_NEWEST && received > 0)
		err = 0;
	if (err)
		return fail("receive", err);
	return mismatches ? 1 : 0;
}
