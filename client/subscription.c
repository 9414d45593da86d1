/* Subscriptions: a small local buffer of delivered tensors in front of the
 * daemon's queue. We subscribe with one credit and give a credit back each
 * time the application takes a tensor out, so tensors wait in the daemon's
 * queue, where the subscriber's policy (block, drop) applies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define DEFAULT_DEPTH 8
#define CREDITS 1

static struct hs_subscription *sub_find(hs_client *c, uint64_t id)
{
	for (struct hs_subscription *s = c->subs; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void sub_unlink(hs_client *c, struct hs_subscription *sub)
{
	for (struct hs_subscription **p = &c->subs; *p; p = &(*p)->next) {
		if (*p == sub) {
			*p = sub->next;
			return;
		}
	}
}

int hs__subscription_deliver(hs_client *c, const Hs__Deliver *d)
{
	if (!d->tensor)
		return HS_EPROTO;
	hs_subscription *sub = sub_find(c, d->tensor->subscription);
	hs_tensor *t = NULL;
	int err = hs__tensor_from_ref(c, d->tensor, &t);
	if (err == HS_EPROTO)
		return err;
	/* A daemon pushing past our credits would grow the local buffer
	 * without bound: a protocol violation. */
	if (sub && sub->credits == 0) {
		if (t)
			hs__tensor_free_locked(t);
		return HS_EPROTO;
	}
	if (sub)
		sub->credits--;
	if (!sub || err) {
		/* Closed already, or a tensor this process cannot map: give the
		 * reference back; the subscriber learns why on its next
		 * receive. */
		if (t)
			hs__tensor_free_locked(t);
		hs__client_orphan(c, d->tensor->id);
		if (sub)
			sub->err = err;
		return 0;
	}
	if (d->dropped > sub->dropped)
		sub->dropped = d->dropped;
	t->qnext = NULL;
	if (sub->tail)
		sub->tail->qnext = t;
	else
		sub->head = t;
	sub->tail = t;
	return 0;
}

HS_EXPORT int hs_subscribe(hs_client *client, const char *topic,
			   const hs_subscribe_opts *opts, hs_subscription **out)
{
	if (!client || !out)
		return HS_EINVAL;
	int err = hs__topic_check(topic);
	if (err)
		return err;
	uint32_t depth = opts && opts->depth ? opts->depth : DEFAULT_DEPTH;
	enum hs_policy policy = opts ? opts->policy : HS_POLICY_BLOCK;
	if (policy != HS_POLICY_BLOCK && policy != HS_POLICY_DROP_OLDEST &&
	    policy != HS_POLICY_DROP_NEWEST)
		return HS_EINVAL;

	hs_subscription *sub = calloc(1, sizeof(*sub));
	if (!sub)
		return HS_ENOMEM;
	sub->client = client;
	sub->credits = CREDITS;
	snprintf(sub->topic, sizeof(sub->topic), "%s", topic);

	Hs__SubscribeReq req = HS__SUBSCRIBE_REQ__INIT;
	req.topic = (char *)topic;
	req.depth = depth;
	req.policy = (Hs__Policy)policy;
	req.credits = CREDITS;
	req.block_timeout_ms = opts ? opts->block_timeout_ms : 0;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &req;

	/* A Deliver may come right behind the reply, so the reader links the
	 * subscription as it dispatches the reply (hs__subscription_link). */
	Hs__Message *reply;
	err = hs__client_request_sub(client, &m, sub, &reply);
	if (err) {
		/* Linked only with a valid reply; this one failed after it,
		 * because the connection died: unlink if needed. */
		pthread_mutex_lock(&client->lock);
		sub_unlink(client, sub);
		hs__subscription_free_queue(sub);
		pthread_mutex_unlock(&client->lock);
		free(sub);
		return err;
	}
	err = hs__reply_check(reply, HS__MESSAGE__BODY_SUBSCRIBE_REPLY);
	pthread_mutex_lock(&client->lock);
	if (!err && sub->id == 0)
		err = HS_EPROTO; /* a reply without a usable id */
	if (err == HS_EPROTO)
		hs__client_fail(client, err);
	pthread_mutex_unlock(&client->lock);
	hs__wire_free(reply);
	if (err) {
		free(sub);
		return err;
	}
	*out = sub;
	return 0;
}

bool hs__subscription_link(hs_client *c, struct hs_subscription *sub,
			   const Hs__Message *reply)
{
	if (reply->body_case != HS__MESSAGE__BODY_SUBSCRIBE_REPLY || !reply->subscribe_reply)
		return false;
	uint64_t id = reply->subscribe_reply->subscription;
	if (id == 0 || sub_find(c, id))
		return false;
	sub->id = id;
	sub->next = c->subs;
	c->subs = sub;
	return true;
}

/* Frees what a subscription buffered, without giving it back (lock held). */
void hs__subscription_free_queue(struct hs_subscription *sub)
{
	for (hs_tensor *t = sub->head, *next; t; t = next) {
		next = t->qnext;
		hs__tensor_free_locked(t);
	}
	sub->head = sub->tail = NULL;
}

static bool sub_ready(hs_client *c, void *arg)
{
	hs_subscription *sub = arg;
	return sub->head != NULL || sub->err != 0 || hs__ring_sub_pending(c, sub);
}

