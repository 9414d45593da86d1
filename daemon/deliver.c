/* Deliveries: the messages a session gets when the broker core moves a
 * tensor to it (Deliver, for a subscription) or accepts an emit it held
 * back (EmitReply). */
#include "deliver.h"

#include "announce.h"
#include "broker.h"
#include "log.h"
#include "session.h"

void deliver_tensor(struct session *s, uint64_t sub_id, struct tensor *t, uint64_t seq,
		    const char *topic, uint64_t dropped)
{
	if (session_hold(s, t) < 0) {
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
		session_unhold(s, t);
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

void deliver_emit_accepted(struct session *s, uint64_t req_seq, uint64_t seq)
{
	Hs__EmitReply er = HS__EMIT_REPLY__INIT;
	er.seq = seq;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = req_seq;
	m.body_case = HS__MESSAGE__BODY_EMIT_REPLY;
	m.emit_reply = &er;
	outbox_send(s, &m, NULL, 0);
}
