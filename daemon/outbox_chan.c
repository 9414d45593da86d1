/* The shared-memory channel as an outbox transport (channel.h): a message
 * is a record in the channel's ring, the client kicked at most once per
 * pass (and not at all for the reply to a posted request); a message with
 * fds, or too large for a record, is a datagram on the socket that a
 * record marks, so the client reads everything in the order it was sent.
 * A full ring queues in the outbox until the client makes room and kicks. */
#include "outbox.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "hsbroker/error.h"
#include "channel.h"
#include "log.h"
#include "session.h"

static int chan_flush(struct hsd_session *s);

static int ring_full(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds,
		     size_t len, int route)
{
	int r = hsd_outbox_enqueue(s, msg, fds, nfds, route);
	if (r < 0)
		return r;
	hsd_chan_activate(s); /* passes flush it */
	/* The client kicks us once it made room; if it already did, go on. */
	if (!hs__chan_want_space(&s->chan->ch.tx, route == OUT_RING ? len : 0))
		chan_flush(s);
	return 0;
}

static int send_failed(struct hsd_session *s, int err)
{
	char why[96];
	if (err == -EPROTO)
		snprintf(why, sizeof(why), "corrupt channel indices");
	else
		snprintf(why, sizeof(why), "send: %s", strerror(-err));
	hsd_session_kill(s, why);
	return HS_EPIPE;
}

static int chan_send(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds)
{
	struct hsd_chan_state *c = s->chan;
	size_t len = hs__message__get_packed_size(msg);
	if (len > HS__WIRE_MAX_MSG) {
		log_error("message %s too large to send", hs__wire_body_name(msg));
		return HS_EMSGSIZE;
	}
	bool sock = nfds > 0 || len > HS__CHAN_MAX_RECORD;
	int route = sock ? OUT_MARKED : OUT_RING;
	if (hsd_outbox_first(s))
		return hsd_outbox_enqueue(s, msg, fds, nfds, route); /* keep the order */
	int r = hs__chan_put(&c->ch.tx, sock ? HS__CHAN_SOCKET : HS__CHAN_MSG, sock ? NULL : msg,
			     len);
	if (r == -EAGAIN)
		return ring_full(s, msg, fds, nfds, len, route);
	if (r < 0)
		return send_failed(s, r);
	/* The reply to a posted request waits for the client's next look. */
	if (msg->seq == 0 || msg->seq != s->quiet_seq)
		c->kick = true;
	hsd_chan_activate(s); /* for the kick, and notes_wake may change */
	if (!sock)
		return 0;
	r = hs__wire_send(s->fd, msg, fds, nfds);
	if (r == 0)
		return 0;
	if (r == -EAGAIN) {
		/* The record is out: the client waits on the socket for it. */
		r = hsd_outbox_enqueue(s, msg, fds, nfds, OUT_MARK_SENT);
		if (r == 0)
			hsd_outbox_want_write(s, true);
		return r;
	}
	return send_failed(s, r);
}

static int chan_flush(struct hsd_session *s)
{
	struct hsd_chan_state *c = s->chan;
	struct hsd_out_msg *m;
	while ((m = hsd_outbox_first(s))) {
		if (s->dead)
			return HS_EPIPE;
		int r;
		if (m->route == OUT_RING || m->route == OUT_MARKED) {
			/* Queued packed: a record takes the bytes as they are. */
			bool ring = m->route == OUT_RING;
			r = hs__chan_put_bytes(&c->ch.tx, ring ? HS__CHAN_MSG : HS__CHAN_SOCKET,
					       m->data, ring ? m->len : 0);
			if (r == -EAGAIN) {
				if (hs__chan_want_space(&c->ch.tx, ring ? m->len : 0))
					return 1;
				continue;
			}
			if (r < 0)
				return send_failed(s, r);
			c->kick = true;
			hsd_chan_activate(s);
			if (!ring) {
				m->route = OUT_MARK_SENT;
				continue; /* its datagram next round */
			}
		} else {
			/* The wire layer sends Messages: decode the copy again.
			 * Only datagrams behind a full socket come this way. */
			Hs__Message *msg;
			if (hs__wire_decode(m->data, m->len, &msg) < 0) {
				hsd_session_kill(s, "undecodable queued message");
				return HS_EPIPE;
			}
			r = hs__wire_send(s->fd, msg, m->fds, m->nfds);
			hs__wire_free(msg);
			if (r == -EAGAIN) {
				hsd_outbox_want_write(s, true);
				return 1;
			}
			if (r < 0)
				return send_failed(s, r);
		}
		hsd_outbox_pop(s, m);
	}
	hsd_outbox_want_write(s, false);
	return 0;
}

const struct hsd_outbox_transport hsd_outbox_chan = {
	.name = "channel",
	.send = chan_send,
	.flush = chan_flush,
};

bool hsd_outbox_chan_waiting(struct hsd_session *s)
{
	struct hsd_out_msg *m = hsd_outbox_first(s);
	return m && m->route != OUT_MARK_SENT;
}
