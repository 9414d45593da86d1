/* The connection's I/O: sending requests and notes, and the reader role.
 *
 * Replies and pushes share one socket, so one thread at a time reads it
 * (libwayland's prepare_read idea): a thread that waits for something (its
 * reply, a delivery) becomes the reader when nobody is, reads a batch of
 * datagrams without the lock, dispatches each under the lock (replies into
 * their waiter's slot, deliveries into their subscription's buffer, slab
 * announcements into the cache), then gives the role up and broadcasts.
 * Everyone else waits on the condition variable. The lock is never held
 * across a blocking poll.
 *
 * With a shared-memory channel the same holds, with the channel's rings
 * in place of the socket: a message is a record, the reader sleeps on the
 * channel's eventfd after arming it (and the pair rings, whose producers
 * kick the same eventfd), and the daemon is kicked only when it said it
 * sleeps; one-way notes do not kick it at all unless it asked for them
 * (notes_wake). What differs between the two is one struct hs__transport
 * each (send, next, sleep, consumed, arm, dispatch_begin, pending), at the
 * bottom of this file. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Datagrams one reader handles before it looks at its own condition
 * again, so a busy stream of deliveries cannot starve it. */
#define READ_BATCH 32

void hs__client_fail(hs_client *c, int err)
{
	if (c->dead)
		return;
	/* Atomic: hs__client_note_unlocked reads it without lock. */
	__atomic_store_n(&c->dead, err, __ATOMIC_RELAXED);
	/* On a protocol error we stop talking; the daemon sees the close and
	 * releases every reference this session held. */
	if (err == HS_EPROTO)
		shutdown(c->fd, SHUT_RDWR);
	pthread_cond_broadcast(&c->cond);
}

/* How a message sent through the channel wakes the daemon. */
enum wake { WAKE_ALWAYS, WAKE_NOTES, WAKE_NEVER };

/* A transport: the socket until the daemon gives a channel, then the
 * channel with the pair rings. Everything in this file that differs
 * between them goes through these, not through branches. */
struct hs__transport {
	/* send_lock held: one message; wake as enum wake says. */
	int (*send)(hs_client *c, Hs__Message *msg, enum wake wake);
	/* The reader: the next message into c->rbuf (its length), -EAGAIN
	 * when none is there now, -EPIPE once the daemon is gone, or another
	 * negative errno. */
	int (*next)(hs_client *c, int *fds, int *nfds);
	/* The reader, with nothing to read: waits up to timeout_ms for
	 * something (as poll returns). */
	int (*sleep)(hs_client *c, int timeout_ms);
	/* The reader handled a batch. */
	void (*consumed)(hs_client *c);
	/* Before a sleep of the application's (hs_client_get_fd): whatever
	 * comes next wakes its fd; false when something came meanwhile. */
	bool (*arm)(hs_client *c);
	/* hs_client_dispatch, as the reader, before it reads. */
	void (*dispatch_begin)(hs_client *c);
	/* Something to read now, known without a syscall. */
	bool (*pending)(hs_client *c);
};

/* send_locked through the channel. */
static int chan_send(hs_client *c, Hs__Message *msg, enum wake wake)
{
	size_t len = hs__message__get_packed_size(msg);
	for (;;) {
		int r = hs__chan_put(&c->ch.tx, HS__CHAN_MSG, msg, len);
		if (r == 0)
			break;
		if (r == -EMSGSIZE)
			return HS_EMSGSIZE;
		if (r != -EAGAIN)
			return HS_EPROTO;
		if (!hs__chan_want_space(&c->ch.tx, len))
			continue;
		/* The daemon is a whole ring behind: be sure it is awake,
		 * then look again shortly (the reader may own our eventfd). */
		hs__chan_kick(c->efd_daemon);
		struct pollfd p = { .fd = c->fd, .events = 0 };
		if (poll(&p, 1, 1) > 0 && (p.revents & (POLLHUP | POLLERR)))
			return HS_EPIPE;
	}
	if (hs__wire_debug_enabled())
		hs__wire_debug("client", "->", msg, 0);
	__atomic_add_fetch(&c->stats.messages_sent, 1, __ATOMIC_RELAXED);
	if (wake == WAKE_NEVER)
		return 0;
	if (wake == WAKE_NOTES) {
		/* Pairs with the daemon's fence between setting notes_wake
		 * and arming: a note it asked for is never left unseen. */
		hs__chan_fence();
		if (!__atomic_load_n(&c->ch.hdr->notes_wake, __ATOMIC_RELAXED))
			return 0;
	}
	if (hs__chan_should_kick(&c->ch.tx))
		hs__chan_kick(c->efd_daemon);
	return 0;
}

