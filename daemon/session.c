/* A session: the request handlers for one client and its references (what
 * it sends goes through its outbox, outbox.h). Every field from the peer is untrusted and checked here or in
 * the noun it is handed to. */
#include "session.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hs-config.h"
#include "hsbroker/client.h"
#include "hsbroker/error.h"
#include "broker.h"
#include "channel.h"
#include "introspect.h"
#include "log.h"
#include "pair.h"
#include "range.h"

void session_init(struct session *s, struct broker *b, uint64_t id, int fd, pid_t pid,
		  uid_t uid, gid_t gid)
{
	*s = (struct session){ 0 };
	s->broker = b;
	s->id = id;
	s->fd = fd;
	s->pid = pid;
	s->uid = uid;
	s->gid = gid;
	s->created_us = tensor_now_us();
	idmap_init(&s->held);
	idmap_init(&s->slabs);
	idmap_init(&s->events);
	list_init(&s->subs);
	list_init(&s->pending);
	outbox_init(&s->out);
	list_init(&s->link);
	list_init(&s->pairs_out);
	idmap_init(&s->routes);
}

const char *session_describe(const struct session *s, char *buf, size_t size)
{
	snprintf(buf, size, "session %llu (pid %d uid %u '%s')", (unsigned long long)s->id,
		 (int)s->pid, (unsigned)s->uid, s->name);
	return buf;
}

void session_kill(struct session *s, const char *why)
{
	if (s->dead)
		return;
	s->dead = true;
	char d[128];
	if (why)
		log_warn("%s: %s; disconnecting", session_describe(s, d, sizeof(d)), why);
	if (s->broker->hooks.dead)
		s->broker->hooks.dead(s->broker->hooks.data, s);
}

void session_error(struct session *s, uint64_t seq, int code, const char *fmt, ...)
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
	outbox_send(s, &m, NULL, 0);
}

int session_violation(struct session *s, int code, const char *what)
{
	char d[128];
	log_warn("%s: protocol violation: %s", session_describe(s, d, sizeof(d)), what);
	session_error(s, 0, code, "%s", what);
	return code;
}

/* ---- references ---- */

/* The session takes over one reference already counted in t->refs. */
static int hold(struct session *s, struct tensor *t)
{
	uint64_t *c = idmap_get(&s->held, t->id);
	if (c) {
		(*c)++;
	} else {
		int r = idmap_put(&s->held, t->id, 1);
		if (r < 0)
			return r;
		s->bytes_held += range_round(t->block.length);
	}
	s->refs_held++;
	return 0;
}

/* The session gives up one reference (moved elsewhere or to be dropped by
 * the caller). Returns false when it held none. */
static bool unhold(struct session *s, struct tensor *t)
{
	uint64_t *c = idmap_get(&s->held, t->id);
	if (!c)
		return false;
	if (--*c == 0) {
		idmap_del(&s->held, t->id);
		s->bytes_held -= range_round(t->block.length);
	}
	s->refs_held--;
	return true;
}

static int held_tensor(struct session *s, uint64_t id, struct tensor **out);

bool session_holds(struct session *s, uint64_t id)
{
	return idmap_get(&s->held, id) != NULL;
}

int session_give_back(struct session *s, uint64_t id)
{
	struct tensor *t;
	int r = held_tensor(s, id, &t);
	if (r < 0)
		return r;
	unhold(s, t);
	tensor_unref(&s->broker->tensors, t);
	return 0;
}

int session_take_ref(struct session *s, struct tensor *t)
{
	int r = hold(s, t);
	if (r == 0)
		tensor_ref(t);
	return r;
}

/* The tensor with that id if this session holds it: 0, HS_ENOENT or
 * HS_ESTALE. A tensor that exists but is not held is HS_ENOENT, as if
 * absent: sessions cannot probe each other's ids. */
static int held_tensor(struct session *s, uint64_t id, struct tensor **out)
{
	struct tensor *t;
	int r = tensor_lookup(&s->broker->tensors, id, &t);
	if (r < 0)
		return r;
	if (!idmap_get(&s->held, id))
		return HS_ENOENT;
	*out = t;
	return 0;
}

static int announce_one(struct session *s, struct slab *slab);
static int announce_event_one(struct session *s, struct fence_event *ev);

