/* The tensor table: every live tensor, by id = generation << 32 | slot. A
 * slot's generation grows each time it is freed, so a stale id never names
 * a reused block (HS_ESTALE), and an id never handed out is HS_ENOENT.
 * A tensor's refs count every holder: sessions (per session, per ref),
 * subscription queues and held-back emits. The last unref gives the block
 * back to its pool. */
#ifndef HS_DAEMON_TENSOR_H
#define HS_DAEMON_TENSOR_H

#include <stdbool.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "event.h"
#include "pool.h"
#include "wire.h"

struct hsd_tensor {
	uint64_t id;
	uint32_t refs;
	DLDevice device;
	DLDataType dtype;
	int32_t ndim;
	bool has_strides;
	int64_t shape[HS__MAX_NDIM];
	int64_t strides[HS__MAX_NDIM];
	uint64_t byte_offset;
	uint64_t nbytes;          /* bytes reached from the block start */
	struct hsd_pool *pool;
	struct hsd_pool_block block;
	uint64_t owner_session;
	int32_t owner_pid;
	char owner_name[HS__MAX_NAME + 1];
	uint64_t created_us;
	const char *topic;        /* last topic it was emitted on (its name,
				   * owned by the topic), or NULL */
	uint64_t seq;
	struct hsd_fence_event *fence; /* device tensors: the ready fence, given
				    * back to its pool when the tensor dies */
	bool fence_done;          /* its last emit said its writes are complete
				   * (EmitReq.fence_done): refs name no fence */
};

struct hsd_tensor_table {
	struct hsd_tensor **slots;
	uint32_t *gens;
	uint32_t n;        /* slots in use or on the free list */
	uint32_t cap;
	uint32_t max;      /* most slots ever */
	uint32_t *free;    /* freed slots, reused oldest first */
	uint32_t free_head, free_count;
	uint32_t live;
};

#define TENSOR_TABLE_DEFAULT_MAX (1u << 22)

void hsd_tensor_table_init(struct hsd_tensor_table *tt, uint32_t max_slots);
/* Frees every tensor still there and gives its block back. */
void hsd_tensor_table_fini(struct hsd_tensor_table *tt);

/* Checks meta (hs__meta_extent_pb; byte_offset must be 0), allocates its
 * bytes from pool, in a slab of uid's, and makes a tensor with one
 * reference. 0 or a negative hs code; nothing changes on error. */
int hsd_tensor_create(struct hsd_tensor_table *tt, struct hsd_pool *pool, const Hs__Meta *meta,
		      uint32_t uid, struct hsd_tensor **out);

/* 0 with *out, HS_ESTALE or HS_ENOENT. */
int hsd_tensor_lookup(const struct hsd_tensor_table *tt, uint64_t id, struct hsd_tensor **out);

void hsd_tensor_ref(struct hsd_tensor *t);
/* Drops one reference; the last frees the tensor and its block. */
void hsd_tensor_unref(struct hsd_tensor_table *tt, struct hsd_tensor *t);

/* A TensorRef for t, its sub-messages held in pb (valid while t lives
 * and pb is in scope). */
struct hsd_tensor_pb {
	Hs__TensorRef ref;
	Hs__Meta meta;
	Hs__Device device;
	Hs__DType dtype;
	Hs__Block block;
};
void hsd_tensor_to_pb(const struct hsd_tensor *t, struct hsd_tensor_pb *pb);
/* Fills a Meta (and its device/dtype) from t. */
void hsd_tensor_meta_pb(const struct hsd_tensor *t, Hs__Meta *meta, Hs__Device *dev,
			Hs__DType *dt);

uint64_t hsd_tensor_now_us(void);

#endif
