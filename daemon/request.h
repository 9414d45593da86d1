/* A client's requests (request.c): the entry point for everything a
 * session's peer sends, and the handlers it dispatches to, by area
 * (request_tensor.c, hsd_request_topic.c). Each handler answers the request
 * (a reply, or an ErrorReply echoing seq) or holds the answer back. */
#ifndef HS_DAEMON_REQUEST_H
#define HS_DAEMON_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "wire.h"

struct hsd_session;
struct hsd_topic;

/* Handles one datagram from the peer (fds it carried, nfds of them, are
 * taken: a client may send none, so they are closed and that is a protocol
 * error). Returns 0, or a negative hs code meaning "disconnect this peer"
 * (an ErrorReply has been sent when one could be). */
int hsd_request_input(struct hsd_session *s, const uint8_t *buf, size_t len, int *fds, int nfds);

/* For the handlers. Sends m as the reply to seq. */
void hsd_request_reply(struct hsd_session *s, uint64_t seq, Hs__Message *m);
/* The [acl] allow lists: false (refused, logged, told) or true. */
bool hsd_request_acl_ok(struct hsd_session *s, uint64_t seq, enum hsd_acl_action action,
			const char *topic);
/* The topic named name, made for s (charged to its uid, usage.h) when it
 * does not exist: 0, HS_ELIMIT (logged: max_topics, or the uid's
 * max_topics_per_uid) or hsd_topics_get's errors. */
int hsd_request_topic(struct hsd_session *s, const char *name, struct hsd_topic **out);

void hsd_request_alloc(struct hsd_session *s, uint64_t seq, const Hs__AllocReq *req);
void hsd_request_emit(struct hsd_session *s, uint64_t seq, const Hs__EmitReq *req);
void hsd_request_release(struct hsd_session *s, uint64_t seq, const Hs__ReleaseNote *note);
void hsd_request_route(struct hsd_session *s, uint64_t seq, const Hs__RouteReq *req);
void hsd_request_subscribe(struct hsd_session *s, uint64_t seq, const Hs__SubscribeReq *req);
void hsd_request_unsubscribe(struct hsd_session *s, uint64_t seq, const Hs__UnsubscribeReq *req);
void hsd_request_credit(struct hsd_session *s, uint64_t seq, const Hs__CreditNote *note);

#endif
