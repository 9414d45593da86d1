/* Posted requests: requests nobody waits on when they are sent.
 *
 * - An emit without seq_out returns once it is in the channel; the daemon
 *   answers it without waking us, and the answer is read whenever the
 *   client next reads. At most EMIT_WINDOW of them may be unanswered: the
 *   next emit waits, so under a BLOCK subscriber a producer runs at most
 *   that far ahead of it.
 * - A spare: when a producer allocates a shape it allocated just before,
 *   the next tensor of that shape is asked for ahead of time, so the next
 *   hs_tensor_alloc of it needs no round trip to the daemon.
 *
 * Waiting for posted replies, from any number of threads. The daemon
 * answers in request order, except an emit held back by a full subscriber,
 * whose reply comes later and wakes us. So once any reply of seq S has
 * been read (c->synced_seq), every posted request below S either has its
 * reply here or is a held-back emit that will wake us. A request above it
 * (or not sent yet) may have a reply sitting unseen in the ring: a waiter
 * that needs one sends a ping, whose reply wakes it. Every waiter decides
 * under the lock from the client's state alone (never "my post's reply",
 * which another thread may reap), sleeps only on the reader role or the
 * condition variable, and so makes progress whichever thread reads. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Posted emits without their reply, at most. */
#define EMIT_WINDOW 8
/* Shapes remembered, and spares held, at most. */
#define SPARE_KEYS 4
/* With pair rings no emit goes to the daemon to carry a spare request:
 * small tensors get a batch of spares ahead, asked for together with one
 * wake-up, again when half of them are used. */
#define SPARE_BATCH 8
#define SPARE_BATCH_MAX 32
#define SPARE_BATCH_BYTES (1u << 20)
/* Tiny shapes get up to SPARE_BATCH_MAX at a time, as long as a batch
 * holds no more than this: fewer wake-ups of the daemon a tensor. */
#define SPARE_BATCH_SMALL_BYTES (256u << 10)
#define SPARES_MAX (SPARE_KEYS * SPARE_BATCH_MAX)

enum { POST_EMIT, POST_SPARE };

struct hs__post {
	struct hs__reply_slot slot; /* in c->slots until its reply is taken */
	int kind;
	bool discard;               /* a spare no longer wanted */
	bool claimed;               /* a spare some thread is taking */
	struct hs__spare_key key;   /* POST_SPARE */
	struct hs__post *next;      /* c->posts, oldest first */
};

static bool never(hs_client *c, void *arg)
{
	(void)c;
	(void)arg;
	return false;
}

static void post_unlink(hs_client *c, struct hs__post *p)
{
	for (struct hs__post **pp = &c->posts; *pp; pp = &(*pp)->next) {
		if (*pp == p) {
			*pp = p->next;
			return;
		}
	}
}

static void post_link(hs_client *c, struct hs__post *p)
{
	p->next = NULL;
	struct hs__post **tail = &c->posts;
	while (*tail)
		tail = &(*tail)->next;
	*tail = p;
	if (p->kind == POST_EMIT)
		c->emits_posted++;
	else
		c->spares++;
}

/* Posts are recycled (lock held): one is taken per emit, and a producer
 * should not pay an allocation per tensor for its bookkeeping. */
#define POST_CACHE 16

static struct hs__post *post_new(hs_client *c, int kind)
{
	struct hs__post *p = c->post_cache;
	if (p) {
		c->post_cache = p->next;
		c->n_post_cache--;
		memset(p, 0, sizeof(*p));
	} else {
		p = calloc(1, sizeof(*p));
		if (!p)
			return NULL;
	}
	p->kind = kind;
	return p;
}

static void post_recycle(hs_client *c, struct hs__post *p)
{
	if (c->n_post_cache >= POST_CACHE) {
		free(p);
		return;
	}
	p->next = c->post_cache;
	c->post_cache = p;
	c->n_post_cache++;
}

static void post_free(hs_client *c, struct hs__post *p)
{
	hs__slot_unlink(c, &p->slot);
	hs__wire_free(p->slot.msg);
	post_recycle(c, p);
}

/* Takes in the replies that came (lock held): an emit's is checked and
 * dropped; a discarded spare's tensor is given back. A wanted spare stays
 * until hs__spare_take takes it. */
static void reap(hs_client *c)
{
	struct hs__post *p = c->posts, *next;
	for (; p; p = next) {
		next = p->next;
		Hs__Message *r = p->slot.msg;
		if (!r || (p->kind == POST_SPARE && !p->discard))
			continue;
		if (p->kind == POST_EMIT) {
			c->emits_posted--;
			int err = hs__reply_check(r, HS__MESSAGE__BODY_EMIT_REPLY);
			if (err == 0 && !r->emit_reply)
				err = HS_EPROTO;
			if (err == HS_EPROTO) {
				hs__client_fail(c, err);
			} else if (err) {
				c->stats.emits_refused++;
				c->stats.emit_last_error = err;
			}
		} else {
			c->spares--;
			if (r->body_case == HS__MESSAGE__BODY_ALLOC_REPLY && r->alloc_reply &&
			    r->alloc_reply->tensor)
				hs__client_orphan(c, r->alloc_reply->tensor->id);
		}
		post_unlink(c, p);
		post_free(c, p);
	}
}

