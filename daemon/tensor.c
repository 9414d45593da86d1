#include "tensor.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsbroker/error.h"

uint64_t hsd_tensor_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void hsd_tensor_table_init(struct hsd_tensor_table *tt, uint32_t max_slots)
{
	*tt = (struct hsd_tensor_table){ 0 };
	tt->max = max_slots ? max_slots : TENSOR_TABLE_DEFAULT_MAX;
}

static void destroy(struct hsd_tensor_table *tt, struct hsd_tensor *t)
{
	/* Every reader has released (after its GPU work, see docs/gpu.md),
	 * so nobody will wait on this record of the event any more. */
	hsd_event_put(t->fence);
	hsd_pool_release(t->pool, &t->block);
	free(t);
	tt->live--;
}

void hsd_tensor_table_fini(struct hsd_tensor_table *tt)
{
	for (uint32_t i = 0; i < tt->n; i++)
		if (tt->slots[i])
			destroy(tt, tt->slots[i]);
	free(tt->slots);
	free(tt->gens);
	free(tt->free);
	*tt = (struct hsd_tensor_table){ 0 };
}

/* A free slot, or HS_ENOMEM / HS_ELIMIT. FIFO reuse: a slot rests as long
 * as possible before its generation is bumped again. */
static int take_slot(struct hsd_tensor_table *tt, uint32_t *slot)
{
	if (tt->free_count) {
		*slot = tt->free[tt->free_head];
		tt->free_head = (tt->free_head + 1) % tt->cap;
		tt->free_count--;
		return 0;
	}
	if (tt->n == tt->cap) {
		if (tt->cap >= tt->max)
			return HS_ELIMIT;
		uint32_t cap = tt->cap ? tt->cap * 2 : 64;
		if (cap > tt->max)
			cap = tt->max;
		struct hsd_tensor **slots = realloc(tt->slots, cap * sizeof(*slots));
		if (!slots)
			return HS_ENOMEM;
		tt->slots = slots;
		uint32_t *gens = realloc(tt->gens, cap * sizeof(*gens));
		if (!gens)
			return HS_ENOMEM;
		tt->gens = gens;
		/* The free ring is empty here, so it can be resized freely. */
		uint32_t *fr = realloc(tt->free, cap * sizeof(*fr));
		if (!fr)
			return HS_ENOMEM;
		tt->free = fr;
		tt->free_head = 0;
		tt->cap = cap;
	}
	*slot = tt->n;
	tt->slots[*slot] = NULL;
	tt->gens[*slot] = 1;
	tt->n++;
	return 0;
}

static void put_slot(struct hsd_tensor_table *tt, uint32_t slot)
{
	tt->slots[slot] = NULL;
	if (++tt->gens[slot] == 0)
		tt->gens[slot] = 1; /* never 0: id 0 means "none" on the wire */
	tt->free[(tt->free_head + tt->free_count) % tt->cap] = slot;
	tt->free_count++;
}

int hsd_tensor_create(struct hsd_tensor_table *tt, struct hsd_pool *pool, const Hs__Meta *meta,
		      uint32_t uid, struct hsd_tensor **out)
{
	uint64_t need;
	int r = hs__meta_extent_pb(meta, &need);
	if (r < 0)
		return r;
	if (meta->byte_offset != 0)
		return HS_EINVAL;
	if (meta->device->type != (int32_t)pool->device.device_type ||
	    meta->device->id != pool->device.device_id)
		return HS_ENODEV;

	struct hsd_tensor *t = calloc(1, sizeof(*t));
	if (!t)
		return HS_ENOMEM;
	uint32_t slot;
	r = take_slot(tt, &slot);
	if (r < 0) {
		free(t);
		return r;
	}
	r = hsd_pool_alloc(pool, need, uid, &t->block);
	if (r < 0) {
		/* Hand the slot back untouched: its generation was not used. */
		tt->free[(tt->free_head + tt->free_count) % tt->cap] = slot;
		tt->free_count++;
		free(t);
		return r;
	}
	t->id = (uint64_t)tt->gens[slot] << 32 | slot;
	t->refs = 1;
	t->pool = pool;
	t->device = (DLDevice){ (DLDeviceType)meta->device->type, meta->device->id };
	t->dtype = (DLDataType){ (uint8_t)meta->dtype->code, (uint8_t)meta->dtype->bits,
				 (uint16_t)meta->dtype->lanes };
	t->ndim = (int32_t)meta->n_shape;
	for (size_t i = 0; i < meta->n_shape; i++)
		t->shape[i] = meta->shape[i];
	t->has_strides = meta->n_strides != 0;
	for (size_t i = 0; i < meta->n_strides; i++)
		t->strides[i] = meta->strides[i];
	t->byte_offset = 0;
	t->nbytes = need;
	t->created_us = hsd_tensor_now_us();
	tt->slots[slot] = t;
	tt->live++;
	*out = t;
	return 0;
}

int hsd_tensor_lookup(const struct hsd_tensor_table *tt, uint64_t id, struct hsd_tensor **out)
{
	uint32_t slot = (uint32_t)id;
	uint32_t gen = (uint32_t)(id >> 32);
	if (gen == 0 || slot >= tt->n)
		return HS_ENOENT;
	if (tt->slots[slot] && tt->gens[slot] == gen) {
		*out = tt->slots[slot];
		return 0;
	}
	/* Generations only grow (wrapping after 2^32 reuses of one slot). */
	if (gen < tt->gens[slot])
		return HS_ESTALE;
	return HS_ENOENT;
}

void hsd_tensor_ref(struct hsd_tensor *t)
{
	t->refs++;
}

void hsd_tensor_unref(struct hsd_tensor_table *tt, struct hsd_tensor *t)
{
	if (--t->refs > 0)
		return;
	uint32_t slot = (uint32_t)t->id;
	destroy(tt, t);
	put_slot(tt, slot);
}

void hsd_tensor_meta_pb(const struct hsd_tensor *t, Hs__Meta *meta, Hs__Device *dev,
			Hs__DType *dt)
{
	hs__device__init(dev);
	dev->type = t->device.device_type;
	dev->id = t->device.device_id;
	hs__dtype__init(dt);
	dt->code = t->dtype.code;
	dt->bits = t->dtype.bits;
	dt->lanes = t->dtype.lanes;
	hs__meta__init(meta);
	meta->device = dev;
	meta->dtype = dt;
	meta->n_shape = (size_t)t->ndim;
	meta->shape = (int64_t *)t->shape;
	meta->n_strides = t->has_strides ? (size_t)t->ndim : 0;
	meta->strides = (int64_t *)t->strides;
	meta->byte_offset = t->byte_offset;
}

void hsd_tensor_to_pb(const struct hsd_tensor *t, struct hsd_tensor_pb *pb)
{
	hsd_tensor_meta_pb(t, &pb->meta, &pb->device, &pb->dtype);
	hs__block__init(&pb->block);
	pb->block.slab_id = t->block.slab->id;
	pb->block.offset = t->block.offset;
	pb->block.length = t->block.length;
	hs__tensor_ref__init(&pb->ref);
	pb->ref.id = t->id;
	pb->ref.meta = &pb->meta;
	pb->ref.block = &pb->block;
	pb->ref.seq = t->seq;
	pb->ref.topic = (char *)(t->topic ? t->topic : "");
	pb->ref.fence_event = t->fence && !t->fence_done ? t->fence->id : 0;
}
