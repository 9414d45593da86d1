/* One client connection (session.c): its credentials (SO_PEERCRED),
 * name, the references it holds (tensor id -> count), its subscriptions
 * and held-back emits, the slabs already announced to it (announce.h),
 * and its outbox (outbox.h). Its requests are request.h's. */
#ifndef HS_DAEMON_SESSION_H
#define HS_DAEMON_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "idmap.h"
#include "list.h"
#include "outbox.h"
#include "wire.h"

struct hsd_broker;
struct hsd_tensor;
struct hsd_chan_state;

struct hsd_session {
	struct hsd_broker *broker;
	uint64_t id;
	int fd;                  /* not owned */
	pid_t pid;
	uid_t uid;
	gid_t gid;
	char name[HS__MAX_NAME + 1];
	bool hello_done;
	bool dead;               /* closing, or must be closed: sends are dropped */
	int refuse;              /* 0, or the code its first datagram gets before
				  * it is closed (HS_ELIMIT: its uid is at
				  * max_connections_per_uid) */
	uint64_t created_us;

	struct hsd_idmap held;   /* tensor id -> references held */
	uint64_t refs_held;      /* sum of the counts */
	uint64_t bytes_held;     /* block bytes of distinct tensors held */
	struct hsd_list subs;    /* struct hsd_sub.owner_link */
	uint32_t nsubs;
	struct hsd_list pending; /* struct hsd_pending_emit.owner_link */
	uint32_t npending;       /* held-back emits: their references still */
	uint64_t pending_bytes;  /* count against this session's limits */
	struct hsd_idmap slabs;  /* slab id -> struct hsd_slab *, announced */
	struct hsd_idmap events; /* fence event ids announced (EventAnnounce) */

	struct hsd_chan_state *chan; /* the shared-memory channel, once set up */
	bool rings;              /* pair rings on (pair.h): asked, and allowed */
	struct hsd_list pairs_out; /* struct hsd_pair.prod_link: rings it writes */
	struct hsd_idmap routes; /* topic ids it asked a route for */
	uint64_t *ref_drops;     /* its references that went with a ring note */
	size_t n_ref_drops, cap_ref_drops; /* (HS__PRING_NOTE_LAST), dropped once
				  * all its rings are settled (pair.c) */
	bool pairs_settling;     /* inside that settling (pair.c) */
	bool announcing;         /* passing an announcement down its rings */
	uint64_t quiet_seq;      /* the request being handled was posted: its
				  * reply need not wake the client */

	struct hsd_outbox out;   /* what waits to be sent, and how (outbox.h) */

	struct hsd_uid_usage *usage; /* its uid's (usage.h): lives while s does */
	struct hsd_list link;    /* in broker->sessions */
	void *io;                /* the I/O layer's */
};

/* Sends ErrorReply{code, message} echoing seq. */
void hsd_session_error(struct hsd_session *s, uint64_t seq, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* A protocol violation: logged at warn, told to the peer; returns code
 * (the caller disconnects). */
int hsd_session_violation(struct hsd_session *s, int code, const char *what);

/* References (the session's own: counted in t->refs too). hsd_session_hold:
 * s takes over one reference already counted (0 or HS_ENOMEM);
 * hsd_session_unhold: s gives one up, moved elsewhere or to be dropped by the
 * caller (false when it held none); hsd_session_take_ref: s takes one more
 * (counted in t->refs); hsd_session_give_back: drops one of s's references to
 * id (0, HS_ENOENT, HS_ESTALE); hsd_session_holds: whether s holds id. */
int hsd_session_hold(struct hsd_session *s, struct hsd_tensor *t);
bool hsd_session_unhold(struct hsd_session *s, struct hsd_tensor *t);
bool hsd_session_holds(struct hsd_session *s, uint64_t id);
int hsd_session_take_ref(struct hsd_session *s, struct hsd_tensor *t);
int hsd_session_give_back(struct hsd_session *s, uint64_t id);
/* The tensor with that id if s holds it: 0, HS_ENOENT or HS_ESTALE. A
 * tensor that exists but is not held is HS_ENOENT, as if absent: sessions
 * cannot probe each other's ids. */
int hsd_session_held_tensor(struct hsd_session *s, uint64_t id, struct hsd_tensor **out);

/* Marks s dead and tells the I/O layer once; why (may be NULL when it was
 * logged already) goes to the log. */
void hsd_session_kill(struct hsd_session *s, const char *why);

/* "session 3 (pid 12 uid 1000 'name')" for log lines. */
const char *hsd_session_describe(const struct hsd_session *s, char *buf, size_t size);

/* Internal to the core (broker.c). */
void hsd_session_init(struct hsd_session *s, struct hsd_broker *b, uint64_t id, int fd, pid_t pid,
		      uid_t uid, gid_t gid);
void hsd_session_release_all(struct hsd_session *s);
/* A held-back emit of s, of a tensor of bytes, was accepted. */
void hsd_session_pending_done(struct hsd_session *s, uint64_t bytes);

#endif
