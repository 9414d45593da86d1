/* Tensor handles: one hs_tensor is one reference the session holds, with
 * its DLPack view into a mapped slab. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

void hs__tensor_link(hs_client *c, hs_tensor *t)
{
	t->client = c;
	t->prev = NULL;
	t->next = c->tensors;
	if (c->tensors)
		c->tensors->prev = t;
	c->tensors = t;
	c->stats.tensors_held++;
}

void hs__tensor_free_locked(hs_tensor *t)
{
	hs_client *c = t->client;
	if (c) {
		if (t->prev)
			t->prev->next = t->next;
		else
			c->tensors = t->next;
		if (t->next)
			t->next->prev = t->prev;
		c->stats.tensors_held--;
	}
	free(t);
}

static void compact_strides(int32_t ndim, const int64_t *shape, int64_t *strides)
{
	uint64_t s = 1;
	for (int32_t i = ndim - 1; i >= 0; i--) {
		strides[i] = (int64_t)s;
		/* Only an empty tensor can overflow here, and its strides are
		 * never used to reach memory. */
		if (__builtin_mul_overflow(s, (uint64_t)shape[i], &s) || s > INT64_MAX)
			s = 0;
	}
}

int hs__tensor_make(hs_client *c, const struct hs__tensor_desc *d, hs_tensor **out)
{
	struct hs__slab *s = hs__slab_find(c, d->slab_id);
	if (!s || d->offset > s->size || d->nbytes > s->size - d->offset)
		return HS_EPROTO; /* unannounced slab, or a block outside it */
	if (d->device.device_type != s->device.device_type ||
	    d->device.device_id != s->device.device_id)
		return HS_EPROTO;
	if (d->topic_len > HS_MAX_TOPIC)
		return HS_EPROTO;
	struct hs__event *fence = NULL;
	if (d->fence_event) {
		fence = hs__event_find(c, d->fence_event);
		if (!fence || s->device.device_type != kDLCUDA ||
		    fence->device != s->device.device_id)
			return HS_EPROTO; /* unannounced, or a fence of another GPU */
	}
	if (!s->base && !s->map_err && s->device.device_type == kDLCUDA)
		hs__slab_cuda_open(c, s);
	if (!s->base)
		return s->map_err ? s->map_err : HS_ENOTSUP;

	hs_tensor *t = calloc(1, sizeof(*t));
	if (!t)
		return HS_ENOMEM;
	t->id = d->id;
	t->seq = d->seq;
	t->nbytes = d->nbytes;
	t->slab = s;
	t->fence = fence;
	memcpy(t->topic, d->topic, d->topic_len);
	t->topic[d->topic_len] = '\0';
	memcpy(t->shape, d->shape, sizeof(int64_t) * (size_t)d->ndim);
	if (d->strides)
		memcpy(t->strides, d->strides, sizeof(int64_t) * (size_t)d->ndim);
	else
		compact_strides(d->ndim, t->shape, t->strides);

	/* Strides are always filled in: some DLPack consumers do not accept
	 * NULL for compact tensors. */
	t->dl.data = (uint8_t *)s->base + d->offset;
	t->dl.device = s->device;
	t->dl.ndim = d->ndim;
	t->dl.dtype = d->dtype;
	t->dl.shape = t->shape;
	t->dl.strides = t->strides;
	t->dl.byte_offset = d->byte_offset;

	hs__tensor_link(c, t);
	*out = t;
	return 0;
}

int hs__tensor_from_ref(hs_client *c, const Hs__TensorRef *ref, hs_tensor **out)
{
	if (!ref->meta || !ref->block)
		return HS_EPROTO;
	const Hs__Meta *m = ref->meta;
	const Hs__Block *b = ref->block;
	uint64_t need;
	if (hs__meta_extent_pb(m, &need))
		return HS_EPROTO;
	if (need > b->length)
		return HS_EPROTO;
	struct hs__tensor_desc d = {
		.id = ref->id,
		.seq = ref->seq,
		.slab_id = b->slab_id,
		.offset = b->offset,
		.nbytes = b->length,
		.fence_event = ref->fence_event,
		.byte_offset = m->byte_offset,
		.device = { (DLDeviceType)m->device->type, m->device->id },
		.dtype = { (uint8_t)m->dtype->code, (uint8_t)m->dtype->bits,
			   (uint16_t)m->dtype->lanes },
		.ndim = (int32_t)m->n_shape,
		.shape = m->shape,
		.strides = m->n_strides ? m->strides : NULL,
		.topic = ref->topic ? ref->topic : "",
		.topic_len = ref->topic ? strnlen(ref->topic, HS_MAX_TOPIC + 1) : 0,
	};
	return hs__tensor_make(c, &d, out);
}

