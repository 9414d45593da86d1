/* Introspection: a ListReply turned into the public hs_info structs. The
 * reply is untrusted like every other message: counts and ndim are
 * bounded, strings cut to their fields. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void copy_str(char *dst, size_t size, const char *src)
{
	snprintf(dst, size, "%s", src ? src : "");
}

static DLDevice device_of(const Hs__Device *d)
{
	DLDevice dev = { .device_type = (DLDeviceType)0, .device_id = 0 };
	if (d) {
		dev.device_type = (DLDeviceType)d->type;
		dev.device_id = d->id;
	}
	return dev;
}

static int tensor_info(hs_tensor_info *o, const Hs__TensorInfo *t)
{
	if (!t)
		return HS_EPROTO;
	o->id = t->id;
	copy_str(o->topic, sizeof(o->topic), t->topic);
	if (t->meta) {
		if (t->meta->n_shape > HS_MAX_NDIM)
			return HS_EPROTO;
		o->device = device_of(t->meta->device);
		if (t->meta->dtype) {
			o->dtype.code = (uint8_t)t->meta->dtype->code;
			o->dtype.bits = (uint8_t)t->meta->dtype->bits;
			o->dtype.lanes = (uint16_t)t->meta->dtype->lanes;
		}
		o->ndim = (int32_t)t->meta->n_shape;
		memcpy(o->shape, t->meta->shape, sizeof(int64_t) * t->meta->n_shape);
		if (t->meta->n_strides == t->meta->n_shape) {
			o->nstrides = o->ndim;
			memcpy(o->strides, t->meta->strides, sizeof(int64_t) * t->meta->n_strides);
		}
	}
	o->nbytes = t->nbytes;
	o->refs = t->refs;
	o->owner_pid = t->owner_pid;
	copy_str(o->owner_name, sizeof(o->owner_name), t->owner_name);
	o->age_us = t->age_us;
	o->seq = t->seq;
	o->slab_id = t->slab_id;
	o->offset = t->offset;
	return 0;
}

static int topic_info(hs_topic_info *o, const Hs__TopicInfo *t)
{
	if (!t)
		return HS_EPROTO;
	copy_str(o->name, sizeof(o->name), t->name);
	o->emitted = t->emitted;
	o->dropped = t->dropped;
	o->blocked_emits = t->blocked_emits;
	if (t->n_subs > 0) {
		o->subscribers = calloc(t->n_subs, sizeof(*o->subscribers));
		if (!o->subscribers)
			return HS_ENOMEM;
	}
	o->n_subscribers = (uint32_t)t->n_subs;
	for (size_t i = 0; i < t->n_subs; i++) {
		const Hs__SubscriberInfo *s = t->subs[i];
		hs_subscriber_info *so = &o->subscribers[i];
		if (!s)
			return HS_EPROTO;
		so->subscription = s->subscription;
		so->session_id = s->session_id;
		so->pid = s->pid;
		copy_str(so->name, sizeof(so->name), s->name);
		so->depth = s->depth;
		so->policy = (enum hs_policy)s->policy;
		so->queued = s->queued;
		so->delivered = s->delivered;
		so->dropped = s->dropped;
	}
	return 0;
}

static void client_info(hs_client_info *o, const Hs__ClientInfo *c)
{
	o->session_id = c->session_id;
	o->pid = c->pid;
	o->uid = c->uid;
	o->gid = c->gid;
	copy_str(o->name, sizeof(o->name), c->name);
	o->tensors_held = c->tensors_held;
	o->bytes_held = c->bytes_held;
	o->subscriptions = c->subscriptions;
	o->slabs_mapped = c->slabs_mapped;
	o->age_us = c->age_us;
	o->shared_channel = c->channel;
}

static void pool_info(hs_pool_info *o, const Hs__PoolInfo *p)
{
	o->device = device_of(p->device);
	o->slab_size = p->slab_size;
	o->slabs = p->slabs;
	o->total = p->total;
	o->used = p->used;
	o->free = p->free;
	o->largest_free = p->largest_free;
	o->cap = p->cap;
	o->tensors = p->tensors;
}

static int convert(const Hs__ListReply *r, hs_info *info)
{
	info->epoch = r->epoch;
	info->uptime_us = r->uptime_us;
	copy_str(info->daemon_version, sizeof(info->daemon_version), r->daemon_version);

	/* calloc of 0 may return NULL; only non-empty lists are allocated. */
	if ((r->n_tensors && !(info->tensors = calloc(r->n_tensors, sizeof(*info->tensors)))) ||
	    (r->n_topics && !(info->topics = calloc(r->n_topics, sizeof(*info->topics)))) ||
	    (r->n_clients && !(info->clients = calloc(r->n_clients, sizeof(*info->clients)))) ||
	    (r->n_pools && !(info->pools = calloc(r->n_pools, sizeof(*info->pools)))))
		return HS_ENOMEM;

	for (size_t i = 0; i < r->n_tensors; i++) {
		int err = tensor_info(&info->tensors[i], r->tensors[i]);
		if (err)
			return err;
		info->n_tensors++;
	}
	for (size_t i = 0; i < r->n_topics; i++) {
		/* Counted first: hs_info_free frees what was filled in. */
		info->n_topics++;
		int err = topic_info(&info->topics[i], r->topics[i]);
		if (err)
			return err;
	}
	for (size_t i = 0; i < r->n_clients; i++) {
		if (!r->clients[i])
			return HS_EPROTO;
		client_info(&info->clients[i], r->clients[i]);
		info->n_clients++;
	}
	for (size_t i = 0; i < r->n_pools; i++) {
		if (!r->pools[i])
			return HS_EPROTO;
		pool_info(&info->pools[i], r->pools[i]);
		info->n_pools++;
	}
	return 0;
}

HS_EXPORT int hs_client_get_info(hs_client *client, enum hs_info_what what, hs_info **out)
{
	if (!client || !out || (unsigned)what > HS_INFO_POOLS)
		return HS_EINVAL;
	Hs__ListReq req = HS__LIST_REQ__INIT;
	req.what = (Hs__ListWhat)what;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &req;

	Hs__Message *reply;
	int err = hs__client_request(client, &m, &reply);
	if (err)
		return err;
	err = hs__reply_check(reply, HS__MESSAGE__BODY_LIST_REPLY);
	if (!err && !reply->list_reply)
		err = HS_EPROTO;
	hs_info *info = NULL;
	if (!err) {
		info = calloc(1, sizeof(*info));
		if (!info)
			err = HS_ENOMEM;
		else
			err = convert(reply->list_reply, info);
	}
	hs__wire_free(reply);
	if (err) {
		hs_info_free(info);
		return err;
	}
	*out = info;
	return 0;
}

HS_EXPORT void hs_info_free(hs_info *info)
{
	if (!info)
		return;
	for (size_t i = 0; i < info->n_topics; i++)
		free(info->topics[i].subscribers);
	free(info->tensors);
	free(info->topics);
	free(info->clients);
	free(info->pools);
	free(info);
}
