/* A client's requests (request.c): the entry point for everything a
 * session's peer sends, and the handlers it dispatches to, by area
 * (request_tensor.c, request_topic.c). Each handler answers the request
 * (a reply, or an ErrorReply echoing seq) or holds the answer back. */
#ifndef HS_DAEMON_REQUEST_H
#define HS_DAEMON_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "acl.h"
#include "wire.h"

struct session;
struct topic;

/* Handles one datagram from the peer (fds it carried, nfds of them, are
 * taken: a client may send none, so they are closed and that is a protocol
 * error). Returns 0, or a negative hs code meaning "disconnect this peer"
 * (an ErrorReply has been sent when one could be). */
int request_input(struct session *s, const uint8_t *buf, size_t len, int *fds, int nfds);

/* For the handlers. Sends m as the reply to seq. */
void request_reply(struct session *s, uint64_t seq, Hs__Message *m);
/* The [acl] allow lists: false (refused, logged, told) or true. */
bool request_acl_ok(struct session *s, uint64_t seq, enum acl_action action,
		    const char *topic);
/* The topic named name, made for s (charged to its uid, usage.h) when it
 * does not exist: 0, HS_ELIMIT (logged: max_topics, or the uid's
 * max_topics_per_uid) or topics_get's errors. */
int request_topic(struct session *s, const char *name, struct topic **out);

void request_alloc(struct session *s, uint64_t seq, const Hs__AllocReq *req);
void request_emit(struct session *s, uint64_t seq, const Hs__EmitReq *req);
void request_release(struct session *s, uint64_t seq, const Hs__ReleaseNote *note);
void request_route(struct session *s, uint64_t seq, const Hs__RouteReq *req);
void request_subscribe(struct session *s, uint64_t seq, const Hs__SubscribeReq *req);
void request_unsubscribe(struct session *s, uint64_t seq, const Hs__UnsubscribeReq *req);
void request_credit(struct session *s, uint64_t seq, const Hs__CreditNote *note);

#endif
