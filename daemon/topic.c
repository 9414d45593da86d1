/* Topics, subscriptions and the held-back emit FIFO. */
#include "topic.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "wire.h"

static void topic_free(struct hsd_topic *tp);

static uint64_t name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h | 1; /* idmap keys are non-zero */
}

void hsd_topics_init(struct hsd_topics *ts, struct hsd_tensor_table *tt, uint32_t max_topics,
		     uint32_t max_pending, const struct hsd_topic_hooks *hooks)
{
	*ts = (struct hsd_topics){ 0 };
	hsd_idmap_init(&ts->index);
	list_init(&ts->all);
	list_init(&ts->blocked);
	ts->max = max_topics ? max_topics : TOPICS_DEFAULT_MAX;
	ts->max_pending = max_pending ? max_pending : TOPIC_DEFAULT_MAX_PENDING;
	ts->tt = tt;
	ts->hooks = *hooks;
}

void hsd_topics_fini(struct hsd_topics *ts)
{
	struct hsd_topic *tp, *tmp;
	list_for_each_safe(tp, tmp, &ts->all, link) {
		struct hsd_sub *s, *st;
		list_for_each_safe(s, st, &tp->subs, topic_link)
			hsd_topic_unsubscribe(ts, s);
		struct hsd_pending_emit *pe, *pt;
		list_for_each_safe(pe, pt, &tp->pending, topic_link)
			hsd_topic_cancel(ts, pe);
		topic_free(tp);
	}
	hsd_idmap_fini(&ts->index);
	list_init(&ts->all);
	list_init(&ts->blocked);
}

static void unindex(struct hsd_topics *ts, struct hsd_topic *tp)
{
	uint64_t h = name_hash(tp->name);
	uint64_t *v = hsd_idmap_get(&ts->index, h);
	if (!v)
		return;
	struct hsd_topic *head = (struct hsd_topic *)(uintptr_t)*v;
	if (head == tp) {
		if (tp->hash_next)
			*v = (uint64_t)(uintptr_t)tp->hash_next;
		else
			hsd_idmap_del(&ts->index, h);
		return;
	}
	for (struct hsd_topic *p = head; p->hash_next; p = p->hash_next) {
		if (p->hash_next == tp) {
			p->hash_next = tp->hash_next;
			return;
		}
	}
}

/* Frees every idle topic and returns how many: no subscriber, no emit
 * held back, and no live tensor whose ->topic points at its name. Runs
 * only when the limit is reached, so its scans are paid once per batch
 * of new names, not per emit. */
uint32_t hsd_topics_evict_idle(struct hsd_topics *ts)
{
	struct hsd_idmap named;
	hsd_idmap_init(&named);
	struct hsd_tensor_table *tt = ts->tt;
	for (uint32_t i = 0; i < tt->n; i++) {
		struct hsd_tensor *t = tt->slots[i];
		if (t && t->topic && hsd_idmap_put(&named, (uint64_t)(uintptr_t)t->topic, 1) < 0) {
			hsd_idmap_fini(&named);
			return 0;
		}
	}
	uint32_t n = 0;
	struct hsd_topic *tp, *tmp;
	list_for_each_safe(tp, tmp, &ts->all, link) {
		if (tp->nsubs || tp->npending || hsd_idmap_get(&named, (uint64_t)(uintptr_t)tp->name))
			continue;
		if (ts->hooks.freed)
			ts->hooks.freed(ts->hooks.data, tp);
		unindex(ts, tp);
		list_remove(&tp->link);
		topic_free(tp);
		ts->n--;
		n++;
	}
	hsd_idmap_fini(&named);
	return n;
}

