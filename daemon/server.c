/* The listening socket and the sessions' sockets on libuv. libuv's stream
 * API cannot pass arbitrary fds, so sockets are watched with uv_poll_t and
 * the wire layer does sendmsg/recvmsg itself. Sessions with a
 * shared-memory channel are also watched through its eventfd, and every
 * loop iteration ends with a pass over the active channels (channel.h)
 * before the loop sleeps. */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hs-config.h"
#include "hsbroker/error.h"
#include "log.h"
#include "channel.h"
#include "request.h"
#include "session.h"
#include "wire.h"

#if HS_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* Datagrams read from one peer per wake-up, so one busy client cannot
 * starve the others. */
#define SERVER_BATCH 64

struct conn {
	uv_poll_t poll;
	uv_poll_t cpoll;           /* the channel's eventfd, once there is one */
	struct hsd_server *srv;
	struct hsd_session *s;
	int fd;
	int cfd;                   /* our dup of that eventfd, or -1 */
	int refs;                  /* open handles */
	int events;
	bool closing;              /* in conn_close: no longer reapable */
	bool on_dead_list;
	struct hsd_list dead_link;
	uint64_t hello_by;         /* uv_now() deadline for its hello */
	struct hsd_list hello_link; /* in server->unhello until it says hello */
};

struct hsd_server {
	uv_loop_t *loop;
	struct hsd_broker *broker;
	int lfd;
	uv_poll_t lpoll;
	uv_idle_t reaper;
	uv_prepare_t chan_pass;    /* drains and arms channels before sleeping */
	uv_idle_t chan_spin;       /* keeps the loop from sleeping while busy */
	uv_timer_t expiry;         /* wakes the loop for the next block timeout */
	uv_timer_t trim;           /* gives idle host slabs back (idle_release_ms) */
	uint64_t spin_ns;          /* server_config.spin_us */
	uint64_t last_traffic;     /* uv_hrtime() of the last channel record */
	bool activated;
	bool stopping;
	int lock_fd;
	int reserve_fd;            /* spent to accept and drop a peer under EMFILE */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char lock_path[PATH_MAX];
	struct hsd_list dead;      /* conns to close outside the core */
	struct hsd_list unhello;   /* conns before hello, oldest first */
	uv_timer_t hello_timer;    /* fires at the oldest one's deadline */
	uint64_t hello_timeout_ms;
	int handles;               /* open uv handles; freed at 0 after stop */
	uint8_t buf[HS__WIRE_MAX_MSG];
};

static void handle_closed(uv_handle_t *h)
{
	struct hsd_server *srv = h->data;
	if (--srv->handles == 0 && srv->stopping) {
		hsd_broker_free(srv->broker);
		free(srv);
	}
}

static void conn_closed(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct hsd_server *srv = c->srv;
	if (--c->refs == 0) {
		close(c->fd);
		if (c->cfd >= 0)
			close(c->cfd);
		free(c);
	}
	if (--srv->handles == 0 && srv->stopping) {
		hsd_broker_free(srv->broker);
		free(srv);
	}
}

/* Closes c once. The last words below (draining the channel, flushing
 * the outbox) can fail and kill the session, which calls hook_dead on the
 * conn being closed: closing keeps it off the dead list, and it leaves
 * that list only after the last call that could put it back, so on_reap
 * never meets a conn whose memory conn_closed has freed. */
static void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	/* What the peer put in its channel before it hung up still counts
	 * (an emit, say), as datagrams left in its socket would. */
	if (c->s->chan && !c->s->dead)
		hsd_chan_drain(c->s, 4096);
	/* Best effort: let a final ErrorReply out before the socket goes. */
	if (!c->s->dead)
		hsd_outbox_flush(c->s);
	if (c->on_dead_list) {
		list_remove(&c->dead_link);
		c->on_dead_list = false;
	}
	list_remove(&c->hello_link);
	hsd_broker_session_close(c->srv->broker, c->s);
	c->s = NULL;
	uv_poll_stop(&c->poll);
	c->poll.data = c;
	uv_close((uv_handle_t *)&c->poll, conn_closed);
	if (c->cfd >= 0) {
		uv_poll_stop(&c->cpoll);
		uv_close((uv_handle_t *)&c->cpoll, conn_closed);
	}
}

