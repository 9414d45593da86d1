/* Everything the daemon sends a client leaves through here. A message goes
 * out on the session's transport at once, or waits in the session's
 * outbox, in the order it was sent, until the transport has room; its
 * fds are dup'd while it waits and travel beside it (SCM_RIGHTS), never
 * inside it. The outbox enforces the limits (outbox_max_msgs and
 * outbox_max_bytes for one session, outbox_total_bytes for all of them):
 * a peer that does not read is disconnected, not waited for.
 *
 * A transport is a small ops table: the socket (hsd_outbox_socket.c) until
 * the client's shared-memory channel is up, then the channel
 * (hsd_outbox_chan.c). A new transport is a new file with its own table.
 * Pair rings carry no messages: their RingAnnounce and RingClose go out
 * through here like any other message. */
#ifndef HS_DAEMON_OUTBOX_H
#define HS_DAEMON_OUTBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "list.h"
#include "wire.h"

struct hsd_session;

/* Where a queued message goes. The channel's transport uses all four:
 * a message with fds, or too large for a record, is a datagram on the
 * socket that a channel record marks, so the client reads it in order. */
enum hsd_out_route {
	OUT_SOCKET = 0,      /* the socket (no channel) */
	OUT_RING = 1,        /* a channel record */
	OUT_MARKED = 2,      /* the socket, after a channel record marks it */
	OUT_MARK_SENT = 3,   /* that record is written; the datagram is not */
};

/* A message waiting in the outbox, packed. */
struct hsd_out_msg {
	struct hsd_list link;
	size_t len;
	int route;
	int nfds;
	int fds[HS__WIRE_MAX_FDS];
	uint8_t data[];
};

struct hsd_outbox_transport {
	const char *name;
	/* Sends msg (fds borrowed) now, or queues it with hsd_outbox_enqueue:
	 * behind anything already queued, always. Called for a session
	 * that is not dead. 0, HS_EPIPE (killed) or HS_EMSGSIZE. */
	int (*send)(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds);
	/* Sends what the outbox holds: 0 when it is empty, 1 when the
	 * transport filled again, HS_EPIPE when the peer is gone (killed). */
	int (*flush)(struct hsd_session *s);
};

extern const struct hsd_outbox_transport hsd_outbox_socket;
extern const struct hsd_outbox_transport hsd_outbox_chan;

/* One session's outgoing side. */
struct hsd_outbox {
	const struct hsd_outbox_transport *tx;
	struct hsd_list msgs;    /* struct hsd_out_msg, oldest first */
	uint32_t nmsgs;
	uint64_t bytes;
};

/* On the socket, empty. */
void hsd_outbox_init(struct hsd_outbox *o);

/* Sends msg with fds (borrowed: dup'd when queued) on s's transport. A
 * full transport queues a copy; a peer that lets its outbox pass the
 * limits, or is gone, is marked dead. Returns 0 (sent or queued),
 * HS_EPIPE (dead), HS_EMSGSIZE. */
int hsd_outbox_send(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds);

/* Sends what s's outbox holds: 0 when it is empty, 1 when the transport
 * filled again, HS_EPIPE when the peer is gone (marked dead). */
int hsd_outbox_flush(struct hsd_session *s);

/* Moves s to another transport (the channel, once announced). */
void hsd_outbox_use(struct hsd_session *s, const struct hsd_outbox_transport *tx);

/* For transports. Queues a copy of msg (and dups of fds) on route; kills
 * a session whose outbox passes the limits. 0, HS_EPIPE or HS_EMSGSIZE. */
int hsd_outbox_enqueue(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds,
		       int route);
/* The oldest message queued, or NULL. */
struct hsd_out_msg *hsd_outbox_first(struct hsd_session *s);
/* Takes m (the first in s's outbox, sent or given up) out and frees it,
 * keeping the session's and the broker's counts. */
void hsd_outbox_pop(struct hsd_session *s, struct hsd_out_msg *m);
/* Frees everything s's outbox holds (s is closing, or was dropped). */
void hsd_outbox_clear(struct hsd_session *s);
/* Asks the I/O layer to watch s's socket for writability, or to stop. */
void hsd_outbox_want_write(struct hsd_session *s, bool on);

/* Sends ErrorReply{seq 0, code, text} on a connection the daemon refuses
 * before it has a session (best effort, nothing queued). */
void hsd_outbox_refuse(int fd, int code, const char *text);

/* The channel's transport: whether records wait for room in the ring (a
 * datagram waiting for a full socket does not count: the socket's
 * writability flushes it). */
bool hsd_outbox_chan_waiting(struct hsd_session *s);

#endif