/* Reads what the channel holds now, without a syscall when it holds
 * nothing, then reaps (lock held). */
static void pump(hs_client *c)
{
	if (!c->reading && hs__client_pending(c))
		hs__client_wait(c, never, NULL, 0);
	reap(c);
}

/* Whether p's reply may be in the ring without having woken anyone (see
 * the top of the file). On the socket every reply wakes the reader. */
static bool unsynced(const hs_client *c, const struct hs__post *p)
{
	uint64_t seq = __atomic_load_n(&p->slot.seq, __ATOMIC_RELAXED);
	return c->use_chan && !p->slot.msg && (seq == 0 || seq > c->synced_seq);
}

/* What a waiter waits for: check says, lock held and after a reap. */
enum { WANT_WAIT, WANT_DONE, WANT_SYNC };

struct want {
	int (*check)(hs_client *c, struct want *w);
	struct hs__post *spare; /* want_spare */
};

static int emits_check(hs_client *c, uint32_t most)
{
	if (c->emits_posted <= most)
		return WANT_DONE;
	for (struct hs__post *p = c->posts; p; p = p->next) {
		if (p->kind == POST_EMIT && unsynced(c, p))
			return WANT_SYNC;
	}
	return WANT_WAIT; /* every one left is held back: its reply wakes us */
}

static int want_room(hs_client *c, struct want *w)
{
	(void)w;
	return emits_check(c, EMIT_WINDOW - 1);
}

static int want_no_emits(hs_client *c, struct want *w)
{
	(void)w;
	return emits_check(c, 0);
}

static int want_spare(hs_client *c, struct want *w)
{
	if (w->spare->slot.msg)
		return WANT_DONE;
	return unsynced(c, w->spare) ? WANT_SYNC : WANT_WAIT;
}

/* A done() for hs__client_wait. */
static bool want_met(hs_client *c, void *arg)
{
	struct want *w = arg;
	reap(c);
	return w->check(c, w) != WANT_WAIT;
}

/* Waits until w is met (lock held; lets it go while waiting). */
static int wait_for(hs_client *c, struct want *w)
{
	for (;;) {
		pump(c);
		int state = w->check(c, w);
		if (state == WANT_DONE)
			return 0;
		if (c->dead)
			return c->dead;
		int err;
		if (state == WANT_SYNC) {
			/* Another thread may post meanwhile: then we look and,
			 * if need be, ping again. */
			pthread_mutex_unlock(&c->lock);
			err = hs__client_sync(c);
			pthread_mutex_lock(&c->lock);
		} else {
			err = hs__client_wait(c, want_met, w, -1);
		}
		if (err)
			return err;
	}
}

/* Sends a linked post's request; on failure takes it back. lazy: it
 * need not wake the daemon. */
static int post_send(hs_client *c, Hs__Message *m, struct hs__post *p, bool lazy)
{
	int err = hs__client_send_slot(c, m, &p->slot, lazy);
	if (err) {
		pthread_mutex_lock(&c->lock);
		post_unlink(c, p);
		if (p->kind == POST_EMIT)
			c->emits_posted--;
		else
			c->spares--;
		post_free(c, p);
		pthread_mutex_unlock(&c->lock);
	}
	return err;
}

int hs__post_emit(hs_client *c, Hs__Message *m)
{
	pthread_mutex_lock(&c->lock);
	struct want w = { .check = want_room };
	int err = wait_for(c, &w);
	struct hs__post *p = err ? NULL : post_new(c, POST_EMIT);
	if (!err && !p)
		err = HS_ENOMEM;
	/* The room is taken in the same look that found it. */
	if (p)
		post_link(c, p);
	pthread_mutex_unlock(&c->lock);
	hs__client_flush_orphans(c);
	if (err)
		return err;
	m->emit->posted = true;
	return post_send(c, m, p, false);
}

static bool key_eq(const struct hs__spare_key *a, const struct hs__spare_key *b)
{
	return a->device.device_type == b->device.device_type &&
	       a->device.device_id == b->device.device_id && a->dtype.code == b->dtype.code &&
	       a->dtype.bits == b->dtype.bits && a->dtype.lanes == b->dtype.lanes &&
	       a->ndim == b->ndim && a->has_strides == b->has_strides &&
	       memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0 &&
	       (!a->has_strides ||
		memcmp(a->strides, b->strides, sizeof(int64_t) * (size_t)a->ndim) == 0);
}

void hs__spare_key_set(struct hs__spare_key *k, DLDevice device, DLDataType dtype,
		       int32_t ndim, const int64_t *shape, const int64_t *strides)
{
	memset(k, 0, sizeof(*k));
	k->device = device;
	k->dtype = dtype;
	k->ndim = ndim;
	if (ndim > 0) /* a 0-d tensor may come with shape == NULL */
		memcpy(k->shape, shape, sizeof(int64_t) * (size_t)ndim);
	k->has_strides = strides != NULL;
	if (strides && ndim > 0)
		memcpy(k->strides, strides, sizeof(int64_t) * (size_t)ndim);
}