/* send_locked on the socket: waits for room when the socket is full. */
static int sock_send(hs_client *c, Hs__Message *msg, enum wake wake)
{
	(void)wake; /* every datagram wakes the daemon */
	for (;;) {
		int r = hs__wire_send(c->fd, msg, NULL, 0);
		if (r != -EAGAIN) {
			if (r == 0) {
				if (hs__wire_debug_enabled())
					hs__wire_debug("client", "->", msg, 0);
				__atomic_add_fetch(&c->stats.messages_sent, 1, __ATOMIC_RELAXED);
				return 0;
			}
			if (r == -EPIPE || r == -ECONNRESET)
				return HS_EPIPE;
			if (r == -EMSGSIZE)
				return HS_EMSGSIZE;
			if (r == -ENOMEM)
				return HS_ENOMEM;
			return HS_EIO;
		}
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return HS_EIO;
	}
}

static const struct hs__transport sock_transport, chan_transport;
static bool chan_arm(hs_client *c);

/* Sends with send_lock held, through the client's transport. wake:
 * whether it must wake a sleeping daemon (the channel's notes need not). */
static int send_locked(hs_client *c, Hs__Message *msg, enum wake wake)
{
	return c->tr->send(c, msg, wake);
}

static int send_msg(hs_client *c, Hs__Message *msg, struct hs__reply_slot *slot,
		    enum wake wake)
{
	int err = pthread_mutex_lock(&c->send_lock);
	if (err)
		return HS_EIO;
	/* Seq is taken and the slot linked under send_lock, so requests go
	 * out in seq order and a reply never finds its slot missing. Not
	 * under lock: a thread may hold lock across a CUDA call that waits
	 * for CUDA's host-function thread, which waits for send_lock to send
	 * a release note (fence.c); slots_lock is a leaf, never held across
	 * anything. dead is stored atomically: a slot linked just after the
	 * client died is seen dead by its waiter. */
	msg->seq = ++c->next_seq;
	int dead = __atomic_load_n(&c->dead, __ATOMIC_RELAXED);
	if (!dead && slot) {
		pthread_mutex_lock(&c->slots_lock);
		__atomic_store_n(&slot->seq, msg->seq, __ATOMIC_RELAXED);
		slot->next = c->slots;
		c->slots = slot;
		pthread_mutex_unlock(&c->slots_lock);
	}
	if (dead) {
		pthread_mutex_unlock(&c->send_lock);
		return dead;
	}
	err = send_locked(c, msg, wake);
	pthread_mutex_unlock(&c->send_lock);
	if (err) {
		pthread_mutex_lock(&c->lock);
		hs__client_fail(c, err);
		pthread_mutex_unlock(&c->lock);
	}
	return err;
}

int hs__client_send_slot(hs_client *c, Hs__Message *msg, struct hs__reply_slot *slot,
			 bool lazy)
{
	return send_msg(c, msg, slot, lazy ? WAKE_NEVER : WAKE_ALWAYS);
}

