/* The client: finding the socket, connecting, the handshake, and
 * disconnecting. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* How long the handshake may take: covers a socket-activated daemon
 * starting, yet never hangs on a socket whose listener does not speak
 * our protocol. */
#define HELLO_TIMEOUT_MS 10000

HS_EXPORT int hs_default_socket_path(char *buf, size_t size)
{
	if (!buf)
		return HS_EINVAL;
	const char *env = getenv("HSBROKER_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (env && *env)
		n = snprintf(buf, size, "%s", env);
	else if (xdg && *xdg)
		n = snprintf(buf, size, "%s/hsbroker/hsbroker.sock", xdg);
	else
		n = snprintf(buf, size, "/run/hsbroker/hsbroker.sock");
	if (n < 0 || (size_t)n >= size)
		return HS_ENAMETOOLONG;
	return 0;
}

static int connect_socket(const char *path, int *out)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof(sa.sun_path))
		return HS_ENAMETOOLONG;
	strcpy(sa.sun_path, path);

	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errno == EMFILE || errno == ENFILE || errno == ENOMEM ? HS_ENOMEM : HS_EIO;
	int r;
	do
		r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	while (r < 0 && errno == EINTR);
	if (r < 0) {
		int e = errno;
		close(fd);
		switch (e) {
		case ENOENT:
		case ENOTDIR:
			return HS_ENOBROKER;
		case ECONNREFUSED:
			return HS_ECONNREFUSED;
		case EACCES:
		case EPERM:
			return HS_EACCES;
		case EPROTOTYPE: /* a stream socket: not hsbrokerd */
			return HS_EPROTO;
		case EAGAIN:
			return HS_EAGAIN; /* the listener's backlog is full */
		default:
			return HS_EIO;
		}
	}
	*out = fd;
	return 0;
}

static void client_free(hs_client *c)
{
	hs__subscription_free_all(c);
	hs__ring_free_all(c);
	/* DLPack tensors outlive us as empty shells: their deleter must still
	 * be callable, though their memory is gone. */
	for (hs_tensor *t = c->tensors, *next; t; t = next) {
		next = t->next;
		if (t->exported) {
			t->client = NULL;
			t->next = t->prev = NULL;
		} else {
			free(t);
		}
	}
	c->tensors = NULL;
	hs__slab_unmap_all(c);
	hs__event_destroy_all(c);
	if (c->fd >= 0)
		close(c->fd);
	hs__chan_unmap(&c->ch);
	if (c->efd_daemon >= 0)
		close(c->efd_daemon);
	if (c->efd_client >= 0)
		close(c->efd_client);
	if (c->poll_fd >= 0)
		close(c->poll_fd);
	if (c->efd_app >= 0)
		close(c->efd_app);
	hs__post_free_all(c);
	for (struct hs__reply_slot *s = c->slots; s; s = s->next)
		hs__wire_free(s->msg);
	free(c->orphans);
	free(c->rbuf);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->send_lock);
	pthread_mutex_destroy(&c->slots_lock);
	pthread_mutex_destroy(&c->ring_lock);
	pthread_cond_destroy(&c->pending_cond);
	pthread_mutex_destroy(&c->pending_lock);
	free(c);
}

static hs_client *client_new(int fd)
{
	hs_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	hs__client_use_socket(c);
	c->efd_daemon = c->efd_client = c->efd_app = c->poll_fd = -1;
	c->spares_on = hs__spares_wanted();
	const char *spin = getenv("HSBROKER_SPIN_US");
	if (spin && *spin) {
		long us = strtol(spin, NULL, 10);
		c->spin_ns = us > 0 && us <= 1000000 ? (int64_t)us * 1000 : 0;
		c->spin_set = true;
	}
	c->rbuf = malloc(HS__WIRE_MAX_MSG);
	pthread_condattr_t ca;
	bool ok = c->rbuf != NULL && pthread_condattr_init(&ca) == 0;
	if (ok) {
		/* Timed waits against the monotonic clock, like poll's. */
		ok = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0 &&
		     pthread_cond_init(&c->cond, &ca) == 0;
		pthread_condattr_destroy(&ca);
	}
	if (!ok) {
		free(c->rbuf);
		free(c);
		return NULL;
	}
	if (pthread_mutex_init(&c->lock, NULL) || pthread_mutex_init(&c->send_lock, NULL) ||
	    pthread_mutex_init(&c->slots_lock, NULL) || pthread_mutex_init(&c->ring_lock, NULL) ||
	    pthread_mutex_init(&c->pending_lock, NULL) ||
	    pthread_cond_init(&c->pending_cond, NULL)) {
		pthread_cond_destroy(&c->cond);
		free(c->rbuf);
		free(c);
		return NULL;
	}
	return c;
}

