/* Requests: one datagram or channel record from a client, checked before
 * hello, decoded and handed to its handler; Hello and Ping are answered
 * here, tensors' requests in request_tensor.c, topics' in
 * hsd_request_topic.c. Every field from the peer is untrusted and checked
 * here or in the noun it is handed to. */
#include "request.h"

#include <stdio.h>
#include <string.h>

#include "hs-config.h"
#include "hsbroker/client.h"
#include "hsbroker/error.h"
#include "broker.h"
#include "channel.h"
#include "introspect.h"
#include "log.h"
#include "session.h"

void hsd_request_reply(struct hsd_session *s, uint64_t seq, Hs__Message *m)
{
	m->seq = seq;
	hsd_outbox_send(s, m, NULL, 0);
}

static bool allowed(const struct hsd_broker_config *cfg, uid_t uid, gid_t gid)
{
	if (!cfg->n_allow_uids && !cfg->n_allow_gids)
		return true;
	for (uint32_t i = 0; i < cfg->n_allow_uids; i++)
		if (cfg->allow_uids[i] == uid)
			return true;
	for (uint32_t i = 0; i < cfg->n_allow_gids; i++)
		if (cfg->allow_gids[i] == gid)
			return true;
	return false;
}

static int on_hello(struct hsd_session *s, uint64_t seq, const Hs__Hello *h)
{
	char d[128];
	if (h->protocol_version != HS_PROTOCOL_VERSION) {
		log_warn("%s: protocol version %u, this daemon speaks %u; disconnecting",
			 hsd_session_describe(s, d, sizeof(d)), h->protocol_version,
			 HS_PROTOCOL_VERSION);
		hsd_session_error(s, seq, HS_EVERSION, "protocol version %u not supported (daemon speaks %u)",
				  h->protocol_version, HS_PROTOCOL_VERSION);
		return HS_EVERSION;
	}
	/* Cut to 63 bytes; anything unprintable becomes '?' so a name
	 * cannot forge log lines. */
	const char *name = h->client_name ? h->client_name : "";
	size_t n = strnlen(name, HS__MAX_NAME);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		s->name[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	s->name[n] = '\0';
	s->hello_done = true;
	log_debug("%s opened (gid %u)", hsd_session_describe(s, d, sizeof(d)), (unsigned)s->gid);

	Hs__HelloReply hr = HS__HELLO_REPLY__INIT;
	hr.protocol_version = HS_PROTOCOL_VERSION;
	hr.epoch = s->broker->epoch;
	hr.session_id = s->id;
	hr.daemon_version = (char *)HS_VERSION;
	/* A client that gets no channel stays on the socket. */
	struct hsd_chan_state *ch = h->want_channel ? hsd_chan_create(s) : NULL;
	hr.channel = ch != NULL;
	s->rings = ch && h->want_rings && s->broker->cfg.direct_rings;
	hr.rings = s->rings;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_HELLO_REPLY;
	m.hello_reply = &hr;
	hsd_request_reply(s, seq, &m);
	if (ch)
		hsd_chan_start(s, ch);
	return 0;
}

/* The [acl] allow lists: false (refused, logged, told) or true. */
bool hsd_request_acl_ok(struct hsd_session *s, uint64_t seq, enum hsd_acl_action action,
			const char *topic)
{
	const struct hsd_broker_config *cfg = &s->broker->cfg;
	if (!cfg->acl.n || hsd_acl_allows(&cfg->acl, action, topic, s->uid, s->gid))
		return true;
	char d[128];
	log_warn("%s: %s on %.255s refused by [acl]", hsd_session_describe(s, d, sizeof(d)),
		 hsd_acl_action_name(action), topic);
	hsd_session_error(s, seq, HS_EPERM, "%s on %.255s: not allowed for uid %u",
			  hsd_acl_action_name(action), topic, (unsigned)s->uid);
	return false;
}

/* Before hello nothing is decoded that could cost much (issue 11 row 4):
 * a peer whose uid is not allowed is refused unread, and a datagram
 * larger than any Hello (hello_max_bytes) ends the connection. */
static int before_hello(struct hsd_session *s, size_t len)
{
	const struct hsd_broker_config *cfg = &s->broker->cfg;
	char d[128];
	if (s->refuse == HS_ELIMIT) {
		hsd_session_error(s, 0, HS_ELIMIT, "uid %u has too many connections open",
				  (unsigned)s->uid);
		return HS_ELIMIT;
	}
	if (!allowed(cfg, s->uid, s->gid)) {
		log_warn("%s: denied: uid %u / gid %u not in allow_uids / allow_gids",
			 hsd_session_describe(s, d, sizeof(d)), (unsigned)s->uid, (unsigned)s->gid);
		/* seq 0: the request is not read; the client takes it as the
		 * answer to its Hello. */
		hsd_session_error(s, 0, HS_EPERM, "uid %u not allowed", (unsigned)s->uid);
		return HS_EPERM;
	}
	if (len > cfg->hello_max_bytes) {
		char what[96];
		snprintf(what, sizeof(what), "a %zu-byte datagram before hello (at most %u)", len,
			 cfg->hello_max_bytes);
		return hsd_session_violation(s, HS_EMSGSIZE, what);
	}
	return 0;
}

int hsd_request_input(struct hsd_session *s, const uint8_t *buf, size_t len, int *fds, int nfds)
{
	if (nfds > 0) {
		hs__wire_close_fds(fds, nfds);
		return hsd_session_violation(s, HS_EPROTO, "a client sent file descriptors");
	}
	if (!s->hello_done) {
		int r = before_hello(s, len);
		if (r < 0)
			return r;
	}
	Hs__Message *m;
	if (hs__wire_decode(buf, len, &m) < 0)
		return hsd_session_violation(s, HS_EPROTO, "undecodable message");
	if (hs__wire_debug_enabled())
		hs__wire_debug("daemon", "<-", m, nfds);

	int ret = 0;
	uint64_t seq = m->seq;
	if ((m->body_case == HS__MESSAGE__BODY_ALLOC && m->alloc->posted) ||
	    (m->body_case == HS__MESSAGE__BODY_EMIT && m->emit->posted))
		s->quiet_seq = seq;
	if (!s->hello_done && m->body_case != HS__MESSAGE__BODY_HELLO) {
		char what[96];
		snprintf(what, sizeof(what), "'%s' before hello", hs__wire_body_name(m));
		ret = hsd_session_violation(s, HS_EPROTO, what);
		goto out;
	}

	switch (m->body_case) {
	case HS__MESSAGE__BODY_HELLO:
		if (s->hello_done)
			ret = hsd_session_violation(s, HS_EPROTO, "second hello");
		else
			ret = on_hello(s, seq, m->hello);
		break;
	case HS__MESSAGE__BODY_ALLOC:
		hsd_request_alloc(s, seq, m->alloc);
		break;
	case HS__MESSAGE__BODY_EMIT:
		hsd_request_emit(s, seq, m->emit);
		break;
	case HS__MESSAGE__BODY_SUBSCRIBE:
		hsd_request_subscribe(s, seq, m->subscribe);
		break;
	case HS__MESSAGE__BODY_UNSUBSCRIBE:
		hsd_request_unsubscribe(s, seq, m->unsubscribe);
		break;
	case HS__MESSAGE__BODY_RELEASE:
		hsd_request_release(s, seq, m->release);
		break;
	case HS__MESSAGE__BODY_CREDIT:
		hsd_request_credit(s, seq, m->credit);
		break;
	case HS__MESSAGE__BODY_ROUTE:
		hsd_request_route(s, seq, m->route);
		break;
	case HS__MESSAGE__BODY_LIST:
		/* Show what clients released, not what their channels
		 * still carry. */
		hsd_broker_chan_catch_up(s->broker, s);
		hsd_introspect_reply(s, seq, m->list);
		break;
	case HS__MESSAGE__BODY_PING: {
		Hs__OkReply ok = HS__OK_REPLY__INIT;
		Hs__Message r = HS__MESSAGE__INIT;
		r.body_case = HS__MESSAGE__BODY_OK;
		r.ok = &ok;
		hsd_request_reply(s, seq, &r);
		break;
	}
	default: {
		char what[96];
		snprintf(what, sizeof(what), "'%s' is not a client message",
			 hs__wire_body_name(m));
		ret = hsd_session_violation(s, HS_EPROTO, what);
		break;
	}
	}
out:
	s->quiet_seq = 0;
	hs__wire_free(m);
	return ret;
}
