/* Pair rings in the client (docs/design.md, "pair rings"): as a producer,
 * the rings this client writes tensors into, per topic, with the topic's
 * route; as a subscriber, the rings its subscriptions read.
 *
 * Producer side, under ring_lock (a ring has one writer: the emitting
 * threads of a client take turns): announcements the reader dispatched
 * wait in ring_news until the next emit adopts them, so the reader never
 * waits for an emit that waits for a subscriber.
 *
 * Subscriber side, under lock: in_rings lists every ring a subscription
 * reads. The reader arms them before it sleeps without lock, so a ring
 * leaves that list (and is unmapped) only when nobody is the reader;
 * meanwhile a finished ring waits on it, marked dead. The producer kicks
 * the subscriber's channel eventfd, so hs_client_get_fd and the reader's
 * sleep need nothing new. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* dead is written under lock and read by the reader without it. */
static bool ring_dead(const struct hs__ring *r)
{
	return __atomic_load_n(&r->dead, __ATOMIC_RELAXED);
}

static void ring_kill(struct hs__ring *r)
{
	__atomic_store_n(&r->dead, true, __ATOMIC_RELAXED);
}

static void ring_free(struct hs__ring *r)
{
	hs__pring_unmap(&r->r);
	if (r->efd_data >= 0)
		close(r->efd_data);
	if (r->efd_space >= 0)
		close(r->efd_space);
	free(r);
}

bool hs__rings_wanted(void)
{
	/* On unless turned off, as the daemon's direct_rings. */
	const char *e = getenv("HSBROKER_RINGS");
	return !e || !(!strcmp(e, "0") || !strcasecmp(e, "no") || !strcasecmp(e, "false") ||
		       !strcasecmp(e, "off"));
}

int hs__ring_announce(hs_client *c, const Hs__RingAnnounce *a, int *fds, int nfds)
{
	if (!c->rings_on || nfds != 3 || !a->topic || strlen(a->topic) > HS_MAX_TOPIC)
		return HS_EPROTO;
	struct hs__ring *r = calloc(1, sizeof(*r));
	if (!r)
		return HS_ENOMEM;
	r->efd_data = r->efd_space = -1;
	int e = hs__pring_map(fds[0], a->producer ? HS__PRING_PRODUCER : HS__PRING_SUBSCRIBER,
			      &r->r);
	if (e == 0 && r->r.ring_id != a->ring_id) {
		hs__pring_unmap(&r->r); /* mapped, but not the ring announced */
		e = -EPROTO;
	}
	if (e < 0) {
		free(r);
		return e == -ENOMEM ? HS_ENOMEM : HS_EPROTO;
	}
	r->id = a->ring_id;
	r->producer = a->producer;
	r->subscription = a->subscription;
	snprintf(r->topic, sizeof(r->topic), "%s", a->topic);
	if (a->producer) {
		/* Taken: dispatch closes what is left in fds. */
		r->efd_data = fds[1];
		r->efd_space = fds[2];
		fds[1] = fds[2] = -1;
		r->next = c->ring_news;
		c->ring_news = r;
		return 0;
	}
	/* The subscriber kicks the producer's space eventfd after taking;
	 * it sleeps on its own channel's eventfd, not fds[1]. */
	r->efd_space = fds[2];
	fds[2] = -1;
	struct hs_subscription *sub;
	for (sub = c->subs; sub; sub = sub->next)
		if (sub->id == a->subscription)
			break;
	if (!sub) {
		/* Closed already: the daemon ends the ring with the
		 * unsubscribe, and settles what it carried. */
		ring_free(r);
		return 0;
	}
	r->sub = sub;
	r->next = c->in_rings;
	c->in_rings = r;
	return 0;
}

void hs__ring_closed(hs_client *c, uint64_t id)
{
	for (struct hs__ring *r = c->in_rings; r; r = r->next)
		if (r->id == id)
			r->closed = true;
	for (struct hs__ring *r = c->ring_news; r; r = r->next)
		if (r->id == id)
			r->closed = true;
	/* out_rings belong to ring_lock's holder: a closed ring says so in
	 * its header, which the producer reads at every put. */
	__atomic_store_n(&c->rings_closed, true, __ATOMIC_RELEASE);
}

/* ---- producer ---- */

