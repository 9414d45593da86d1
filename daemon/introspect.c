/* The ListReply, one page at a time. Lists are filled in the order pools,
 * topics, clients, tensors, each item only while the message still fits
 * one datagram; where one does not, the page ends and ListReply.next says
 * where the next one starts: the section and the item's key (a topic's
 * id, a session id, a tensor's slot), which grow along each list, so
 * every item is listed at most once however the lists change between
 * pages. A topic whose subscribers do not all fit is split between
 * pages (ListCursor.sub_key). */
#include "introspect.h"

#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include "hs-config.h"
#include "hsbroker/error.h"
#include "broker.h"
#include "log.h"
#include "pair.h"
#include "range.h"
#include "session.h"

enum { SEC_POOLS = 0, SEC_TOPICS = 1, SEC_CLIENTS = 2, SEC_TENSORS = 3 };

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

/* One page being built. */
struct page {
	Hs__ListReply lr;
	size_t budget;
	bool full;                /* an item did not fit: next is set */
	Hs__ListCursor next;
	uint64_t now;
};

static void page_stop(struct page *pg, uint32_t section, uint64_t key, uint64_t sub_key)
{
	pg->full = true;
	hs__list_cursor__init(&pg->next);
	pg->next.section = section;
	pg->next.key = key;
	pg->next.sub_key = sub_key;
	pg->lr.next = &pg->next;
}

static void list_pools(struct hsd_broker *b, struct page *pg, struct pool_item *pools,
		       Hs__PoolInfo **pool_ptrs)
{
	struct hsd_pool *ps[1 + HS_CUDA_MAX_DEVICES];
	size_t np = hsd_broker_pools(b, ps, 1 + HS_CUDA_MAX_DEVICES);
	pg->lr.pools = pool_ptrs;
	for (size_t i = 0; i < np; i++) {
		struct hsd_pool *p = ps[i];
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
		it->info.largest_free = hsd_pool_largest_free(p);
		it->info.slab_kind = (char *)p->ops->name;
		/* A few dozen bytes each, on an empty page: they fit. */
		fits(&pg->budget, hs__pool_info__get_packed_size(&it->info));
		pool_ptrs[pg->lr.n_pools++] = &it->info;
	}
	if (!pg->lr.n_pools)
		pg->lr.pools = NULL;
}

/* Topics from the one with id key (its subscribers from id sub_key). */
static int list_topics(struct hsd_broker *b, struct page *pg, uint64_t key, uint64_t sub_key,
		       Hs__TopicInfo **topics_out, Hs__TopicInfo ***ptrs_out,
		       Hs__SubscriberInfo **subs_out, Hs__SubscriberInfo ***sub_ptrs_out)
{
	uint32_t nsubs = 0;
	struct hsd_topic *tp;
	list_for_each(tp, &b->topics.all, link)
		nsubs += tp->nsubs;
	Hs__TopicInfo *topics = *topics_out = calloc(b->topics.n + 1, sizeof(*topics));
	Hs__TopicInfo **topic_ptrs = *ptrs_out = calloc(b->topics.n + 1, sizeof(*topic_ptrs));
	Hs__SubscriberInfo *subs = *subs_out = calloc(nsubs + 1, sizeof(*subs));
	Hs__SubscriberInfo **sub_ptrs = *sub_ptrs_out = calloc(nsubs + 1, sizeof(*sub_ptrs));
	if (!topics || !topic_ptrs || !subs || !sub_ptrs)
		return HS_ENOMEM;
	pg->lr.topics = topic_ptrs;
	size_t k = 0;
	list_for_each(tp, &b->topics.all, link) {
		if (tp->id < key)
			continue;
		Hs__TopicInfo *ti = &topics[pg->lr.n_topics];
		hs__topic_info__init(ti);
		ti->name = tp->name;
		ti->emitted = hsd_topic_emitted(tp);
		ti->bytes_emitted = tp->bytes_emitted;
		ti->subscribers = tp->nsubs;
		ti->dropped = tp->dropped;
		struct hsd_sub *sub;
		list_for_each(sub, &tp->subs, topic_link)
			ti->dropped += hsd_pair_dropped(sub);
		ti->blocked_emits = tp->npending;
		ti->subs = &sub_ptrs[k];
		/* Its length without subscribers, then each one's field: a
		 * repeated field is the sum of its entries. */
		size_t packed = hs__topic_info__get_packed_size(ti);
		/* Room for the topic and its first subscriber at least, or the
		 * page ends before it. */
		if (field_len(packed) + 256 > pg->budget) {
			page_stop(pg, SEC_TOPICS, tp->id, 0);
			return 0;
		}
		uint64_t from = tp->id == key ? sub_key : 0;
		list_for_each(sub, &tp->subs, topic_link) {
			if (sub->id < from)
				continue;
			struct hsd_session *o = sub->owner;
			Hs__SubscriberInfo *si = &subs[k];
			hs__subscriber_info__init(si);
			si->subscription = sub->id;
			si->session_id = o->id;
			si->pid = o->pid;
			si->name = o->name;
			si->depth = sub->depth;
			si->policy = sub->policy;
			si->queued = sub->count + hsd_pair_queued(sub);
			si->delivered = sub->delivered;
			si->dropped = sub->dropped + hsd_pair_dropped(sub);
			size_t grown = packed + field_len(hs__subscriber_info__get_packed_size(si));
			if (field_len(grown) > pg->budget && ti->n_subs > 0) {
				fits(&pg->budget, packed);
				topic_ptrs[pg->lr.n_topics++] = ti;
				page_stop(pg, SEC_TOPICS, tp->id, sub->id);
				return 0;
			}
			packed = grown;
			sub_ptrs[k++] = si;
			ti->n_subs++;
		}
		fits(&pg->budget, packed);
		topic_ptrs[pg->lr.n_topics++] = ti;
	}
	return 0;
}

