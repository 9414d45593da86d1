/* The daemon's side of the shared-memory channel: setting it up, draining
 * what clients write into it, and the passes that arm and kick. What the
 * daemon writes into it is the outbox's (hsd_outbox_chan.c). */
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
#include "outbox.h"
#include "pair.h"
#include "request.h"
#include "session.h"
#include "topic.h"

/* Records handled per session per pass, so one busy client cannot
 * starve the others. */
#define CHAN_BATCH 64

static void chan_state_free(struct hsd_chan_state *c)
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

struct hsd_chan_state *hsd_chan_create(struct hsd_session *s)
{
	struct hsd_broker *b = s->broker;
	if (!b->chan_buf)
		b->chan_buf = malloc(HS__CHAN_MAX_RECORD);
	struct hsd_chan_state *c = b->chan_buf ? calloc(1, sizeof(*c)) : NULL;
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

void hsd_chan_start(struct hsd_session *s, struct hsd_chan_state *c)
{
	struct hsd_broker *b = s->broker;
	Hs__ChannelAnnounce ca = HS__CHANNEL_ANNOUNCE__INIT;
	ca.ring_size = HS__CHAN_RING_SIZE;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_CHANNEL;
	m.channel = &ca;
	int fds[3] = { c->memfd, c->efd_daemon, c->efd_client };
	/* Still on the socket: the client reads this right after the
	 * HelloReply that said it comes. */
	if (hsd_outbox_send(s, &m, fds, 3) < 0) {
		chan_state_free(c);
		hsd_session_kill(s, "cannot send the channel");
		return;
	}
	if (b->hooks.chan_open && b->hooks.chan_open(b->hooks.data, s, c->efd_daemon) < 0) {
		chan_state_free(c);
		hsd_session_kill(s, "cannot watch its channel");
		return;
	}
	s->chan = c;
	c->owner = s;
	hsd_outbox_use(s, &hsd_outbox_chan);
	hsd_chan_activate(s);
}

void hsd_chan_activate(struct hsd_session *s)
{
	struct hsd_chan_state *c = s->chan;
	if (!c || c->active)
		return;
	c->active = true;
	list_insert_tail(&s->broker->chan_active, &c->active_link);
}

void hsd_chan_activate_topic(struct hsd_topic *tp)
{
	struct hsd_sub *sub;
	list_for_each(sub, &tp->subs, topic_link)
		if (sub->count > 0 || tp->npending > 0)
			hsd_chan_activate(sub->owner);
}

void hsd_chan_close(struct hsd_session *s)
{
	if (!s->chan)
		return;
	if (s->chan->active)
		list_remove(&s->chan->active_link);
	chan_state_free(s->chan);
	s->chan = NULL;
	/* Nothing is sent to a closing session, but a flush must not find
	 * the channel's transport without its channel. */
	hsd_outbox_use(s, &hsd_outbox_socket);
}

int hsd_chan_drain(struct hsd_session *s, int budget)
{
	struct hsd_chan_state *c = s->chan;
	uint8_t *buf = s->broker->chan_buf;
	int n = 0;
	/* Pair rings: settled before each record (a release or an emit may
	 * name a tensor a note written just before it carries) and once
	 * without (a producer waiting for settling kicks with no record). */
	bool pairs = !list_empty(&s->pairs_out) || s->rings;
	if (pairs)
		hsd_pair_settle_session(s);
	while (n < budget && !s->dead) {
		uint32_t kind;
		int len = hs__chan_get(&c->ch.rx, buf, &kind);
		if (len == -EAGAIN)
			break;
		if (pairs && len >= 0)
			hsd_pair_settle_session(s);
		if (len < 0 || kind != HS__CHAN_MSG)
			return hsd_session_violation(s, HS_EPROTO,
						     len < 0 ? "corrupt channel ring"
							 : "a client record that is not a message");
		n++;
		int r = hsd_request_input(s, buf, (size_t)len, NULL, 0);
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
static bool wants_notes(const struct hsd_session *s)
{
	const struct hsd_sub *sub;
	list_for_each(sub, &s->subs, owner_link) {
		if (sub->count > 0 || sub->topic->npending > 0)
			return true;
	}
	return false;
}

/* The first half of a pass for s: its queued records, then its input.
 * Returns true when s has more input than one batch. */
static bool pass_input(struct hsd_session *s, int *handled)
{
	/* A datagram waiting for a full socket is flushed when the socket
	 * is writable, not retried on every pass. */
	if (hsd_outbox_chan_waiting(s))
		hsd_outbox_flush(s);
	int r = hsd_chan_drain(s, CHAN_BATCH);
	if (r < 0)
		hsd_session_kill(s, NULL);
	if (r > 0 && handled)
		*handled += r;
	return r == CHAN_BATCH;
}

/* The second half, after everyone's input (so deliveries made for any
 * session are kicked in this pass): notes_wake, arming, the kick.
 * Returns true when s's channel is armed for the daemon's sleep. */
static bool pass_finish(struct hsd_session *s, bool arm, bool *busy, struct hsd_session *skip)
{
	struct hsd_chan_state *c = s->chan;
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

bool hsd_broker_chan_pass(struct hsd_broker *b, bool arm, struct hsd_session *skip, int *handled)
{
	bool busy = false;
	struct hsd_chan_state *c, *ct;
	/* Sessions activated while this runs go to the tail: seen too. */
	list_for_each(c, &b->chan_active, active_link) {
		struct hsd_session *s = c->owner;
		if (s != skip && !s->dead && pass_input(s, handled))
			busy = true;
	}
	list_for_each_safe(c, ct, &b->chan_active, active_link) {
		struct hsd_session *s = c->owner;
		if (s->dead)
			continue; /* leaves with hsd_chan_close */
		if (pass_finish(s, arm, &busy, skip) && !hsd_outbox_chan_waiting(s)) {
			list_remove(&c->active_link);
			c->active = false;
		}
	}
	return busy;
}

/* Every channel, active or not, without arming (a catch-up). */
static void pass_all(struct hsd_broker *b, struct hsd_session *skip)
{
	bool busy = false;
	struct hsd_session *s;
	list_for_each(s, &b->sessions, link)
		if (s->chan && s != skip && !s->dead)
			pass_input(s, NULL);
	list_for_each(s, &b->sessions, link)
		if (s->chan && !s->dead)
			pass_finish(s, false, &busy, skip);
}

bool hsd_broker_chan_catch_up(struct hsd_broker *b, struct hsd_session *s)
{
	if (b->chan_nested)
		return false;
	b->chan_nested = true;
	pass_all(b, s);
	b->chan_nested = false;
	return true;
}
