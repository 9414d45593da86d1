/* ListReply: pools, topics, clients and tensors for hsctl, one page per
 * datagram (HS__WIRE_MAX_MSG): a listing that does not fit says where the
 * next page starts (ListReply.next), so counts are exact however many
 * items there are (issue 11 row 11). */
#ifndef HS_DAEMON_INTROSPECT_H
#define HS_DAEMON_INTROSPECT_H

#include <stdint.h>

#include "wire.h"

struct hsd_session;

/* Builds and sends the page of the listing req asks for, answering seq. */
void hsd_introspect_reply(struct hsd_session *s, uint64_t seq, const Hs__ListReq *req);

#endif