static int list_clients(struct hsd_broker *b, struct page *pg, uint64_t key,
			Hs__ClientInfo **clients_out, Hs__ClientInfo ***ptrs_out)
{
	Hs__ClientInfo *clients = *clients_out = calloc(b->nsessions + 1, sizeof(*clients));
	Hs__ClientInfo **client_ptrs = *ptrs_out = calloc(b->nsessions + 1, sizeof(*client_ptrs));
	if (!clients || !client_ptrs)
		return HS_ENOMEM;
	pg->lr.clients = client_ptrs;
	struct hsd_session *o;
	list_for_each(o, &b->sessions, link) {
		if (!o->hello_done || o->id < key)
			continue;
		Hs__ClientInfo *ci = &clients[pg->lr.n_clients];
		hs__client_info__init(ci);
		ci->session_id = o->id;
		ci->pid = o->pid;
		ci->uid = o->uid;
		ci->gid = o->gid;
		ci->name = o->name;
		ci->tensors_held = (uint32_t)o->held.n;
		ci->bytes_held = o->bytes_held;
		ci->subscriptions = o->nsubs;
		ci->age_us = pg->now - o->created_us;
		ci->slabs_mapped = (uint32_t)o->slabs.n;
		ci->channel = o->chan != NULL;
		if (!fits(&pg->budget, hs__client_info__get_packed_size(ci))) {
			page_stop(pg, SEC_CLIENTS, o->id, 0);
			return 0;
		}
		client_ptrs[pg->lr.n_clients++] = ci;
	}
	return 0;
}

static int list_tensors(struct hsd_broker *b, struct page *pg, uint64_t key,
			struct tensor_item **items_out, Hs__TensorInfo ***ptrs_out)
{
	struct hsd_tensor_table *tt = &b->tensors;
	/* At least ~60 bytes each: no more fit one page. */
	uint32_t max = HS__WIRE_MAX_MSG / 60;
	if (tt->live < max)
		max = tt->live;
	struct tensor_item *tensors = *items_out = calloc(max + 1, sizeof(*tensors));
	Hs__TensorInfo **tensor_ptrs = *ptrs_out = calloc(max + 1, sizeof(*tensor_ptrs));
	if (!tensors || !tensor_ptrs)
		return HS_ENOMEM;
	pg->lr.tensors = tensor_ptrs;
	for (uint64_t i = key; i < tt->n; i++) {
		struct hsd_tensor *t = tt->slots[i];
		if (!t)
			continue;
		if (pg->lr.n_tensors >= max) {
			page_stop(pg, SEC_TENSORS, i, 0);
			return 0;
		}
		struct tensor_item *it = &tensors[pg->lr.n_tensors];
		Hs__TensorInfo *ti = &it->info;
		hs__tensor_info__init(ti);
		hsd_tensor_meta_pb(t, &it->meta, &it->dev, &it->dt);
		ti->id = t->id;
		ti->topic = (char *)(t->topic ? t->topic : "");
		ti->meta = &it->meta;
		ti->nbytes = t->block.length;
		ti->refs = t->refs;
		ti->owner_pid = t->owner_pid;
		ti->owner_name = t->owner_name;
		ti->age_us = pg->now - t->created_us;
		ti->seq = t->seq;
		ti->slab_id = t->block.slab->id;
		ti->offset = t->block.offset;
		if (!fits(&pg->budget, hs__tensor_info__get_packed_size(ti))) {
			page_stop(pg, SEC_TENSORS, i, 0);
			return 0;
		}
		tensor_ptrs[pg->lr.n_tensors++] = ti;
	}
	return 0;
}

