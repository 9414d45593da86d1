/* Announcements: a session is told of a slab (SlabAnnounce, with its fd)
 * or a GPU fence event (EventAnnounce) once, before the first message that
 * names it. A producer's slabs and events go to the subscribers of its
 * pair rings first, so a ring note never names memory or an event its
 * reader was not told of, down a chain of stages too. */
#include "announce.h"

#include "broker.h"
#include "pair.h"
#include "session.h"

static int announce_one(struct hsd_session *s, struct hsd_slab *slab);
static int announce_event_one(struct hsd_session *s, struct hsd_fence_event *ev);
static int announce_event(struct hsd_session *s, struct hsd_fence_event *ev);

/* Pushes SlabAnnounce before the first message naming slab; a slab of
 * s's uid also to the subscribers of s's pair rings, first, so a note
 * never names memory its reader was not told of. */
static int announce(struct hsd_session *s, struct hsd_slab *slab)
{
	if (hsd_idmap_get(&s->slabs, slab->id) || s->announcing)
		return 0;
	/* Down the whole chain: a subscriber may pass on what it reads to
	 * subscribers of its own. announcing stops a chain that comes back. */
	if (slab->uid == (uint32_t)s->uid) {
		s->announcing = true;
		struct hsd_pair *p;
		list_for_each(p, &s->pairs_out, prod_link) {
			struct hsd_session *o = p->sub->owner;
			if (!o->dead)
				announce(o, slab);
		}
		s->announcing = false;
	}
	return announce_one(s, slab);
}

int hsd_announce_memory_of(struct hsd_session *s, struct hsd_session *from)
{
	for (size_t i = 0; i < from->slabs.cap; i++) {
		if (!from->slabs.keys[i])
			continue;
		struct hsd_slab *slab = (struct hsd_slab *)(uintptr_t)from->slabs.vals[i];
		if (slab->uid != (uint32_t)s->uid)
			continue;
		int r = announce(s, slab);
		if (r < 0)
			return r;
	}
	for (size_t i = 0; i < from->events.cap; i++) {
		if (!from->events.keys[i])
			continue;
		int r = announce_event(s, (struct hsd_fence_event *)(uintptr_t)from->events.vals[i]);
		if (r < 0)
			return r;
	}
	return 0;
}

static int announce_one(struct hsd_session *s, struct hsd_slab *slab)
{
	if (hsd_idmap_get(&s->slabs, slab->id))
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
	r = hsd_idmap_put(&s->slabs, slab->id, (uint64_t)(uintptr_t)slab);
	if (r < 0)
		return r;
	slab->announced++;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SLAB;
	m.slab = &ann;
	return hsd_outbox_send(s, &m, fd >= 0 ? &fd : NULL, fd >= 0 ? 1 : 0);
}

/* Pushes EventAnnounce before the first TensorRef naming a fence event the
 * session has not seen. Events outlive their tensors (they are reused, and
 * freed only with the broker), so a session learns each one once. */
static int announce_event_one(struct hsd_session *s, struct hsd_fence_event *ev)
{
	if (!ev || hsd_idmap_get(&s->events, ev->id))
		return 0;
	int r = hsd_idmap_put(&s->events, ev->id, (uint64_t)(uintptr_t)ev);
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
	return hsd_outbox_send(s, &m, NULL, 0);
}

/* announce_event_one, to the subscribers of s's pair rings first, as
 * announce does for slabs. */
static int announce_event(struct hsd_session *s, struct hsd_fence_event *ev)
{
	if (!ev || hsd_idmap_get(&s->events, ev->id) || s->announcing)
		return 0;
	s->announcing = true;
	struct hsd_pair *p;
	list_for_each(p, &s->pairs_out, prod_link) {
		struct hsd_session *o = p->sub->owner;
		if (!o->dead)
			announce_event(o, ev);
	}
	s->announcing = false;
	return announce_event_one(s, ev);
}

/* Both announcements a TensorRef of t needs. */
int hsd_announce_tensor(struct hsd_session *s, struct hsd_tensor *t)
{
	int r = announce(s, t->block.slab);
	if (r < 0)
		return r;
	return announce_event(s, t->fence);
}