static void on_conn(uv_poll_t *h, int status, int events);

/* ---- the hello timeout: one timer for every connection before hello
 * (issue 11 row 9); they join the list in accept order with the same
 * timeout, so the oldest is always first. ---- */

static void on_hello_timer(uv_timer_t *h);

static void hello_arm(struct hsd_server *srv)
{
	if (list_empty(&srv->unhello)) {
		uv_timer_stop(&srv->hello_timer);
		return;
	}
	struct conn *c = list_first(&srv->unhello, struct conn, hello_link);
	uint64_t now = uv_now(srv->loop);
	uv_timer_start(&srv->hello_timer, on_hello_timer, c->hello_by > now ? c->hello_by - now : 0,
		       0);
}

static void on_hello_timer(uv_timer_t *h)
{
	struct hsd_server *srv = h->data;
	uint64_t now = uv_now(srv->loop);
	char d[128];
	while (!list_empty(&srv->unhello)) {
		struct conn *c = list_first(&srv->unhello, struct conn, hello_link);
		if (c->hello_by > now)
			break;
		list_remove(&c->hello_link);
		log_warn("%s: no hello within %llu ms; disconnecting",
			 hsd_session_describe(c->s, d, sizeof(d)),
			 (unsigned long long)srv->hello_timeout_ms);
		if (c->s->refuse)
			hsd_session_error(c->s, 0, c->s->refuse, "refused: %s", hs__strerror(c->s->refuse));
		else
			hsd_session_error(c->s, 0, HS_ETIMEDOUT, "no hello within %llu ms",
					  (unsigned long long)srv->hello_timeout_ms);
		conn_close(c);
	}
	hello_arm(srv);
}

/* After input: a conn that said hello leaves the timeout's list. */
static void hello_check(struct conn *c)
{
	if (c->s && c->s->hello_done && !list_empty(&c->hello_link)) {
		list_remove(&c->hello_link);
		hello_arm(c->srv);
	}
}

static void on_chan(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;
	/* Only the wake-up: the pass that runs before the loop polls again
	 * (on_chan_pass) handles the active channels, this one now among
	 * them. */
	hs__chan_clear(c->cfd);
	if (c->s)
		hsd_chan_activate(c->s);
}