void hsd_introspect_reply(struct hsd_session *s, uint64_t seq, const Hs__ListReq *req)
{
	struct hsd_broker *b = s->broker;
	Hs__ListWhat what = req->what;
	int w = (int)what;
	if (w < (int)HS__LIST_WHAT__LIST_ALL || w > (int)HS__LIST_WHAT__LIST_POOLS) {
		hsd_session_error(s, seq, HS_EINVAL, "list: unknown selection %d", w);
		return;
	}
	const Hs__ListCursor *from = req->from;
	uint32_t section = from ? from->section : SEC_POOLS;
	if (section > SEC_TENSORS) {
		hsd_session_error(s, seq, HS_EINVAL, "list: unknown section %u in the cursor", section);
		return;
	}
	bool all = what == HS__LIST_WHAT__LIST_ALL;
	struct page pg = { .lr = HS__LIST_REPLY__INIT };
	pg.now = hsd_tensor_now_us();
	pg.budget = HS__WIRE_MAX_MSG - 256; /* header, epoch, uptime, version, cursor */
	pg.lr.epoch = b->epoch;
	pg.lr.uptime_us = pg.now - b->start_us;
	pg.lr.daemon_version = (char *)HS_VERSION;
	pg.lr.daemon_pid = getpid();
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		pg.lr.daemon_cpu_us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
				      (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);

	struct pool_item pools[1 + HS_CUDA_MAX_DEVICES];
	Hs__PoolInfo *pool_ptrs[1 + HS_CUDA_MAX_DEVICES];
	Hs__TopicInfo *topics = NULL, **topic_ptrs = NULL;
	Hs__SubscriberInfo *subs = NULL, **sub_ptrs = NULL;
	Hs__ClientInfo *clients = NULL, **client_ptrs = NULL;
	struct tensor_item *tensors = NULL;
	Hs__TensorInfo **tensor_ptrs = NULL;
	int r = 0;

	/* A section's key applies where the cursor stopped; later sections
	 * start at their beginning. */
	uint64_t key = from ? from->key : 0, sub_key = from ? from->sub_key : 0;
	if (section == SEC_POOLS && (all || what == HS__LIST_WHAT__LIST_POOLS))
		list_pools(b, &pg, pools, pool_ptrs);
	if (r == 0 && !pg.full && section <= SEC_TOPICS && (all || what == HS__LIST_WHAT__LIST_TOPICS))
		r = list_topics(b, &pg, section == SEC_TOPICS ? key : 0,
				section == SEC_TOPICS ? sub_key : 0, &topics, &topic_ptrs, &subs,
				&sub_ptrs);
	if (r == 0 && !pg.full && section <= SEC_CLIENTS &&
	    (all || what == HS__LIST_WHAT__LIST_CLIENTS))
		r = list_clients(b, &pg, section == SEC_CLIENTS ? key : 0, &clients, &client_ptrs);
	if (r == 0 && !pg.full && (all || what == HS__LIST_WHAT__LIST_TENSORS))
		r = list_tensors(b, &pg, section == SEC_TENSORS ? key : 0, &tensors, &tensor_ptrs);

	if (r < 0) {
		hsd_session_error(s, seq, r, "list: out of memory");
	} else {
		if (pg.full)
			log_debug("list: page full at section %u key %llu", pg.next.section,
				  (unsigned long long)pg.next.key);
		Hs__Message m = HS__MESSAGE__INIT;
		m.seq = seq;
		m.body_case = HS__MESSAGE__BODY_LIST_REPLY;
		m.list_reply = &pg.lr;
		hsd_outbox_send(s, &m, NULL, 0);
	}
	free(topics);
	free(topic_ptrs);
	free(subs);
	free(sub_ptrs);
	free(clients);
	free(client_ptrs);
	free(tensors);
	free(tensor_ptrs);
}
