/* The ListReply. Lists are filled in the order pools, topics, clients,
 * tensors, each item only while the message still fits one datagram; the
 * tensor list is the one that grows without bound and is cut first. */
#include "introspect.h"

#include <stdlib.h>

#include "hs-config.h"
#include "hsbroker/error.h"
#include "broker.h"
#include "log.h"
#include "range.h"
#include "session.h"

/* Most tensors listed: more never fit 256 KiB anyway (>= ~15 bytes each). */
#define LIST_MAX_TENSORS 20000u

struct tensor_item {
	Hs__TensorInfo info;
	Hs__Meta meta;
	Hs__Device dev;
	Hs__DType dt;
};

struct pool_item {
	Hs__PoolInfo info;
	Hs__Device dev;
};

static size_t varint_len(size_t v)
{
	size_t n = 1;
	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* Bytes an embedded message of packed size n takes in its parent. */
static size_t field_len(size_t n)
{
	return 1 + varint_len(n) + n;
}

static bool fits(size_t *budget, size_t packed)
{
	size_t need = field_len(packed);
	if (need > *budget)
		return false;
	*budget -= need;
	return true;
}

void introspect_reply(struct session *s, uint64_t seq, Hs__ListWhat what)
{
	struct broker *b = s->broker;
	int w = (int)what;
	if (w < (int)HS__LIST_WHAT__LIST_ALL || w > (int)HS__LIST_WHAT__LIST_POOLS) {
		session_error(s, seq, HS_EINVAL, "list: unknown selection %d", w);
		return;
	}
	bool all = what == HS__LIST_WHAT__LIST_ALL;
	uint64_t now = tensor_now_us();
	size_t budget = HS__WIRE_MAX_MSG - 256; /* header, epoch, uptime, version */

	Hs__ListReply lr = HS__LIST_REPLY__INIT;
	lr.epoch = b->epoch;
	lr.uptime_us = now - b->start_us;
	lr.daemon_version = (char *)HS_VERSION;

	struct pool_item pools[1 + HS_CUDA_MAX_DEVICES];
	Hs__PoolInfo *pool_ptrs[1 + HS_CUDA_MAX_DEVICES];
	Hs__TopicInfo *topics = NULL, **topic_ptrs = NULL;
	Hs__SubscriberInfo *subs = NULL, **sub_ptrs = NULL;
	Hs__ClientInfo *clients = NULL, **client_ptrs = NULL;
	struct tensor_item *tensors = NULL;
	Hs__TensorInfo **tensor_ptrs = NULL;
	bool trimmed = false;

	if (all || what == HS__LIST_WHAT__LIST_POOLS) {
		struct pool *ps[1 + HS_CUDA_MAX_DEVICES];
		size_t np = broker_pools(b, ps, 1 + HS_CUDA_MAX_DEVICES);
		lr.pools = pool_ptrs;
		for (size_t i = 0; i < np; i++) {
			struct pool *p = ps[i];
			struct pool_item *it = &pools[i];
			hs__pool_info__init(&it->info);
			hs__device__init(&it->dev);
			it->dev.type = p->device.device_type;
			it->dev.id = p->device.device_id;
			it->info.device = &it->dev;
			it->info.slab_size = p->slab_size;
			it->info.slabs = p->nslabs;
			it->info.total = p->total;
			it->info.used = p->used;
			it->info.free = p->total - p->used;
			it->info.cap = p->cap;
			it->info.tensors = p->blocks;
			it->info.largest_free = pool_largest_free(p);
			if (!fits(&budget, hs__pool_info__get_packed_size(&it->info)))
				break;
			pool_ptrs[lr.n_pools++] = &it->info;
		}
		if (!lr.n_pools)
			lr.pools = NULL;
	}

	if (all || what == HS__LIST_WHAT__LIST_TOPICS) {
		uint32_t nsubs = 0;
		struct topic *tp;
		list_for_each(tp, &b->topics.all, link)
			nsubs += tp->nsubs;
		topics = calloc(b->topics.n + 1, sizeof(*topics));
		topic_ptrs = calloc(b->topics.n + 1, sizeof(*topic_ptrs));
		subs = calloc(nsubs + 1, sizeof(*subs));
		sub_ptrs = calloc(nsubs + 1, sizeof(*sub_ptrs));
		if (!topics || !topic_ptrs || !subs || !sub_ptrs)
			goto nomem;
		size_t k = 0;
		list_for_each(tp, &b->topics.all, link) {
			Hs__TopicInfo *ti = &topics[lr.n_topics];
			hs__topic_info__init(ti);
			ti->name = tp->name;
			ti->emitted = tp->emitted;
			ti->subscribers = tp->nsubs;
			ti->dropped = tp->dropped;
			ti->blocked_emits = tp->npending;
			ti->subs = &sub_ptrs[k];
			struct sub *sub;
			list_for_each(sub, &tp->subs, topic_link) {
				struct session *o = sub->owner;
				Hs__SubscriberInfo *si = &subs[k];
				hs__subscriber_info__init(si);
				si->subscription = sub->id;
				si->session_id = o->id;
				si->pid = o->pid;
				si->name = o->name;
				si->depth = sub->depth;
				si->policy = sub->policy;
				si->queued = sub->count;
				si->delivered = sub->delivered;
				si->dropped = sub->dropped;
				sub_ptrs[k++] = si;
				ti->n_subs++;
			}
			if (!fits(&budget, hs__topic_info__get_packed_size(ti))) {
				trimmed = true;
				break;
			}
			topic_ptrs[lr.n_topics++] = ti;
		}
		lr.topics = topic_ptrs;
	}

	if (all || what == HS__LIST_WHAT__LIST_CLIENTS) {
		clients = calloc(b->nsessions + 1, sizeof(*clients));
		client_ptrs = calloc(b->nsessions + 1, sizeof(*client_ptrs));
		if (!clients || !client_ptrs)
			goto nomem;
		struct session *o;
		list_for_each(o, &b->sessions, link) {
			if (!o->hello_done)
				continue;
			Hs__ClientInfo *ci = &clients[lr.n_clients];
			hs__client_info__init(ci);
			ci->session_id = o->id;
			ci->pid = o->pid;
			ci->uid = o->uid;
			ci->gid = o->gid;
			ci->name = o->name;
			ci->tensors_held = (uint32_t)o->held.n;
			ci->bytes_held = o->bytes_held;
			ci->subscriptions = o->nsubs;
			ci->age_us = now - o->created_us;
			ci->slabs_mapped = (uint32_t)o->slabs.n;
			ci->channel = o->chan != NULL;
			if (!fits(&budget, hs__client_info__get_packed_size(ci))) {
				trimmed = true;
				break;
			}
			client_ptrs[lr.n_clients++] = ci;
		}
		lr.clients = client_ptrs;
	}

	if (all || what == HS__LIST_WHAT__LIST_TENSORS) {
		struct tensor_table *tt = &b->tensors;
		uint32_t max = tt->live < LIST_MAX_TENSORS ? tt->live : LIST_MAX_TENSORS;
		tensors = calloc(max + 1, sizeof(*tensors));
		tensor_ptrs = calloc(max + 1, sizeof(*tensor_ptrs));
		if (!tensors || !tensor_ptrs)
			goto nomem;
		for (uint32_t i = 0; i < tt->n; i++) {
			struct tensor *t = tt->slots[i];
			if (!t)
				continue;
			if (lr.n_tensors >= max) {
				trimmed = true;
				break;
			}
			struct tensor_item *it = &tensors[lr.n_tensors];
			Hs__TensorInfo *ti = &it->info;
			hs__tensor_info__init(ti);
			tensor_meta_pb(t, &it->meta, &it->dev, &it->dt);
			ti->id = t->id;
			ti->topic = (char *)(t->topic ? t->topic : "");
			ti->meta = &it->meta;
			ti->nbytes = t->block.length;
			ti->refs = t->refs;
			ti->owner_pid = t->owner_pid;
			ti->owner_name = t->owner_name;
			ti->age_us = now - t->created_us;
			ti->seq = t->seq;
			ti->slab_id = t->block.slab->id;
			ti->offset = t->block.offset;
			if (!fits(&budget, hs__tensor_info__get_packed_size(ti))) {
				trimmed = true;
				break;
			}
			tensor_ptrs[lr.n_tensors++] = ti;
		}
		lr.tensors = tensor_ptrs;
	}

	if (trimmed)
		log_debug("list: reply trimmed to fit %d bytes", HS__WIRE_MAX_MSG);
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_LIST_REPLY;
	m.list_reply = &lr;
	session_send(s, &m, NULL, 0);
	goto out;

nomem:
	session_error(s, seq, HS_ENOMEM, "list: out of memory");
out:
	free(topics);
	free(topic_ptrs);
	free(subs);
	free(sub_ptrs);
	free(clients);
	free(client_ptrs);
	free(tensors);
	free(tensor_ptrs);
}