static int hook_chan_open(void *data, struct hsd_session *s, int efd)
{
	struct hsd_server *srv = data;
	struct conn *c = s->io;
	if (!c || c->cfd >= 0)
		return HS_EINVAL;
	int fd = fcntl(efd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return HS_EIO;
	int r = uv_poll_init(srv->loop, &c->cpoll, fd);
	if (r == 0) {
		c->cpoll.data = c;
		r = uv_poll_start(&c->cpoll, UV_READABLE, on_chan);
		c->cfd = fd;
		c->refs++;
		srv->handles++;
		if (r < 0) {
			log_error("uv_poll_start: %s", uv_strerror(r));
			return HS_EIO; /* the handle closes with the conn */
		}
		return 0;
	}
	log_error("uv_poll_init: %s", uv_strerror(r));
	close(fd);
	return HS_EIO;
}

static void on_chan_spin(uv_idle_t *h)
{
	(void)h; /* its being active is the point: the loop polls, not sleeps */
}

static void on_trim(uv_timer_t *h)
{
	struct hsd_server *srv = h->data;
	uint64_t freed = hsd_broker_trim(srv->broker);
	if (freed)
		log_debug("gave %llu bytes of idle host slabs back to the system",
			  (unsigned long long)freed);
}

/* A scan every quarter of the idle time (within 250 ms..30 s): a slab
 * goes at most a quarter late, and an idle daemon wakes rarely. */
static void trim_schedule(struct hsd_server *srv, uint32_t idle_ms)
{
	uv_timer_stop(&srv->trim);
	if (!idle_ms)
		return;
	uint64_t every = idle_ms / 4;
	every = every < 250 ? 250 : every > 30000 ? 30000 : every;
	uv_timer_start(&srv->trim, on_trim, every, every);
	uv_unref((uv_handle_t *)&srv->trim);
}

static void on_expiry(uv_timer_t *h)
{
	(void)h; /* waking the loop is the point: on_chan_pass runs them */
}

static void on_chan_pass(uv_prepare_t *h)
{
	struct hsd_server *srv = h->data;
	uint64_t now = uv_hrtime();
	/* Spinning: the channels stay unarmed, so clients do not kick. */
	bool spin = srv->spin_ns && now - srv->last_traffic < srv->spin_ns;
	int handled = 0;
	bool busy = hsd_broker_chan_pass(srv->broker, !spin, NULL, &handled);
	if (handled)
		srv->last_traffic = now;
	if (busy || spin)
		uv_idle_start(&srv->chan_spin, on_chan_spin);
	else
		uv_idle_stop(&srv->chan_spin);
	/* Block timeouts: after the pass, which may have held emits back.
	 * The timer only wakes the loop; this pass runs them. */
	int64_t ms = hsd_broker_expire(srv->broker);
	if (ms >= 0)
		uv_timer_start(&srv->expiry, on_expiry, (uint64_t)ms, 0);
	else
		uv_timer_stop(&srv->expiry);
}

static void conn_update(struct conn *c, int events)
{
	if (c->events == events)
		return;
	int r = uv_poll_start(&c->poll, events, on_conn);
	if (r < 0) {
		log_error("uv_poll_start: %s", uv_strerror(r));
		hsd_session_kill(c->s, "cannot watch its socket");
		return;
	}
	c->events = events;
}

static void hook_want_write(void *data, struct hsd_session *s, bool on)
{
	struct conn *c = s->io;
	if (!c || !c->s)
		return;
	conn_update(c, UV_READABLE | (on ? UV_WRITABLE : 0));
}

static void on_reap(uv_idle_t *h)
{
	struct hsd_server *srv = h->data;
	while (!list_empty(&srv->dead)) {
		struct conn *c = list_first(&srv->dead, struct conn, dead_link);
		conn_close(c);
	}
	uv_idle_stop(h);
}

static void hook_dead(void *data, struct hsd_session *s)
{
	struct hsd_server *srv = data;
	struct conn *c = s->io;
	if (!c || c->closing || c->on_dead_list)
		return;
	list_insert_tail(&srv->dead, &c->dead_link);
	c->on_dead_list = true;
	uv_idle_start(&srv->reaper, on_reap);
}

static void on_conn(uv_poll_t *h, int status, int events)
{
	struct conn *c = h->data;
	struct hsd_server *srv = c->srv;
	struct hsd_session *s = c->s;
	char d[128];
	if (!s || s->dead)
		return;
	if (status < 0) {
		log_info("%s: poll: %s", hsd_session_describe(s, d, sizeof(d)), uv_strerror(status));
		conn_close(c);
		return;
	}
	if (events & UV_WRITABLE) {
		if (hsd_outbox_flush(s) < 0)
			return; /* dead: reaped */
	}
	if (!(events & UV_READABLE))
		return;
	for (int i = 0; i < SERVER_BATCH && !s->dead; i++) {
		int fds[HS__WIRE_MAX_FDS];
		int nfds = 0;
		int n = hs__wire_recv(c->fd, srv->buf, fds, &nfds);
		if (n == -EAGAIN)
			break;
		if (n == -EPIPE) {
			log_debug("%s: peer closed", hsd_session_describe(s, d, sizeof(d)));
			conn_close(c);
			return;
		}
		if (n == -EMSGSIZE || n == -EPROTO) {
			const char *what = n == -EMSGSIZE ? "datagram larger than the protocol allows"
							  : "too many file descriptors";
			log_warn("%s: protocol violation: %s; disconnecting",
				 hsd_session_describe(s, d, sizeof(d)), what);
			hsd_session_error(s, 0, HS_EPROTO, "%s", what);
			conn_close(c);
			return;
		}
		if (n < 0) {
			log_info("%s: recv: %s", hsd_session_describe(s, d, sizeof(d)), strerror(-n));
			conn_close(c);
			return;
		}
		if (s->chan) {
			hs__wire_close_fds(fds, nfds);
			hsd_session_violation(s, HS_EPROTO, "a datagram on the socket after the "
						       "switch to the shared-memory channel");
			conn_close(c);
			return;
		}
		if (hsd_request_input(s, srv->buf, (size_t)n, fds, nfds) < 0) {
			conn_close(c);
			return;
		}
		hello_check(c);
	}
}

static void accept_one(struct hsd_server *srv, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		log_warn("SO_PEERCRED: %s; dropping the connection", strerror(errno));
		close(fd);
		return;
	}
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		log_error("out of memory accepting a connection");
		close(fd);
		return;
	}
	int r = uv_poll_init(srv->loop, &c->poll, fd);
	if (r < 0) {
		log_error("uv_poll_init: %s", uv_strerror(r));
		free(c);
		close(fd);
		return;
	}
	c->poll.data = c;
	c->srv = srv;
	c->fd = fd;
	c->cfd = -1;
	c->refs = 1;
	list_init(&c->dead_link);
	list_init(&c->hello_link);
	srv->handles++;
	r = hsd_broker_session_open(srv->broker, fd, cred.pid, cred.uid, cred.gid, &c->s);
	if (r < 0) {
		if (r == HS_ELIMIT) {
			char text[96];
			snprintf(text, sizeof(text), "uid %u has too many connections open",
				 (unsigned)cred.uid);
			hsd_outbox_refuse(fd, r, text);
		} else {
			log_error("session: %s", hs__strerror(r));
		}
		uv_close((uv_handle_t *)&c->poll, conn_closed);
		return;
	}
	c->s->io = c;
	c->hello_by = uv_now(srv->loop) + srv->hello_timeout_ms;
	bool first = list_empty(&srv->unhello);
	list_insert_tail(&srv->unhello, &c->hello_link);
	if (first)
		hello_arm(srv);
	r = uv_poll_start(&c->poll, UV_READABLE, on_conn);
	if (r < 0) {
		log_error("uv_poll_start: %s", uv_strerror(r));
		conn_close(c);
		return;
	}
	c->events = UV_READABLE;
}

