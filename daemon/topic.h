/* Topics: named streams, each with its subscriptions (a bounded queue, a
 * policy when full, credits) and the FIFO of emits held back by a full
 * BLOCK subscriber. Emits to one topic are accepted strictly in order:
 * while any emit is held back, later ones queue behind it.
 *
 * The topic never talks to sockets: it hands a delivery or an accepted
 * held-back emit to its hooks. Topics stay while the daemon runs, so their
 * sequence numbers do not restart, but their number is bounded: at the
 * limit, idle topics (no subscriber, no held-back emit, no live tensor
 * naming them) are freed, and one that comes back starts again at seq 1.
 *
 * A full BLOCK subscriber holds emits back for at most its block_timeout:
 * past it (hsd_topics_expire) it is "stalled", dropped from the emits it held
 * back and from later ones, each counted in its dropped, until it takes a
 * tensor again (docs/security.md). */
#ifndef HS_DAEMON_TOPIC_H
#define HS_DAEMON_TOPIC_H

#include <stdbool.h>
#include <stdint.h>

#include "idmap.h"
#include "list.h"
#include "pring.h"
#include "tensor.h"

struct hsd_sub;
struct hsd_topic;
struct hsd_pending_emit;

struct hsd_topic_hooks {
	/* The queue's reference to t moves to sub->owner; seq is the
	 * tensor's sequence number on sub->topic. */
	void (*deliver)(void *data, struct hsd_sub *sub, struct hsd_tensor *t, uint64_t seq);
	/* A held-back emit was accepted with sequence number seq; pe is
	 * freed right after. */
	void (*accepted)(void *data, struct hsd_pending_emit *pe, uint64_t seq);
	/* sub held an emit back past its block_timeout: it is skipped from
	 * now until it takes a tensor. May be NULL. */
	void (*stalled)(void *data, struct hsd_sub *sub);
	/* An idle topic is about to be freed (may be NULL). */
	void (*freed)(void *data, struct hsd_topic *tp);
	/* The uid of a subscriber's or an emitter's owner, for
	 * other_uid_timeout_us (may be NULL: no such timeout). */
	uint32_t (*owner_uid)(void *data, void *owner);
	void *data;
};

struct hsd_topic {
	uint64_t id;           /* in creation order, as in topics->all */
	char *name;
	struct hsd_topic *hash_next;
	struct hsd_list link;  /* in topics->all */
	struct hsd_list subs;  /* struct hsd_sub.topic_link */
	struct hsd_list pending; /* struct hsd_pending_emit.topic_link, oldest first */
	uint32_t nsubs;
	uint32_t npending;
	uint64_t emitted;      /* last sequence number given */
	uint64_t dropped;
	uint64_t bytes_emitted; /* nbytes of every emit accepted (hsctl stats) */
	bool draining;
	struct hsd_list blocked_link; /* in topics->blocked while npending > 0 */
	bool charged;          /* counted in its creator uid's usage (usage.h) */
	uint32_t uid;          /* that uid */
	/* Pair rings (pair.h): the page its ring producers map, with the
	 * sequence counter, once a producer asked for a route; the route
	 * generation the daemon last wrote there. */
	struct hs__pring_page *page;
	int page_fd;
	uint64_t gen;
};

struct hsd_sub_entry {
	struct hsd_tensor *t;
	uint64_t seq;
};

struct hsd_sub {
	uint64_t id;
	struct hsd_topic *topic;
	void *owner;           /* the session */
	struct hsd_list topic_link;
	struct hsd_list owner_link;
	uint32_t depth;
	uint32_t credits;
	Hs__Policy policy;
	struct hsd_sub_entry *q; /* ring of qcap <= depth entries */
	uint32_t qcap;
	uint32_t head, count;
	uint64_t delivered;
	uint64_t dropped;
	uint64_t block_timeout_us; /* BLOCK: longest an emit waits for it; 0 = none */
	uint64_t stalls;           /* times it passed block_timeout */
	bool stalled;              /* skipped (counted as dropped) while full */
	struct hsd_list pairs;     /* struct hsd_pair.sub_link: rings into it (pair.h) */
};