static struct hs__route *route_find(hs_client *c, const char *topic)
{
	for (struct hs__route *rt = c->routes; rt; rt = rt->next)
		if (!strcmp(rt->topic, topic))
			return rt;
	return NULL;
}

/* Frees the rings of *list that ended (ring_lock held). */
static void prune(struct hs__ring **list)
{
	for (struct hs__ring **p = list; *p;) {
		struct hs__ring *r = *p;
		if (r->closed || hs__pring_closed(&r->r)) {
			*p = r->next;
			ring_free(r);
		} else {
			p = &r->next;
		}
	}
}

/* Adopts what the reader announced, each ring into its topic's route
 * (ring_lock held). The rings of every topic are looked at again only
 * after a RingClose: an emit looks at its own topic's. */
static void adopt(hs_client *c)
{
	pthread_mutex_lock(&c->lock);
	struct hs__ring *news = c->ring_news;
	c->ring_news = NULL;
	pthread_mutex_unlock(&c->lock);
	while (news) {
		struct hs__ring *r = news;
		news = r->next;
		r->next = c->out_rings;
		c->out_rings = r;
	}
	for (struct hs__ring **p = &c->out_rings; *p;) {
		struct hs__ring *r = *p;
		struct hs__route *rt = route_find(c, r->topic);
		if (rt) {
			*p = r->next;
			r->next = rt->rings;
			rt->rings = r;
		} else {
			p = &r->next;
		}
	}
	if (__atomic_exchange_n(&c->rings_closed, false, __ATOMIC_ACQ_REL)) {
		prune(&c->out_rings);
		for (struct hs__route *rt = c->routes; rt; rt = rt->next)
			prune(&rt->rings);
	}
}

/* Asks the daemon for the route on topic (ring_lock held): its rings
 * are announced before the reply. */
static int route_ask(hs_client *c, const char *topic, struct hs__route **out)
{
	Hs__RouteReq req = HS__ROUTE_REQ__INIT;
	req.topic = (char *)topic;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ROUTE;
	m.route = &req;
	Hs__Message *reply;
	int err = hs__client_request(c, &m, &reply);
	if (err)
		return err;
	err = hs__reply_check(reply, HS__MESSAGE__BODY_ROUTE_REPLY);
	if (!err && !reply->route_reply)
		err = HS_EPROTO;
	pthread_mutex_lock(&c->lock);
	struct hs__pring_page *page = c->route_page;
	c->route_page = NULL;
	pthread_mutex_unlock(&c->lock);
	struct hs__route *rt = route_find(c, topic);
	if (!err && !rt) {
		rt = calloc(1, sizeof(*rt));
		if (rt) {
			snprintf(rt->topic, sizeof(rt->topic), "%s", topic);
			rt->next = c->routes;
			c->routes = rt;
		} else {
			err = HS_ENOMEM;
		}
	}
	if (!err && reply->route_reply->page_fd) {
		if (!page) {
			err = HS_EPROTO;
		} else {
			hs__pring_page_unmap(rt->page);
			rt->page = page;
			page = NULL;
		}
	}
	if (!err && !rt->page)
		err = HS_EPROTO; /* a route without a page */
	if (!err) {
		rt->gen = reply->route_reply->gen;
		/* Once through the daemon, always (docs/design.md): its
		 * queued tensors must not be overtaken by ring notes. */
		rt->relay |= reply->route_reply->relay;
		*out = rt;
	}
	hs__pring_page_unmap(page);
	hs__wire_free(reply);
	return err;
}

static void note_from_tensor(const hs_tensor *t, uint64_t seq, bool fence_done,
			     struct hs__pring_note *n)
{
	memset(n, 0, sizeof(*n));
	n->tensor_id = t->id;
	n->seq = seq;
	/* A writer that synchronised gives readers no fence to wait on. */
	n->fence_event = t->fence && !fence_done ? t->fence->id : 0;
	n->slab_id = t->slab->id;
	n->offset = (uint64_t)((const uint8_t *)t->dl.data - (const uint8_t *)t->slab->base);
	n->nbytes = t->nbytes;
	n->device_type = t->dl.device.device_type;
	n->device_id = t->dl.device.device_id;
	n->dtype_code = t->dl.dtype.code;
	n->dtype_bits = t->dl.dtype.bits;
	n->dtype_lanes = t->dl.dtype.lanes;
	n->ndim = (uint8_t)t->dl.ndim;
	n->has_strides = 1;
	memcpy(n->shape, t->shape, sizeof(int64_t) * (size_t)t->dl.ndim);
	memcpy(n->strides, t->strides, sizeof(int64_t) * (size_t)t->dl.ndim);
}

