/* A session's lifecycle: opening, describing it in logs, killing it, the
 * errors it is told, the references it holds (tensor id -> count) and the
 * teardown that gives back everything it held when it closes. What it
 * sends goes through its outbox (outbox.h), what it asks is handled in
 * request.c. */
#include "session.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsbroker/error.h"
#include "broker.h"
#include "channel.h"
#include "log.h"
#include "pair.h"
#include "range.h"

void hsd_session_init(struct hsd_session *s, struct hsd_broker *b, uint64_t id, int fd, pid_t pid,
		      uid_t uid, gid_t gid)
{
	*s = (struct hsd_session){ 0 };
	s->broker = b;
	s->id = id;
	s->fd = fd;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->created_us = hsd_tensor_now_us();
	hsd_idmap_init(&s->held);
	hsd_idmap_init(&s->slabs);
	hsd_idmap_init(&s->events);
	list_init(&s->subs);
	list_init(&s->pending);
	hsd_outbox_init(&s->out);
	list_init(&s->link);
	list_init(&s->pairs_out);
	hsd_idmap_init(&s->routes);
}

const char *hsd_session_describe(const struct hsd_session *s, char *buf, size_t size)
{
	snprintf(buf, size, "session %llu (pid %d uid %u '%s')", (unsigned long long)s->id,
		 (int)s->pid, (unsigned)s->uid, s->name);
	return buf;
}

void hsd_session_kill(struct hsd_session *s, const char *why)
{
	if (s->dead)
		return;
	s->dead = true;
	char d[128];
	if (why)
		log_warn("%s: %s; disconnecting", hsd_session_describe(s, d, sizeof(d)), why);
	if (s->broker->hooks.dead)
		s->broker->hooks.dead(s->broker->hooks.data, s);
}

