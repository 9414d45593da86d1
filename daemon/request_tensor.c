/* Requests about tensors: alloc (quotas, the pool, the ready fence),
 * emit (the reference moves to the topic, or the emit is held back) and
 * release. */
#include "request.h"

#include <string.h>

#include "hsbroker/error.h"
#include "announce.h"
#include "broker.h"
#include "channel.h"
#include "deliver.h"
#include "log.h"
#include "range.h"
#include "session.h"

void hsd_request_alloc(struct hsd_session *s, uint64_t seq, const Hs__AllocReq *req)
{
	struct hsd_broker *b = s->broker;
	const struct hsd_broker_config *cfg = &b->cfg;
	uint64_t need;
	int r = hs__meta_extent_pb(req->meta, &need);
	if (r < 0) {
		hsd_session_error(s, seq, r, "alloc: bad metadata: %s", hs__strerror(r));
		return;
	}
	if (req->meta->byte_offset != 0) {
		hsd_session_error(s, seq, HS_EINVAL, "alloc: byte_offset must be 0");
		return;
	}
	char d[128];
	/* Emits held back still pin their tensors: they count as held. */
	uint64_t refs = s->refs_held + s->npending;
	uint64_t bytes = s->bytes_held + s->pending_bytes;
	if (refs >= cfg->max_tensors) {
		log_warn("%s: alloc refused: holds %llu references (max_tensors %u)",
			 hsd_session_describe(s, d, sizeof(d)), (unsigned long long)refs,
			 cfg->max_tensors);
		hsd_session_error(s, seq, HS_ELIMIT, "alloc: %llu tensors held, limit %u",
				  (unsigned long long)refs, cfg->max_tensors);
		return;
	}
	if (cfg->quota_tensors && s->held.n + s->npending + 1 > cfg->quota_tensors) {
		log_warn("%s: alloc refused: tensor quota %u reached",
			 hsd_session_describe(s, d, sizeof(d)), cfg->quota_tensors);
		hsd_session_error(s, seq, HS_EDQUOT, "alloc: quota of %u tensors reached",
				  cfg->quota_tensors);
		return;
	}
	uint64_t rounded = hsd_range_round(need);
	if (cfg->quota_bytes &&
	    (!rounded || rounded > cfg->quota_bytes || bytes > cfg->quota_bytes - rounded)) {
		log_warn("%s: alloc of %llu bytes refused: byte quota %llu (holds %llu)",
			 hsd_session_describe(s, d, sizeof(d)), (unsigned long long)need,
			 (unsigned long long)cfg->quota_bytes, (unsigned long long)bytes);
		hsd_session_error(s, seq, HS_EDQUOT, "alloc: %llu bytes would pass the quota of %llu bytes",
				  (unsigned long long)need, (unsigned long long)cfg->quota_bytes);
		return;
	}
	DLDevice dev = { (DLDeviceType)req->meta->device->type, req->meta->device->id };
	struct hsd_pool *pool;
	r = hsd_broker_pool_for(b, dev, &pool);
	if (r < 0) {
		hsd_session_error(s, seq, r, "alloc: no pool for device %d:%d: %s",
				  (int)dev.device_type, (int)dev.device_id, hs__strerror(r));
		return;
	}
	struct hsd_tensor *t;
	r = hsd_tensor_create(&b->tensors, pool, req->meta, s->uid, &t);
	/* Releases may still sit in other clients' channels. */
	if (r == HS_ENOSPC && hsd_broker_chan_catch_up(b, s))
		r = hsd_tensor_create(&b->tensors, pool, req->meta, s->uid, &t);
	if (r < 0) {
		if (r == HS_ENOSPC)
			log_info("%s: alloc of %llu bytes: pool exhausted",
				 hsd_session_describe(s, d, sizeof(d)), (unsigned long long)need);
		hsd_session_error(s, seq, r, "alloc of %llu bytes: %s", (unsigned long long)need,
				  hs__strerror(r));
		return;
	}
	if (dev.device_type == kDLCUDA) {
		/* The ready fence travels with the tensor from alloc to death. */
		r = hsd_broker_fence_for(b, dev, &t->fence);
		if (r < 0) {
			hsd_tensor_unref(&b->tensors, t);
			hsd_session_error(s, seq, r, "alloc: no ready-fence event on cuda:%d: %s",
					  (int)dev.device_id, hs__strerror(r));
			return;
		}
	}
	t->owner_session = s->id;
	t->owner_pid = s->pid;
	memcpy(t->owner_name, s->name, sizeof(t->owner_name));
	if (hsd_session_hold(s, t) < 0) {
		hsd_tensor_unref(&b->tensors, t);
		hsd_session_error(s, seq, HS_ENOMEM, "alloc: out of memory");
		return;
	}
	if (hsd_announce_tensor(s, t) < 0) {
		/* The peer could not use the reply: it was not told of the
		 * memory, so it must not get the tensor. */
		hsd_session_unhold(s, t);
		hsd_tensor_unref(&b->tensors, t);
		hsd_session_error(s, seq, HS_ENOMEM, "alloc: cannot announce the tensor's memory");
		return;
	}
	struct hsd_tensor_pb pb;
	hsd_tensor_to_pb(t, &pb);
	Hs__AllocReply ar = HS__ALLOC_REPLY__INIT;
	ar.tensor = &pb.ref;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ALLOC_REPLY;
	m.alloc_reply = &ar;
	hsd_request_reply(s, seq, &m);
}

