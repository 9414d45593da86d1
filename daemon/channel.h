/* A session's shared-memory channel (proto/chan.h): set up at hello when
 * the client asks, then every message both ways goes through its rings
 * (the daemon's way out is the outbox's channel transport, outbox.h).
 * The daemon drains all channels in one pass whenever it wakes, so a
 * client that finds the daemon busy needs no syscall to be heard, and
 * kicks each client at most once per pass. One-way notes (release,
 * credit) do not wake the daemon unless something waits on them. */
#ifndef HS_DAEMON_CHANNEL_H
#define HS_DAEMON_CHANNEL_H

#include <stdbool.h>

#include "list.h"

#include "chan.h"
#include "wire.h"

struct hsd_broker;
struct hsd_session;

struct hsd_chan_state {
	struct hs__chan ch;
	int memfd;
	int efd_daemon;      /* the client writes it; the I/O layer polls it */
	int efd_client;      /* the daemon writes it */
	bool kick;           /* records written since the client was kicked */
	bool notes_wake;     /* what hdr->notes_wake was last set to (the
			      * shared line is written only on a change) */
	struct hsd_session *owner;
	bool active;         /* on broker->chan_active */
	struct hsd_list active_link;
};

/* Makes a channel for s, or NULL (logged): s stays on its socket. */
struct hsd_chan_state *hsd_chan_create(struct hsd_session *s);
/* Sends ChannelAnnounce on the socket and uses ch from then on (after the
 * HelloReply that said it comes). On failure s is killed. */
void hsd_chan_start(struct hsd_session *s, struct hsd_chan_state *ch);
/* Unmaps and closes (hsd_broker_session_close); s is back on the socket
 * transport. */
void hsd_chan_close(struct hsd_session *s);

/* Handles up to budget records of s. Returns how many, or a negative hs
 * code meaning "disconnect s" (as hsd_request_input). */
int hsd_chan_drain(struct hsd_session *s, int budget);

/* Puts s's channel on the broker's active list (no-op without a channel):
 * its client kicked, it got records to kick the client for, or what it
 * waits on changed. */
void hsd_chan_activate(struct hsd_session *s);
/* After an emit on tp: subscribers whose queue holds tensors waiting for
 * credit, or all of them while emits are held back, now wait on their
 * notes (notes_wake), though nothing was sent to them. */
struct hsd_topic;
void hsd_chan_activate_topic(struct hsd_topic *tp);

/* One pass over the active channels (issue 11: O(active), not O(all)):
 * drains, writes notes_wake, kicks clients that got records. With arm,
 * also arms every drained channel for the daemon's sleep; a channel
 * leaves the active list only once armed (its client then kicks to come
 * back) with nothing queued for its ring. Spinning (arm false) keeps them
 * all active. Sessions that must be closed are reported through the
 * broker's dead hook. Returns true when records are still waiting (do not
 * sleep). skip (may be NULL) is left alone: the session being handled.
 * *handled (may be NULL) grows by the records handled. */
bool hsd_broker_chan_pass(struct hsd_broker *b, bool arm, struct hsd_session *skip, int *handled);

/* From inside a handler of s: handles what every other channel holds
 * (releases its client did not wake us for, say) now: a walk over all
 * sessions, for the rare callers (an exhausted pool, a listing). False
 * when already inside such a pass. */
bool hsd_broker_chan_catch_up(struct hsd_broker *b, struct hsd_session *s);

#endif