int hsd_topics_get(struct hsd_topics *ts, const char *name, bool create, struct hsd_topic **out)
{
	int r = hs__topic_check(name);
	if (r < 0)
		return r;
	uint64_t h = name_hash(name);
	uint64_t *v = hsd_idmap_get(&ts->index, h);
	struct hsd_topic *first = v ? (struct hsd_topic *)(uintptr_t)*v : NULL;
	for (struct hsd_topic *tp = first; tp; tp = tp->hash_next) {
		if (!strcmp(tp->name, name)) {
			*out = tp;
			return 0;
		}
	}
	if (!create)
		return HS_ENOENT;
	if (ts->n >= ts->max) {
		if (hsd_topics_evict_idle(ts) == 0)
			return HS_ELIMIT;
		/* eviction may have changed the chain this name hashes to */
		v = hsd_idmap_get(&ts->index, h);
		first = v ? (struct hsd_topic *)(uintptr_t)*v : NULL;
	}
	struct hsd_topic *tp = calloc(1, sizeof(*tp));
	if (!tp)
		return HS_ENOMEM;
	tp->name = strdup(name);
	if (!tp->name || hsd_idmap_put(&ts->index, h, (uint64_t)(uintptr_t)tp) < 0) {
		free(tp->name);
		free(tp);
		return HS_ENOMEM;
	}
	tp->hash_next = first;
	list_init(&tp->blocked_link);
	tp->id = ++ts->next_topic_id;
	list_init(&tp->subs);
	list_init(&tp->pending);
	list_insert_tail(&ts->all, &tp->link);
	ts->n++;
	*out = tp;
	return 0;
}

/* A BLOCK subscriber that holds emits back: full and not stalled. */
static bool holds_back(const struct hsd_sub *s)
{
	return s->policy == HS__POLICY__POLICY_BLOCK && s->count >= s->depth && !s->stalled;
}

static bool block_full(const struct hsd_topic *tp)
{
	const struct hsd_sub *s;
	list_for_each(s, &tp->subs, topic_link)
		if (holds_back(s))
			return true;
	return false;
}

/* Keeps tp on ts->blocked exactly while it has held-back emits. */
static void update_blocked(struct hsd_topics *ts, struct hsd_topic *tp)
{
	list_remove(&tp->blocked_link);
	if (tp->npending)
		list_insert_tail(&ts->blocked, &tp->blocked_link);
}

static void drain(struct hsd_topics *ts, struct hsd_topic *tp);

/* Delivers queued tensors while the subscriber has credits. */
static void pump(struct hsd_topics *ts, struct hsd_sub *s)
{
	bool freed = false;
	while (s->count && s->credits) {
		struct hsd_sub_entry e = s->q[s->head];
		s->head = (s->head + 1) % s->qcap;
		s->count--;
		s->credits--;
		s->delivered++;
		freed = true;
		ts->hooks.deliver(ts->hooks.data, s, e.t, e.seq);
	}
	if (freed)
		s->stalled = false; /* it reads again: it may hold emits back again */
	if (freed && s->policy == HS__POLICY__POLICY_BLOCK)
		drain(ts, s->topic);
}

/* The ring grows on demand up to depth: a deep queue that is never
 * filled costs nothing (depth may be 65536 for 256 subscriptions). */
static int enqueue(struct hsd_sub *s, struct hsd_tensor *t, uint64_t seq)
{
	if (s->count == s->qcap) {
		uint32_t cap = s->qcap * 2 < s->depth ? s->qcap * 2 : s->depth;
		struct hsd_sub_entry *q = malloc(cap * sizeof(*q));
		if (!q)
			return HS_ENOMEM;
		for (uint32_t i = 0; i < s->count; i++)
			q[i] = s->q[(s->head + i) % s->qcap];
		free(s->q);
		s->q = q;
		s->qcap = cap;
		s->head = 0;
	}
	s->q[(s->head + s->count) % s->qcap] = (struct hsd_sub_entry){ t, seq };
	s->count++;
	return 0;
}

/* The topic's next sequence number: from its page once it has pair rings
 * (their producers take numbers there too). A page scribbled on can make
 * numbers repeat or jump (docs/design.md); nothing indexes by them. */
static uint64_t next_seq(struct hsd_topic *tp)
{
	if (!tp->page)
		return ++tp->emitted;
	uint64_t seq = __atomic_add_fetch(&tp->page->seq, 1, __ATOMIC_ACQ_REL);
	if (seq > tp->emitted)
		tp->emitted = seq;
	return seq;
}

uint64_t hsd_topic_emitted(const struct hsd_topic *tp)
{
	if (!tp->page)
		return tp->emitted;
	/* Numbers producers took count at once; a page value below what
	 * the daemon saw, or absurdly far above it, is not believed. */
	uint64_t v = __atomic_load_n(&tp->page->seq, __ATOMIC_ACQUIRE);
	return v > tp->emitted && v - tp->emitted < (1ull << 40) ? v : tp->emitted;
}