static void on_listen(uv_poll_t *h, int status, int events)
{
	struct hsd_server *srv = h->data;
	if (status < 0) {
		log_error("listening socket: %s", uv_strerror(status));
		return;
	}
	for (int i = 0; i < SERVER_BATCH; i++) {
		int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			accept_one(srv, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return;
		if ((errno == EMFILE || errno == ENFILE) && srv->reserve_fd >= 0) {
			/* Out of fds: accept with the reserve and hang up,
			 * else the pending peer wakes us forever. */
			log_warn("out of file descriptors: refusing a connection");
			close(srv->reserve_fd);
			int tmp = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (tmp >= 0)
				close(tmp);
			srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			continue;
		}
		log_error("accept: %s", strerror(errno));
		return;
	}
}

/* ---- the listening socket ---- */

static int resolve_path(const struct hsd_server_config *cfg, char *out, size_t size)
{
	const char *p = cfg->socket_path;
	int n;
	if (p && *p) {
		n = snprintf(out, size, "%s", p);
	} else if ((p = getenv("HSBROKER_SOCKET")) && *p) {
		n = snprintf(out, size, "%s", p);
	} else if ((p = getenv("XDG_RUNTIME_DIR")) && *p) {
		n = snprintf(out, size, "%s/hsbroker/hsbroker.sock", p);
	} else {
		n = snprintf(out, size, "/run/hsbroker/hsbroker.sock");
	}
	if (n < 0 || (size_t)n >= size) {
		log_error("socket path too long (at most %zu bytes)", size - 1);
		return HS_ENAMETOOLONG;
	}
	return 0;
}

static int mkdir_parents(const char *path)
{
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash || slash == dir)
		return 0;
	*slash = '\0';
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
			int e = errno;
			log_error("cannot create %s: %s", dir, strerror(e));
			return -e;
		}
		*p = '/';
	}
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int e = errno;
		log_error("cannot create %s: %s", dir, strerror(e));
		return -e;
	}
	return 0;
}

/* A non-blocking SOCK_SEQPACKET socket and path's address (path fits:
 * resolve_path checked), or a negative code, logged. */
static int seqpacket_socket(const char *path, struct sockaddr_un *addr)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		int e = errno;
		log_error("socket: %s", strerror(e));
		return -e;
	}
	*addr = (struct sockaddr_un){ .sun_family = AF_UNIX };
	memcpy(addr->sun_path, path, strlen(path) + 1);
	return fd;
}