/* Cuts a name to the wire's limit without splitting a UTF-8 sequence. */
static void cut_name(char *dst, const char *src)
{
	size_t n = strnlen(src, HS__MAX_NAME + 1);
	if (n > HS__MAX_NAME) {
		n = HS__MAX_NAME;
		while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* HSBROKER_CHANNEL=0 keeps a client on the socket (to compare, or to
 * rule the channel out when chasing a problem). */
static bool want_channel(void)
{
	const char *e = getenv("HSBROKER_CHANNEL");
	return !(e && strcmp(e, "0") == 0);
}

/* The ChannelAnnounce the daemon sends right after a HelloReply that says
 * a channel comes. */
static int recv_channel(hs_client *c)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	int r = poll(&p, 1, HELLO_TIMEOUT_MS);
	if (r == 0)
		return HS_ETIMEDOUT;
	if (r < 0)
		return HS_EIO;
	int fds[HS__WIRE_MAX_FDS];
	int nfds = 0;
	int n = hs__wire_recv(c->fd, c->rbuf, fds, &nfds);
	if (n < 0)
		return n == -EPIPE ? HS_EPIPE : HS_EPROTO;
	Hs__Message *m;
	if (hs__wire_decode(c->rbuf, (size_t)n, &m) < 0) {
		hs__wire_close_fds(fds, nfds);
		return HS_EPROTO;
	}
	if (hs__wire_debug_enabled())
		hs__wire_debug("client", "<-", m, nfds);
	c->stats.messages_received++;
	int err = hs__client_take_channel(c, m, fds, nfds);
	hs__wire_free(m);
	return err;
}

static int hello(hs_client *c, const char *name)
{
	char cut[HS__MAX_NAME + 1];
	cut_name(cut, name);
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = HS_PROTOCOL_VERSION;
	h.client_name = cut;
	h.want_channel = want_channel();
	h.want_rings = h.want_channel && hs__rings_wanted();
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;

	/* As hs__client_request, with a deadline. Nobody else uses the
	 * client yet, so the slot is linked before the send. */
	struct hs__reply_slot slot = { .seq = ++c->next_seq };
	m.seq = slot.seq;
	c->slots = &slot;
	int err = hs__wire_send(c->fd, &m, NULL, 0);
	if (err) {
		c->slots = NULL;
		return err == -EPIPE ? HS_EPIPE : HS_EIO;
	}
	if (hs__wire_debug_enabled())
		hs__wire_debug("client", "->", &m, 0);
	c->stats.messages_sent++;
	pthread_mutex_lock(&c->lock);
	err = hs__client_wait(c, hs__slot_done, &slot, HELLO_TIMEOUT_MS);
	c->slots = NULL;
	pthread_mutex_unlock(&c->lock);
	if (err) {
		hs__wire_free(slot.msg);
		return err;
	}

	Hs__Message *r = slot.msg;
	err = hs__reply_check(r, HS__MESSAGE__BODY_HELLO_REPLY);
	if (!err && !r->hello_reply)
		err = HS_EPROTO;
	if (!err && r->hello_reply->protocol_version != HS_PROTOCOL_VERSION)
		err = HS_EVERSION;
	if (!err) {
		c->epoch = r->hello_reply->epoch;
		c->stats.epoch = c->epoch;
		c->session_id = r->hello_reply->session_id;
		snprintf(c->daemon_version, sizeof(c->daemon_version), "%s",
			 r->hello_reply->daemon_version ? r->hello_reply->daemon_version : "");
		if (h.want_channel && r->hello_reply->channel) {
			err = recv_channel(c);
			c->rings_on = !err && h.want_rings && r->hello_reply->rings;
		}
	}
	hs__wire_free(r);
	return err;
}

HS_EXPORT int hs_client_connect(const char *path, const char *name, hs_client **out)
{
	if (!out)
		return HS_EINVAL;
	char def[sizeof(((struct sockaddr_un *)0)->sun_path) + 64];
	if (!path) {
		int err = hs_default_socket_path(def, sizeof(def));
		if (err)
			return err;
		path = def;
	}
	if (!name || !*name)
		name = program_invocation_short_name;

	int fd;
	int err = connect_socket(path, &fd);
	if (err)
		return err;
	hs_client *c = client_new(fd);
	if (!c) {
		close(fd);
		return HS_ENOMEM;
	}
	err = hello(c, name);
	if (err) {
		client_free(c);
		return err;
	}
	*out = c;
	return 0;
}

HS_EXPORT void hs_client_disconnect(hs_client *client)
{
	if (!client)
		return;
	/* Emits sent without waiting are answered first, as an emit that
	 * waited would have been: a held-back one dies with the session. */
	hs__post_flush(client);
	/* Releases queued on GPU streams are sent first, as their streams
	 * finish: the mappings they read through must stay until then. */
	hs__release_drain(client);
	/* Closing the socket is the release: the daemon drops every reference
	 * and subscription of the session when the connection ends. */
	client_free(client);
}

/* One fd for the application's loop (lock held): an epoll set of what
 * wakes it. The daemon's kicks (with a channel) or the socket's data (on
 * the socket), the socket's hang-up, and efd_app: kicked by any thread
 * that read something for the application (conn.c, app_wake). It is the
 * application's alone: a thread waiting inside the library clears the
 * channel's eventfd when it wakes, and would otherwise eat the wake-up
 * meant for the application's loop. */
static int poll_fd_make(hs_client *c)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int app = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event sock = { .events = c->use_chan ? 0 : EPOLLIN, .data.fd = c->fd };
	struct epoll_event kick = { .events = EPOLLIN, .data.fd = c->efd_client };
	struct epoll_event wake = { .events = EPOLLIN, .data.fd = app };
	if (ep < 0 || app < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, app, &wake) < 0 ||
	    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &sock) < 0 ||
	    (c->use_chan && epoll_ctl(ep, EPOLL_CTL_ADD, c->efd_client, &kick) < 0)) {
		int e = errno;
		if (app >= 0)
			close(app);
		if (ep >= 0)
			close(ep);
		errno = e;
		return -1;
	}
	c->efd_app = app;
	c->poll_fd = ep;
	/* Read without lock by the reader letting go (conn.c, rearm_app). */
	__atomic_store_n(&c->fd_mode, true, __ATOMIC_RELEASE);
	/* From now on the reader re-arms whenever it lets go. With no reader
	 * (none can start: we hold lock), arm now for what comes before the
	 * first dispatch. Never under a reader: its arm is its own, and an
	 * arm that finds a record takes the flag back, so the daemon would
	 * not kick the reader sleeping on it. */
	if (!c->reading && !hs__client_arm(c))
		hs__chan_kick(c->efd_app);
	return 0;
}

