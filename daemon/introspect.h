/* ListReply: a snapshot of pools, topics, clients and tensors for hsctl,
 * trimmed to fit one datagram (HS__WIRE_MAX_MSG). */
#ifndef HS_DAEMON_INTROSPECT_H
#define HS_DAEMON_INTROSPECT_H

#include <stdint.h>

#include "wire.h"

struct session;

/* Builds and sends the ListReply answering request seq. */
void introspect_reply(struct session *s, uint64_t seq, Hs__ListWhat what);

#endif
