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
 * A caller that needs a posted reply before it came sends a ping: the
 * daemon answers in order, so once the ping's reply is here every earlier
 * reply is too, except an emit's held back by a full subscriber, whose
 * reply wakes us when it is accepted. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Posted emits without their reply, at most. */
#define EMIT_WINDOW 8
/* Shapes remembered, and spares held, at most. */
#define SPARE_KEYS 4

enum { POST_EMIT, POST_SPARE };

struct hs__post {
	struct hs__reply_slot slot; /* in c->slots until its reply is taken */
	int kind;
	bool discard;               /* a spare no longer wanted */
	bool claimed;               /* a spare some thread is taking */
	int waiters;                /* threads in await(): not reaped yet */
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
 * dropped; a discarded spare's tensor is given back. */
static void reap(hs_client *c)
{
	struct hs__post *p = c->posts, *next;
	for (; p; p = next) {
		next = p->next;
		Hs__Message *r = p->slot.msg;
		if (!r || p->waiters || (p->kind == POST_SPARE && !p->discard))
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
	if (c->use_chan && !c->reading && hs__chan_pending(&c->ch.rx))
		hs__client_wait(c, never, NULL, 0);
	reap(c);
}

/* Waits for p's reply (lock held; see the top of the file). */
static int await(hs_client *c, struct hs__post *p)
{
	p->waiters++;
	pump(c);
	int err = 0;
	if (!p->slot.msg) {
		pthread_mutex_unlock(&c->lock);
		err = hs_client_ping(c);
		pthread_mutex_lock(&c->lock);
		if (!err)
			err = hs__client_wait(c, hs__slot_done, &p->slot, -1);
	}
	p->waiters--;
	return err;
}

static int post(hs_client *c, Hs__Message *m, struct hs__post *p)
{
	pthread_mutex_lock(&c->lock);
	p->next = NULL;
	struct hs__post **tail = &c->posts;
	while (*tail)
		tail = &(*tail)->next;
	*tail = p;
	if (p->kind == POST_EMIT)
		c->emits_posted++;
	else
		c->spares++;
	pthread_mutex_unlock(&c->lock);
	/* A spare can wait for the daemon's next wake-up; an emit cannot. */
	int err = hs__client_send_slot(c, m, &p->slot, p->kind == POST_SPARE);
	if (err) {
		pthread_mutex_lock(&c->lock);
		post_unlink(c, p);
		if (p->kind == POST_EMIT)
			c->emits_posted--;
		else
			c->spares--;
		post_recycle(c, p);
		pthread_mutex_unlock(&c->lock);
	}
	return err;
}

int hs__post_emit(hs_client *c, Hs__Message *m)
{
	pthread_mutex_lock(&c->lock);
	pump(c);
	int err = c->dead;
	while (!err && c->emits_posted >= EMIT_WINDOW) {
		struct hs__post *oldest = c->posts;
		while (oldest->kind != POST_EMIT)
			oldest = oldest->next;
		err = await(c, oldest);
		reap(c);
	}
	struct hs__post *p = err ? NULL : post_new(c, POST_EMIT);
	if (!err && !p)
		err = HS_ENOMEM;
	pthread_mutex_unlock(&c->lock);
	hs__client_flush_orphans(c);
	if (err)
		return err;
	m->emit->posted = true;
	return post(c, m, p);
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
		/* await lets the lock go: no other thread may take p meanwhile. */
		p->claimed = true;
		if (await(c, p) == 0) {
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

void hs__spare_ask(hs_client *c, const struct hs__spare_key *k, Hs__Message *m)
{
	pthread_mutex_lock(&c->lock);
	struct hs__post *p = post_new(c, POST_SPARE);
	if (!p) {
		pthread_mutex_unlock(&c->lock);
		return; /* the next alloc simply waits for the daemon */
	}
	p->key = *k;
	if (c->spares >= SPARE_KEYS) {
		/* The oldest spare goes; its tensor is given back. */
		struct hs__post *o = c->posts;
		while (o && !(o->kind == POST_SPARE && !o->discard && !o->claimed))
			o = o->next;
		if (o)
			o->discard = true;
		reap(c);
	}
	pthread_mutex_unlock(&c->lock);
	hs__client_flush_orphans(c);
	m->alloc->posted = true;
	post(c, m, p);
}

void hs__post_flush(hs_client *c)
{
	pthread_mutex_lock(&c->lock);
	pump(c);
	while (c->emits_posted && !c->dead) {
		struct hs__post *p = c->posts;
		while (p->kind != POST_EMIT)
			p = p->next;
		if (await(c, p) < 0)
			break;
		reap(c);
	}
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