/* Frees tp (unlinked already), its page first: producers that mapped it
 * see the route gone and ask again. */
static void topic_free(struct hsd_topic *tp)
{
	if (tp->page) {
		__atomic_store_n(&tp->page->gen, HS__PRING_GEN_GONE, __ATOMIC_RELEASE);
		hs__pring_page_unmap(tp->page);
		close(tp->page_fd);
	}
	free(tp->name);
	free(tp);
}

/* Gives t the next sequence number and queues it for every subscriber;
 * the emitter's reference, moved to the topic, is then dropped. */
static uint64_t accept(struct hsd_topics *ts, struct hsd_topic *tp, struct hsd_tensor *t)
{
	uint64_t seq = next_seq(tp);
	tp->bytes_emitted += t->nbytes;
	t->topic = tp->name;
	t->seq = seq;
	struct hsd_sub *s;
	list_for_each(s, &tp->subs, topic_link) {
		if (s->count >= s->depth) {
			s->dropped++;
			tp->dropped++;
			if (s->policy != HS__POLICY__POLICY_DROP_OLDEST)
				continue; /* DROP_NEWEST, or a stalled BLOCK */
			struct hsd_sub_entry old = s->q[s->head];
			s->head = (s->head + 1) % s->qcap;
			s->count--;
			hsd_tensor_unref(ts->tt, old.t);
		}
		if (enqueue(s, t, seq) < 0) {
			/* Out of memory: counted as a drop, never a crash. */
			s->dropped++;
			tp->dropped++;
			continue;
		}
		hsd_tensor_ref(t);
	}
	hsd_tensor_unref(ts->tt, t);
	struct hsd_sub *tmp;
	list_for_each_safe(s, tmp, &tp->subs, topic_link)
		pump(ts, s);
	return seq;
}

static void drain(struct hsd_topics *ts, struct hsd_topic *tp)
{
	if (tp->draining)
		return;
	tp->draining = true;
	while (!list_empty(&tp->pending) && !block_full(tp)) {
		struct hsd_pending_emit *pe = list_first(&tp->pending, struct hsd_pending_emit, topic_link);
		list_remove(&pe->topic_link);
		list_remove(&pe->owner_link);
		tp->npending--;
		uint64_t seq = accept(ts, tp, pe->t);
		pe->t = NULL; /* its reference went to the subscribers */
		ts->hooks.accepted(ts->hooks.data, pe, seq);
		free(pe);
	}
	tp->draining = false;
	if (!tp->npending)
		list_remove(&tp->blocked_link);
}

/* How long s may hold pe back: its own block_timeout, bounded by
 * other_uid_timeout_us when s and pe's emitter are of different uids;
 * 0 = for ever. */
static uint64_t sub_timeout(const struct hsd_topics *ts, const struct hsd_sub *s,
			    const struct hsd_pending_emit *pe)
{
	uint64_t tmo = s->block_timeout_us, other = ts->other_uid_timeout_us;
	if (other && ts->hooks.owner_uid && (!tmo || other < tmo) &&
	    ts->hooks.owner_uid(ts->hooks.data, s->owner) !=
		    ts->hooks.owner_uid(ts->hooks.data, pe->owner))
		tmo = other;
	return tmo;
}

/* One topic's part of hsd_topics_expire. */
static uint64_t expire_topic(struct hsd_topics *ts, struct hsd_topic *tp, uint64_t now_us)
{
	for (;;) {
		if (list_empty(&tp->pending))
			return UINT64_MAX;
		const struct hsd_pending_emit *head =
			list_first(&tp->pending, struct hsd_pending_emit, topic_link);
		uint64_t next = UINT64_MAX;
		bool fired = false;
		struct hsd_sub *s;
		list_for_each(s, &tp->subs, topic_link) {
			uint64_t tmo = holds_back(s) ? sub_timeout(ts, s, head) : 0;
			if (!tmo)
				continue;
			uint64_t due = head->since_us + tmo;
			if (due <= now_us) {
				s->stalled = true;
				s->stalls++;
				fired = true;
				if (ts->hooks.stalled)
					ts->hooks.stalled(ts->hooks.data, s);
			} else if (due < next) {
				next = due;
			}
		}
		if (!fired)
			return next;
		drain(ts, tp);
	}
}