HS_EXPORT int hs_tensor_alloc(hs_client *client, DLDevice device, DLDataType dtype,
			      int32_t ndim, const int64_t *shape, const int64_t *strides,
			      hs_tensor **out)
{
	if (!client || !out)
		return HS_EINVAL;
	uint64_t need;
	int err = hs__meta_extent(device, dtype, ndim, shape, strides, 0, &need);
	if (err)
		return err;

	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = device.device_type;
	dev.id = device.device_id;
	Hs__DType dt = HS__DTYPE__INIT;
	dt.code = dtype.code;
	dt.bits = dtype.bits;
	dt.lanes = dtype.lanes;
	Hs__Meta meta = HS__META__INIT;
	meta.device = &dev;
	meta.dtype = &dt;
	meta.n_shape = (size_t)ndim;
	meta.shape = (int64_t *)shape;
	meta.n_strides = strides ? (size_t)ndim : 0;
	meta.strides = (int64_t *)strides;
	Hs__AllocReq req = HS__ALLOC_REQ__INIT;
	req.meta = &meta;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ALLOC;
	m.alloc = &req;

	/* A shape allocated again is likely allocated once more: a spare
	 * asked for ahead saves the next call its round trip (post.c). */
	struct hs__spare_key key;
	bool ask = false;
	Hs__Message *reply = NULL;
	if (client->use_chan && client->spares_on) {
		hs__spare_key_set(&key, device, dtype, ndim, shape, strides);
		reply = hs__spare_take(client, &key, &ask);
		if (reply && hs__reply_check(reply, HS__MESSAGE__BODY_ALLOC_REPLY) == 0) {
			__atomic_add_fetch(&client->stats.spare_hits, 1, __ATOMIC_RELAXED);
		} else {
			hs__wire_free(reply); /* refused then; ask again now */
			reply = NULL;
		}
	}
	if (!reply) {
		err = hs__client_request(client, &m, &reply);
		if (err)
			return err;
	}
	err = hs__reply_check(reply, HS__MESSAGE__BODY_ALLOC_REPLY);
	if (!err && (!reply->alloc_reply || !reply->alloc_reply->tensor))
		err = HS_EPROTO;
	if (err) {
		hs__wire_free(reply);
		if (err == HS_EPROTO) {
			pthread_mutex_lock(&client->lock);
			hs__client_fail(client, err);
			pthread_mutex_unlock(&client->lock);
		}
		return err;
	}

	hs_tensor *t = NULL;
	uint64_t id = reply->alloc_reply->tensor->id;
	pthread_mutex_lock(&client->lock);
	err = hs__tensor_from_ref(client, reply->alloc_reply->tensor, &t);
	if (err == HS_EPROTO)
		hs__client_fail(client, err);
	pthread_mutex_unlock(&client->lock);
	hs__wire_free(reply);
	if (err) {
		if (err != HS_EPROTO)
			hs__client_release(client, &id, 1, false); /* allocated, but unusable here */
		return err;
	}
	if (ask)
		hs__spare_ask(client, &key, &m);
	*out = t;
	return 0;
}

HS_EXPORT const DLTensor *hs_tensor_dltensor(const hs_tensor *tensor)
{
	return tensor ? &tensor->dl : NULL;
}

HS_EXPORT void *hs_tensor_data(const hs_tensor *tensor)
{
	return tensor ? (uint8_t *)tensor->dl.data + tensor->dl.byte_offset : NULL;
}

HS_EXPORT uint64_t hs_tensor_nbytes(const hs_tensor *tensor)
{
	return tensor ? tensor->nbytes : 0;
}

HS_EXPORT int hs_tensor_slab_mapping(const hs_tensor *tensor, void **base, uint64_t *size)
{
	if (!tensor || !base || !size || !tensor->client || !tensor->slab || !tensor->slab->base)
		return HS_EINVAL;
	*base = tensor->slab->base;
	*size = tensor->slab->size;
	return 0;
}

HS_EXPORT uint64_t hs_tensor_id(const hs_tensor *tensor)
{
	return tensor ? tensor->id : 0;
}

HS_EXPORT uint64_t hs_tensor_seq(const hs_tensor *tensor)
{
	return tensor ? tensor->seq : 0;
}

HS_EXPORT const char *hs_tensor_topic(const hs_tensor *tensor)
{
	return tensor ? tensor->topic : "";
}

static void tensor_drop(hs_tensor *t, bool send_release)
{
	hs_client *c = t->client;
	if (!c) { /* the client was disconnected under a DLPack tensor */
		free(t);
		return;
	}
	if (send_release)
		hs__client_release(c, &t->id, 1, false);
	pthread_mutex_lock(&c->lock);
	hs__tensor_free_locked(t);
	pthread_mutex_unlock(&c->lock);
}

