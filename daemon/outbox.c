/* The outbox: what a session sends, on whichever transport it uses, and
 * the messages waiting for that transport, with their limits. */
#include "outbox.h"

#include <fcntl.h>
#include <stdlib.h>

#include "hsbroker/error.h"
#include "broker.h"
#include "log.h"
#include "session.h"

void hsd_outbox_init(struct hsd_outbox *o)
{
	*o = (struct hsd_outbox){ .tx = &hsd_outbox_socket };
	list_init(&o->msgs);
}

void hsd_outbox_use(struct hsd_session *s, const struct hsd_outbox_transport *tx)
{
	s->out.tx = tx;
}

static void out_free(struct hsd_out_msg *m)
{
	hs__wire_close_fds(m->fds, m->nfds);
	free(m);
}

struct hsd_out_msg *hsd_outbox_first(struct hsd_session *s)
{
	if (list_empty(&s->out.msgs))
		return NULL;
	return list_first(&s->out.msgs, struct hsd_out_msg, link);
}

void hsd_outbox_pop(struct hsd_session *s, struct hsd_out_msg *m)
{
	list_remove(&m->link);
	s->out.nmsgs--;
	s->out.bytes -= m->len;
	s->broker->out_bytes -= m->len;
	out_free(m);
}

void hsd_outbox_clear(struct hsd_session *s)
{
	struct hsd_out_msg *m;
	while ((m = hsd_outbox_first(s)))
		hsd_outbox_pop(s, m);
}

void hsd_outbox_want_write(struct hsd_session *s, bool on)
{
	if (s->broker->hooks.want_write)
		s->broker->hooks.want_write(s->broker->hooks.data, s, on);
}

/* Every outbox together passed outbox_total_bytes: the session with the
 * largest one is dropped and its outbox freed at once (it is dead: nothing
 * in it will be sent), so one reader that stalls cannot take the memory
 * everyone's replies need. True when s may queue len bytes now. */
static bool make_room(struct hsd_session *s, size_t len)
{
	struct hsd_broker *b = s->broker;
	char d[128];
	while (b->out_bytes + len > b->cfg.outbox_total_bytes) {
		struct hsd_session *big = s, *o;
		list_for_each(o, &b->sessions, link)
			if (o->out.bytes > big->out.bytes)
				big = o;
		log_warn("%s: outbox of %llu bytes is the largest while all outboxes hold %llu "
			 "(outbox_total %llu)", hsd_session_describe(big, d, sizeof(d)),
			 (unsigned long long)big->out.bytes, (unsigned long long)b->out_bytes,
			 (unsigned long long)b->cfg.outbox_total_bytes);
		hsd_session_kill(big, "peer does not read its socket (largest outbox over outbox_total)");
		hsd_outbox_clear(big);
		if (big == s)
			return false;
	}
	return true;
}

int hsd_outbox_enqueue(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds,
		       int route)
{
	struct hsd_broker_config *cfg = &s->broker->cfg;
	size_t len = hs__message__get_packed_size(msg);
	if (len > HS__WIRE_MAX_MSG) {
		/* As on the direct path: refused here, not a dead session
		 * when the outbox reaches it. */
		log_error("message %s too large to send", hs__wire_body_name(msg));
		return HS_EMSGSIZE;
	}
	if (s->out.nmsgs >= cfg->outbox_max_msgs || s->out.bytes + len > cfg->outbox_max_bytes) {
		hsd_session_kill(s, "peer does not read its socket (outbox full)");
		return HS_EPIPE;
	}
	if (s->broker->out_bytes + len > cfg->outbox_total_bytes && !make_room(s, len))
		return HS_EPIPE;
	struct hsd_out_msg *m = malloc(sizeof(*m) + len);
	if (!m) {
		hsd_session_kill(s, "out of memory queueing a message");
		return HS_EPIPE;
	}
	m->len = len;
	m->route = route;
	m->nfds = 0;
	hs__message__pack(msg, m->data);
	for (int i = 0; i < nfds; i++) {
		int fd = fcntl(fds[i], F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			out_free(m);
			hsd_session_kill(s, "cannot dup an fd to queue it");
			return HS_EPIPE;
		}
		m->fds[m->nfds++] = fd;
	}
	bool was_empty = list_empty(&s->out.msgs);
	list_insert_tail(&s->out.msgs, &m->link);
	s->out.nmsgs++;
	s->out.bytes += len;
	s->broker->out_bytes += len;
	if (was_empty && route == OUT_SOCKET)
		hsd_outbox_want_write(s, true);
	return 0;
}

int hsd_outbox_send(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds)
{
	if (s->dead)
		return HS_EPIPE;
	if (hs__wire_debug_enabled())
		hs__wire_debug("daemon", "->", msg, nfds);
	return s->out.tx->send(s, msg, fds, nfds);
}

int hsd_outbox_flush(struct hsd_session *s)
{
	return s->out.tx->flush(s);
}
