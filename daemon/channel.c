/* The daemon's side of the shared-memory channel. */
#include "channel.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "broker.h"
#include "log.h"
#include "pair.h"
#include "session.h"
#include "topic.h"

/* Records handled per session per pass, so one busy client cannot
 * starve the others. */
#define CHAN_BATCH 64

static void chan_state_free(struct chan_state *c)
{
	hs__chan_unmap(&c->ch);
	if (c->memfd >= 0)
		close(c->memfd);
	if (c->efd_daemon >= 0)
		close(c->efd_daemon);
	if (c->efd_client >= 0)
		close(c->efd_client);
	free(c);
}

struct chan_state *chan_create(struct session *s)
{
	struct broker *b = s->broker;
	if (!b->chan_buf)
		b->chan_buf = malloc(HS__CHAN_MAX_RECORD);
	struct chan_state *c = b->chan_buf ? calloc(1, sizeof(*c)) : NULL;
	if (!c) {
		log_warn("out of memory setting up a shared-memory channel; using the socket");
		return NULL;
	}
	c->memfd = c->efd_daemon = c->efd_client = -1;
	list_init(&c->active_link);
	int r = hs__chan_create(&c->memfd, &c->ch);
	if (r == 0) {
		c->efd_daemon = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		c->efd_client = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (c->efd_daemon < 0 || c->efd_client < 0)
			r = -errno;
	}
	if (r < 0) {
		log_warn("cannot set up a shared-memory channel: %s; using the socket",
			 strerror(-r));
		chan_state_free(c);
		return NULL;
	}
	return c;
}

void chan_start(struct session *s, struct chan_state *c)
{
	struct broker *b = s->broker;
	Hs__ChannelAnnounce ca = HS__CHANNEL_ANNOUNCE__INIT;
	ca.ring_size = HS__CHAN_RING_SIZE;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_CHANNEL;
	m.channel = &ca;
	int fds[3] = { c->memfd, c->efd_daemon, c->efd_client };
	/* Still on the socket: the client reads this right after the
	 * HelloReply that said it comes. */
	if (session_send(s, &m, fds, 3) < 0) {
		chan_state_free(c);
		session_kill(s, "cannot send the channel");
		return;
	}
	if (b->hooks.chan_open && b->hooks.chan_open(b->hooks.data, s, c->efd_daemon) < 0) {
		chan_state_free(c);
		session_kill(s, "cannot watch its channel");
		return;
	}
	s->chan = c;
	c->owner = s;
	chan_activate(s);
}

void chan_activate(struct session *s)
{
	struct chan_state *c = s->chan;
	if (!c || c->active)
		return;
	c->active = true;
	list_insert_tail(&s->broker->chan_active, &c->active_link);
}

void chan_activate_topic(struct topic *tp)
{
	struct sub *sub;
	list_for_each(sub, &tp->subs, topic_link)
		if (sub->count > 0 || tp->npending > 0)
			chan_activate(sub->owner);
}

void chan_close(struct session *s)
{
	if (!s->chan)
		return;
	if (s->chan->active)
		list_remove(&s->chan->active_link);
	chan_state_free(s->chan);
	s->chan = NULL;
}

static void want_write(struct session *s, bool on)
{
	if (s->broker->hooks.want_write)
		s->broker->hooks.want_write(s->broker->hooks.data, s, on);
}

static int ring_full(struct session *s, const Hs__Message *msg, const int *fds, int nfds,
		     size_t len, int route)
{
	int r = session_enqueue(s, msg, fds, nfds, route);
	if (r < 0)
		return r;
	chan_activate(s); /* passes flush it */
	/* The client kicks us once it made room; if it already did, go on. */
	if (!hs__chan_want_space(&s->chan->ch.tx, route == OUT_RING ? len : 0))
		chan_flush(s);
	return 0;
}

