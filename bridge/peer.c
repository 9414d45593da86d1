/* Peers: UCX endpoints and their life. serve accepts them on a listener
 * (after the allow-list), connect opens one and opens it again with
 * backoff when it ends. Every endpoint runs in UCP_ERR_HANDLING_MODE_PEER,
 * so a peer that vanishes (process killed, host gone: UCX's keepalive)
 * fails its endpoint; the error callback only marks the peer, and the
 * loop closes it (hsb_peers_reap) once no callback can run inside it.
 * A peer is freed when its close finished and every operation that
 * points at it (sends, receives, credits) completed: that is when every
 * tensor it had in flight was released. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsb.h"

static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t status)
{
	hsb_peer_fail(arg, "connection lost", status);
}

void hsb_peer_fail(struct hsb_peer *p, const char *why, ucs_status_t status)
{
	if (p->failed)
		return;
	p->failed = why;
	if (status == UCS_OK)
		hsb_log("peer %s: %s: closing the connection", p->addr, why);
	else
		hsb_log("peer %s: %s (%s)", p->addr, why, ucs_status_string(status));
}

struct hsb_peer *hsb_peer_by_ep(struct hsb_bridge *b, ucp_ep_h ep)
{
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		if (p->ep == ep)
			return p;
	return NULL;
}

static struct hsb_peer *peer_new(struct hsb_bridge *b, const char *addr)
{
	struct hsb_peer *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->b = b;
	p->gen = ++b->next_gen;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->next = b->peers;
	b->peers = p;
	return p;
}

static void peer_unlink(struct hsb_peer *p)
{
	struct hsb_bridge *b = p->b;
	for (struct hsb_peer **pp = &b->peers; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	free(p);
}

static int peer_count(struct hsb_bridge *b)
{
	int n = 0;
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		n += !p->failed;
	return n;
}

static void on_conn_request(ucp_conn_request_h req, void *arg)
{
	struct hsb_bridge *b = arg;
	ucp_conn_request_attr_t attr = { .field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR };
	char addr[64] = "?";
	if (ucp_conn_request_query(req, &attr) != UCS_OK) {
		hsb_log("a connection request with no address: refused");
		b->peers_refused++;
		ucp_listener_reject(b->listener, req);
		return;
	}
	hsb_addr_format(&attr.client_address, addr, sizeof(addr));
	if (!hsb_allow_check(&b->allow, &attr.client_address)) {
		hsb_log("peer %s refused: not on the allow-list", addr);
		b->peers_refused++;
		ucp_listener_reject(b->listener, req);
		return;
	}
	if (peer_count(b) >= (int)b->max_peers) {
		hsb_log("peer %s refused: already %u peers (--max-peers)", addr, b->max_peers);
		b->peers_refused++;
		ucp_listener_reject(b->listener, req);
		return;
	}
	struct hsb_peer *p = peer_new(b, addr);
	if (!p) {
		ucp_listener_reject(b->listener, req);
		return;
	}
	ucp_ep_params_t ep = {
		.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
			      UCP_EP_PARAM_FIELD_ERR_HANDLER,
		.conn_request = req,
		.err_mode = UCP_ERR_HANDLING_MODE_PEER,
		.err_handler = { .cb = on_ep_error, .arg = p },
	};
	ucs_status_t st = ucp_ep_create(b->worker, &ep, &p->ep);
	if (st != UCS_OK) {
		hsb_log("peer %s: ucp_ep_create: %s", addr, ucs_status_string(st));
		peer_unlink(p);
		return;
	}
	b->peers_accepted++;
	p->born_ms = p->heard_ms = p->pinged_ms = hsb_now_ms();
	hsb_log("peer %s accepted", addr);
}

int hsb_peer_listen(struct hsb_bridge *b)
{
	ucp_listener_params_t lp = {
		.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER,
		.sockaddr = { .addr = (const struct sockaddr *)&b->addr, .addrlen = b->addrlen },
		.conn_handler = { .cb = on_conn_request, .arg = b },
	};
	ucs_status_t st = ucp_listener_create(b->worker, &lp, &b->listener);
	if (st != UCS_OK) {
		hsb_log("cannot listen on %s: %s", b->addr_str, ucs_status_string(st));
		return HS_EIO;
	}
	hsb_log("listening on %s", b->addr_str);
	return 0;
}

int hsb_peer_connect(struct hsb_bridge *b)
{
	struct hsb_peer *p = peer_new(b, b->addr_str);
	if (!p)
		return HS_ENOMEM;
	ucp_ep_params_t ep = {
		.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
			      UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER,
		.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER,
		.sockaddr = { .addr = (const struct sockaddr *)&b->addr, .addrlen = b->addrlen },
		.err_mode = UCP_ERR_HANDLING_MODE_PEER,
		.err_handler = { .cb = on_ep_error, .arg = p },
	};
	b->connects++;
	p->heard_ms = p->pinged_ms = hsb_now_ms(); /* the first answer is due in 5 heartbeats */
	ucs_status_t st = ucp_ep_create(b->worker, &ep, &p->ep);
	if (st != UCS_OK) {
		hsb_log("connect to %s: %s", b->addr_str, ucs_status_string(st));
		p->failed = "connect failed";
		return HS_EIO;
	}
	hsb_log("connecting to %s", b->addr_str);
	/* UCX holds the hello until the connection is up; a refusal shows
	 * as the endpoint's error. */
	return hsb_recv_hello(p);
}

