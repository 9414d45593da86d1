/* Pair rings on the daemon's side (pair.h). What the daemon trusts here:
 * nothing it reads from a ring, which it checks note by note; and the
 * notes of a pair only ever move references between two sessions of one
 * uid (the producer must hold the tensor, the tensor must lie in a slab
 * of that uid), so a ring that lies hurts only that uid. */
#include "pair.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "announce.h"
#include "broker.h"
#include "channel.h"
#include "log.h"
#include "session.h"
#include "topic.h"

bool hsd_pair_capable(const struct hsd_session *s)
{
	return s->rings && !s->dead;
}

static struct hsd_session *sub_session(const struct hsd_sub *sub)
{
	return sub->owner;
}

static struct hsd_pair *find_pair(struct hsd_session *prod, struct hsd_sub *sub)
{
	struct hsd_pair *p;
	list_for_each(p, &sub->pairs, sub_link)
		if (p->prod == prod)
			return p;
	return NULL;
}

static void pair_free(struct hsd_pair *p)
{
	list_remove(&p->prod_link);
	list_remove(&p->sub_link);
	hs__pring_unmap(&p->r);
	if (p->efd_space >= 0)
		close(p->efd_space);
	free(p);
}

/* Tells one end of p about it: RingAnnounce with the ring's three fds. */
static int announce_end(struct hsd_pair *p, struct hsd_session *to, bool producer, int memfd)
{
	Hs__RingAnnounce ra = HS__RING_ANNOUNCE__INIT;
	ra.ring_id = p->id;
	ra.producer = producer;
	ra.subscription = p->sub->id;
	ra.topic = p->sub->topic->name;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_RING;
	m.ring = &ra;
	int fds[3] = { memfd, sub_session(p->sub)->chan->efd_client, p->efd_space };
	return hsd_outbox_send(to, &m, fds, 3);
}

static void send_close(struct hsd_pair *p, struct hsd_session *to)
{
	if (to->dead)
		return;
	Hs__RingClose rc = HS__RING_CLOSE__INIT;
	rc.ring_id = p->id;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_RING_CLOSE;
	m.ring_close = &rc;
	hsd_outbox_send(to, &m, NULL, 0);
}

/* A ring from prod to sub, announced to both (the subscriber first, with
 * every slab of the uid and fence event that prod was told of, so a note
 * never names memory or an event the subscriber cannot find). */
static int pair_make(struct hsd_session *prod, struct hsd_sub *sub)
{
	struct hsd_broker *b = prod->broker;
	struct hsd_session *subs = sub_session(sub);
	struct hsd_pair *p = calloc(1, sizeof(*p));
	if (!p)
		return HS_ENOMEM;
	p->efd_space = -1;
	list_init(&p->prod_link);
	list_init(&p->sub_link);
	p->id = ++b->next_pair_id;
	p->prod = prod;
	p->sub = sub;
	int memfd = -1;
	uint32_t policy = (uint32_t)sub->policy;
	int r = hs__pring_create(p->id, sub->depth, policy, sub->block_timeout_us, &memfd,
				 &p->r);
	if (r == 0) {
		p->efd_space = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (p->efd_space < 0)
			r = -errno;
	}
	if (r < 0) {
		log_warn("cannot make a pair ring: %s", strerror(-r));
		if (memfd >= 0)
			close(memfd);
		pair_free(p);
		return HS_ENOMEM;
	}
	list_insert_tail(&prod->pairs_out, &p->prod_link);
	list_insert_tail(&sub->pairs, &p->sub_link);
	int err = hsd_announce_memory_of(subs, prod);
	if (!err)
		err = announce_end(p, subs, false, memfd);
	if (!err)
		err = announce_end(p, prod, true, memfd);
	close(memfd); /* the mappings and the messages keep it */
	if (err) {
		hs__pring_close(&p->r);
		pair_free(p);
		return err;
	}
	return 0;
}

