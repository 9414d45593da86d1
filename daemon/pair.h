/* Pair rings on the daemon's side (docs/design.md, "pair rings"): one
 * ring per (producer session, subscription) of one uid, made when the
 * producer asks for its route on a topic or when a subscription comes to
 * a topic that has ring producers, handed to both ends, then only
 * watched: the daemon settles the notes the producer wrote (each becomes
 * one reference of the subscriber's session) before it handles anything
 * either end sent and when either end goes, and closes the ring when the
 * pair ends. The daemon never relays a ring's tensors. */
#ifndef HS_DAEMON_PAIR_H
#define HS_DAEMON_PAIR_H

#include <stdbool.h>
#include <stdint.h>

#include "list.h"
#include "pring.h"

struct hsd_session;
struct hsd_sub;
struct hsd_topic;

struct hsd_pair {
	uint64_t id;
	struct hs__pring r;      /* the daemon's view: settles */
	/* Wake-ups: the subscriber sleeps on its channel's eventfd (the
	 * producer gets a copy to kick it: only the subscriber reads it,
	 * and the producer is of its uid); the producer on efd_space. */
	int efd_space;
	struct hsd_session *prod;
	struct hsd_sub *sub;     /* sub->owner is the subscriber's session */
	struct hsd_list prod_link; /* in prod->pairs_out */
	struct hsd_list sub_link; /* in sub->pairs */
	bool broken;             /* a bad note: no longer settled */
	bool settling;           /* being settled (settling may recurse) */
};

/* Whether s may have rings: it asked and the daemon has them on. */
bool hsd_pair_capable(const struct hsd_session *s);

/* RouteReq of s on tp: makes the missing rings from s to every
 * subscription of tp whose session is of s's uid and ring capable,
 * announces them, and says whether some subscription has none (relay).
 * Makes the topic page when tp has none. 0 or a negative hs code. */
int hsd_pair_route(struct hsd_session *s, struct hsd_topic *tp, bool *relay);

/* A subscription is made: the topic's route generation moves before its
 * SubscribeReply is sent (hsd_pair_subscribing), so that a producer emitting
 * after the subscriber heard of it asks for its route again; then, after
 * the reply (which links the subscription in the client), the rings from
 * every producer of its uid that has a route on the topic
 * (hsd_pair_subscribed). A producer asking in between is answered only after
 * both: the daemon handles one request at a time. */
void hsd_pair_subscribing(struct hsd_sub *sub);
void hsd_pair_subscribed(struct hsd_session *s, struct hsd_sub *sub);

/* Settles every ring s writes or reads (before handling its input). */
void hsd_pair_settle_session(struct hsd_session *s);

/* The subscription goes (unsubscribe, or its session closes): its rings
 * are settled and closed, the producers told. Call before the sub is
 * freed. */
void hsd_pair_sub_gone(struct hsd_sub *sub);
/* s closes: the rings it writes are settled and closed, their
 * subscribers told. Call before s releases what it holds. */
void hsd_pair_producer_gone(struct hsd_session *s);

/* Notes written and not taken on sub's rings (hsctl ls). */
uint32_t hsd_pair_queued(struct hsd_sub *sub);

/* Notes sub's producers dropped under its policy, as the rings say
 * (hsctl ls). */
uint64_t hsd_pair_dropped(struct hsd_sub *sub);

#endif