void hs__slot_unlink(hs_client *c, struct hs__reply_slot *slot)
{
	pthread_mutex_lock(&c->slots_lock);
	for (struct hs__reply_slot **p = &c->slots; *p; p = &(*p)->next) {
		if (*p == slot) {
			*p = slot->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->slots_lock);
}

bool hs__slot_done(hs_client *c, void *arg)
{
	(void)c;
	return ((struct hs__reply_slot *)arg)->msg != NULL;
}

int hs__client_request(hs_client *c, Hs__Message *msg, Hs__Message **reply)
{
	return hs__client_request_sub(c, msg, NULL, reply);
}

int hs__client_request_sub(hs_client *c, Hs__Message *msg,
			   struct hs_subscription *sub, Hs__Message **reply)
{
	struct hs__reply_slot slot = { .sub = sub };
	int err = send_msg(c, msg, &slot, WAKE_ALWAYS);
	pthread_mutex_lock(&c->lock);
	if (!err)
		err = hs__client_wait(c, hs__slot_done, &slot, -1);
	hs__slot_unlink(c, &slot);
	pthread_mutex_unlock(&c->lock);
	if (err) {
		hs__wire_free(slot.msg);
		return err;
	}
	*reply = slot.msg;
	return 0;
}

int hs__client_sync(hs_client *c)
{
	Hs__PingReq ping = HS__PING_REQ__INIT;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_PING;
	m.ping = &ping;
	Hs__Message *reply;
	int err = hs__client_request(c, &m, &reply);
	if (err)
		return err;
	err = hs__reply_check(reply, HS__MESSAGE__BODY_OK);
	hs__wire_free(reply);
	return err;
}

int hs__client_note(hs_client *c, Hs__Message *msg)
{
	return send_msg(c, msg, NULL, WAKE_NOTES);
}

int hs__client_note_unlocked(hs_client *c, Hs__Message *msg)
{
	if (pthread_mutex_lock(&c->send_lock))
		return HS_EIO;
	int err = __atomic_load_n(&c->dead, __ATOMIC_RELAXED);
	if (!err) {
		msg->seq = ++c->next_seq;
		err = send_locked(c, msg, WAKE_NOTES);
	}
	pthread_mutex_unlock(&c->send_lock);
	/* A failure is not recorded here (that needs lock): the next call
	 * on the client meets the same dead socket. */
	return err;
}

int hs__reply_check(const Hs__Message *reply, Hs__Message__BodyCase want)
{
	if (reply->body_case == want)
		return 0;
	if (reply->body_case == HS__MESSAGE__BODY_ERROR && reply->error) {
		int code = reply->error->code;
		/* An untrusted code: only negative, plausible values pass. */
		if (code < 0 && code > -10000)
			return code;
	}
	return HS_EPROTO;
}

void hs__client_orphan(hs_client *c, uint64_t tensor_id)
{
	if (c->n_orphans == c->cap_orphans) {
		size_t cap = c->cap_orphans ? c->cap_orphans * 2 : 16;
		uint64_t *o = realloc(c->orphans, cap * sizeof(*o));
		if (!o)
			return; /* the daemon frees it at disconnect */
		c->orphans = o;
		c->cap_orphans = cap;
	}
	c->orphans[c->n_orphans++] = tensor_id;
}

void hs__client_flush_orphans(hs_client *c)
{
	pthread_mutex_lock(&c->lock);
	uint64_t *ids = c->orphans;
	size_t n = c->n_orphans;
	bool dead = c->dead != 0;
	if (n == 0 || dead) {
		c->n_orphans = 0;
		pthread_mutex_unlock(&c->lock);
		return;
	}
	c->orphans = NULL;
	c->n_orphans = c->cap_orphans = 0;
	pthread_mutex_unlock(&c->lock);

	hs__client_release(c, ids, n, false);
	free(ids);
}

int hs__client_release(hs_client *c, const uint64_t *ids, size_t n, bool unlocked)
{
	/* Several per note, well under a record's size. */
	int err = 0;
	for (size_t i = 0; i < n && !err; i += 1024) {
		Hs__ReleaseNote rel = HS__RELEASE_NOTE__INIT;
		rel.n_tensor_ids = n - i < 1024 ? n - i : 1024;
		rel.tensor_ids = (uint64_t *)ids + i;
		Hs__Message m = HS__MESSAGE__INIT;
		m.body_case = HS__MESSAGE__BODY_RELEASE;
		m.release = &rel;
		err = unlocked ? hs__client_note_unlocked(c, &m) : hs__client_note(c, &m);
	}
	return err;
}

static bool is_reply(Hs__Message__BodyCase b)
{
	switch (b) {
	case HS__MESSAGE__BODY_HELLO_REPLY:
	case HS__MESSAGE__BODY_ALLOC_REPLY:
	case HS__MESSAGE__BODY_EMIT_REPLY:
	case HS__MESSAGE__BODY_SUBSCRIBE_REPLY:
	case HS__MESSAGE__BODY_OK:
	case HS__MESSAGE__BODY_ERROR:
	case HS__MESSAGE__BODY_LIST_REPLY:
	case HS__MESSAGE__BODY_ROUTE_REPLY:
		return true;
	default:
		return false;
	}
}

/* One decoded datagram, lock held. Takes msg (frees or hands it on) and
 * closes every fd it does not use. */
static void dispatch(hs_client *c, Hs__Message *msg, int *fds, int nfds)
{
	int err = 0;
	__atomic_add_fetch(&c->stats.messages_received, 1, __ATOMIC_RELAXED);
	if (is_reply(msg->body_case) && msg->seq != 0) {
		if (msg->seq > c->synced_seq)
			c->synced_seq = msg->seq;
		/* A route's page comes with its reply: mapped here, where its
		 * fd is, for the emitter waiting on it (ring.c). */
		if (msg->body_case == HS__MESSAGE__BODY_ROUTE_REPLY && msg->route_reply &&
		    msg->route_reply->page_fd) {
			struct hs__pring_page *pg = NULL;
			if (nfds != 1 || hs__pring_page_map(fds[0], &pg) < 0)
				err = HS_EPROTO;
			hs__pring_page_unmap(c->route_page);
			c->route_page = pg;
		}
		pthread_mutex_lock(&c->slots_lock);
		for (struct hs__reply_slot *s = c->slots; s; s = s->next) {
			if (s->seq == msg->seq && !s->msg) {
				if (s->sub)
					hs__subscription_link(c, s->sub, msg);
				s->msg = msg;
				msg = NULL;
				break;
			}
		}
		pthread_mutex_unlock(&c->slots_lock);
		/* A reply nobody waits for: the failure of a one-way note
		 * (release, credit), which never ends the session. */
		if (msg && hs__wire_debug_enabled() &&
		    msg->body_case == HS__MESSAGE__BODY_ERROR && msg->error)
			fprintf(stderr, "[hs client %d] note %llu failed: %s\n", (int)getpid(),
				(unsigned long long)msg->seq, hs__strerror(msg->error->code));
	} else {
		switch (msg->body_case) {
		case HS__MESSAGE__BODY_SLAB:
			err = msg->slab ? hs__slab_announce(c, msg->slab, fds, nfds) : HS_EPROTO;
			break;
		case HS__MESSAGE__BODY_EVENT:
			err = msg->event ? hs__event_announce(c, msg->event) : HS_EPROTO;
			break;
		case HS__MESSAGE__BODY_DELIVER:
			err = msg->deliver ? hs__subscription_deliver(c, msg->deliver) : HS_EPROTO;
			/* Read by a thread that is not the application's loop:
			 * its fd must still say so (app_wake). */
			if (c->fd_mode && !c->app_reading)
				c->wake_app = true;
			break;
		case HS__MESSAGE__BODY_SHUTDOWN:
			hs__client_fail(c, HS_ESHUTDOWN);
			break;
		case HS__MESSAGE__BODY_RING:
			err = msg->ring ? hs__ring_announce(c, msg->ring, fds, nfds) : HS_EPROTO;
			if (!err && c->fd_mode && !c->app_reading)
				c->wake_app = true; /* notes may wait in it already */
			break;
		case HS__MESSAGE__BODY_RING_CLOSE:
			if (!msg->ring_close)
				err = HS_EPROTO;
			else
				hs__ring_closed(c, msg->ring_close->ring_id);
			break;
		case HS__MESSAGE__BODY_ERROR:
			/* seq 0: the daemon refuses this session (protocol
			 * error, version) and is closing the connection. */
			hs__client_fail(c, hs__reply_check(msg, HS__MESSAGE__BODY__NOT_SET));
			break;
		default:
			err = HS_EPROTO; /* a request, or a push with the wrong seq */
		}
	}
	hs__wire_close_fds(fds, nfds);
	hs__wire_free(msg);
	if (err)
		hs__client_fail(c, err);
}

int hs__client_take_channel(hs_client *c, const Hs__Message *msg, int *fds, int nfds)
{
	int err = HS_EPROTO;
	if (msg->body_case == HS__MESSAGE__BODY_CHANNEL && msg->channel && nfds == 3 &&
	    msg->channel->ring_size == HS__CHAN_RING_SIZE) {
		int r = hs__chan_map(fds[0], &c->ch);
		err = r == 0 ? 0 : r == -EPROTO ? HS_EPROTO : HS_ENOMEM;
	}
	if (err) {
		hs__wire_close_fds(fds, nfds);
		return err;
	}
	close(fds[0]); /* the mapping keeps the memory */
	c->efd_daemon = fds[1];
	c->efd_client = fds[2];
	c->use_chan = true;
	c->tr = &chan_transport;
	return 0;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* The next datagram: from the socket, or with a channel its next record
 * (fetching from the socket the datagram a record marks, which the daemon
 * sends right after writing the record). Returns its length in c->rbuf,
 * -EAGAIN when there is none now, -EPIPE once the daemon is gone, or
 * another negative errno. */
static int sock_next(hs_client *c, int *fds, int *nfds)
{
	return hs__wire_recv(c->fd, c->rbuf, fds, nfds);
}

static int chan_next(hs_client *c, int *fds, int *nfds)
{
	uint32_t kind;
	int n = hs__chan_get(&c->ch.rx, c->rbuf, &kind);
	if (n == -EAGAIN)
		return c->chan_hup ? -EPIPE : -EAGAIN;
	if (n < 0 || kind == HS__CHAN_MSG)
		return n;
	for (;;) {
		n = hs__wire_recv(c->fd, c->rbuf, fds, nfds);
		if (n != -EAGAIN)
			return n;
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		if (poll(&p, 1, -1) < 0 && errno != EINTR)
			return -EIO;
	}
}

/* Whether a core is free for a spinner: fewer tasks running than cores
 * (the load average's running count, this thread included), looked at
 * every 100 ms at most. */
static bool core_free(hs_client *c, int64_t now)
{
	if (now - c->load_seen_ns < 100000000)
		return c->core_free;
	c->load_seen_ns = now;
	c->core_free = false;
	/* Once per process; clients on several threads may race to set it. */
	static long ncpu_seen;
	long ncpu = __atomic_load_n(&ncpu_seen, __ATOMIC_RELAXED);
	if (!ncpu) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		__atomic_store_n(&ncpu_seen, ncpu, __ATOMIC_RELAXED);
	}
	int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	char buf[128];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	double l1, l5, l15;
	long running = 0, total = 0;
	if (sscanf(buf, "%lf %lf %lf %ld/%ld", &l1, &l5, &l15, &running, &total) == 5)
		c->core_free = running < ncpu;
	return c->core_free;
}

/* How long to look at the rings before sleeping. HSBROKER_SPIN_US
 * decides when given; otherwise the wait adapts: it spins only while
 * things arrive quickly (the recent waits that ended with something were
 * short) and a core is free for it, for up to twice such a wait, at most
 * ADAPTIVE_SPIN_NS. A spinner on a busy machine takes the CPU its peer
 * needs, and one on a quiet stream burns a core for nothing. */
#define ADAPTIVE_SPIN_NS 50000
static int64_t spin_budget(hs_client *c, int64_t now)
{
	if (c->spin_set)
		return c->spin_ns;
	int64_t w = c->wait_avg_ns;
	if (w <= 0 || w > ADAPTIVE_SPIN_NS || !core_free(c, now))
		return 0;
	return 2 * w < ADAPTIVE_SPIN_NS ? 2 * w : ADAPTIVE_SPIN_NS;
}

/* A wait ended with something to read after took ns. */
static void wait_seen(hs_client *c, int64_t took)
{
	/* A quarter of the new one: a burst or a lull moves it within a few
	 * waits (a long wait counts as a bit past spinning's reach). */
	if (took > 4 * ADAPTIVE_SPIN_NS)
		took = 4 * ADAPTIVE_SPIN_NS;
	c->wait_avg_ns = c->wait_avg_ns ? (3 * c->wait_avg_ns + took) / 4 : took;
}

/* The reader, before it sleeps with a channel: arms it, then polls the
 * eventfd (and the socket for the daemon's death). Returns as poll does;
 * > 0 without sleeping when a record arrived meanwhile. */
static int chan_poll(hs_client *c, int timeout_ms)
{
	int64_t start = now_ns();
	int64_t spin = timeout_ms != 0 ? spin_budget(c, start) : 0;
	/* Look at the ring for a while before sleeping, so the daemon or the
	 * producer need not wake us (a core's worth of CPU while waiting). */
	if (spin) {
		if (timeout_ms > 0 && spin > (int64_t)timeout_ms * 1000000)
			spin = (int64_t)timeout_ms * 1000000;
		int64_t end = start + spin;
		do {
			if (hs__chan_pending(&c->ch.rx) || hs__ring_any_pending(c)) {
				wait_seen(c, now_ns() - start);
				return 1;
			}
			cpu_relax();
		} while (now_ns() < end);
	}
	if (!chan_arm(c))
		return 1;
	struct pollfd p[2] = { { .fd = c->efd_client, .events = POLLIN }, { .fd = c->fd } };
	int r = poll(p, 2, timeout_ms);
	if (r > 0 && (p[0].revents & POLLIN)) {
		hs__chan_clear(c->efd_client);
		wait_seen(c, now_ns() - start);
	} else if (r == 0) {
		wait_seen(c, INT64_MAX); /* nothing came: stop spinning */
	}
	if (r > 0 && (p[1].revents & (POLLHUP | POLLERR)))
		c->chan_hup = true; /* what the daemon wrote before still counts */
	return r;
}

/* Makes the application's fd (hs_client_get_fd) readable. */
static void app_wake(hs_client *c)
{
	if (c->efd_app >= 0)
		hs__chan_kick(c->efd_app);
}

/* The reader, when it lets go: a client whose fd the application polls
 * stays armed, so the daemon kicks it for what comes next; if something
 * came meanwhile, the fd is made readable at once. */
static void rearm_app(hs_client *c)
{
	if (__atomic_load_n(&c->fd_mode, __ATOMIC_ACQUIRE) && !c->tr->arm(c))
		app_wake(c);
}

bool hs__client_arm(hs_client *c)
{
	return c->tr->arm(c);
}

bool hs__client_pending(hs_client *c)
{
	return c->tr->pending(c);
}

/* The reader lets go (lock held). A delivery it read for the application
 * wakes the application's fd, else a loop that polls it would sleep with
 * a tensor waiting in a subscription's buffer. */
static void reader_done(hs_client *c)
{
	c->reading = false;
	if (c->wake_app) {
		c->wake_app = false;
		app_wake(c);
	}
	pthread_cond_broadcast(&c->cond);
}

/* The reader's batch, without the lock: reads up to READ_BATCH datagrams
 * that are there now. A reply that makes done(c, arg) true (done may be
 * NULL) ends the batch, so a request does not pay one more recvmsg that
 * finds nothing; pushes are still read until none is left, so a daemon
 * pushing past our credits is seen in the batch. Returns how many were
 * handled, or the error that ended the connection. */
static int read_batch(hs_client *c, bool (*done)(hs_client *, void *), void *arg)
{
	int handled = 0;
	while (handled < READ_BATCH) {
		int fds[HS__WIRE_MAX_FDS];
		int nfds = 0;
		int n = c->tr->next(c, fds, &nfds);
		if (n == -EAGAIN)
			break;
		if (n < 0) {
			int err = n == -EMSGSIZE || n == -EPROTO ? HS_EPROTO : HS_EPIPE;
			pthread_mutex_lock(&c->lock);
			hs__client_fail(c, err);
			pthread_mutex_unlock(&c->lock);
			return err;
		}
		Hs__Message *msg = NULL;
		int err = hs__wire_decode(c->rbuf, (size_t)n, &msg);
		if (err) {
			hs__wire_close_fds(fds, nfds);
			pthread_mutex_lock(&c->lock);
			hs__client_fail(c, HS_EPROTO);
			pthread_mutex_unlock(&c->lock);
			return HS_EPROTO;
		}
		if (hs__wire_debug_enabled())
			hs__wire_debug("client", "<-", msg, nfds);
		bool reply = is_reply(msg->body_case);
		pthread_mutex_lock(&c->lock);
		dispatch(c, msg, fds, nfds);
		int dead = c->dead;
		bool enough = reply && done && done(c, arg);
		pthread_mutex_unlock(&c->lock);
		handled++;
		if (dead)
			return dead;
		if (enough)
			break;
	}
	if (handled > 0)
		c->tr->consumed(c);
	return handled;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int hs__client_wait(hs_client *c, bool (*done)(hs_client *, void *), void *arg,
		    int timeout_ms)
{
	int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
	bool read_once = false; /* timeout 0 still reads what is there */
	for (;;) {
		if (done(c, arg))
			return 0;
		if (c->dead)
			return c->dead;
		int left = -1;
		if (deadline >= 0) {
			int64_t l = deadline - now_ms();
			if (l <= 0 && (timeout_ms != 0 || read_once))
				return HS_ETIMEDOUT;
			left = l < 0 ? 0 : (int)l;
		}

		if (!c->reading) {
			c->reading = true;
			read_once = true;
			pthread_mutex_unlock(&c->lock);
			int r = c->tr->sleep(c, left);
			if (r > 0) {
				read_batch(c, done, arg);
			} else if (r < 0 && errno != EINTR) {
				pthread_mutex_lock(&c->lock);
				hs__client_fail(c, HS_EIO);
				pthread_mutex_unlock(&c->lock);
			}
			rearm_app(c);
			hs__client_flush_orphans(c);
			pthread_mutex_lock(&c->lock);
			reader_done(c);
			if (r == 0 && !done(c, arg) && !c->dead)
				return HS_ETIMEDOUT;
			continue;
		}

		if (deadline < 0) {
			pthread_cond_wait(&c->cond, &c->lock);
		} else {
			if (left == 0)
				return HS_ETIMEDOUT;
			struct timespec ts;
			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += left / 1000;
			ts.tv_nsec += (long)(left % 1000) * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&c->cond, &c->lock, &ts);
		}
	}
}

HS_EXPORT int hs_client_dispatch(hs_client *client)
{
	if (!client)
		return HS_EINVAL;
	pthread_mutex_lock(&client->lock);
	if (client->dead) {
		int dead = client->dead;
		pthread_mutex_unlock(&client->lock);
		return dead;
	}
	/* Someone else is reading: what is there is theirs to handle, and
	 * they broadcast when it is dispatched. */
	if (client->reading) {
		pthread_mutex_unlock(&client->lock);
		return 0;
	}
	client->reading = true;
	client->app_reading = true;
	pthread_mutex_unlock(&client->lock);

	if (client->efd_app >= 0)
		hs__chan_clear(client->efd_app);
	client->tr->dispatch_begin(client);
	int handled = 0, r;
	while ((r = read_batch(client, NULL, NULL)) == READ_BATCH)
		handled += r;
	if (r > 0)
		handled += r;
	rearm_app(client);
	hs__client_flush_orphans(client);

	pthread_mutex_lock(&client->lock);
	client->app_reading = false;
	client->wake_app = false; /* the application drains after this */
	reader_done(client);
	int dead = client->dead;
	pthread_mutex_unlock(&client->lock);
	return r < 0 ? r : (dead && handled == 0 ? dead : handled);
}

/* ---- the two transports ---- */

static int sock_sleep(hs_client *c, int timeout_ms)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms);
}

