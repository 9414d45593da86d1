/* Requests about topics: the topic a request names (made and charged to
 * the uid when new), subscribe, unsubscribe, credit, and a producer's
 * route (its pair rings). */
#include "request.h"

#include "hsbroker/error.h"
#include "broker.h"
#include "log.h"
#include "pair.h"
#include "session.h"

/* The topic named name, made for s (charged to its uid, usage.h) when it
 * does not exist: 0, HS_ELIMIT (logged: max_topics, or the uid's
 * max_topics_per_uid) or hsd_topics_get's errors. */
int hsd_request_topic(struct hsd_session *s, const char *name, struct hsd_topic **out)
{
	struct hsd_broker *b = s->broker;
	int r = hsd_topics_get(&b->topics, name, false, out);
	if (r != HS_ENOENT)
		return r;
	char d[128];
	bool capped = hsd_broker_uid_capped(b, s->uid);
	struct hsd_uid_usage *u = s->usage;
	/* Idle topics of this uid may be freed to make room, as for the
	 * global limit (hsd_topics_get). The scan walks every tensor and topic:
	 * after one that leaves the uid at its cap, the next waits 100 ms,
	 * so asking again and again costs the daemon nothing. */
	if (capped && u->topics >= b->cfg.uid_max_topics) {
		uint64_t now = hsd_tensor_now_us();
		if (now >= u->evict_after_us) {
			hsd_topics_evict_idle(&b->topics);
			if (u->topics >= b->cfg.uid_max_topics)
				u->evict_after_us = now + 100000;
		}
	}
	if (capped && u->topics >= b->cfg.uid_max_topics) {
		log_warn("%s: new topic refused: uid %u made %u topics (max_topics_per_uid)",
			 hsd_session_describe(s, d, sizeof(d)), (unsigned)s->uid, s->usage->topics);
		return HS_ELIMIT;
	}
	r = hsd_topics_get(&b->topics, name, true, out);
	if (r == HS_ELIMIT)
		log_warn("%s: new topic refused: %u topics exist (max_topics)",
			 hsd_session_describe(s, d, sizeof(d)), b->topics.n);
	if (r < 0)
		return r;
	(*out)->uid = s->uid;
	(*out)->charged = true;
	s->usage->topics++;
	return 0;
}

/* A producer's route on a topic (pair rings, pair.h): its rings are made
 * and announced before the reply. */
void hsd_request_route(struct hsd_session *s, uint64_t seq, const Hs__RouteReq *req)
{
	if (!s->rings) {
		hsd_session_error(s, seq, HS_ENOTSUP, "route: pair rings are off");
		return;
	}
	if (!hsd_request_acl_ok(s, seq, ACL_PUBLISH, req->topic))
		return;
	struct hsd_topic *tp;
	int r = hsd_request_topic(s, req->topic, &tp);
	if (r < 0) {
		hsd_session_error(s, seq, r, "route: topic: %s", hs__strerror(r));
		return;
	}
	bool first = !hsd_idmap_get(&s->routes, tp->id), relay = false;
	r = hsd_pair_route(s, tp, &relay);
	if (r < 0) {
		hsd_session_error(s, seq, r, "route on %s: %s", tp->name, hs__strerror(r));
		return;
	}
	Hs__RouteReply rr = HS__ROUTE_REPLY__INIT;
	rr.gen = tp->gen;
	rr.relay = relay;
	rr.page_fd = first;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_ROUTE_REPLY;
	m.route_reply = &rr;
	hsd_outbox_send(s, &m, first ? &tp->page_fd : NULL, first ? 1 : 0);
}