void hsd_session_error(struct hsd_session *s, uint64_t seq, int code, const char *fmt, ...)
{
	char text[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	Hs__ErrorReply er = HS__ERROR_REPLY__INIT;
	er.code = code;
	er.message = text;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_ERROR;
	m.error = &er;
	hsd_outbox_send(s, &m, NULL, 0);
}

int hsd_session_violation(struct hsd_session *s, int code, const char *what)
{
	char d[128];
	log_warn("%s: protocol violation: %s", hsd_session_describe(s, d, sizeof(d)), what);
	hsd_session_error(s, 0, code, "%s", what);
	return code;
}

/* ---- references ---- */

/* The session takes over one reference already counted in t->refs. */
int hsd_session_hold(struct hsd_session *s, struct hsd_tensor *t)
{
	uint64_t *c = hsd_idmap_get(&s->held, t->id);
	if (c) {
		(*c)++;
	} else {
		int r = hsd_idmap_put(&s->held, t->id, 1);
		if (r < 0)
			return r;
		s->bytes_held += hsd_range_round(t->block.length);
	}
	s->refs_held++;
	return 0;
}

/* The session gives up one reference (moved elsewhere or to be dropped by
 * the caller). Returns false when it held none. */
bool hsd_session_unhold(struct hsd_session *s, struct hsd_tensor *t)
{
	uint64_t *c = hsd_idmap_get(&s->held, t->id);
	if (!c)
		return false;
	if (--*c == 0) {
		hsd_idmap_del(&s->held, t->id);
		s->bytes_held -= hsd_range_round(t->block.length);
	}
	s->refs_held--;
	return true;
}

bool hsd_session_holds(struct hsd_session *s, uint64_t id)
{
	return hsd_idmap_get(&s->held, id) != NULL;
}

int hsd_session_give_back(struct hsd_session *s, uint64_t id)
{
	struct hsd_tensor *t;
	int r = hsd_session_held_tensor(s, id, &t);
	if (r < 0)
		return r;
	hsd_session_unhold(s, t);
	hsd_tensor_unref(&s->broker->tensors, t);
	return 0;
}

int hsd_session_take_ref(struct hsd_session *s, struct hsd_tensor *t)
{
	int r = hsd_session_hold(s, t);
	if (r == 0)
		hsd_tensor_ref(t);
	return r;
}

/* The tensor with that id if this session holds it: 0, HS_ENOENT or
 * HS_ESTALE. A tensor that exists but is not held is HS_ENOENT, as if
 * absent: sessions cannot probe each other's ids. */
int hsd_session_held_tensor(struct hsd_session *s, uint64_t id, struct hsd_tensor **out)
{
	struct hsd_tensor *t;
	int r = hsd_tensor_lookup(&s->broker->tensors, id, &t);
	if (r < 0)
		return r;
	if (!hsd_idmap_get(&s->held, id))
		return HS_ENOENT;
	*out = t;
	return 0;
}

void hsd_session_pending_done(struct hsd_session *s, uint64_t bytes)
{
	s->npending--;
	s->pending_bytes -= hsd_range_round(bytes);
}

/* ---- teardown ---- */

void hsd_session_release_all(struct hsd_session *s)
{
	struct hsd_broker *b = s->broker;
	s->dead = true; /* nothing more is sent while tearing down */
	/* What its rings carried is settled first: references that moved to
	 * subscribers are theirs, the rest are released below. */
	hsd_pair_producer_gone(s);

	uint32_t npend = 0, nsubs = 0;
	struct hsd_pending_emit *pe, *pt;
	list_for_each_safe(pe, pt, &s->pending, owner_link) {
		hsd_topic_cancel(&b->topics, pe);
		npend++;
	}
	s->npending = 0;
	s->pending_bytes = 0;
	/* Unsubscribing may let other sessions' held-back emits through,
	 * and they may deliver to this session's remaining subscriptions:
	 * references are released last. */
	while (!list_empty(&s->subs)) {
		struct hsd_sub *sub = list_first(&s->subs, struct hsd_sub, owner_link);
		hsd_pair_sub_gone(sub);
		hsd_topic_unsubscribe(&b->topics, sub);
		nsubs++;
	}
	s->usage->subs -= s->nsubs;
	s->nsubs = 0;

	uint64_t refs = s->refs_held, bytes = s->bytes_held, tensors = s->held.n;
	for (size_t i = 0; i < s->held.cap; i++) {
		if (!s->held.keys[i])
			continue;
		struct hsd_tensor *t;
		uint64_t n = s->held.vals[i];
		if (hsd_tensor_lookup(&b->tensors, s->held.keys[i], &t) < 0) {
			log_error("session %llu held unknown tensor %llu",
				  (unsigned long long)s->id,
				  (unsigned long long)s->held.keys[i]);
			continue;
		}
		while (n--)
			hsd_tensor_unref(&b->tensors, t);
	}
	hsd_idmap_fini(&s->held);
	s->refs_held = 0;
	s->bytes_held = 0;

	uint32_t nslabs = 0;
	for (size_t i = 0; i < s->slabs.cap; i++) {
		if (!s->slabs.keys[i])
			continue;
		struct hsd_slab *slab = (struct hsd_slab *)(uintptr_t)s->slabs.vals[i];
		struct hsd_pool *pool;
		if (hsd_broker_pool_for(b, slab->device, &pool) == 0)
			hsd_pool_slab_unannounce(pool, slab);
		nslabs++;
	}
	hsd_idmap_fini(&s->slabs);
	hsd_idmap_fini(&s->events);
	hsd_idmap_fini(&s->routes);
	free(s->ref_drops); /* still held: released with the rest above */
	s->ref_drops = NULL;
	s->n_ref_drops = s->cap_ref_drops = 0;

	hsd_outbox_clear(s);

	/* A client that held nothing (hsctl, a probe) closing is routine:
	 * debug. One that left tensors or subscriptions behind is worth a
	 * line at info. */
	char d[128];
	hsd_log_msg(refs || nsubs || npend ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
		    "%s closed: released %llu references to %llu tensors (%llu bytes), "
		 "%u subscriptions, %u held-back emits; %u slabs were mapped",
		 hsd_session_describe(s, d, sizeof(d)), (unsigned long long)refs,
		 (unsigned long long)tensors, (unsigned long long)bytes, nsubs, npend, nslabs);
}