bool hs__ring_can_carry(const hs_client *c, const hs_tensor *t)
{
	/* A read-only slab is another uid's: its tensors take the relay. */
	return c->rings_on && t->slab && t->slab->base && !t->slab->readonly &&
	       t->dl.ndim <= HS__PRING_MAX_NDIM && t->dl.byte_offset == 0;
}

/* Sleeps until r's space eventfd is kicked, the daemon goes (*gone), or
 * timeout_ms passes (-1: no limit). False on a timeout. */
static bool wait_space(hs_client *c, struct hs__ring *r, int timeout_ms, bool *gone)
{
	struct pollfd p[2] = { { .fd = r->efd_space, .events = POLLIN }, { .fd = c->fd } };
	int n = poll(p, 2, timeout_ms);
	if (n > 0 && (p[0].revents & POLLIN))
		hs__chan_clear(r->efd_space);
	if (n > 0 && (p[1].revents & (POLLHUP | POLLERR)))
		*gone = true; /* the daemon is gone: the emit fails */
	return n != 0;
}

static void kick_reader(struct hs__ring *r)
{
	if (hs__pring_should_kick(&r->r))
		hs__chan_kick(r->efd_data);
}

/* One note into r under its policy (ring_lock held). posted: nobody
 * waits for this emit's sequence number, so a full BLOCK ring takes up
 * to HS__PRING_MAX_OVER more, as the daemon holds that many posted emits
 * back without holding the producer (post.c's window). */
static bool put_one(hs_client *c, struct hs__ring *r, const struct hs__pring_note *n,
		    bool posted, bool *gone)
{
	uint32_t over = posted && r->r.policy == HS__PRING_BLOCK ? HS__PRING_MAX_OVER : 0;
	for (;;) {
		if (r->closed || *gone)
			return false;
		int e = hs__pring_put(&r->r, n, over);
		if (e == 0) {
			kick_reader(r);
			return true;
		}
		if (e == -EPIPE || e == -EPROTO) {
			r->closed = true; /* ended, or broken: no more notes */
			return false;
		}
		if (e == -ENOBUFS) {
			/* The daemon has not settled a batch: wake it. */
			if (hs__pring_want_space(&r->r, over)) {
				hs__chan_kick(c->efd_daemon);
				wait_space(c, r, 100, gone);
			}
			continue;
		}
		/* -EAGAIN: the queue holds depth notes. */
		uint64_t id;
		switch (r->r.policy) {
		case HS__PRING_DROP_NEWEST:
			hs__pring_count_dropped(&r->r, 1);
			kick_reader(r);
			return false;
		case HS__PRING_DROP_OLDEST:
			e = hs__pring_drop_oldest(&r->r, &id);
			if (e == 1) {
				hs__pring_count_dropped(&r->r, 1);
				continue;
			}
			if (e == 0)
				continue; /* the subscriber took it: room now */
			if (e == -ENOSPC) {
				/* The daemon has not taken the dropped ids yet. */
				if (hs__pring_want_space(&r->r, over)) {
					hs__chan_kick(c->efd_daemon);
					wait_space(c, r, 100, gone);
				}
				continue;
			}
			r->closed = true;
			return false;
		default:
			break;
		}
		/* BLOCK: one of our uid is waited for, up to its own timeout;
		 * past it, skipped until it takes a tensor (as the daemon
		 * does for a stalled subscriber). */
		uint64_t tail = __atomic_load_n(&r->r.hdr->tail, __ATOMIC_ACQUIRE);
		if (r->stalled && tail == r->stall_tail) {
			hs__pring_count_dropped(&r->r, 1);
			kick_reader(r);
			return false;
		}
		r->stalled = false;
		if (!hs__pring_want_space(&r->r, over))
			continue;
		uint64_t tmo = r->r.block_timeout_us;
		int ms = tmo ? (int)((tmo + 999) / 1000) : -1;
		if (!wait_space(c, r, ms, gone)) {
			r->stalled = true;
			r->stall_tail = tail;
			hs__pring_count_dropped(&r->r, 1);
			kick_reader(r);
			return false;
		}
	}
}