void hsd_request_subscribe(struct hsd_session *s, uint64_t seq, const Hs__SubscribeReq *req)
{
	struct hsd_broker *b = s->broker;
	char d[128];
	if (s->nsubs >= b->cfg.max_subscriptions) {
		log_warn("%s: subscribe refused: %u subscriptions (max_subscriptions)",
			 hsd_session_describe(s, d, sizeof(d)), s->nsubs);
		hsd_session_error(s, seq, HS_ELIMIT, "subscribe: limit of %u subscriptions reached",
				  b->cfg.max_subscriptions);
		return;
	}
	if (s->usage->subs >= b->cfg.uid_max_subscriptions && hsd_broker_uid_capped(b, s->uid)) {
		log_warn("%s: subscribe refused: uid %u has %u subscriptions "
			 "(max_subscriptions_per_uid)", hsd_session_describe(s, d, sizeof(d)),
			 (unsigned)s->uid, s->usage->subs);
		hsd_session_error(s, seq, HS_ELIMIT,
				  "subscribe: uid %u has reached its limit of %u subscriptions",
				  (unsigned)s->uid, b->cfg.uid_max_subscriptions);
		return;
	}
	if (req->depth < 1 || req->depth > SUB_MAX_DEPTH || req->credits < 1) {
		hsd_session_error(s, seq, HS_EINVAL, "subscribe: depth must be 1..%u and credits >= 1",
				  SUB_MAX_DEPTH);
		return;
	}
	if (!hsd_request_acl_ok(s, seq, ACL_SUBSCRIBE, req->topic))
		return;
	struct hsd_topic *tp;
	int r = hsd_request_topic(s, req->topic, &tp);
	if (r < 0) {
		hsd_session_error(s, seq, r, "subscribe: topic: %s", hs__strerror(r));
		return;
	}
	/* The config's block_timeout_ms is the default and the most a
	 * subscriber may hold a producer back: it can ask for less. */
	uint32_t tmo = b->cfg.block_timeout_ms;
	if (req->block_timeout_ms && (!tmo || req->block_timeout_ms < tmo))
		tmo = req->block_timeout_ms;
	struct hsd_sub *sub;
	r = hsd_topic_subscribe(&b->topics, tp, s, req->depth, req->policy, req->credits, tmo, &sub);
	if (r < 0) {
		hsd_session_error(s, seq, r, "subscribe: %s", hs__strerror(r));
		return;
	}
	list_insert_tail(&s->subs, &sub->owner_link);
	s->nsubs++;
	s->usage->subs++;
	hsd_pair_subscribing(sub);
	Hs__SubscribeReply sr = HS__SUBSCRIBE_REPLY__INIT;
	sr.subscription = sub->id;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE_REPLY;
	m.subscribe_reply = &sr;
	hsd_request_reply(s, seq, &m);
	/* Its rings come right behind the reply, which links the
	 * subscription in the client (pair.h). */
	hsd_pair_subscribed(s, sub);
}

static struct hsd_sub *find_sub(struct hsd_session *s, uint64_t id)
{
	struct hsd_sub *sub;
	list_for_each(sub, &s->subs, owner_link)
		if (sub->id == id)
			return sub;
	return NULL;
}

void hsd_request_unsubscribe(struct hsd_session *s, uint64_t seq, const Hs__UnsubscribeReq *req)
{
	struct hsd_sub *sub = find_sub(s, req->subscription);
	if (!sub) {
		hsd_session_error(s, seq, HS_ENOENT, "unsubscribe: no subscription %llu",
				  (unsigned long long)req->subscription);
		return;
	}
	hsd_pair_sub_gone(sub);
	hsd_topic_unsubscribe(&s->broker->topics, sub);
	s->nsubs--;
	s->usage->subs--;
	Hs__OkReply ok = HS__OK_REPLY__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_OK;
	m.ok = &ok;
	hsd_request_reply(s, seq, &m);
}

void hsd_request_credit(struct hsd_session *s, uint64_t seq, const Hs__CreditNote *note)
{
	struct hsd_sub *sub = find_sub(s, note->subscription);
	if (!sub) {
		hsd_session_error(s, seq, HS_ENOENT, "credit: no subscription %llu",
				  (unsigned long long)note->subscription);
		return;
	}
	hsd_sub_credit(&s->broker->topics, sub, note->credits);
}