uint64_t hsd_topics_expire(struct hsd_topics *ts, uint64_t now_us)
{
	uint64_t next = UINT64_MAX;
	struct hsd_topic *tp, *tmp;
	list_for_each_safe(tp, tmp, &ts->blocked, blocked_link) {
		uint64_t t = expire_topic(ts, tp, now_us);
		if (t < next)
			next = t;
	}
	return next;
}

int hsd_topic_subscribe(struct hsd_topics *ts, struct hsd_topic *tp, void *owner, uint32_t depth,
			Hs__Policy policy, uint32_t credits, uint32_t block_timeout_ms,
			struct hsd_sub **out)
{
	if (depth < 1 || depth > SUB_MAX_DEPTH || credits < 1)
		return HS_EINVAL;
	if (policy != HS__POLICY__POLICY_BLOCK && policy != HS__POLICY__POLICY_DROP_OLDEST &&
	    policy != HS__POLICY__POLICY_DROP_NEWEST)
		return HS_EINVAL;
	struct hsd_sub *s = calloc(1, sizeof(*s));
	if (!s)
		return HS_ENOMEM;
	s->qcap = depth < 16 ? depth : 16;
	s->q = calloc(s->qcap, sizeof(*s->q));
	if (!s->q) {
		free(s);
		return HS_ENOMEM;
	}
	s->id = ++ts->next_sub_id;
	s->topic = tp;
	s->owner = owner;
	s->depth = depth;
	s->policy = policy;
	s->block_timeout_us = (uint64_t)block_timeout_ms * 1000u;
	s->credits = credits > SUB_MAX_CREDITS ? SUB_MAX_CREDITS : credits;
	list_init(&s->owner_link);
	list_init(&s->pairs);
	list_insert_tail(&tp->subs, &s->topic_link);
	tp->nsubs++;
	*out = s;
	return 0;
}

void hsd_topic_unsubscribe(struct hsd_topics *ts, struct hsd_sub *s)
{
	struct hsd_topic *tp = s->topic;
	while (s->count) {
		struct hsd_sub_entry e = s->q[s->head];
		s->head = (s->head + 1) % s->qcap;
		s->count--;
		hsd_tensor_unref(ts->tt, e.t);
	}
	list_remove(&s->topic_link);
	list_remove(&s->owner_link);
	tp->nsubs--;
	bool was_block = s->policy == HS__POLICY__POLICY_BLOCK;
	free(s->q);
	free(s);
	if (was_block)
		drain(ts, tp);
}

int hsd_topic_emit(struct hsd_topics *ts, struct hsd_topic *tp, struct hsd_tensor *t, void *owner,
		   uint64_t req_seq, uint64_t *seq, struct hsd_pending_emit **held)
{
	if (list_empty(&tp->pending) && !block_full(tp)) {
		*seq = accept(ts, tp, t);
		return 0;
	}
	if (tp->npending >= ts->max_pending)
		return HS_EBUSY;
	struct hsd_pending_emit *pe = calloc(1, sizeof(*pe));
	if (!pe)
		return HS_ENOMEM;
	pe->topic = tp;
	pe->t = t;
	pe->bytes = t->block.length;
	pe->owner = owner;
	pe->req_seq = req_seq;
	pe->since_us = hsd_tensor_now_us();
	list_init(&pe->owner_link);
	list_insert_tail(&tp->pending, &pe->topic_link);
	tp->npending++;
	update_blocked(ts, tp);
	*held = pe;
	return 1;
}

void hsd_topic_cancel(struct hsd_topics *ts, struct hsd_pending_emit *pe)
{
	struct hsd_topic *tp = pe->topic;
	list_remove(&pe->topic_link);
	list_remove(&pe->owner_link);
	tp->npending--;
	update_blocked(ts, tp);
	hsd_tensor_unref(ts->tt, pe->t);
	free(pe);
	/* The next in line faces the same full queues: nothing to drain. */
}

void hsd_sub_credit(struct hsd_topics *ts, struct hsd_sub *s, uint32_t n)
{
	uint64_t c = (uint64_t)s->credits + n;
	s->credits = c > SUB_MAX_CREDITS ? SUB_MAX_CREDITS : (uint32_t)c;
	pump(ts, s);
}