int hs__ring_emit(hs_client *c, const hs_tensor *t, const char *topic, bool fence_done,
		  bool posted, uint64_t *seq, bool *ref_moved)
{
	pthread_mutex_lock(&c->ring_lock);
	struct hs__route *rt = route_find(c, topic);
	if (!hs__ring_can_carry(c, t)) {
		/* Through the daemon: so is everything after it on this topic,
		 * or a later note could overtake it. */
		if (rt)
			rt->relay = true;
		pthread_mutex_unlock(&c->ring_lock);
		return 1;
	}
	adopt(c);
	int err = 0;
	if (!rt || !rt->page ||
	    __atomic_load_n(&rt->page->gen, __ATOMIC_ACQUIRE) != rt->gen) {
		if (!rt || !rt->relay) {
			err = route_ask(c, topic, &rt);
			adopt(c);
		}
	}
	if (err || rt->relay) {
		pthread_mutex_unlock(&c->ring_lock);
		/* A route refused ([acl], limits) is the emit's to refuse, as
		 * the daemon does it (a posted one counts in emits_refused). */
		if (err && err != HS_EPIPE && err != HS_EPROTO && err != HS_ESHUTDOWN &&
		    err != HS_ENOMEM)
			return 1;
		return err ? err : 1;
	}
	prune(&rt->rings);
	uint64_t s = __atomic_add_fetch(&rt->page->seq, 1, __ATOMIC_ACQ_REL);
	struct hs__pring_note n;
	note_from_tensor(t, s, fence_done, &n);
	bool gone = false;
	/* The last ring's note takes our reference with it (the daemon
	 * drops it once it settled all our rings); if that note is not
	 * written, the caller releases it. */
	struct hs__ring *last = rt->rings;
	while (last && last->next)
		last = last->next;
	*ref_moved = false;
	for (struct hs__ring *r = rt->rings; r && !gone; r = r->next) {
		n.flags = r == last ? HS__PRING_NOTE_LAST : 0;
		if (put_one(c, r, &n, posted, &gone) && r == last)
			*ref_moved = true;
	}
	pthread_mutex_unlock(&c->ring_lock);
	if (gone) {
		pthread_mutex_lock(&c->lock);
		hs__client_fail(c, HS_EPIPE);
		pthread_mutex_unlock(&c->lock);
		return HS_EPIPE;
	}
	*seq = s;
	return 0;
}

/* ---- subscriber ---- */

bool hs__ring_sub_pending(const hs_client *c, const struct hs_subscription *sub)
{
	for (const struct hs__ring *r = c->in_rings; r; r = r->next)
		if (r->sub == sub && !ring_dead(r) && hs__pring_pending(&r->r))
			return true;
	return false;
}

bool hs__ring_any_pending(const hs_client *c)
{
	for (const struct hs__ring *r = c->in_rings; r; r = r->next)
		if (!ring_dead(r) && hs__pring_pending(&r->r))
			return true;
	return false;
}

bool hs__ring_arm_all(hs_client *c)
{
	bool sleep = true;
	for (struct hs__ring *r = c->in_rings; r; r = r->next)
		if (!ring_dead(r) && !hs__pring_arm(&r->r))
			sleep = false;
	return sleep;
}

/* A tensor handle for a note taken from a ring (lock held): checked
 * against what this client knows, as a daemon's TensorRef is. */
static int tensor_from_note(hs_client *c, const struct hs__pring_note *n,
			    const char *topic, hs_tensor **out)
{
	if (hs__pring_note_check(n) < 0)
		return HS_EPROTO;
	struct hs__tensor_desc d = {
		.id = n->tensor_id,
		.seq = n->seq,
		.slab_id = n->slab_id,
		.offset = n->offset,
		.nbytes = n->nbytes,
		.fence_event = n->fence_event,
		.device = { (DLDeviceType)n->device_type, n->device_id },
		.dtype = { n->dtype_code, n->dtype_bits, n->dtype_lanes },
		.ndim = n->ndim,
		.shape = n->shape,
		.strides = n->has_strides ? n->strides : NULL,
		.topic = topic,
		.topic_len = strlen(topic),
	};
	return hs__tensor_make(c, &d, out);
}