HS_EXPORT int hs_client_get_fd(hs_client *client)
{
	if (!client)
		return HS_EINVAL;
	pthread_mutex_lock(&client->lock);
	int err = 0;
	if (client->poll_fd < 0 && poll_fd_make(client) < 0)
		err = errno == ENOMEM || errno == EMFILE || errno == ENFILE ? HS_ENOMEM : HS_EIO;
	int fd = err ? err : client->poll_fd;
	pthread_mutex_unlock(&client->lock);
	return fd;
}

HS_EXPORT int hs_client_ping(hs_client *client)
{
	if (!client)
		return HS_EINVAL;
	return hs__client_sync(client);
}

HS_EXPORT int hs_client_get_stats(hs_client *client, hs_client_stats *out)
{
	if (!client || !out)
		return HS_EINVAL;
	/* The message counters and spare_hits move outside the lock
	 * (atomically); the rest under it. */
	pthread_mutex_lock(&client->lock);
	out->slabs_mapped = client->stats.slabs_mapped;
	out->slab_opens = client->stats.slab_opens;
	out->tensors_held = client->stats.tensors_held;
	out->epoch = client->stats.epoch;
	out->event_opens = client->stats.event_opens;
	out->emits_refused = client->stats.emits_refused;
	out->emit_last_error = client->stats.emit_last_error;
	out->shared_channel = client->use_chan;
	pthread_mutex_unlock(&client->lock);
	/* Counted outside the lock (tensor.c): read atomically. */
	out->spare_hits = __atomic_load_n(&client->stats.spare_hits, __ATOMIC_RELAXED);
	out->messages_sent = __atomic_load_n(&client->stats.messages_sent, __ATOMIC_RELAXED);
	out->messages_received =
		__atomic_load_n(&client->stats.messages_received, __ATOMIC_RELAXED);
	return 0;
}