static int topic_page(struct hsd_topic *tp)
{
	if (tp->page)
		return 0;
	int r = hs__pring_page_create(&tp->page_fd, &tp->page);
	if (r < 0) {
		log_warn("cannot make a topic page: %s", strerror(-r));
		tp->page = NULL;
		return HS_ENOMEM;
	}
	__atomic_store_n(&tp->page->seq, tp->emitted, __ATOMIC_RELAXED);
	__atomic_store_n(&tp->page->gen, 1, __ATOMIC_RELEASE);
	return 0;
}

static void bump_gen(struct hsd_topic *tp)
{
	if (!tp->page)
		return;
	uint64_t g = __atomic_load_n(&tp->page->gen, __ATOMIC_RELAXED);
	/* The page is writable by the producers: whatever they put there,
	 * the next value differs from what any route was given. */
	tp->gen = (g > tp->gen ? g : tp->gen) + 1;
	if (tp->gen >= HS__PRING_GEN_GONE)
		tp->gen = 1;
	__atomic_store_n(&tp->page->gen, tp->gen, __ATOMIC_RELEASE);
}

int hsd_pair_route(struct hsd_session *s, struct hsd_topic *tp, bool *relay)
{
	int r = topic_page(tp);
	if (r < 0)
		return r;
	if (!tp->gen)
		tp->gen = 1;
	*relay = false;
	struct hsd_sub *sub, *st;
	list_for_each_safe(sub, st, &tp->subs, topic_link) {
		struct hsd_session *o = sub_session(sub);
		if (o->uid != s->uid || !hsd_pair_capable(o) || !hsd_pair_capable(s)) {
			*relay = true;
			continue;
		}
		if (find_pair(s, sub))
			continue;
		if (pair_make(s, sub) < 0)
			*relay = true;
	}
	/* Re-read by the producer against the page: the page may have been
	 * scribbled on; put the daemon's value back. */
	__atomic_store_n(&tp->page->gen, tp->gen, __ATOMIC_RELEASE);
	return hsd_idmap_put(&s->routes, tp->id, 1) < 0 ? HS_ENOMEM : 0;
}

void hsd_pair_subscribing(struct hsd_sub *sub)
{
	bump_gen(sub->topic);
}

void hsd_pair_subscribed(struct hsd_session *s, struct hsd_sub *sub)
{
	struct hsd_topic *tp = sub->topic;
	if (!tp->page || !hsd_pair_capable(s))
		return; /* no producer asked for a route on it, or no rings */
	struct hsd_session *o;
	list_for_each(o, &s->broker->sessions, link) {
		if (o->uid == s->uid && hsd_pair_capable(o) && hsd_idmap_get(&o->routes, tp->id) &&
		    !find_pair(o, sub))
			pair_make(o, sub);
	}
}

/* Wakes both ends (the ring was closed). */
static void kick_ends(struct hsd_pair *p)
{
	struct hsd_session *subs = sub_session(p->sub);
	if (subs->chan)
		hs__chan_kick(subs->chan->efd_client);
	hs__chan_kick(p->efd_space);
}

static void producer_settle(struct hsd_session *prod);

/* The producer's reference to id went with a note (the emit's last):
 * dropped once every ring of the producer is settled, since its other
 * notes of the same emit may still be waiting in them (hsd_pair_settle_session
 * checks that the producer holds what a note names). */
static int ref_drop_later(struct hsd_session *prod, uint64_t id)
{
	if (prod->n_ref_drops == prod->cap_ref_drops) {
		size_t cap = prod->cap_ref_drops ? prod->cap_ref_drops * 2 : 64;
		uint64_t *a = realloc(prod->ref_drops, cap * sizeof(*a));
		if (!a)
			return HS_ENOMEM;
		prod->ref_drops = a;
		prod->cap_ref_drops = cap;
	}
	prod->ref_drops[prod->n_ref_drops++] = id;
	return 0;
}

static bool pair_settle(struct hsd_pair *p);
static void pair_settle_once(struct hsd_pair *p);

/* Settles every ring into s's subscriptions but those being settled
 * already (a chain of stages can come back to its start). */
static void settle_into(struct hsd_session *s)
{
	struct hsd_pair *p;
	struct hsd_sub *sub;
	list_for_each(sub, &s->subs, owner_link)
		list_for_each(p, &sub->pairs, sub_link)
			if (!p->settling)
				pair_settle(p);
}