/* Whether k was allocated lately (lock held); remembers it either way. */
static bool seen(hs_client *c, const struct hs__spare_key *k)
{
	for (uint32_t i = 0; i < c->nrecent; i++) {
		if (key_eq(&c->recent[i], k))
			return true;
	}
	uint32_t slot = c->nrecent < SPARE_KEYS ? c->nrecent++ : c->recent_next++ % SPARE_KEYS;
	c->recent[slot] = *k;
	return false;
}

bool hs__spares_wanted(void)
{
	const char *e = getenv("HSBROKER_SPARES");
	return !(e && strcmp(e, "0") == 0);
}

Hs__Message *hs__spare_take(hs_client *c, const struct hs__spare_key *k, bool *ask)
{
	Hs__Message *reply = NULL;
	pthread_mutex_lock(&c->lock);
	pump(c);
	struct hs__post *p = c->posts;
	while (p && !(p->kind == POST_SPARE && !p->discard && !p->claimed &&
		      key_eq(&p->key, k)))
		p = p->next;
	*ask = p != NULL || seen(c, k);
	if (p) {
		/* Claimed, p is neither reaped, discarded nor taken by another
		 * thread while the wait lets the lock go. */
		p->claimed = true;
		struct want w = { .check = want_spare, .spare = p };
		if (wait_for(c, &w) == 0) {
			reply = p->slot.msg;
			p->slot.msg = NULL;
			post_unlink(c, p);
			c->spares--;
			post_free(c, p);
		} else {
			p->claimed = false;
		}
	}
	pthread_mutex_unlock(&c->lock);
	hs__client_flush_orphans(c);
	return reply;
}

/* Spares of k not yet taken (lock held). */
static uint32_t spares_of(hs_client *c, const struct hs__spare_key *k)
{
	uint32_t n = 0;
	for (struct hs__post *p = c->posts; p; p = p->next)
		if (p->kind == POST_SPARE && !p->discard && !p->claimed && key_eq(&p->key, k))
			n++;
	return n;
}

/* How many spares of k to keep ahead: one, or with pair rings a batch
 * of small ones (8 up to 1 MiB, up to 32 of tiny ones). */
static uint32_t spares_wanted(const hs_client *c, const struct hs__spare_key *k)
{
	uint64_t need;
	if (!c->rings_on || hs__meta_extent(k->device, k->dtype, k->ndim, k->shape,
					    k->has_strides ? k->strides : NULL, 0, &need) != 0 ||
	    need > SPARE_BATCH_BYTES)
		return 1;
	uint64_t n = need ? SPARE_BATCH_SMALL_BYTES / need : SPARE_BATCH_MAX;
	return n > SPARE_BATCH_MAX ? SPARE_BATCH_MAX : n < SPARE_BATCH ? SPARE_BATCH : (uint32_t)n;
}

void hs__spare_ask(hs_client *c, const struct hs__spare_key *k, Hs__Message *m)
{
	pthread_mutex_lock(&c->lock);
	uint32_t want = spares_wanted(c, k), have = spares_of(c, k);
	/* One at a time, or a batch once half of one is used. */
	uint32_t n = have > want / 2 ? 0 : want - have;
	uint32_t cap = want > 1 ? SPARES_MAX : SPARE_KEYS;
	struct hs__post *ps[SPARE_BATCH_MAX];
	uint32_t made = 0;
	for (; made < n; made++) {
		struct hs__post *p = post_new(c, POST_SPARE);
		if (!p)
			break; /* the next alloc simply waits for the daemon */
		p->key = *k;
		if (c->spares >= cap) {
			/* The oldest spare goes; its tensor is given back. */
			struct hs__post *o = c->posts;
			while (o && !(o->kind == POST_SPARE && !o->discard && !o->claimed))
				o = o->next;
			if (o)
				o->discard = true;
			reap(c);
		}
		post_link(c, p);
		ps[made] = p;
	}
	pthread_mutex_unlock(&c->lock);
	hs__client_flush_orphans(c);
	m->alloc->posted = true;
	/* Without rings the emit that follows wakes the daemon for them;
	 * with rings no emit may reach the daemon, so the last one asked
	 * does, a single big one included (left lazy, it waited in the
	 * channel until the next alloc had to ask again: 140 µs an 8 MiB
	 * alloc on the 2-core machine against 4 through the relay). */
	for (uint32_t i = 0; i < made; i++)
		post_send(c, m, ps[i], !(c->rings_on && i + 1 == made));
}

void hs__post_flush(hs_client *c)
{
	pthread_mutex_lock(&c->lock);
	struct want w = { .check = want_no_emits };
	wait_for(c, &w);
	pthread_mutex_unlock(&c->lock);
}

void hs__post_free_all(hs_client *c)
{
	/* The daemon drops the references of the session with it. */
	while (c->posts) {
		struct hs__post *p = c->posts;
		c->posts = p->next;
		post_free(c, p);
	}
	while (c->post_cache) {
		struct hs__post *p = c->post_cache;
		c->post_cache = p->next;
		free(p);
	}
	c->n_post_cache = 0;
}
