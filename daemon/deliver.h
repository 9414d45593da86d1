/* What the broker core pushes to a session (deliver.c). */
#ifndef HS_DAEMON_DELIVER_H
#define HS_DAEMON_DELIVER_H

#include <stdint.h>

struct hsd_session;
struct hsd_tensor;

/* s takes over one reference to t already counted in t->refs and gets
 * Deliver for its subscription sub_id (t's memory announced first). A
 * delivery that cannot be announced, or held for want of memory, is
 * dropped and its reference given back. */
void hsd_deliver_tensor(struct hsd_session *s, uint64_t sub_id, struct hsd_tensor *t, uint64_t seq,
			const char *topic, uint64_t dropped);
/* EmitReply{seq} to s's held-back emit req_seq, now accepted. */
void hsd_deliver_emit_accepted(struct hsd_session *s, uint64_t req_seq, uint64_t seq);

#endif