HS_EXPORT int hs_tensor_emit(hs_tensor *tensor, const char *topic, void *stream,
			     uint64_t *seq_out)
{
	if (!tensor)
		return HS_EINVAL;
	if (tensor->exported)
		return HS_EINVAL; /* the DLManagedTensor owns this reference */
	hs_client *c = tensor->client;
	int err = hs__topic_check(topic);
	/* The fence is recorded before the daemon learns of the emit, so no
	 * reader can see the tensor before the record is in its stream. */
	bool fence_done = false;
	if (!err && tensor->fence && stream == HS_STREAM_DONE)
		fence_done = true; /* the caller's writes are complete already */
	else if (!err && tensor->fence)
		err = hs__fence_record(tensor, stream);
	/* A fence event this process cannot open (the daemon's, from another
	 * uid or IPC namespace): wait for the writes here instead, and say
	 * so, so that readers are given no fence to wait on (docs/gpu.md). */
	if (err == HS_EIPC && stream != HS_STREAM_DONE) {
		err = hs__fence_sync(stream);
		fence_done = !err;
	}
	if (err) {
		tensor_drop(tensor, true);
		return err;
	}
	/* Pair rings: straight to the subscribers; our reference goes with
	 * the last note (the daemon drops it once it settled all of them), or
	 * back through a release note when that one was not written. */
	if (c->rings_on) {
		uint64_t seq = 0;
		bool moved = false;
		err = hs__ring_emit(c, tensor, topic, fence_done, seq_out == NULL, &seq,
				    &moved);
		if (err <= 0) {
			if (!err && seq_out)
				*seq_out = seq;
			tensor_drop(tensor, !moved && !__atomic_load_n(&c->dead, __ATOMIC_RELAXED));
			/* A client that died meanwhile says so, as a relayed
			 * emit would. */
			int dead = __atomic_load_n(&c->dead, __ATOMIC_RELAXED);
			return err ? err : dead;
		}
		err = 0; /* through the daemon */
	}
	Hs__EmitReq req = HS__EMIT_REQ__INIT;
	req.tensor_id = tensor->id;
	req.topic = (char *)topic;
	req.fence_done = fence_done;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_EMIT;
	m.emit = &req;

	/* Nobody asks for the sequence number: the emit need not wait for
	 * the daemon (post.c). */
	if (!seq_out && c->use_chan) {
		err = hs__post_emit(c, &m);
		bool dead = __atomic_load_n(&c->dead, __ATOMIC_RELAXED) != 0;
		tensor_drop(tensor, err != 0 && !dead);
		return err;
	}

	Hs__Message *reply;
	err = hs__client_request(c, &m, &reply);
	if (err) {
		tensor_drop(tensor, false); /* the connection is gone */
		return err;
	}
	err = hs__reply_check(reply, HS__MESSAGE__BODY_EMIT_REPLY);
	if (!err && !reply->emit_reply)
		err = HS_EPROTO;
	if (!err && seq_out)
		*seq_out = reply->emit_reply->seq;
	hs__wire_free(reply);
	/* A refused emit leaves the reference with us: give it back, since
	 * the call ends it either way. */
	tensor_drop(tensor, err != 0 && err != HS_EPROTO);
	if (err == HS_EPROTO) {
		pthread_mutex_lock(&c->lock);
		hs__client_fail(c, err);
		pthread_mutex_unlock(&c->lock);
	}
	return err;
}

HS_EXPORT void hs_tensor_release(hs_tensor *tensor, void *stream)
{
	/* An exported handle belongs to its DLManagedTensor, whose deleter
	 * is the one release. */
	if (!tensor || tensor->exported)
		return;
	/* dead is stored atomically (hs__client_fail): no lock needed. */
	bool live = tensor->client &&
		    !__atomic_load_n(&tensor->client->dead, __ATOMIC_RELAXED);
	/* A device tensor: the note leaves when the work queued on stream so
	 * far is done (docs/gpu.md, "release fence"); NULL is the legacy
	 * default stream, as in CUDA, since that is the stream most readers
	 * use without naming one. Only HS_STREAM_DONE says "already
	 * complete". Host tensors: nothing of ours can still be reading. If
	 * no host function could be queued, hs__release_after has waited for
	 * the stream on the host instead, and the note goes now. */
	if (live && stream != HS_STREAM_DONE && tensor->slab &&
	    tensor->slab->device.device_type == kDLCUDA &&
	    hs__release_after(tensor->client, tensor->id, stream) == 0) {
		tensor_drop(tensor, false);
		return;
	}
	tensor_drop(tensor, live);
}

static void dlpack_deleter(DLManagedTensor *self)
{
	hs_tensor *t = self->manager_ctx;
	t->exported = false;
	hs_tensor_release(t, t->dl_stream);
}

HS_EXPORT int hs_tensor_to_dlpack_stream(hs_tensor *tensor, void *stream,
					 DLManagedTensor **out)
{
	if (!tensor || !out || tensor->exported)
		return HS_EINVAL;
	/* The consumer's stream waits for the writer, as __dlpack__(stream)
	 * makes it in the array API; the deleter releases after it. */
	if (stream != HS_STREAM_DONE) {
		int err = hs_tensor_wait(tensor, stream);
		if (err)
			return err;
	}
	tensor->exported = true;
	tensor->dl_stream = stream;
	tensor->managed.dl_tensor = tensor->dl;
	tensor->managed.manager_ctx = tensor;
	tensor->managed.deleter = dlpack_deleter;
	*out = &tensor->managed;
	return 0;
}

HS_EXPORT int hs_tensor_to_dlpack(hs_tensor *tensor, DLManagedTensor **out)
{
	return hs_tensor_to_dlpack_stream(tensor, NULL, out);
}