/* What is at path before we bind it: nothing, or a socket nobody
 * listens on (a crashed daemon's), which is removed. Anything else stays:
 * a file that is not a socket (a typo in --socket must not delete it), or
 * a socket that accepts connections (a live daemon, socket-activated
 * ones included, or another program). 0 or a negative code, logged. */
static int remove_stale(const char *path)
{
	struct stat st;
	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		int e = errno;
		log_error("cannot stat %s: %s", path, strerror(e));
		return -e;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s exists and is not a socket: not removing it (choose another --socket)",
			  path);
		return HS_EBUSY;
	}
	struct sockaddr_un addr;
	int fd = seqpacket_socket(path, &addr);
	if (fd < 0)
		return fd;
	int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
	int e = r < 0 ? errno : 0;
	close(fd);
	if (r < 0 && e == ECONNREFUSED) {
		/* Nobody listens: stale. */
		if (unlink(path) < 0 && errno != ENOENT) {
			e = errno;
			log_error("cannot remove stale socket %s: %s", path, strerror(e));
			return -e;
		}
		log_info("removed stale socket %s", path);
		return 0;
	}
	if (r == 0 || e == EAGAIN || e == EPROTOTYPE)
		log_error("%s is live (a process accepts connections on it): not taking it over",
			  path);
	else
		log_error("cannot tell whether %s is live (%s): not removing it", path,
			  strerror(e));
	return HS_EBUSY;
}

static int make_socket(struct hsd_server *srv, const struct hsd_server_config *cfg)
{
	int r = resolve_path(cfg, srv->path, sizeof(srv->path));
	if (r < 0)
		return r;
	r = mkdir_parents(srv->path);
	if (r < 0)
		return r;

	/* The lock says whether an hsbrokerd that takes it lives here (as
	 * Wayland's wayland-N.lock); remove_stale then checks what is at the
	 * path itself, since a socket-activated daemon or another program
	 * may own it without the lock. */
	snprintf(srv->lock_path, sizeof(srv->lock_path), "%s.lock", srv->path);
	bool made_lock = true;
	srv->lock_fd = open(srv->lock_path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (srv->lock_fd < 0 && errno == EEXIST) {
		made_lock = false;
		srv->lock_fd = open(srv->lock_path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	}
	if (srv->lock_fd < 0) {
		int e = errno;
		log_error("cannot open lock file %s: %s", srv->lock_path, strerror(e));
		return -e;
	}
	if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK)
			log_error("another hsbrokerd is running on %s", srv->path);
		else
			log_error("cannot lock %s: %s", srv->lock_path, strerror(e));
		close(srv->lock_fd);
		srv->lock_fd = -1;
		return HS_EBUSY;
	}
	r = remove_stale(srv->path);
	if (r < 0) {
		/* The path is not ours: leave no lock file of ours beside it. */
		if (made_lock)
			unlink(srv->lock_path);
		close(srv->lock_fd);
		srv->lock_fd = -1;
		return r;
	}

	struct sockaddr_un addr;
	int fd = seqpacket_socket(srv->path, &addr);
	if (fd < 0)
		return fd;
	if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		int e = errno;
		log_error("cannot bind %s: %s", srv->path, strerror(e));
		close(fd);
		return -e;
	}
	srv->lfd = fd;
	int mode = cfg->socket_mode >= 0 ? cfg->socket_mode : cfg->has_group ? 0660 : 0666;
	if (cfg->has_group && chown(srv->path, (uid_t)-1, cfg->socket_group) < 0) {
		int e = errno;
		log_error("cannot give %s to group %u: %s", srv->path,
			  (unsigned)cfg->socket_group, strerror(e));
		return -e;
	}
	if (chmod(srv->path, (mode_t)mode) < 0) {
		int e = errno;
		log_error("cannot chmod %s to %o: %s", srv->path, (unsigned)mode, strerror(e));
		return -e;
	}
	if (listen(fd, 128) < 0) {
		int e = errno;
		log_error("listen on %s: %s", srv->path, strerror(e));
		return -e;
	}
	return 0;
}