/* Settles the notes p's producer published since the last time: false
 * when the ring turned out bad (the producer's session is ended). */
static bool settle_notes(struct hsd_pair *p, bool *any)
{
	struct hsd_session *prod = p->prod, *subs = sub_session(p->sub);
	struct hsd_broker *b = prod->broker;
	struct hs__pring_note n;
	const char *why = "a corrupt pair ring";
	int r;
	while ((r = hs__pring_settle(&p->r, &n)) == 1) {
		*any = true;
		struct hsd_tensor *t;
		if (hsd_tensor_lookup(&b->tensors, n.tensor_id, &t) < 0) {
			why = "a pair ring note names no live tensor";
			r = -EPROTO;
			break;
		}
		if (t->block.slab->uid != (uint32_t)prod->uid ||
		    (n.fence_event && (!t->fence || t->fence->id != n.fence_event))) {
			why = "a pair ring note names another uid's tensor or another fence";
			r = -EPROTO;
			break;
		}
		/* A stage passing on what it read from a ring: that note was
		 * published before this one, maybe not yet settled. */
		if (!hsd_session_holds(prod, n.tensor_id)) {
			settle_into(prod);
			if (!hsd_session_holds(prod, n.tensor_id)) {
				why = "a pair ring note names a tensor its producer does not hold";
				r = -EPROTO;
				break;
			}
		}
		if (hsd_session_take_ref(subs, t) < 0) {
			log_error("out of memory settling a ring note: tensor %llu kept",
				  (unsigned long long)t->id);
			continue;
		}
		p->sub->delivered++;
		if ((n.flags & HS__PRING_NOTE_LAST) && ref_drop_later(prod, n.tensor_id) < 0)
			log_error("out of memory: producer's reference to tensor %llu kept",
				  (unsigned long long)n.tensor_id);
		struct hsd_topic *tp = p->sub->topic;
		if (n.seq > tp->emitted) {
			tp->emitted = n.seq;
			tp->bytes_emitted += t->nbytes;
			t->topic = tp->name;
			t->seq = n.seq;
		}
	}
	if (r < 0) {
		p->broken = true;
		hs__pring_close(&p->r);
		kick_ends(p);
		if (!prod->dead) {
			char what[160];
			snprintf(what, sizeof(what), "%s (ring %llu, tensor %llu)", why,
				 (unsigned long long)p->id, (unsigned long long)n.tensor_id);
			hsd_session_violation(prod, HS_EPROTO, what);
		}
		hsd_session_kill(prod, NULL);
		return false;
	}
	return true;
}

/* Settles what p's producer wrote since the last time: false when p is
 * being settled further up the stack (a note there asked for the rings
 * into its producer), so what it holds was not all read. */
static bool pair_settle(struct hsd_pair *p)
{
	if (p->broken)
		return true;
	if (p->settling)
		return false;
	p->settling = true;
	pair_settle_once(p);
	p->settling = false;
	/* A producer that went quiet must not keep what it emitted: its
	 * references that went with notes are dropped now, not at its next
	 * message. */
	if (!p->broken && p->prod->n_ref_drops)
		producer_settle(p->prod);
	return true;
}

static void pair_settle_once(struct hsd_pair *p)
{
	struct hsd_session *prod = p->prod, *subs = sub_session(p->sub);
	bool any = false;
	int r;
	if (!settle_notes(p, &any))
		return;
	/* Drop-oldest: the ids the producer took back from the queue were
	 * the subscriber's once settled; the daemon gives them back, so a
	 * subscriber that does not read does not stop the drops. A dropped
	 * note was published before its drop, but maybe after the settling
	 * above: the notes are settled again first. Whether the subscriber
	 * holds the id cannot tell, since a producer subscribing to its own
	 * topic holds it already as the producer (and giving that reference
	 * back would leave the note naming a tensor it no longer holds). */
	uint64_t id;
	while ((r = hs__pring_get_drop(&p->r, &id)) == 1) {
		any = true;
		if (!settle_notes(p, &any))
			return;
		if (hsd_session_give_back(subs, id) < 0)
			log_debug("pair ring %llu: dropped id %llu not held by its subscriber",
				  (unsigned long long)p->id, (unsigned long long)id);
	}
	if (r < 0) {
		p->broken = true;
		hs__pring_close(&p->r);
		kick_ends(p);
		hsd_session_violation(prod, HS_EPROTO, "a corrupt drop ring");
		hsd_session_kill(prod, NULL);
		return;
	}
	if (any && hs__pring_space_kick(&p->r))
		hs__chan_kick(p->efd_space);
	/* The subscriber's releases of what it read wait in its channel,
	 * which nothing else wakes us for: drained in this same pass, so
	 * the daemon's books follow the rings a batch behind. */
	if (any)
		hsd_chan_activate(subs);
}