static void sock_nothing(hs_client *c)
{
	(void)c;
}

static bool sock_arm(hs_client *c)
{
	(void)c;
	return true; /* the socket wakes the application's fd by itself */
}

static bool sock_pending(hs_client *c)
{
	(void)c;
	return false; /* only a syscall could tell */
}

/* The daemon may wait for room in the ring to push more. */
static void chan_consumed(hs_client *c)
{
	if (hs__chan_space_kick(&c->ch.rx))
		hs__chan_kick(c->efd_daemon);
}

/* Pair rings kick the channel's eventfd (ring.c): armed with it. */
static bool chan_arm(hs_client *c)
{
	return hs__chan_arm(&c->ch.rx) && hs__ring_arm_all(c);
}

/* hs_client_dispatch: the wake-up the application's fd got is taken, and
 * the socket's hang-up noted (what the daemon wrote before still
 * counts). */
static void chan_dispatch_begin(hs_client *c)
{
	hs__chan_clear(c->efd_client);
	struct pollfd p = { .fd = c->fd };
	if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)))
		c->chan_hup = true;
}

static bool chan_pending(hs_client *c)
{
	return hs__chan_pending(&c->ch.rx);
}

static const struct hs__transport sock_transport = {
	.send = sock_send,
	.next = sock_next,
	.sleep = sock_sleep,
	.consumed = sock_nothing,
	.arm = sock_arm,
	.dispatch_begin = sock_nothing,
	.pending = sock_pending,
};

static const struct hs__transport chan_transport = {
	.send = chan_send,
	.next = chan_next,
	.sleep = chan_poll,
	.consumed = chan_consumed,
	.arm = chan_arm,
	.dispatch_begin = chan_dispatch_begin,
	.pending = chan_pending,
};

void hs__client_use_socket(hs_client *c)
{
	c->tr = &sock_transport;
}