void hsd_request_emit(struct hsd_session *s, uint64_t seq, const Hs__EmitReq *req)
{
	struct hsd_broker *b = s->broker;
	struct hsd_tensor *t;
	int r = hsd_session_held_tensor(s, req->tensor_id, &t);
	if (r < 0) {
		hsd_session_error(s, seq, r, "emit: tensor %llu not held: %s",
				  (unsigned long long)req->tensor_id, hs__strerror(r));
		return;
	}
	if (!hsd_request_acl_ok(s, seq, ACL_PUBLISH, req->topic))
		return;
	struct hsd_topic *tp;
	r = hsd_request_topic(s, req->topic, &tp);
	if (r < 0) {
		hsd_session_error(s, seq, r, "emit: topic: %s", hs__strerror(r));
		return;
	}
	t->fence_done = req->fence_done; /* the writer synchronised instead */
	/* The reference moves to the topic; on failure it comes back. */
	hsd_session_unhold(s, t);
	uint64_t tseq = 0;
	struct hsd_pending_emit *pe = NULL;
	r = hsd_topic_emit(&b->topics, tp, t, s, seq, &tseq, &pe);
	if (r >= 0)
		hsd_chan_activate_topic(tp);
	if (r < 0) {
		hsd_session_hold(s, t); /* the key was just there: cannot fail for memory */
		if (r == HS_EBUSY) {
			char d[128];
			log_warn("%s: emit on %s refused: %u emits already held back by a full subscriber",
				 hsd_session_describe(s, d, sizeof(d)), tp->name, tp->npending);
		}
		hsd_session_error(s, seq, r, "emit on %s: %s", tp->name,
				  r == HS_EBUSY ? "too many emits held back by a full subscriber"
					    : hs__strerror(r));
		return;
	}
	if (r == 1) {
		list_insert_tail(&s->pending, &pe->owner_link);
		s->npending++;
		s->pending_bytes += hsd_range_round(t->block.length);
		return; /* the reply comes when it is accepted */
	}
	hsd_deliver_emit_accepted(s, seq, tseq);
}

void hsd_request_release(struct hsd_session *s, uint64_t seq, const Hs__ReleaseNote *note)
{
	int first_err = 0;
	uint64_t bad_id = 0;
	size_t nbad = 0;
	for (size_t i = 0; i < note->n_tensor_ids; i++) {
		struct hsd_tensor *t;
		int r = hsd_session_held_tensor(s, note->tensor_ids[i], &t);
		if (r < 0) {
			if (!nbad++) {
				first_err = r;
				bad_id = note->tensor_ids[i];
			}
			continue;
		}
		hsd_session_unhold(s, t);
		hsd_tensor_unref(&s->broker->tensors, t);
	}
	if (nbad) {
		char d[128];
		log_debug("%s: release of %zu ids not held", hsd_session_describe(s, d, sizeof(d)), nbad);
		hsd_session_error(s, seq, first_err, "release: tensor %llu not held (%zu of %zu ids): %s",
				  (unsigned long long)bad_id, nbad, note->n_tensor_ids,
				  hs__strerror(first_err));
	}
}