struct hsd_pending_emit {
	struct hsd_topic *topic;
	struct hsd_tensor *t;  /* holds the emitter's reference; gone (maybe
				* freed) by the time hooks.accepted runs */
	uint64_t bytes;        /* t's block length, for the owner's accounting */
	void *owner;
	uint64_t req_seq;
	uint64_t since_us;     /* when it was held back (hsd_tensor_now_us) */
	struct hsd_list topic_link;
	struct hsd_list owner_link;
};

struct hsd_topics {
	struct hsd_idmap index; /* name hash -> first topic of its chain */
	struct hsd_list all;
	struct hsd_list blocked; /* topics with held-back emits */
	uint32_t n;
	uint32_t max;
	uint32_t max_pending;  /* held-back emits per topic */
	/* The longest a BLOCK subscriber of another uid than the emitter
	 * holds an emit back, whatever it asked for; 0 = no such bound.
	 * The uid is the trust boundary (docs/security.md): a pipeline's own
	 * slow stage is waited for, another user's is not. */
	uint64_t other_uid_timeout_us;
	uint64_t next_sub_id;
	uint64_t next_topic_id;
	struct hsd_tensor_table *tt;
	struct hsd_topic_hooks hooks;
};

#define TOPICS_DEFAULT_MAX 65536u
#define TOPIC_DEFAULT_MAX_PENDING 4096u
#define SUB_MAX_DEPTH 65536u
#define SUB_MAX_CREDITS (1u << 30)

void hsd_topics_init(struct hsd_topics *ts, struct hsd_tensor_table *tt, uint32_t max_topics,
		     uint32_t max_pending, const struct hsd_topic_hooks *hooks);
/* Frees every topic; subscriptions and held-back emits must be gone. */
void hsd_topics_fini(struct hsd_topics *ts);

/* Frees every idle topic (no subscriber, no emit held back, no live
 * tensor naming it) and returns how many. Scans every tensor and topic:
 * for when a limit is reached. */
uint32_t hsd_topics_evict_idle(struct hsd_topics *ts);

/* Finds (and with create, makes) a topic. 0, HS_ETOPIC, HS_ENAMETOOLONG,
 * HS_ENOENT (absent, !create), HS_ELIMIT (too many topics), HS_ENOMEM. */
int hsd_topics_get(struct hsd_topics *ts, const char *name, bool create, struct hsd_topic **out);

/* depth 1..SUB_MAX_DEPTH, credits >= 1, a known policy; else HS_EINVAL.
 * block_timeout_ms: how long a full BLOCK subscription may hold an emit
 * back (0: no limit). */
int hsd_topic_subscribe(struct hsd_topics *ts, struct hsd_topic *tp, void *owner, uint32_t depth,
			Hs__Policy policy, uint32_t credits, uint32_t block_timeout_ms,
			struct hsd_sub **out);
/* Releases what is queued, frees sub, and lets held-back emits go on. */
void hsd_topic_unsubscribe(struct hsd_topics *ts, struct hsd_sub *sub);

/* Emits t on tp; the caller's reference to t moves to the topic.
 * Returns 0 with *seq (accepted now), 1 with *held (held back: its reply
 * comes through hooks.accepted), or HS_EBUSY (too many held-back emits:
 * the caller keeps its reference) / HS_ENOMEM. */
int hsd_topic_emit(struct hsd_topics *ts, struct hsd_topic *tp, struct hsd_tensor *t, void *owner,
		   uint64_t req_seq, uint64_t *seq, struct hsd_pending_emit **held);
/* Cancels a held-back emit: its reference is released, pe freed. */
void hsd_topic_cancel(struct hsd_topics *ts, struct hsd_pending_emit *pe);

/* Stalls every full BLOCK subscriber whose block_timeout the oldest
 * held-back emit of its topic has waited out by now_us, and lets the
 * emits go on. Returns when it must run again (a hsd_tensor_now_us time), or
 * UINT64_MAX when no emit is held back with a timeout pending. */
uint64_t hsd_topics_expire(struct hsd_topics *ts, uint64_t now_us);

/* The highest sequence number tp gave (hsctl ls): with a topic page,
 * counting the numbers its ring producers took. */
uint64_t hsd_topic_emitted(const struct hsd_topic *tp);

/* Adds n credits (saturating) and delivers what the credits allow. */
void hsd_sub_credit(struct hsd_topics *ts, struct hsd_sub *sub, uint32_t n);

#endif
