/* What the broker core pushes to a session (deliver.c). */
#ifndef HS_DAEMON_DELIVER_H
#define HS_DAEMON_DELIVER_H

#include <stdint.h>

struct session;
struct tensor;

/* s takes over one reference to t already counted in t->refs and gets
 * Deliver for its subscription sub_id (t's memory announced first). A
 * delivery that cannot be announced, or held for want of memory, is
 * dropped and its reference given back. */
void deliver_tensor(struct session *s, uint64_t sub_id, struct tensor *t, uint64_t seq,
		    const char *topic, uint64_t dropped);
/* EmitReply{seq} to s's held-back emit req_seq, now accepted. */
void deliver_emit_accepted(struct session *s, uint64_t req_seq, uint64_t seq);

#endif