/* What the producers dropped on sub's rings counts in sub->dropped
 * (lock held); the daemon gives the dropped references back. */
static void take_drops(hs_client *c, struct hs_subscription *sub, struct hs__ring *r)
{
	(void)c;
	sub->dropped += hs__pring_new_drops(&r->r);
}

int hs__ring_sub_take(hs_client *c, struct hs_subscription *sub, uint64_t below,
		      struct hs__ann_wait *wait, hs_tensor **out)
{
	for (;;) {
		/* The note with the lowest sequence number among the rings
		 * (and below the first relayed tensor, when there is one):
		 * one producer's tensors stay in their order across the two
		 * paths (docs/design.md). */
		struct hs__ring *best = NULL;
		struct hs__pring_note bn, n;
		for (struct hs__ring *r = c->in_rings; r; r = r->next) {
			if (r->sub != sub || ring_dead(r))
				continue;
			take_drops(c, sub, r);
			int e = hs__pring_peek(&r->r, &n);
			if (e < 0) {
				ring_kill(r);
				sub->err = HS_EPROTO;
				continue;
			}
			if (e == 0) {
				if (r->closed)
					ring_kill(r); /* ended and read out */
				continue;
			}
			if (!best || n.seq < bn.seq) {
				best = r;
				bn = n;
			}
		}
		if (!best || (below && bn.seq > below))
			return 0;
		/* Its slab and fence are announced before the note was
		 * written, but maybe not yet read: the caller reads the
		 * channel first (once; after that the note is refused). */
		if (!wait->asked && (!hs__slab_find(c, bn.slab_id) ||
				     (bn.fence_event && !hs__event_find(c, bn.fence_event)))) {
			wait->slab = bn.slab_id;
			wait->event = bn.fence_event;
			wait->asked = true;
			return 2;
		}
		if (!hs__pring_take(&best->r))
			continue; /* dropped by its producer meanwhile */
		if (hs__pring_space_kick(&best->r))
			hs__chan_kick(best->efd_space);
		int err = tensor_from_note(c, &bn, sub->topic, out);
		if (err == 0)
			return 1;
		/* Ours, but unusable: give it back; the subscriber learns why
		 * (a slab not yet announced cannot be: the daemon announces a
		 * producer's slabs to its subscribers first). */
		hs__client_orphan(c, bn.tensor_id);
		sub->err = err;
		return 0;
	}
}

void hs__ring_sub_end(hs_client *c, struct hs_subscription *sub)
{
	for (struct hs__ring *r = c->in_rings; r; r = r->next) {
		if (r->sub != sub)
			continue;
		if (!ring_dead(r)) {
			struct hs__pring_note n;
			int e;
			take_drops(c, sub, r);
			while ((e = hs__pring_get(&r->r, &n)) != 0)
				if (e == 1)
					hs__client_orphan(c, n.tensor_id);
				else
					break;
		}
		ring_kill(r);
		r->sub = NULL;
	}
}

void hs__ring_reap(hs_client *c)
{
	if (c->reading)
		return; /* the reader may be arming them */
	/* A ring read out after its producer went (or broken) goes now, not
	 * with its subscription: a long-lived subscriber of producers that
	 * come and go would keep a mapping and an fd for each. */
	for (struct hs__ring **p = &c->in_rings; *p;) {
		struct hs__ring *r = *p;
		if (ring_dead(r)) {
			*p = r->next;
			ring_free(r);
		} else {
			p = &r->next;
		}
	}
}

void hs__ring_free_all(hs_client *c)
{
	struct hs__ring *lists[3] = { c->in_rings, c->out_rings, c->ring_news };
	for (int i = 0; i < 3; i++) {
		for (struct hs__ring *r = lists[i], *next; r; r = next) {
			next = r->next;
			ring_free(r);
		}
	}
	c->in_rings = c->out_rings = c->ring_news = NULL;
	for (struct hs__route *rt = c->routes, *next; rt; rt = next) {
		next = rt->next;
		for (struct hs__ring *r = rt->rings, *rn; r; r = rn) {
			rn = r->next;
			ring_free(r);
		}
		hs__pring_page_unmap(rt->page);
		free(rt);
	}
	c->routes = NULL;
	hs__pring_page_unmap(c->route_page);
	c->route_page = NULL;
}