#if HS_HAVE_SYSTEMD
/* 1 when systemd passed the listening socket, 0 when not, or an error. */
static int take_activated(struct hsd_server *srv)
{
	int n = sd_listen_fds(1);
	if (n < 0) {
		log_error("sd_listen_fds: %s", strerror(-n));
		return n;
	}
	if (n == 0)
		return 0;
	if (n > 1) {
		log_error("systemd passed %d sockets; hsbrokerd takes exactly one", n);
		return HS_EINVAL;
	}
	int fd = SD_LISTEN_FDS_START;
	if (sd_is_socket_unix(fd, SOCK_SEQPACKET, 1, NULL, 0) <= 0) {
		log_error("the socket systemd passed is not a listening AF_UNIX SOCK_SEQPACKET one");
		return HS_EINVAL;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		log_error("fcntl on the activated socket: %s", strerror(errno));
		return -errno;
	}
	struct sockaddr_un addr;
	socklen_t len = sizeof(addr);
	memset(&addr, 0, sizeof(addr));
	if (getsockname(fd, (struct sockaddr *)&addr, &len) == 0 &&
	    len > offsetof(struct sockaddr_un, sun_path) && addr.sun_path[0])
		snprintf(srv->path, sizeof(srv->path), "%.*s", (int)sizeof(addr.sun_path), addr.sun_path);
	else
		snprintf(srv->path, sizeof(srv->path), "(socket from systemd)");
	srv->lfd = fd;
	srv->activated = true;
	return 1;
}
#endif

static void server_cleanup_socket(struct hsd_server *srv)
{
	if (srv->lfd >= 0)
		close(srv->lfd);
	srv->lfd = -1;
	if (!srv->activated && srv->path[0] && srv->lock_fd >= 0) {
		if (unlink(srv->path) < 0 && errno != ENOENT)
			log_warn("cannot remove %s: %s", srv->path, strerror(errno));
		unlink(srv->lock_path);
	}
	if (srv->lock_fd >= 0)
		close(srv->lock_fd);
	srv->lock_fd = -1;
}

int hsd_server_start(uv_loop_t *loop, const struct hsd_broker_config *bcfg,
		     const struct hsd_server_config *cfg, struct hsd_server **out)
{
	struct hsd_server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return HS_ENOMEM;
	srv->loop = loop;
	srv->lfd = -1;
	srv->lock_fd = -1;
	list_init(&srv->dead);
	list_init(&srv->unhello);
	srv->hello_timeout_ms = cfg->hello_timeout_ms ? cfg->hello_timeout_ms : SERVER_HELLO_TIMEOUT_MS;
	srv->spin_ns = (uint64_t)cfg->spin_us * 1000u;
	srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

	struct hsd_broker_hooks hooks = { .want_write = hook_want_write, .dead = hook_dead,
				      .chan_open = hook_chan_open, .data = srv };
	int r = hsd_broker_new(bcfg, &hooks, &srv->broker);
	if (r < 0)
		goto fail;

	r = 0;
#if HS_HAVE_SYSTEMD
	r = take_activated(srv);
	if (r < 0)
		goto fail;
	if (r == 1 && cfg->socket_path)
		log_info("socket-activated: --socket/socket= is ignored");
#endif
	if (r == 0) {
		r = make_socket(srv, cfg);
		if (r < 0)
			goto fail;
	}

	r = uv_idle_init(loop, &srv->reaper);
	if (r < 0) {
		log_error("uv_idle_init: %s", uv_strerror(r));
		goto fail;
	}
	srv->reaper.data = srv;
	srv->handles++;
	r = uv_timer_init(loop, &srv->hello_timer);
	if (r < 0) {
		log_error("uv_timer_init: %s", uv_strerror(r));
		uv_close((uv_handle_t *)&srv->reaper, NULL);
		goto fail;
	}
	srv->hello_timer.data = srv;
	srv->handles++;
	/* The channels' pass before every sleep, and the idle handle that
	 * keeps the loop from sleeping while it has work. */
	r = uv_prepare_init(loop, &srv->chan_pass);
	if (r == 0)
		r = uv_idle_init(loop, &srv->chan_spin);
	if (r == 0)
		r = uv_timer_init(loop, &srv->expiry);
	if (r == 0)
		r = uv_prepare_start(&srv->chan_pass, on_chan_pass);
	if (r < 0) {
		log_error("uv_prepare/uv_idle: %s", uv_strerror(r));
		uv_close((uv_handle_t *)&srv->reaper, NULL);
		uv_close((uv_handle_t *)&srv->hello_timer, NULL);
		goto fail;
	}
	srv->chan_pass.data = srv;
	srv->chan_spin.data = srv;
	srv->expiry.data = srv;
	srv->handles += 3;
	r = uv_poll_init(loop, &srv->lpoll, srv->lfd);
	if (r == 0)
		r = uv_poll_start(&srv->lpoll, UV_READABLE, on_listen);
	if (r < 0) {
		log_error("watching the listening socket: %s", uv_strerror(r));
		uv_close((uv_handle_t *)&srv->reaper, NULL);
		uv_close((uv_handle_t *)&srv->hello_timer, NULL);
		uv_close((uv_handle_t *)&srv->chan_pass, NULL);
		uv_close((uv_handle_t *)&srv->chan_spin, NULL);
		uv_close((uv_handle_t *)&srv->expiry, NULL);
		srv->handles -= 5;
		goto fail;
	}
	srv->lpoll.data = srv;
	srv->handles++;
	uv_timer_init(loop, &srv->trim); /* cannot fail */
	srv->trim.data = srv;
	srv->handles++;
	trim_schedule(srv, bcfg->idle_release_ms);

	log_info("hsbrokerd %s listening on %s%s (epoch %016llx, host slabs %llu bytes, cap %llu)",
		 HS_VERSION, srv->path, srv->activated ? " (socket-activated)" : "",
		 (unsigned long long)srv->broker->epoch,
		 (unsigned long long)srv->broker->cpu.slab_size,
		 (unsigned long long)srv->broker->cpu.cap);
#if HS_HAVE_SYSTEMD
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s", srv->path);
#endif
	*out = srv;
	return 0;

fail:
	server_cleanup_socket(srv);
	if (srv->broker)
		hsd_broker_free(srv->broker);
	if (srv->reserve_fd >= 0)
		close(srv->reserve_fd);
	free(srv);
	return r < 0 ? r : HS_EINVAL;
}

