/* Introspection: ListReply pages turned into the public hs_info structs
 * (a listing larger than one message comes in pages, asked for one after
 * the other). Replies are untrusted like every other message: counts and
 * ndim are bounded, strings cut to their fields, and every page must move
 * the cursor on. */
#include <stdint.h>
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
	o->bytes_emitted = t->bytes_emitted;
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
	copy_str(o->slab_kind, sizeof(o->slab_kind), p->slab_kind);
}

/* Grows *arr (of *n items of size bytes) to hold more items. */
static int grow(void **arr, size_t n, size_t more, size_t size)
{
	if (!more)
		return 0;
	if (more > SIZE_MAX / size - n)
		return HS_ENOMEM;
	void *p = realloc(*arr, (n + more) * size);
	if (!p)
		return HS_ENOMEM;
	memset((char *)p + n * size, 0, more * size);
	*arr = p;
	return 0;
}

/* Adds one page to info. cont: the page goes on with the last topic
 * of the one before (ListCursor.sub_key): its subscribers are appended. */
static int append(const Hs__ListReply *r, hs_info *info, bool cont)
{
	info->epoch = r->epoch;
	info->uptime_us = r->uptime_us;
	info->daemon_pid = r->daemon_pid;
	info->daemon_cpu_us = r->daemon_cpu_us;
	copy_str(info->daemon_version, sizeof(info->daemon_version), r->daemon_version);

	size_t first_topic = 0;
	if (cont && r->n_topics > 0 && info->n_topics > 0 && r->topics[0] && r->topics[0]->name &&
	    !strcmp(info->topics[info->n_topics - 1].name, r->topics[0]->name)) {
		hs_topic_info part = { 0 };
		int err = topic_info(&part, r->topics[0]);
		hs_topic_info *last = &info->topics[info->n_topics - 1];
		if (!err)
			err = grow((void **)&last->subscribers, last->n_subscribers,
				   part.n_subscribers, sizeof(*last->subscribers));
		if (!err) {
			memcpy(last->subscribers + last->n_subscribers, part.subscribers,
			       part.n_subscribers * sizeof(*part.subscribers));
			last->n_subscribers += part.n_subscribers;
		}
		free(part.subscribers);
		if (err)
			return err;
		first_topic = 1;
	}
	int err = grow((void **)&info->tensors, info->n_tensors, r->n_tensors, sizeof(*info->tensors));
	if (!err)
		err = grow((void **)&info->topics, info->n_topics, r->n_topics - first_topic,
			   sizeof(*info->topics));
	if (!err)
		err = grow((void **)&info->clients, info->n_clients, r->n_clients,
			   sizeof(*info->clients));
	if (!err)
		err = grow((void **)&info->pools, info->n_pools, r->n_pools, sizeof(*info->pools));
	if (err)
		return err;

	for (size_t i = 0; i < r->n_tensors; i++) {
		err = tensor_info(&info->tensors[info->n_tensors], r->tensors[i]);
		if (err)
			return err;
		info->n_tensors++;
	}
	for (size_t i = first_topic; i < r->n_topics; i++) {
		/* Counted first: hs_info_free frees what was filled in. */
		err = topic_info(&info->topics[info->n_topics++], r->topics[i]);
		if (err)
			return err;
	}
	for (size_t i = 0; i < r->n_clients; i++) {
		if (!r->clients[i])
			return HS_EPROTO;
		client_info(&info->clients[info->n_clients++], r->clients[i]);
	}
	for (size_t i = 0; i < r->n_pools; i++) {
		if (!r->pools[i])
			return HS_EPROTO;
		pool_info(&info->pools[info->n_pools++], r->pools[i]);
	}
	return 0;
}

/* Whether cursor b comes strictly after a: each page must move on, or a
 * daemon gone wrong would keep us asking forever. */
static bool cursor_after(const Hs__ListCursor *a, const Hs__ListCursor *b)
{
	if (b->section != a->section)
		return b->section > a->section;
	if (b->key != a->key)
		return b->key > a->key;
	return b->sub_key > a->sub_key;
}

/* Pages one listing takes at most: far more than any daemon's items fill
 * (every page holds at least one). */
#define INFO_MAX_PAGES (1u << 20)

HS_EXPORT int hs_client_get_info(hs_client *client, enum hs_info_what what, hs_info **out)
{
	if (!client || !out || (unsigned)what > HS_INFO_POOLS)
		return HS_EINVAL;
	hs_info *info = calloc(1, sizeof(*info));
	if (!info)
		return HS_ENOMEM;
	Hs__ListCursor from = HS__LIST_CURSOR__INIT;
	bool paging = false;
	int err = 0;
	for (unsigned page = 0; !err; page++) {
		if (page >= INFO_MAX_PAGES) {
			err = HS_EPROTO;
			break;
		}
		Hs__ListReq req = HS__LIST_REQ__INIT;
		req.what = (Hs__ListWhat)what;
		req.from = paging ? &from : NULL;
		Hs__Message m = HS__MESSAGE__INIT;
		m.body_case = HS__MESSAGE__BODY_LIST;
		m.list = &req;
		Hs__Message *reply;
		err = hs__client_request(client, &m, &reply);
		if (err)
			break;
		err = hs__reply_check(reply, HS__MESSAGE__BODY_LIST_REPLY);
		if (!err && !reply->list_reply)
			err = HS_EPROTO;
		if (!err)
			err = append(reply->list_reply, info, paging && from.sub_key != 0);
		const Hs__ListCursor *next = err ? NULL : reply->list_reply->next;
		if (next && paging && !cursor_after(&from, next))
			err = HS_EPROTO;
		bool more = next != NULL;
		if (next) {
			from.section = next->section;
			from.key = next->key;
			from.sub_key = next->sub_key;
		}
		hs__wire_free(reply);
		if (!more)
			break;
		paging = true;
	}
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
