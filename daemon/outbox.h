/* Everything the daemon sends a client leaves through here. A message goes
 * out on the session's transport at once, or waits in the session's
 * outbox, in the order it was sent, until the transport has room; its
 * fds are dup'd while it waits and travel beside it (SCM_RIGHTS), never
 * inside it. The outbox enforces the limits (outbox_max_msgs and
 * outbox_max_bytes for one session, outbox_total_bytes for all of them):
 * a peer that does not read is disconnected, not waited for.
 *
 * A transport is a small ops table: the socket (outbox_socket.c) until
 * the client's shared-memory channel is up, then the channel
 * (outbox_chan.c). A new transport is a new file with its own table.
 * Pair rings carry no messages: their RingAnnounce and RingClose go out
 * through here like any other message. */
#ifndef HS_DAEMON_OUTBOX_H
#define HS_DAEMON_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "wire.h"

struct session;

/* Where a queued message goes. The channel's transport uses all four:
 * a message with fds, or too large for a record, is a datagram on the
 * socket that a channel record marks, so the client reads it in order. */
enum out_route {
	OUT_SOCKET = 0,      /* the socket (no channel) */
	OUT_RING = 1,        /* a channel record */
	OUT_MARKED = 2,      /* the socket, after a channel record marks it */
	OUT_MARK_SENT = 3,   /* that record is written; the datagram is not */
};

/* A message waiting in the outbox, packed. */
struct out_msg {
	struct list link;
	size_t len;
	int route;
	int nfds;
	int fds[HS__WIRE_MAX_FDS];
	uint8_t data[];
};

struct outbox_transport {
	const char *name;
	/* Sends msg (fds borrowed) now, or queues it with outbox_enqueue:
	 * behind anything already queued, always. Called for a session
	 * that is not dead. 0, HS_EPIPE (killed) or HS_EMSGSIZE. */
	int (*send)(struct session *s, const Hs__Message *msg, const int *fds, int nfds);
	/* Sends what the outbox holds: 0 when it is empty, 1 when the
	 * transport filled again, HS_EPIPE when the peer is gone (killed). */
	int (*flush)(struct session *s);
};

extern const struct outbox_transport outbox_socket;
extern const struct outbox_transport outbox_chan;

/* One session's outgoing side. */
struct outbox {
	const struct outbox_transport *tx;
	struct list msgs;        /* struct out_msg, oldest first */
	uint32_t nmsgs;
	uint64_t bytes;
};

/* On the socket, empty. */
void outbox_init(struct outbox *o);

/* Sends msg with fds (borrowed: dup'd when queued) on s's transport. A
 * full transport queues a copy; a peer that lets its outbox pass the
 * limits, or is gone, is marked dead. Returns 0 (sent or queued),
 * HS_EPIPE (dead), HS_EMSGSIZE. */
int outbox_send(struct session *s, const Hs__Message *msg, const int *fds, int nfds);

/* Sends what s's outbox holds: 0 when it is empty, 1 when the transport
 * filled again, HS_EPIPE when the peer is gone (marked dead). */
int outbox_flush(struct session *s);

/* Moves s to another transport (the channel, once announced). */
void outbox_use(struct session *s, const struct outbox_transport *tx);

/* For transports. Queues a copy of msg (and dups of fds) on route; kills
 * a session whose outbox passes the limits. 0, HS_EPIPE or HS_EMSGSIZE. */
int outbox_enqueue(struct session *s, const Hs__Message *msg, const int *fds, int nfds,
		   int route);
/* The oldest message queued, or NULL. */
struct out_msg *outbox_first(struct session *s);
/* Takes m (the first in s's outbox, sent or given up) out and frees it,
 * keeping the session's and the broker's counts. */
void outbox_pop(struct session *s, struct out_msg *m);
/* Frees everything s's outbox holds (s is closing, or was dropped). */
void outbox_clear(struct session *s);
/* Asks the I/O layer to watch s's socket for writability, or to stop. */
void outbox_want_write(struct session *s, bool on);

/* Sends ErrorReply{seq 0, code, text} on a connection the daemon refuses
 * before it has a session (best effort, nothing queued). */
void outbox_refuse(int fd, int code, const char *text);

/* The channel's transport: whether records wait for room in the ring (a
 * datagram waiting for a full socket does not count: the socket's
 * writability flushes it). */
bool outbox_chan_waiting(struct session *s);

#endif