/* Settles every ring prod writes, then drops the references that went
 * with their notes: all of an emit's notes are settled by then. */
static void producer_settle(struct hsd_session *prod)
{
	if (prod->pairs_settling)
		return;
	prod->pairs_settling = true;
	struct hsd_pair *p;
	bool all = true;
	list_for_each(p, &prod->pairs_out, prod_link)
		all &= pair_settle(p);
	/* The rings were read one after another: a last note seen in one
	 * may have siblings published in a ring read before it. A second
	 * pass, begun after every last note counted so far was read, sees
	 * all of theirs (a note is published after its siblings); the last
	 * notes it finds wait for the next time. So do all of them when a
	 * ring could not be read here (being settled further up: its
	 * wrapper calls again once it is done), or a sibling note there
	 * would name a tensor its producer no longer holds. */
	size_t k = prod->n_ref_drops;
	list_for_each(p, &prod->pairs_out, prod_link)
		all &= pair_settle(p);
	if (!all)
		k = 0;
	for (size_t i = 0; i < k; i++)
		if (hsd_session_give_back(prod, prod->ref_drops[i]) < 0)
			log_debug("producer's reference to tensor %llu not held at its last note",
				  (unsigned long long)prod->ref_drops[i]);
	if (k && prod->n_ref_drops > k)
		memmove(prod->ref_drops, prod->ref_drops + k,
			(prod->n_ref_drops - k) * sizeof(*prod->ref_drops));
	prod->n_ref_drops -= k;
	prod->pairs_settling = false;
}

void hsd_pair_settle_session(struct hsd_session *s)
{
	producer_settle(s);
	settle_into(s);
}

/* Settles p one last time and closes it, waking both ends; what its
 * producer dropped stays counted in the subscription and the topic. */
static void pair_end(struct hsd_pair *p)
{
	pair_settle(p);
	hs__pring_close(&p->r);
	kick_ends(p);
	uint64_t d = __atomic_load_n(&p->r.hdr->dropped, __ATOMIC_RELAXED);
	p->sub->dropped += d;
	p->sub->topic->dropped += d;
}

void hsd_pair_sub_gone(struct hsd_sub *sub)
{
	while (!list_empty(&sub->pairs)) {
		struct hsd_pair *p = list_first(&sub->pairs, struct hsd_pair, sub_link);
		pair_end(p);
		send_close(p, p->prod);
		pair_free(p);
	}
}

void hsd_pair_producer_gone(struct hsd_session *s)
{
	while (!list_empty(&s->pairs_out)) {
		struct hsd_pair *p = list_first(&s->pairs_out, struct hsd_pair, prod_link);
		pair_end(p);
		send_close(p, sub_session(p->sub));
		pair_free(p);
	}
}

uint32_t hsd_pair_queued(struct hsd_sub *sub)
{
	uint64_t n = 0;
	struct hsd_pair *p;
	list_for_each(p, &sub->pairs, sub_link) {
		int64_t q = hs__pring_queued(&p->r);
		if (q > 0)
			n += (uint64_t)q;
	}
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

uint64_t hsd_pair_dropped(struct hsd_sub *sub)
{
	uint64_t n = 0;
	struct hsd_pair *p;
	list_for_each(p, &sub->pairs, sub_link) {
		/* The producer's count, as it says: for hsctl only. */
		uint64_t d = __atomic_load_n(&p->r.hdr->dropped, __ATOMIC_RELAXED);
		n = d > UINT64_MAX - n ? UINT64_MAX : n + d;
	}
	return n;
}