/* Pushes SlabAnnounce before the first message naming slab; a slab of
 * s's uid also to the subscribers of s's pair rings, first, so a note
 * never names memory its reader was not told of. */
static int announce(struct session *s, struct slab *slab)
{
	if (idmap_get(&s->slabs, slab->id))
		return 0;
	if (slab->uid == (uint32_t)s->uid) {
		struct pair *p;
		list_for_each(p, &s->pairs_out, prod_link) {
			struct session *o = p->sub->owner;
			if (!o->dead)
				announce_one(o, slab);
		}
	}
	return announce_one(s, slab);
}

int session_announce_memory_of(struct session *s, struct session *from)
{
	for (size_t i = 0; i < from->slabs.cap; i++) {
		if (!from->slabs.keys[i])
			continue;
		struct slab *slab = (struct slab *)(uintptr_t)from->slabs.vals[i];
		if (slab->uid != (uint32_t)s->uid)
			continue;
		int r = announce_one(s, slab);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < from->events.cap; i++) {
		if (!from->events.keys[i])
			continue;
		int r = announce_event_one(s, (struct fence_event *)(uintptr_t)from->events.vals[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int announce_one(struct session *s, struct slab *slab)
{
	if (idmap_get(&s->slabs, slab->id))
		return 0;
	Hs__SlabAnnounce ann = HS__SLAB_ANNOUNCE__INIT;
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = slab->device.device_type;
	dev.id = slab->device.device_id;
	ann.slab_id = slab->id;
	ann.device = &dev;
	ann.size = slab->size;
	int fd = -1;
	/* Export first: a slab that could not be exported is not recorded
	 * as announced, else no later message would announce it. Another
	 * uid's slab is given read-only (docs/security.md). */
	int r = slab->ops->export_announce(slab, &ann, slab->uid == (uint32_t)s->uid, &fd);
	if (r < 0)
		return r;
	r = idmap_put(&s->slabs, slab->id, (uint64_t)(uintptr_t)slab);
	if (r < 0)
		return r;
	slab->announced++;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SLAB;
	m.slab = &ann;
	return outbox_send(s, &m, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

/* Pushes EventAnnounce before the first TensorRef naming a fence event the
 * session has not seen. Events outlive their tensors (they are reused, and
 * freed only with the broker), so a session learns each one once. */
static int announce_event_one(struct session *s, struct fence_event *ev)
{
	if (!ev || idmap_get(&s->events, ev->id))
		return 0;
	int r = idmap_put(&s->events, ev->id, (uint64_t)(uintptr_t)ev);
	if (r < 0)
		return r;
	Hs__EventAnnounce ann = HS__EVENT_ANNOUNCE__INIT;
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = kDLCUDA;
	dev.id = ev->device;
	ann.event_id = ev->id;
	ann.device = &dev;
	ann.ipc_handle.data = ev->ipc_handle;
	ann.ipc_handle.len = sizeof(ev->ipc_handle);
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_EVENT;
	m.event = &ann;
	return outbox_send(s, &m, NULL, 0);
}

/* announce_event_one, to the subscribers of s's pair rings first, as
 * announce does for slabs. */
static int announce_event(struct session *s, struct fence_event *ev)
{
	if (!ev || idmap_get(&s->events, ev->id))
		return 0;
	struct pair *p;
	list_for_each(p, &s->pairs_out, prod_link) {
		struct session *o = p->sub->owner;
		if (!o->dead)
			announce_event_one(o, ev);
	}
	return announce_event_one(s, ev);
}

/* Both announcements a TensorRef of t needs. */
static int announce_tensor(struct session *s, struct tensor *t)
{
	int r = announce(s, t->block.slab);
	if (r < 0)
		return r;
	return announce_event(s, t->fence);
}

void session_deliver(struct session *s, uint64_t sub_id, struct tensor *t, uint64_t seq,
		     const char *topic, uint64_t dropped)
{
	if (hold(s, t) < 0) {
		log_error("out of memory delivering tensor %llu: dropped",
			  (unsigned long long)t->id);
		tensor_unref(&s->broker->tensors, t);
		return;
	}
	if (s->dead)
		return; /* released when the session is closed */
	if (announce_tensor(s, t) < 0) {
		/* The peer cannot use a TensorRef to memory it was not told
		 * of: drop the delivery rather than pin the tensor until the
		 * session closes. */
		log_error("cannot announce tensor %llu's memory: delivery dropped",
			  (unsigned long long)t->id);
		unhold(s, t);
		tensor_unref(&s->broker->tensors, t);
		return;
	}
	struct tensor_pb pb;
	tensor_to_pb(t, &pb);
	pb.ref.seq = seq;
	pb.ref.topic = (char *)topic;
	pb.ref.subscription = sub_id;
	Hs__Deliver d = HS__DELIVER__INIT;
	d.tensor = &pb.ref;
	d.dropped = dropped;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_DELIVER;
	m.deliver = &d;
	outbox_send(s, &m, NULL, 0);
}

void session_emit_accepted(struct session *s, uint64_t req_seq, uint64_t seq)
{
	Hs__EmitReply er = HS__EMIT_REPLY__INIT;
	er.seq = seq;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = req_seq;
	m.body_case = HS__MESSAGE__BODY_EMIT_REPLY;
	m.emit_reply = &er;
	outbox_send(s, &m, NULL, 0);
}

void session_pending_done(struct session *s, uint64_t bytes)
{
	s->npending--;
	s->pending_bytes -= range_round(bytes);
}

void session_release_all(struct session *s)
{
	struct broker *b = s->broker;
	s->dead = true; /* nothing more is sent while tearing down */
	/* What its rings carried is settled first: references that moved to
	 * subscribers are theirs, the rest are released below. */
	pair_producer_gone(s);

	uint32_t npend = 0, nsubs = 0;
	struct pending_emit *pe, *pt;
	list_for_each_safe(pe, pt, &s->pending, owner_link) {
		topic_cancel(&b->topics, pe);
		npend++;
	}
	s->npending = 0;
	s->pending_bytes = 0;
	/* Unsubscribing may let other sessions' held-back emits through,
	 * and they may deliver to this session's remaining subscriptions:
	 * references are released last. */
	while (!list_empty(&s->subs)) {
		struct sub *sub = list_first(&s->subs, struct sub, owner_link);
		pair_sub_gone(sub);
		topic_unsubscribe(&b->topics, sub);
		nsubs++;
	}
	s->usage->subs -= s->nsubs;
	s->nsubs = 0;

	uint64_t refs = s->refs_held, bytes = s->bytes_held, tensors = s->held.n;
	for (size_t i = 0; i < s->held.cap; i++) {
		if (!s->held.keys[i])
			continue;
		struct tensor *t;
		uint64_t n = s->held.vals[i];
		if (tensor_lookup(&b->tensors, s->held.keys[i], &t) < 0) {
			log_error("session %llu held unknown tensor %llu",
				  (unsigned long long)s->id,
				  (unsigned long long)s->held.keys[i]);
			continue;
		}
		while (n--)
			tensor_unref(&b->tensors, t);
	}
	idmap_fini(&s->held);
	s->refs_held = 0;
	s->bytes_held = 0;

	uint32_t nslabs = 0;
	for (size_t i = 0; i < s->slabs.cap; i++) {
		if (!s->slabs.keys[i])
			continue;
		struct slab *slab = (struct slab *)(uintptr_t)s->slabs.vals[i];
		struct pool *pool;
		if (broker_pool_for(b, slab->device, &pool) == 0)
			pool_slab_unannounce(pool, slab);
		nslabs++;
	}
	idmap_fini(&s->slabs);
	idmap_fini(&s->events);
	idmap_fini(&s->routes);
	free(s->ref_drops); /* still held: released with the rest above */
	s->ref_drops = NULL;
	s->n_ref_drops = s->cap_ref_drops = 0;

	outbox_clear(s);

	/* A client that held nothing (hsctl, a probe) closing is routine:
	 * debug. One that left tensors or subscriptions behind is worth a
	 * line at info. */
	char d[128];
	log_msg(refs || nsubs || npend ? LOG_LEVEL_INFO : LOG_LEVEL_DEBUG,
		"%s closed: released %llu references to %llu tensors (%llu bytes), "
		 "%u subscriptions, %u held-back emits; %u slabs were mapped",
		 session_describe(s, d, sizeof(d)), (unsigned long long)refs,
		 (unsigned long long)tensors, (unsigned long long)bytes, nsubs, npend, nslabs);
}

/* ---- requests ---- */

static void reply(struct session *s, uint64_t seq, Hs__Message *m)
{
	m->seq = seq;
	outbox_send(s, m, NULL, 0);
}

static bool allowed(const struct broker_config *cfg, uid_t uid, gid_t gid)
{
	if (!cfg->n_allow_uids && !cfg->n_allow_gids)
		return true;
	for (uint32_t i = 0; i < cfg->n_allow_uids; i++)
		if (cfg->allow_uids[i] == uid)
			return true;
	for (uint32_t i = 0; i < cfg->n_allow_gids; i++)
		if (cfg->allow_gids[i] == gid)
			return true;
	return false;
}

static int on_hello(struct session *s, uint64_t seq, const Hs__Hello *h)
{
	char d[128];
	if (h->protocol_version != HS_PROTOCOL_VERSION) {
		log_warn("%s: protocol version %u, this daemon speaks %u; disconnecting",
			 session_describe(s, d, sizeof(d)), h->protocol_version,
			 HS_PROTOCOL_VERSION);
		session_error(s, seq, HS_EVERSION, "protocol version %u not supported (daemon speaks %u)",
			      h->protocol_version, HS_PROTOCOL_VERSION);
		return HS_EVERSION;
	}
	/* Cut to 63 bytes; anything unprintable becomes '?' so a name
	 * cannot forge log lines. */
	const char *name = h->client_name ? h->client_name : "";
	size_t n = strnlen(name, HS__MAX_NAME);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		s->name[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	s->name[n] = '\0';
	s->hello_done = true;
	log_debug("%s opened (gid %u)", session_describe(s, d, sizeof(d)), (unsigned)s->gid);

	Hs__HelloReply hr = HS__HELLO_REPLY__INIT;
	hr.protocol_version = HS_PROTOCOL_VERSION;
	hr.epoch = s->broker->epoch;
	hr.session_id = s->id;
	hr.daemon_version = (char *)HS_VERSION;
	/* A client that gets no channel stays on the socket. */
	struct chan_state *ch = h->want_channel ? chan_create(s) : NULL;
	hr.channel = ch != NULL;
	s->rings = ch && h->want_rings && s->broker->cfg.direct_rings;
	hr.rings = s->rings;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_HELLO_REPLY;
	m.hello_reply = &hr;
	reply(s, seq, &m);
	if (ch)
		chan_start(s, ch);
	return 0;
}

static void on_alloc(struct session *s, uint64_t seq, const Hs__AllocReq *req)
{
	struct broker *b = s->broker;
	const struct broker_config *cfg = &b->cfg;
	uint64_t need;
	int r = hs__meta_extent_pb(req->meta, &need);
	if (r < 0) {
		session_error(s, seq, r, "alloc: bad metadata: %s", hs__strerror(r));
		return;
	}
	if (req->meta->byte_offset != 0) {
		session_error(s, seq, HS_EINVAL, "alloc: byte_offset must be 0");
		return;
	}
	char d[128];
	/* Emits held back still pin their tensors: they count as held. */
	uint64_t refs = s->refs_held + s->npending;
	uint64_t bytes = s->bytes_held + s->pending_bytes;
	if (refs >= cfg->max_tensors) {
		log_warn("%s: alloc refused: holds %llu references (max_tensors %u)",
			 session_describe(s, d, sizeof(d)), (unsigned long long)refs,
			 cfg->max_tensors);
		session_error(s, seq, HS_ELIMIT, "alloc: %llu tensors held, limit %u",
			      (unsigned long long)refs, cfg->max_tensors);
		return;
	}
	if (cfg->quota_tensors && s->held.n + s->npending + 1 > cfg->quota_tensors) {
		log_warn("%s: alloc refused: tensor quota %u reached",
			 session_describe(s, d, sizeof(d)), cfg->quota_tensors);
		session_error(s, seq, HS_EDQUOT, "alloc: quota of %u tensors reached",
			      cfg->quota_tensors);
		return;
	}
	uint64_t rounded = range_round(need);
	if (cfg->quota_bytes &&
	    (!rounded || rounded > cfg->quota_bytes || bytes > cfg->quota_bytes - rounded)) {
		log_warn("%s: alloc of %llu bytes refused: byte quota %llu (holds %llu)",
			 session_describe(s, d, sizeof(d)), (unsigned long long)need,
			 (unsigned long long)cfg->quota_bytes, (unsigned long long)bytes);
		session_error(s, seq, HS_EDQUOT, "alloc: %llu bytes would pass the quota of %llu bytes",
			      (unsigned long long)need, (unsigned long long)cfg->quota_bytes);
		return;
	}
	DLDevice dev = { (DLDeviceType)req->meta->device->type, req->meta->device->id };
	struct pool *pool;
	r = broker_pool_for(b, dev, &pool);
	if (r < 0) {
		session_error(s, seq, r, "alloc: no pool for device %d:%d: %s",
			      (int)dev.device_type, (int)dev.device_id, hs__strerror(r));
		return;
	}
	struct tensor *t;
	r = tensor_create(&b->tensors, pool, req->meta, s->uid, &t);
	/* Releases may still sit in other clients' channels. */
	if (r == HS_ENOSPC && broker_chan_catch_up(b, s))
		r = tensor_create(&b->tensors, pool, req->meta, s->uid, &t);
	if (r < 0) {
		if (r == HS_ENOSPC)
			log_info("%s: alloc of %llu bytes: pool exhausted",
				 session_describe(s, d, sizeof(d)), (unsigned long long)need);
		session_error(s, seq, r, "alloc of %llu bytes: %s", (unsigned long long)need,
			      hs__strerror(r));
		return;
	}
	if (dev.device_type == kDLCUDA) {
		/* The ready fence travels with the tensor from alloc to death. */
		r = broker_fence_for(b, dev, &t->fence);
		if (r < 0) {
			tensor_unref(&b->tensors, t);
			session_error(s, seq, r, "alloc: no ready-fence event on cuda:%d: %s",
				      (int)dev.device_id, hs__strerror(r));
			return;
		}
	}
	t->owner_session = s->id;
	t->owner_pid = s->pid;
	memcpy(t->owner_name, s->name, sizeof(t->owner_name));
	if (hold(s, t) < 0) {
		tensor_unref(&b->tensors, t);
		session_error(s, seq, HS_ENOMEM, "alloc: out of memory");
		return;
	}
	if (announce_tensor(s, t) < 0) {
		/* The peer could not use the reply: it was not told of the
		 * memory, so it must not get the tensor. */
		unhold(s, t);
		tensor_unref(&b->tensors, t);
		session_error(s, seq, HS_ENOMEM, "alloc: cannot announce the tensor's memory");
		return;
	}
	struct tensor_pb pb;
	tensor_to_pb(t, &pb);
	Hs__AllocReply ar = HS__ALLOC_REPLY__INIT;
	ar.tensor = &pb.ref;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ALLOC_REPLY;
	m.alloc_reply = &ar;
	reply(s, seq, &m);
}

/* The [acl] allow lists: false (refused, logged, told) or true. */
static bool acl_ok(struct session *s, uint64_t seq, enum acl_action action, const char *topic)
{
	const struct broker_config *cfg = &s->broker->cfg;
	if (!cfg->acl.n || acl_allows(&cfg->acl, action, topic, s->uid, s->gid))
		return true;
	char d[128];
	log_warn("%s: %s on %.255s refused by [acl]", session_describe(s, d, sizeof(d)),
		 acl_action_name(action), topic);
	session_error(s, seq, HS_EPERM, "%s on %.255s: not allowed for uid %u",
		      acl_action_name(action), topic, (unsigned)s->uid);
	return false;
}

/* The topic named name, made for s (charged to its uid, usage.h) when it
 * does not exist: 0, HS_ELIMIT (logged: max_topics, or the uid's
 * max_topics_per_uid) or topics_get's errors. */
static int session_topic(struct session *s, const char *name, struct topic **out)
{
	struct broker *b = s->broker;
	int r = topics_get(&b->topics, name, false, out);
	if (r != HS_ENOENT)
		return r;
	char d[128];
	bool capped = broker_uid_capped(b, s->uid);
	struct uid_usage *u = s->usage;
	/* Idle topics of this uid may be freed to make room, as for the
	 * global limit (topics_get). The scan walks every tensor and topic:
	 * after one that leaves the uid at its cap, the next waits 100 ms,
	 * so asking again and again costs the daemon nothing. */
	if (capped && u->topics >= b->cfg.uid_max_topics) {
		uint64_t now = tensor_now_us();
		if (now >= u->evict_after_us) {
			topics_evict_idle(&b->topics);
			if (u->topics >= b->cfg.uid_max_topics)
				u->evict_after_us = now + 100000;
		}
	}
	if (capped && u->topics >= b->cfg.uid_max_topics) {
		log_warn("%s: new topic refused: uid %u made %u topics (max_topics_per_uid)",
			 session_describe(s, d, sizeof(d)), (unsigned)s->uid, s->usage->topics);
		return HS_ELIMIT;
	}
	r = topics_get(&b->topics, name, true, out);
	if (r == HS_ELIMIT)
		log_warn("%s: new topic refused: %u topics exist (max_topics)",
			 session_describe(s, d, sizeof(d)), b->topics.n);
	if (r < 0)
		return r;
	(*out)->uid = s->uid;
	(*out)->charged = true;
	s->usage->topics++;
	return 0;
}

static void on_emit(struct session *s, uint64_t seq, const Hs__EmitReq *req)
{
	struct broker *b = s->broker;
	struct tensor *t;
	int r = held_tensor(s, req->tensor_id, &t);
	if (r < 0) {
		session_error(s, seq, r, "emit: tensor %llu not held: %s",
			      (unsigned long long)req->tensor_id, hs__strerror(r));
		return;
	}
	if (!acl_ok(s, seq, ACL_PUBLISH, req->topic))
		return;
	struct topic *tp;
	r = session_topic(s, req->topic, &tp);
	if (r < 0) {
		session_error(s, seq, r, "emit: topic: %s", hs__strerror(r));
		return;
	}
	t->fence_done = req->fence_done; /* the writer synchronised instead */
	/* The reference moves to the topic; on failure it comes back. */
	unhold(s, t);
	uint64_t tseq = 0;
	struct pending_emit *pe = NULL;
	r = topic_emit(&b->topics, tp, t, s, seq, &tseq, &pe);
	if (r >= 0)
		chan_activate_topic(tp);
	if (r < 0) {
		hold(s, t); /* the key was just there: cannot fail for memory */
		if (r == HS_EBUSY) {
			char d[128];
			log_warn("%s: emit on %s refused: %u emits already held back by a full subscriber",
				 session_describe(s, d, sizeof(d)), tp->name, tp->npending);
		}
		session_error(s, seq, r, "emit on %s: %s", tp->name,
			      r == HS_EBUSY ? "too many emits held back by a full subscriber"
					    : hs__strerror(r));
		return;
	}
	if (r == 1) {
		list_insert_tail(&s->pending, &pe->owner_link);
		s->npending++;
		s->pending_bytes += range_round(t->block.length);
		return; /* the reply comes when it is accepted */
	}
	session_emit_accepted(s, seq, tseq);
}

/* A producer's route on a topic (pair rings, pair.h): its rings are made
 * and announced before the reply. */
static void on_route(struct session *s, uint64_t seq, const Hs__RouteReq *req)
{
	if (!s->rings) {
		session_error(s, seq, HS_ENOTSUP, "route: pair rings are off");
		return;
	}
	if (!acl_ok(s, seq, ACL_PUBLISH, req->topic))
		return;
	struct topic *tp;
	int r = session_topic(s, req->topic, &tp);
	if (r < 0) {
		session_error(s, seq, r, "route: topic: %s", hs__strerror(r));
		return;
	}
	bool first = !idmap_get(&s->routes, tp->id), relay = false;
	r = pair_route(s, tp, &relay);
	if (r < 0) {
		session_error(s, seq, r, "route on %s: %s", tp->name, hs__strerror(r));
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
	outbox_send(s, &m, first ? &tp->page_fd : NULL, first ? 1 : 0);
}

static void on_subscribe(struct session *s, uint64_t seq, const Hs__SubscribeReq *req)
{
	struct broker *b = s->broker;
	char d[128];
	if (s->nsubs >= b->cfg.max_subscriptions) {
		log_warn("%s: subscribe refused: %u subscriptions (max_subscriptions)",
			 session_describe(s, d, sizeof(d)), s->nsubs);
		session_error(s, seq, HS_ELIMIT, "subscribe: limit of %u subscriptions reached",
			      b->cfg.max_subscriptions);
		return;
	}
	if (s->usage->subs >= b->cfg.uid_max_subscriptions && broker_uid_capped(b, s->uid)) {
		log_warn("%s: subscribe refused: uid %u has %u subscriptions "
			 "(max_subscriptions_per_uid)", session_describe(s, d, sizeof(d)),
			 (unsigned)s->uid, s->usage->subs);
		session_error(s, seq, HS_ELIMIT,
			      "subscribe: uid %u has reached its limit of %u subscriptions",
			      (unsigned)s->uid, b->cfg.uid_max_subscriptions);
		return;
	}
	if (req->depth < 1 || req->depth > SUB_MAX_DEPTH || req->credits < 1) {
		session_error(s, seq, HS_EINVAL, "subscribe: depth must be 1..%u and credits >= 1",
			      SUB_MAX_DEPTH);
		return;
	}
	if (!acl_ok(s, seq, ACL_SUBSCRIBE, req->topic))
		return;
	struct topic *tp;
	int r = session_topic(s, req->topic, &tp);
	if (r < 0) {
		session_error(s, seq, r, "subscribe: topic: %s", hs__strerror(r));
		return;
	}
	/* The config's block_timeout_ms is the default and the most a
	 * subscriber may hold a producer back: it can ask for less. */
	uint32_t tmo = b->cfg.block_timeout_ms;
	if (req->block_timeout_ms && (!tmo || req->block_timeout_ms < tmo))
		tmo = req->block_timeout_ms;
	struct sub *sub;
	r = topic_subscribe(&b->topics, tp, s, req->depth, req->policy, req->credits, tmo, &sub);
	if (r < 0) {
		session_error(s, seq, r, "subscribe: %s", hs__strerror(r));
		return;
	}
	list_insert_tail(&s->subs, &sub->owner_link);
	s->nsubs++;
	s->usage->subs++;
	pair_subscribing(sub);
	Hs__SubscribeReply sr = HS__SUBSCRIBE_REPLY__INIT;
	sr.subscription = sub->id;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE_REPLY;
	m.subscribe_reply = &sr;
	reply(s, seq, &m);
	/* Its rings come right behind the reply, which links the
	 * subscription in the client (pair.h). */
	pair_subscribed(s, sub);
}

static struct sub *find_sub(struct session *s, uint64_t id)
{
	struct sub *sub;
	list_for_each(sub, &s->subs, owner_link)
		if (sub->id == id)
			return sub;
	return NULL;
}

static void on_unsubscribe(struct session *s, uint64_t seq, const Hs__UnsubscribeReq *req)
{
	struct sub *sub = find_sub(s, req->subscription);
	if (!sub) {
		session_error(s, seq, HS_ENOENT, "unsubscribe: no subscription %llu",
			      (unsigned long long)req->subscription);
		return;
	}
	pair_sub_gone(sub);
	topic_unsubscribe(&s->broker->topics, sub);
	s->nsubs--;
	s->usage->subs--;
	Hs__OkReply ok = HS__OK_REPLY__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_OK;
	m.ok = &ok;
	reply(s, seq, &m);
}

static void on_release(struct session *s, uint64_t seq, const Hs__ReleaseNote *note)
{
	int first_err = 0;
	uint64_t bad_id = 0;
	size_t nbad = 0;
	for (size_t i = 0; i < note->n_tensor_ids; i++) {
		struct tensor *t;
		int r = held_tensor(s, note->tensor_ids[i], &t);
		if (r < 0) {
			if (!nbad++) {
				first_err = r;
				bad_id = note->tensor_ids[i];
			}
			continue;
		}
		unhold(s, t);
		tensor_unref(&s->broker->tensors, t);
	}
	if (nbad) {
		char d[128];
		log_debug("%s: release of %zu ids not held", session_describe(s, d, sizeof(d)), nbad);
		session_error(s, seq, first_err, "release: tensor %llu not held (%zu of %zu ids): %s",
			      (unsigned long long)bad_id, nbad, note->n_tensor_ids,
			      hs__strerror(first_err));
	}
}

static void on_credit(struct session *s, uint64_t seq, const Hs__CreditNote *note)
{
	struct sub *sub = find_sub(s, note->subscription);
	if (!sub) {
		session_error(s, seq, HS_ENOENT, "credit: no subscription %llu",
			      (unsigned long long)note->subscription);
		return;
	}
	sub_credit(&s->broker->topics, sub, note->credits);
}

/* Before hello nothing is decoded that could cost much (issue 11 row 4):
 * a peer whose uid is not allowed is refused unread, and a datagram
 * larger than any Hello (hello_max_bytes) ends the connection. */
static int before_hello(struct session *s, size_t len)
{
	const struct broker_config *cfg = &s->broker->cfg;
	char d[128];
	if (s->refuse == HS_ELIMIT) {
		session_error(s, 0, HS_ELIMIT, "uid %u has too many connections open",
			      (unsigned)s->uid);
		return HS_ELIMIT;
	}
	if (!allowed(cfg, s->uid, s->gid)) {
		log_warn("%s: denied: uid %u / gid %u not in allow_uids / allow_gids",
			 session_describe(s, d, sizeof(d)), (unsigned)s->uid, (unsigned)s->gid);
		/* seq 0: the request is not read; the client takes it as the
		 * answer to its Hello. */
		session_error(s, 0, HS_EPERM, "uid %u not allowed", (unsigned)s->uid);
		return HS_EPERM;
	}
	if (len > cfg->hello_max_bytes) {
		char what[96];
		snprintf(what, sizeof(what), "a %zu-byte datagram before hello (at most %u)", len,
			 cfg->hello_max_bytes);
		return session_violation(s, HS_EMSGSIZE, what);
	}
	return 0;
}

int session_input(struct session *s, const uint8_t *buf, size_t len, int *fds, int nfds)
{
	if (nfds > 0) {
		hs__wire_close_fds(fds, nfds);
		return session_violation(s, HS_EPROTO, "a client sent file descriptors");
	}
	if (!s->hello_done) {
		int r = before_hello(s, len);
		if (r < 0)
			return r;
	}
	Hs__Message *m;
	if (hs__wire_decode(buf, len, &m) < 0)
		return session_violation(s, HS_EPROTO, "undecodable message");
	if (hs__wire_debug_enabled())
		hs__wire_debug("daemon", "<-", m, nfds);

	int ret = 0;
	uint64_t seq = m->seq;
	if ((m->body_case == HS__MESSAGE__BODY_ALLOC && m->alloc->posted) ||
	    (m->body_case == HS__MESSAGE__BODY_EMIT && m->emit->posted))
		s->quiet_seq = seq;
	if (!s->hello_done && m->body_case != HS__MESSAGE__BODY_HELLO) {
		char what[96];
		snprintf(what, sizeof(what), "'%s' before hello", hs__wire_body_name(m));
		ret = session_violation(s, HS_EPROTO, what);
		goto out;
	}

	switch (m->body_case) {
	case HS__MESSAGE__BODY_HELLO:
		if (s->hello_done)
			ret = session_violation(s, HS_EPROTO, "second hello");
		else
			ret = on_hello(s, seq, m->hello);
		break;
	case HS__MESSAGE__BODY_ALLOC:
		on_alloc(s, seq, m->alloc);
		break;
	case HS__MESSAGE__BODY_EMIT:
		on_emit(s, seq, m->emit);
		break;
	case HS__MESSAGE__BODY_SUBSCRIBE:
		on_subscribe(s, seq, m->subscribe);
		break;
	case HS__MESSAGE__BODY_UNSUBSCRIBE:
		on_unsubscribe(s, seq, m->unsubscribe);
		break;
	case HS__MESSAGE__BODY_RELEASE:
		on_release(s, seq, m->release);
		break;
	case HS__MESSAGE__BODY_CREDIT:
		on_credit(s, seq, m->credit);
		break;
	case HS__MESSAGE__BODY_ROUTE:
		on_route(s, seq, m->route);
		break;
	case HS__MESSAGE__BODY_LIST:
		/* Show what clients released, not what their channels
		 * still carry. */
		broker_chan_catch_up(s->broker, s);
		introspect_reply(s, seq, m->list);
		break;
	case HS__MESSAGE__BODY_PING: {
		Hs__OkReply ok = HS__OK_REPLY__INIT;
		Hs__Message r = HS__MESSAGE__INIT;
		r.body_case = HS__MESSAGE__BODY_OK;
		r.ok = &ok;
		reply(s, seq, &r);
		break;
	}
	default: {
		char what[96];
		snprintf(what, sizeof(what), "'%s' is not a client message",
			 hs__wire_body_name(m));
		ret = session_violation(s, HS_EPROTO, what);
		break;
	}
	}
out:
	s->quiet_seq = 0;
	hs__wire_free(m);
	return ret;
}