static int send_failed(struct session *s, int err)
{
	char why[96];
	if (err == -EPROTO)
		snprintf(why, sizeof(why), "corrupt channel indices");
	else
		snprintf(why, sizeof(why), "send: %s", strerror(-err));
	session_kill(s, why);
	return HS_EPIPE;
}

int chan_send(struct session *s, const Hs__Message *msg, const int *fds, int nfds)
{
	struct chan_state *c = s->chan;
	size_t len = hs__message__get_packed_size(msg);
	if (len > HS__WIRE_MAX_MSG) {
		log_error("message %s too large to send", hs__wire_body_name(msg));
		return HS_EMSGSIZE;
	}
	bool sock = nfds > 0 || len > HS__CHAN_MAX_RECORD;
	int route = sock ? OUT_MARKED : OUT_RING;
	if (!list_empty(&s->outbox))
		return session_enqueue(s, msg, fds, nfds, route); /* keep the order */
	int r = hs__chan_put(&c->ch.tx, sock ? HS__CHAN_SOCKET : HS__CHAN_MSG, sock ? NULL : msg,
			     len);
	if (r == -EAGAIN)
		return ring_full(s, msg, fds, nfds, len, route);
	if (r < 0)
		return send_failed(s, r);
	/* The reply to a posted request waits for the client's next look. */
	if (msg->seq == 0 || msg->seq != s->quiet_seq)
		c->kick = true;
	chan_activate(s); /* for the kick, and notes_wake may change */
	if (!sock)
		return 0;
	r = hs__wire_send(s->fd, msg, fds, nfds);
	if (r == 0)
		return 0;
	if (r == -EAGAIN) {
		/* The record is out: the client waits on the socket for it. */
		r = session_enqueue(s, msg, fds, nfds, OUT_MARK_SENT);
		if (r == 0)
			want_write(s, true);
		return r;
	}
	return send_failed(s, r);
}

int chan_flush(struct session *s)
{
	struct chan_state *c = s->chan;
	while (!list_empty(&s->outbox)) {
		if (s->dead)
			return HS_EPIPE;
		struct out_msg *m = list_first(&s->outbox, struct out_msg, link);
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
			chan_activate(s);
			if (!ring) {
				m->route = OUT_MARK_SENT;
				continue; /* its datagram next round */
			}
		} else {
			/* The wire layer sends Messages: decode the copy again.
			 * Only datagrams behind a full socket come this way. */
			Hs__Message *msg;
			if (hs__wire_decode(m->data, m->len, &msg) < 0) {
				session_kill(s, "undecodable queued message");
				return HS_EPIPE;
			}
			r = hs__wire_send(s->fd, msg, m->fds, m->nfds);
			hs__wire_free(msg);
			if (r == -EAGAIN) {
				want_write(s, true);
				return 1;
			}
			if (r < 0)
				return send_failed(s, r);
		}
		session_out_pop(s, m);
	}
	want_write(s, false);
	return 0;
}

int chan_drain(struct session *s, int budget)
{
	struct chan_state *c = s->chan;
	uint8_t *buf = s->broker->chan_buf;
	int n = 0;
	/* Pair rings: settled before each record (a release or an emit may
	 * name a tensor a note written just before it carries) and once
	 * without (a producer waiting for settling kicks with no record). */
	bool pairs = !list_empty(&s->pairs_out) || s->rings;
	if (pairs)
		pair_settle_session(s);
	while (n < budget && !s->dead) {
		uint32_t kind;
		int len = hs__chan_get(&c->ch.rx, buf, &kind);
		if (len == -EAGAIN)
			break;
		if (pairs && len >= 0)
			pair_settle_session(s);
		if (len < 0 || kind != HS__CHAN_MSG)
			return session_violation(s, HS_EPROTO,
						 len < 0 ? "corrupt channel ring"
							 : "a client record that is not a message");
		n++;
		int r = session_input(s, buf, (size_t)len, NULL, 0);
		if (r < 0)
			return r;
	}
	/* The client may wait for room to send its next request. */
	if (n > 0 && hs__chan_space_kick(&c->ch.rx))
		hs__chan_kick(c->efd_client);
	return n;
}

