/* The socket as an outbox transport: one datagram per message, fds with
 * SCM_RIGHTS. A session uses it until its shared-memory channel is up,
 * and for good when it asked for none. */
#include "outbox.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "hsbroker/error.h"
#include "log.h"
#include "session.h"

static int send_failed(struct hsd_session *s, int err)
{
	char why[96];
	snprintf(why, sizeof(why), "send: %s", strerror(-err));
	hsd_session_kill(s, why);
	return HS_EPIPE;
}

static int socket_send(struct hsd_session *s, const Hs__Message *msg, const int *fds, int nfds)
{
	if (hsd_outbox_first(s))
		return hsd_outbox_enqueue(s, msg, fds, nfds, OUT_SOCKET); /* keep the order */
	int r = hs__wire_send(s->fd, msg, fds, nfds);
	if (r == 0)
		return 0;
	if (r == -EAGAIN)
		return hsd_outbox_enqueue(s, msg, fds, nfds, OUT_SOCKET);
	if (r == -EMSGSIZE) {
		log_error("message %s too large to send", hs__wire_body_name(msg));
		return HS_EMSGSIZE;
	}
	return send_failed(s, r);
}

static int socket_flush(struct hsd_session *s)
{
	struct hsd_out_msg *m;
	while ((m = hsd_outbox_first(s))) {
		if (s->dead)
			return HS_EPIPE;
		/* The wire layer sends Messages, not bytes: unpack the copy
		 * again. Only a slow reader's messages take this path. */
		Hs__Message *msg;
		int r = hs__wire_decode(m->data, m->len, &msg);
		if (r == 0) {
			r = hs__wire_send(s->fd, msg, m->fds, m->nfds);
			hs__wire_free(msg);
		}
		if (r == -EAGAIN)
			return 1;
		hsd_outbox_pop(s, m);
		if (r < 0)
			return send_failed(s, r);
	}
	hsd_outbox_want_write(s, false);
	return 0;
}

const struct hsd_outbox_transport hsd_outbox_socket = {
	.name = "socket",
	.send = socket_send,
	.flush = socket_flush,
};

void hsd_outbox_refuse(int fd, int code, const char *text)
{
	/* What the peer sent is read first: closing a socket with unread
	 * data makes the peer's next read a reset, not this reply. */
	uint8_t junk[64];
	for (int i = 0; i < 16 && recv(fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; i++)
		;
	Hs__ErrorReply er = HS__ERROR_REPLY__INIT;
	er.code = code;
	er.message = (char *)text;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_ERROR;
	m.error = &er;
	hs__wire_send(fd, &m, NULL, 0); /* best effort: the peer is dropped */
}
