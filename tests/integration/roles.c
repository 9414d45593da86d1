/* Producer and consumer roles for the integration tests. */
#include "roles.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const DLDataType u32 = { .code = kDLUInt, .bits = 32, .lanes = 1 };

int ht_tensor_make(hs_client *c, uint64_t k, uint32_t elems, hs_tensor **out)
{
	DLDevice cpu = { .device_type = kDLCPU, .device_id = 0 };
	int64_t shape[1] = { elems };
	hs_tensor *t = NULL;
	int rc = hs_tensor_alloc(c, cpu, u32, 1, shape, NULL, &t);
	if (rc < 0)
		return rc;
	uint32_t *data = hs_tensor_data(t);
	if (!data) {
		hs_tensor_release(t, NULL);
		return HS_EINVAL;
	}
	for (uint32_t i = 0; i < elems; i++)
		data[i] = ht_pattern(k, i);
	*out = t;
	return 0;
}

uint64_t ht_tensor_check(const hs_tensor *t, uint64_t k, uint32_t elems)
{
	const DLTensor *dl = hs_tensor_dltensor(t);
	if (!dl || dl->device.device_type != kDLCPU || dl->ndim != 1 ||
	    !dl->shape || dl->shape[0] != (int64_t)elems ||
	    dl->dtype.code != kDLUInt || dl->dtype.bits != 32 ||
	    dl->dtype.lanes != 1)
		return elems ? elems : 1;
	if (hs_tensor_nbytes(t) < (uint64_t)elems * 4 + dl->byte_offset)
		return elems ? elems : 1;
	const uint32_t *data = hs_tensor_data(t);
	if (!data)
		return elems ? elems : 1;
	uint64_t bad = 0;
	for (uint32_t i = 0; i < elems; i++)
		if (data[i] != ht_pattern(k, i))
			bad++;
	return bad;
}

int ht_connect(const char *sock, const char *name, hs_client **out)
{
	int rc = hs_client_connect(sock, name, out);
	if (rc < 0)
		ht_child_fail(name, "hs_client_connect(%s): %s", sock, hs_strerror(rc));
	return rc;
}

int ht_role_producer(void *arg)
{
	const struct ht_producer *p = arg;
	uint32_t elems = p->elems ? p->elems : HT_ELEMS;
	hs_client *c;
	if (ht_connect(p->sock, "it-producer", &c) < 0)
		return 1;
	if (p->go && ht_chan_recv(p->go, HT_DEADLINE_MS) < 0) {
		hs_client_disconnect(c);
		return ht_child_fail("producer", "no go signal");
	}
	int ret = 0;
	for (uint64_t k = 1; p->count == 0 || k <= p->count; k++) {
		hs_tensor *t;
		int rc = ht_tensor_make(c, k, elems, &t);
		if (rc < 0) {
			ret = ht_child_fail("producer", "alloc #%" PRIu64 ": %s", k, hs_strerror(rc));
			break;
		}
		uint64_t seq = 0;
		rc = hs_tensor_emit(t, p->topic, NULL, &seq);
		if (rc < 0) {
			ret = ht_child_fail("producer", "emit #%" PRIu64 ": %s", k, hs_strerror(rc));
			break;
		}
		if (seq != k) {
			ret = ht_child_fail("producer", "emit #%" PRIu64 " got seq %" PRIu64, k, seq);
			break;
		}
		if (p->progress && k == p->progress_at)
			ht_chan_send(p->progress, 'P');
		if (p->period_us)
			ht_sleep_ms(p->period_us / 1000 ? p->period_us / 1000 : 1);
	}
	hs_client_disconnect(c);
	return ret;
}

int ht_role_consumer(void *arg)
{
	const struct ht_consumer *q = arg;
	uint32_t elems = q->elems ? q->elems : HT_ELEMS;
	hs_client *c;
	if (ht_connect(q->sock, "it-consumer", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = q->depth, .policy = q->policy };
	hs_subscription *sub;
	int rc = hs_subscribe(c, q->topic, &opts, &sub);
	if (rc < 0) {
		hs_client_disconnect(c);
		return ht_child_fail("consumer", "subscribe %s: %s", q->topic, hs_strerror(rc));
	}
	if (q->ready)
		ht_chan_send(q->ready, 'R');
	int ret = 0;
	uint64_t mismatches = 0;
	for (uint64_t k = 1; k <= q->count; k++) {
		hs_tensor *t;
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t);
		if (rc < 0) {
			ret = ht_child_fail("consumer", "receive #%" PRIu64 ": %s", k, hs_strerror(rc));
			break;
		}
		uint64_t seq = hs_tensor_seq(t);
		if (seq != k) {
			hs_tensor_release(t, NULL);
			ret = ht_child_fail("consumer", "expected seq %" PRIu64 ", got %" PRIu64, k, seq);
			break;
		}
		if (strcmp(hs_tensor_topic(t), q->topic) != 0) {
			hs_tensor_release(t, NULL);
			ret = ht_child_fail("consumer", "tensor from topic '%s'", hs_tensor_topic(t));
			break;
		}
		mismatches += ht_tensor_check(t, k, elems);
		hs_tensor_release(t, NULL);
	}
	if (!ret && mismatches)
		ret = ht_child_fail("consumer", "%" PRIu64 " elements differ", mismatches);
	if (!ret && hs_subscription_dropped(sub) != 0)
		ret = ht_child_fail("consumer", "block policy dropped %" PRIu64,
				    hs_subscription_dropped(sub));
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return ret;
}

int ht_role_forwarder(void *arg)
{
	const struct ht_forwarder *f = arg;
	hs_client *c;
	if (ht_connect(f->sock, "it-forwarder", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 8, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, f->from, &opts, &sub);
	if (rc < 0) {
		hs_client_disconnect(c);
		return ht_child_fail("forwarder", "subscribe %s: %s", f->from, hs_strerror(rc));
	}
	if (f->ready)
		ht_chan_send(f->ready, 'R');
	int ret = 0;
	for (uint64_t k = 1; k <= f->count && !ret; k++) {
		hs_tensor *t;
		rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &t);
		if (rc < 0) {
			ret = ht_child_fail("forwarder", "receive #%" PRIu64 ": %s", k, hs_strerror(rc));
			break;
		}
		/* The emit takes the reference, whatever it returns. */
		rc = hs_tensor_emit(t, f->to, HS_STREAM_DONE, NULL);
		if (rc < 0)
			ret = ht_child_fail("forwarder", "emit #%" PRIu64 ": %s", k, hs_strerror(rc));
	}
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return ret;
}

int ht_round_trip(hs_client *c, const char *topic)
{
	hs_subscribe_opts opts = { .depth = 4, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, topic, &opts, &sub);
	if (rc < 0)
		return rc;
	hs_tensor *t;
	rc = ht_tensor_make(c, 77, HT_ELEMS, &t);
	if (rc < 0)
		goto out;
	uint64_t seq = 0;
	rc = hs_tensor_emit(t, topic, NULL, &seq);
	if (rc < 0)
		goto out;
	hs_tensor *r;
	rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &r);
	if (rc < 0)
		goto out;
	if (hs_tensor_seq(r) != seq || ht_tensor_check(r, 77, HT_ELEMS) != 0)
		rc = HS_EPROTO;
	hs_tensor_release(r, NULL);
out:
	hs_subscription_close(sub);
	return rc;
}