void hsd_server_stop(struct hsd_server *srv, const char *reason)
{
	if (srv->stopping)
		return;
	srv->stopping = true;
#if HS_HAVE_SYSTEMD
	sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
#endif
	log_info("shutting down: %s (%u sessions)", reason, srv->broker->nsessions);
	hsd_broker_shutdown_notice(srv->broker, reason);
	while (!list_empty(&srv->broker->sessions)) {
		struct hsd_session *s = list_first(&srv->broker->sessions, struct hsd_session, link);
		struct conn *c = s->io;
		if (c) {
			conn_close(c);
		} else {
			hsd_broker_session_close(srv->broker, s);
		}
	}
	uv_poll_stop(&srv->lpoll);
	uv_close((uv_handle_t *)&srv->lpoll, handle_closed);
	uv_close((uv_handle_t *)&srv->reaper, handle_closed);
	uv_close((uv_handle_t *)&srv->hello_timer, handle_closed);
	uv_close((uv_handle_t *)&srv->chan_pass, handle_closed);
	uv_close((uv_handle_t *)&srv->chan_spin, handle_closed);
	uv_close((uv_handle_t *)&srv->expiry, handle_closed);
	uv_close((uv_handle_t *)&srv->trim, handle_closed);
	server_cleanup_socket(srv);
	if (srv->reserve_fd >= 0)
		close(srv->reserve_fd);
	srv->reserve_fd = -1;
}

int hsd_server_reload(struct hsd_server *srv, const struct hsd_broker_config *bcfg,
		      const struct hsd_server_config *cfg)
{
#if HS_HAVE_SYSTEMD
	/* systemd (253 and later) wants the time with RELOADING=1. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading the configuration",
		   (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000u);
#endif
	int kept = hsd_broker_reload(srv->broker, bcfg);
	srv->hello_timeout_ms = cfg->hello_timeout_ms ? cfg->hello_timeout_ms : SERVER_HELLO_TIMEOUT_MS;
	srv->spin_ns = (uint64_t)cfg->spin_us * 1000u;
	trim_schedule(srv, srv->broker->cfg.idle_release_ms);
#if HS_HAVE_SYSTEMD
	sd_notifyf(0, "READY=1\nSTATUS=listening on %s", srv->path);
#endif
	return kept;
}
