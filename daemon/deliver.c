/* Deliveries: the messages a session gets when the broker core moves a
 * tensor to it (Deliver, for a subscription) or accepts an emit it held
 * back (EmitReply). */
#include "deliver.h"

#include "announce.h"
#include "broker.h"
#include "log.h"
#include "session.h"

void hsd_deliver_tensor(struct hsd_session *s, uint64_t sub_id, struct hsd_tensor *t, uint64_t seq,
			const char *topic, uint64_t dropped)
{
	if (hsd_session_hold(s, t) < 0) {
		log_error("out of memory delivering tensor %llu: dropped",
			  (unsigned long long)t->id);
		hsd_tensor_unref(&s->broker->tensors, t);
		return;
	}
	if (s->dead)
		return; /* released when the session is closed */
	if (hsd_announce_tensor(s, t) < 0) {
		/* The peer cannot use a TensorRef to memory it was not told
		 * of: drop the delivery rather than pin the tensor until the
		 * session closes. */
		log_error("cannot announce tensor %llu's memory: delivery dropped",
			  (unsigned long long)t->id);
		hsd_session_unhold(s, t);
		hsd_tensor_unref(&s->broker->tensors, t);
		return;
	}
	struct hsd_tensor_pb pb;
	hsd_tensor_to_pb(t, &pb);
	pb.ref.seq = seq;
	pb.ref.topic = (char *)topic;
	pb.ref.subscription = sub_id;
	Hs__Deliver d = HS__DELIVER__INIT;
	d.tensor = &pb.ref;
	d.dropped = dropped;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_DELIVER;
	m.deliver = &d;
	hsd_outbox_send(s, &m, NULL, 0);
}

void hsd_deliver_emit_accepted(struct hsd_session *s, uint64_t req_seq, uint64_t seq)
{
	Hs__EmitReply er = HS__EMIT_REPLY__INIT;
	er.seq = seq;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = req_seq;
	m.body_case = HS__MESSAGE__BODY_EMIT_REPLY;
	m.emit_reply = &er;
	hsd_outbox_send(s, &m, NULL, 0);
}