/* Whether something in the daemon waits on this session's one-way notes:
 * a queue holding tensors until the client gives credit, or an emit held
 * back on a topic it subscribes to until it releases or credits. */
static bool wants_notes(const struct session *s)
{
	const struct sub *sub;
	list_for_each(sub, &s->subs, owner_link) {
		if (sub->count > 0 || sub->topic->npending > 0)
			return true;
	}
	return false;
}

/* The first half of a pass for s: its queued records, then its input.
 * Returns true when s has more input than one batch. */
static bool pass_input(struct session *s, int *handled)
{
	/* A datagram waiting for a full socket is flushed when the socket
	 * is writable, not retried on every pass. */
	if (!list_empty(&s->outbox) &&
	    list_first(&s->outbox, struct out_msg, link)->route != OUT_MARK_SENT)
		chan_flush(s);
	int r = chan_drain(s, CHAN_BATCH);
	if (r < 0)
		session_kill(s, NULL);
	if (r > 0 && handled)
		*handled += r;
	return r == CHAN_BATCH;
}

/* The second half, after everyone's input (so deliveries made for any
 * session are kicked in this pass): notes_wake, arming, the kick.
 * Returns true when s's channel is armed for the daemon's sleep. */
static bool pass_finish(struct session *s, bool arm, bool *busy, struct session *skip)
{
	struct chan_state *c = s->chan;
	bool armed = false;
	if (s != skip) {
		bool want = wants_notes(s);
		if (want != c->notes_wake) {
			c->notes_wake = want;
			__atomic_store_n(&c->ch.hdr->notes_wake, want ? 1u : 0u, __ATOMIC_RELAXED);
		}
		if (arm && !*busy) {
			armed = hs__chan_arm(&c->ch.rx);
			if (!armed)
				*busy = true;
		}
	}
	if (c->kick) {
		c->kick = false;
		if (hs__chan_should_kick(&c->ch.tx))
			hs__chan_kick(c->efd_client);
	}
	return armed;
}

/* Nothing queued for the ring: the pass has nothing to retry for s. */
static bool ring_idle(const struct session *s)
{
	return list_empty(&s->outbox) ||
	       list_first(&s->outbox, struct out_msg, link)->route == OUT_MARK_SENT;
}

bool broker_chan_pass(struct broker *b, bool arm, struct session *skip, int *handled)
{
	bool busy = false;
	struct chan_state *c, *ct;
	/* Sessions activated while this runs go to the tail: seen too. */
	list_for_each(c, &b->chan_active, active_link) {
		struct session *s = c->owner;
		if (s != skip && !s->dead && pass_input(s, handled))
			busy = true;
	}
	list_for_each_safe(c, ct, &b->chan_active, active_link) {
		struct session *s = c->owner;
		if (s->dead)
			continue; /* leaves with chan_close */
		if (pass_finish(s, arm, &busy, skip) && ring_idle(s)) {
			list_remove(&c->active_link);
			c->active = false;
		}
	}
	return busy;
}

/* Every channel, active or not, without arming (a catch-up). */
static void pass_all(struct broker *b, struct session *skip)
{
	bool busy = false;
	struct session *s;
	list_for_each(s, &b->sessions, link)
		if (s->chan && s != skip && !s->dead)
			pass_input(s, NULL);
	list_for_each(s, &b->sessions, link)
		if (s->chan && !s->dead)
			pass_finish(s, false, &busy, skip);
}

bool broker_chan_catch_up(struct broker *b, struct session *s)
{
	if (b->chan_nested)
		return false;
	b->chan_nested = true;
	pass_all(b, s);
	b->chan_nested = false;
	return true;
}