static bool announced(hs_client *c, void *arg)
{
	const struct hs__ann_wait *w = arg;
	return hs__slab_find(c, w->slab) && (!w->event || hs__event_find(c, w->event));
}

/* The next tensor of sub (lock held): from its pair rings or its local
 * buffer, the lower sequence number first, waiting up to timeout_ms.
 * *relayed: it came from the daemon (a credit goes back). */
static int take_next(hs_client *c, hs_subscription *sub, int timeout_ms, hs_tensor **out,
		     bool *relayed)
{
	struct hs__ann_wait wait = { 0, 0, false };
	for (;;) {
		hs__ring_reap(c);
		if (c->in_rings) {
			uint64_t below = sub->head ? sub->head->seq : 0;
			int r = hs__ring_sub_take(c, sub, below, &wait, out);
			if (r == 1)
				return 0;
			if (r == 2) {
				/* Its announcement is in the channel, unread. */
				hs__client_wait(c, announced, &wait, 1000);
				continue;
			}
		}
		if (sub->head) {
			hs_tensor *t = sub->head;
			sub->head = t->qnext;
			if (!sub->head)
				sub->tail = NULL;
			t->qnext = NULL;
			*relayed = true;
			*out = t;
			return 0;
		}
		if (sub->err)
			return 0;
		int err = hs__client_wait(c, sub_ready, sub, timeout_ms);
		if (err)
			return err;
		if (!sub->head && !sub->err && !hs__ring_sub_pending(c, sub) && timeout_ms == 0)
			return HS_ETIMEDOUT;
	}
}

HS_EXPORT int hs_subscription_receive(hs_subscription *sub, int timeout_ms, hs_tensor **out)
{
	if (!sub || !out)
		return HS_EINVAL;
	hs_client *c = sub->client;
	pthread_mutex_lock(&c->lock);
	/* Tensors already here stay valid after the daemon goes: hand them
	 * out before reporting that. */
	hs_tensor *t = NULL;
	bool relayed = false, unusable = false;
	int err = take_next(c, sub, timeout_ms, &t, &relayed);
	if (!err && !t) {
		err = sub->err;
		sub->err = 0;
		unusable = err != 0;
	}
	/* A tensor the daemon delivered, or one we could not use, frees a
	 * credit; it counts before the note leaves, so the delivery it
	 * allows always finds it. Ring tensors take no credit. */
	bool credit = (relayed || (unusable && !c->in_rings)) && !c->dead;
	if (credit)
		sub->credits++;
	bool orphans = c->n_orphans > 0 && !c->reading;
	pthread_mutex_unlock(&c->lock);
	if (orphans)
		hs__client_flush_orphans(c);

	if (credit) {
		Hs__CreditNote cn = HS__CREDIT_NOTE__INIT;
		cn.subscription = sub->id;
		cn.credits = 1;
		Hs__Message m = HS__MESSAGE__INIT;
		m.body_case = HS__MESSAGE__BODY_CREDIT;
		m.credit = &cn;
		hs__client_note(c, &m);
	}
	if (!t)
		return err;
	*out = t;
	return 0;
}

HS_EXPORT uint64_t hs_subscription_dropped(const hs_subscription *sub)
{
	if (!sub)
		return 0;
	pthread_mutex_lock(&sub->client->lock);
	uint64_t d = sub->dropped;
	pthread_mutex_unlock(&sub->client->lock);
	return d;
}

HS_EXPORT void hs_subscription_close(hs_subscription *sub)
{
	if (!sub)
		return;
	hs_client *c = sub->client;
	/* Unlinked first: deliveries that cross our unsubscribe on the wire
	 * find no subscription and are given back by the reader. */
	pthread_mutex_lock(&c->lock);
	sub_unlink(c, sub);
	bool dead = c->dead != 0;
	for (hs_tensor *t = sub->head, *next; t; t = next) {
		next = t->qnext;
		if (!dead)
			hs__client_orphan(c, t->id);
		hs__tensor_free_locked(t);
	}
	sub->head = sub->tail = NULL;
	pthread_mutex_unlock(&c->lock);

	if (dead) {
		pthread_mutex_lock(&c->lock);
		hs__ring_sub_end(c, sub);
		pthread_mutex_unlock(&c->lock);
	} else {
		Hs__UnsubscribeReq req = HS__UNSUBSCRIBE_REQ__INIT;
		req.subscription = sub->id;
		Hs__Message m = HS__MESSAGE__INIT;
		m.body_case = HS__MESSAGE__BODY_UNSUBSCRIBE;
		m.unsubscribe = &req;
		Hs__Message *reply;
		if (hs__client_request(c, &m, &reply) == 0)
			hs__wire_free(reply);
		/* The daemon closed and settled its rings before the reply:
		 * what they still hold is ours to give back. */
		pthread_mutex_lock(&c->lock);
		hs__ring_sub_end(c, sub);
		pthread_mutex_unlock(&c->lock);
		hs__client_flush_orphans(c);
	}
	free(sub);
}

void hs__subscription_free_all(hs_client *c)
{
	hs_subscription *s = c->subs;
	while (s) {
		hs_subscription *next = s->next;
		hs__subscription_free_queue(s);
		free(s);
		s = next;
	}
	c->subs = NULL;
}