void hsb_peer_op_done(struct hsb_peer *p)
{
	p->pending--;
}

/* A small message whose header lives until UCX is done with it (UCX 1.13
 * reads an active message's header until the send completes). */
struct note {
	struct hsb_peer *peer;
	const char *what;
	size_t len;
	uint8_t hdr[];
};

static void note_end(struct note *n, ucs_status_t st)
{
	if (st != UCS_OK)
		hsb_peer_fail(n->peer, n->what, st);
	hsb_peer_op_done(n->peer);
	free(n);
}

static void on_note_sent(void *req, ucs_status_t st, void *user)
{
	note_end(user, st);
	ucp_request_free(req);
}

int hsb_peer_note(struct hsb_peer *p, unsigned id, const uint8_t *hdr, size_t len,
		  const char *what)
{
	struct note *n = malloc(sizeof(*n) + len);
	if (!n)
		return HS_ENOMEM;
	n->peer = p;
	n->what = what;
	n->len = len;
	memcpy(n->hdr, hdr, len);
	p->pending++;
	ucp_request_param_t rp = {
		.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA |
				UCP_OP_ATTR_FIELD_FLAGS,
		.cb.send = on_note_sent,
		.user_data = n,
		.flags = UCP_AM_SEND_FLAG_REPLY, /* the peer learns which endpoint */
	};
	void *r = ucp_am_send_nbx(p->ep, id, n->hdr, len, NULL, 0, &rp);
	if (r == NULL)
		note_end(n, UCS_OK);
	else if (UCS_PTR_IS_ERR(r))
		note_end(n, UCS_PTR_STATUS(r));
	return 0;
}

void hsb_peer_heard(struct hsb_peer *p, const void *hdr, size_t hlen, size_t len)
{
	const char *why = "data with a ping";
	p->heard_ms = hsb_now_ms();
	if (len != 0 || hsb_wire_get_ping(hdr, hlen, &why) < 0) {
		p->b->protocol_errors++;
		hsb_peer_fail(p, why, UCS_OK);
	}
}

/* UCX's keepalive does not end a TCP connection whose peer vanished
 * while data was queued on it (the kernel retransmits for many minutes),
 * so the bridges say they are alive themselves: a ping every heartbeat,
 * and a peer silent for five heartbeats is gone. Any message counts as a
 * sign of life; the loop is never blocked, so a busy peer still pings. */
uint64_t hsb_peers_heartbeat(struct hsb_bridge *b, uint64_t now)
{
	uint64_t hb = b->heartbeat_ms, next = now + hb;
	uint8_t hdr[16];
	int n = hsb_wire_put_ping(hdr, sizeof(hdr));
	for (struct hsb_peer *p = b->peers; p; p = p->next) {
		if (p->failed)
			continue;
		if (p->heard_ms < now && now - p->heard_ms > 5 * hb) {
			hsb_log("peer %s: silent for %llu ms: taken as gone", p->addr,
				(unsigned long long)(now - p->heard_ms));
			hsb_peer_fail(p, "no heartbeat", UCS_ERR_TIMED_OUT);
			continue;
		}
		if (now - p->pinged_ms >= hb) {
			p->pinged_ms = now;
			hsb_peer_note(p, HSB_AM_PING, hdr, (size_t)n, "sending a heartbeat failed");
		}
		if (p->pinged_ms + hb < next)
			next = p->pinged_ms + hb;
	}
	return next;
}

int hsb_peers_reap(struct hsb_bridge *b)
{
	int changed = 0;
	struct hsb_peer *p = b->peers, *next;
	for (; p; p = next) {
		next = p->next;
		if (!p->failed)
			continue;
		if (!p->closing) {
			changed++;
			p->closing = true;
			b->peers_lost++;
			hsb_send_drop_subs(p);
			if (p->ep) {
				ucp_request_param_t cp = { .op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
							   .flags = UCP_EP_CLOSE_FLAG_FORCE };
				void *r = ucp_ep_close_nbx(p->ep, &cp);
				if (r && !UCS_PTR_IS_ERR(r))
					p->close_req = r;
			}
			if (!b->serve) { /* connect again, later each time */
				if (p->streaming)
					b->backoff_ms = b->backoff_min_ms;
				b->retry_at_ms = hsb_now_ms() + b->backoff_ms;
				hsb_log("reconnecting to %s in %u ms", b->addr_str, b->backoff_ms);
				b->backoff_ms = b->backoff_ms * 2 > b->backoff_max_ms ? b->backoff_max_ms
										 : b->backoff_ms * 2;
			}
		}
		if (p->close_req) {
			if (ucp_request_check_status(p->close_req) == UCS_INPROGRESS)
				continue;
			ucp_request_free(p->close_req);
			p->close_req = NULL;
		}
		if (p->pending == 0) {
			changed++;
			peer_unlink(p);
		}
	}
	return changed;
}

void hsb_peers_fail_all(struct hsb_bridge *b)
{
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		if (!p->failed)
			p->failed = "shutting down";
}
