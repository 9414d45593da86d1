/* Client roles the integration tests run in child processes, written
 * against the public API only (hsbroker/hsbroker.h). Every tensor is a
 * 1-D uint32 array whose element i of the k-th emitted tensor is
 * ht_pattern(k, i), so any reader can check every element. */
#ifndef HS_TEST_ROLES_H
#define HS_TEST_ROLES_H

#include <stdint.h>

#include <hsbroker/hsbroker.h>

#include "harness.h"

#define HT_ELEMS 256

/* Allocates a host uint32[elems] tensor and fills it for the k-th emit. */
int ht_tensor_make(hs_client *c, uint64_t k, uint32_t elems, hs_tensor **out);
/* Elements of t that differ from the k-th pattern; a wrong dtype, device,
 * ndim or shape counts as every element wrong (at least 1). */
uint64_t ht_tensor_check(const hs_tensor *t, uint64_t k, uint32_t elems);

struct ht_producer {
	const char *sock;
	const char *topic;
	uint64_t count;       /* tensors to emit; 0: until killed */
	uint32_t elems;       /* 0: HT_ELEMS */
	int period_us;        /* pause between emits; 0: none */
	struct ht_chan *go;   /* if set, wait for one byte before emitting */
	struct ht_chan *progress; /* if set, a byte after progress_at emits */
	uint64_t progress_at;
};

/* Connects, emits count tensors on topic checking that the k-th emit got
 * seq k (the producer must be the topic's only one), disconnects.
 * Returns 0 or 1 (reason on stderr). */
int ht_role_producer(void *producer);

struct ht_consumer {
	const char *sock;
	const char *topic;
	uint32_t depth;           /* 0: library default */
	enum hs_policy policy;
	uint64_t count;           /* tensors expected: seq 1..count, no gap */
	uint32_t elems;           /* 0: HT_ELEMS */
	struct ht_chan *ready;    /* a byte once subscribed */
};

/* Subscribes, signals ready, receives count tensors, checks that seqs run
 * 1..count with no gap and every element of each, releases each.
 * Returns 0 or 1. */
int ht_role_consumer(void *consumer);

struct ht_forwarder {
	const char *sock;
	const char *from, *to;    /* receives on from, emits each tensor on to */
	uint64_t count;
	struct ht_chan *ready;    /* a byte once subscribed */
};

/* Subscribes to from (BLOCK), signals ready, re-emits count tensors on to
 * as they are, without touching them (a pipeline stage that passes frames
 * on). Returns 0 or 1. */
int ht_role_forwarder(void *forwarder);

/* Connects (retrying briefly is not needed: the daemon is up) with a
 * message on failure. */
int ht_connect(const char *sock, const char *name, hs_client **out);

/* One alloc -> emit -> receive -> check -> release on a private topic,
 * proving the connection works. Returns 0 or an hs error. */
int ht_round_trip(hs_client *c, const char *topic);

#endif
