/* Hostile local clients (issue 11, part A) against the real daemon: a
 * client that floods and hangs up without reading, an alloc whose extent
 * wraps, --socket aimed at a file or a live socket that is not ours,
 * SIGHUP, and the limits a client of one uid cannot pass (pre-hello size
 * and hello timeout, per-uid caps, the total outbox, complete listings).
 * Each case first did the damage on b0d654f; now the daemon holds and a
 * well-behaved client still gets through. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "itest.h"
#include "raw.h"
#include "roles.h"
#include "wire.h"

/* A libhsclient round trip in a child: the daemon still serves. */
static int round_trip_child(void *arg)
{
	const char *sock = arg;
	hs_client *c;
	if (ht_connect(sock, "it-bystander", &c) < 0)
		return 1;
	char topic[64];
	snprintf(topic, sizeof(topic), "it/bystander.%d", (int)getpid());
	int rc = ht_round_trip(c, topic);
	hs_client_disconnect(c);
	if (rc < 0)
		return ht_child_fail("bystander", "round trip: %s", hs_strerror(rc));
	return 0;
}

static void expect_serving(struct ht_daemon *d)
{
	ck_assert_msg(ht_daemon_alive(d), "hsbrokerd died");
	pid_t child = ht_fork(round_trip_child, d->sock);
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);
}

static int raw_session(const char *sock)
{
	int fd = rw_connect(sock);
	ck_assert_int_eq(rw_hello(fd, HS_PROTOCOL_VERSION), 0);
	rw_expect_hello_reply(fd);
	return fd;
}

/* ---- row 1: replies queued for a peer that hangs up ---- */

START_TEST(test_flood_and_hang_up)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	/* 3,000 pings, no reply read, then exit: the replies fill the
	 * socket and the outbox; closing the session flushes the outbox
	 * into a dead peer (EPIPE), which on b0d654f put the connection
	 * back on the reaper's list after it was freed. */
	for (int round = 0; round < 4; round++) {
		int fd = raw_session(d.sock);
		for (uint64_t seq = 2; seq < 3002; seq++)
			if (rw_ping(fd, seq, -1, 0) < 0)
				break; /* dropped for not reading: also fine */
		close(fd);
	}
	expect_serving(&d);
	HT_END(&d);
}
END_TEST

/* ---- row 2: an alloc whose extent wraps ---- */

static void alloc_req(int fd, uint64_t seq, Hs__DType *dt, size_t ndim, int64_t *shape,
		      int64_t *strides)
{
	Hs__Device dev = HS__DEVICE__INIT;
	dev.type = kDLCPU;
	Hs__Meta meta = HS__META__INIT;
	meta.device = &dev;
	meta.dtype = dt;
	meta.n_shape = ndim;
	meta.shape = shape;
	meta.n_strides = strides ? ndim : 0;
	meta.strides = strides;
	Hs__AllocReq a = HS__ALLOC_REQ__INIT;
	a.meta = &meta;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_ALLOC;
	m.alloc = &a;
	ck_assert_int_eq(rw_send_msg(fd, &m, -1, 0), 0);
}

START_TEST(test_alloc_extent_wrap)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	int fd = raw_session(d.sock);
	static const int refused[] = { HS_EOVERFLOW, HS_ERANGE, HS_EINVAL, 0 };
	/* Issue 11's: complex128 x 64 lanes (1 KiB elements), element
	 * (1, 0) 2^50 bytes past the start; the extent was 2^128 and wrapped
	 * to a block of 1 KiB. */
	Hs__DType c128 = HS__DTYPE__INIT;
	c128.code = kDLComplex;
	c128.bits = 128;
	c128.lanes = 64;
	int64_t shape[] = { 2, (1ll << 20) * ((1ll << 39) - 1) + 1 };
	int64_t strides[] = { 1ll << 40, (1ll << 20) * ((1ll << 39) + 1) };
	alloc_req(fd, 10, &c128, 2, shape, strides);
	rw_expect_error(fd, 10, refused);
	/* Few elements, the same reach: only the strides are out of range. */
	int64_t few[] = { 2, 3 };
	alloc_req(fd, 11, &c128, 2, few, strides);
	rw_expect_error(fd, 11, refused);
	/* Spans that fit one by one but not summed. */
	Hs__DType u8 = HS__DTYPE__INIT;
	u8.code = kDLUInt;
	u8.bits = 8;
	u8.lanes = 1;
	int64_t three[] = { 3, 3 };
	int64_t huge[] = { INT64_MAX, INT64_MAX };
	alloc_req(fd, 12, &u8, 2, three, huge);
	rw_expect_error(fd, 12, refused);
	/* The session goes on. */
	ck_assert_int_eq(rw_ping(fd, 13, -1, 0), 0);
	rw_expect_ok(fd, 13);
	close(fd);
	expect_serving(&d);
	HT_END(&d);
}
END_TEST

/* ---- row 10: --socket on a path that is not the daemon's to take ---- */

/* Runs hsbrokerd --socket path; returns its exit code, its stderr in
 * err. */
static int daemon_on(const char *path, char *err, size_t size)
{
	char tmp[300];
	ht_tmpdir(tmp, sizeof(tmp));
	char log[400];
	snprintf(log, sizeof(log), "%s/stderr", tmp);
	int lfd = open(log, O_CREAT | O_RDWR | O_TRUNC | O_CLOEXEC, 0600);
	ck_assert_int_ge(lfd, 0);
	const char *daemon = ht_prog("HSBROKERD");
	ck_assert_ptr_nonnull(daemon);
	char *argv[] = { (char *)daemon, (char *)"--socket", (char *)path, NULL };
	pid_t pid = ht_spawn(argv, NULL, -1, lfd);
	ck_assert_int_gt(pid, 0);
	int rc = ht_wait(pid, HT_DEADLINE_MS);
	ssize_t n = pread(lfd, err, size - 1, 0);
	err[n > 0 ? n : 0] = '\0';
	close(lfd);
	return rc;
}

START_TEST(test_socket_path_not_ours)
{
	ht_init();
	char dir[300], path[400], err[4096];
	ht_tmpdir(dir, sizeof(dir));

	/* A regular file (a typo in --socket): refused, left as it was. */
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("precious\n", f);
	fclose(f);
	ck_assert_int_eq(daemon_on(path, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "not a socket"), "no clear message: %s", err);
	f = fopen(path, "r");
	ck_assert_msg(f, "hsbrokerd deleted %s", path);
	char line[32] = "";
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	fclose(f);
	ck_assert_str_eq(line, "precious\n");
	char lock[420];
	snprintf(lock, sizeof(lock), "%s.lock", path);
	ck_assert_msg(access(lock, F_OK) < 0, "a lock file was left beside %s", path);

	/* A live socket without the lock (a socket-activated daemon's, or
	 * another program's): refused, still ours and still accepting. */
	snprintf(path, sizeof(path), "%s/live.sock", dir);
	int lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(lfd, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	memcpy(addr.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	ck_assert_int_eq(listen(lfd, 16), 0);
	ck_assert_int_eq(daemon_on(path, err, sizeof(err)), 1);
	ck_assert_msg(strstr(err, "is live"), "no clear message: %s", err);
	int cfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	ck_assert_msg(connect(cfd, (struct sockaddr *)&addr, sizeof(addr)) == 0,
		      "the live socket %s was taken over", path);
	close(cfd);
	close(lfd);

	/* The same socket once nobody listens is stale: taken over. */
	struct ht_daemon d;
	ck_assert_int_eq(ht_daemon_start_at(&d, path, NULL), 0);
	expect_serving(&d);
	ck_assert_int_eq(ht_daemon_stop(&d), 0);
	ck_assert_msg(access(path, F_OK) < 0, "the socket was left behind");
}
END_TEST

/* ---- SIGHUP: a reload (test-ops.c tests what it applies); it must
 * never end the daemon ---- */

START_TEST(test_sighup_ignored)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
		expect_serving(&d);
	}
	HT_END(&d);
}
END_TEST

/* ---- row 4: before hello ---- */

#define NOBODY 65534

/* A datagram of len bytes that decodes (on b0d654f, before any check) to
 * len / 2 empty Hello fields: the costly shape from the report. */
static const uint8_t *empty_fields(size_t len)
{
	static uint8_t buf[256 << 10];
	ck_assert_uint_le(len, sizeof(buf));
	for (size_t i = 0; i + 1 < len; i += 2) {
		buf[i] = 0x52; /* field 10 (hello), length-delimited */
		buf[i + 1] = 0;
	}
	return buf;
}

static void big_sndbuf(int fd)
{
	int want = 1 << 20;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want));
}

#define BIG_DATAGRAM (128 << 10)

/* A client of uid NOBODY, not allowed, sends a big datagram first: the
 * answer must be HS_EPERM (refused unread), then the hang-up. Children
 * report by exit code (no Check here). */
static int denied_big_datagram(void *arg)
{
	const char *sock = arg;
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return ht_child_fail("denied", "cannot become uid %d", NOBODY);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return ht_child_fail("denied", "connect: %s", strerror(errno));
	big_sndbuf(fd);
	if (send(fd, empty_fields(BIG_DATAGRAM), BIG_DATAGRAM, MSG_NOSIGNAL) != BIG_DATAGRAM)
		return ht_child_fail("denied", "send: %s", strerror(errno));
	static uint8_t buf[HS__WIRE_MAX_MSG];
	int fds[HS__WIRE_MAX_FDS], nfds = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };
	int n = poll(&p, 1, HT_DEADLINE_MS) == 1 ? hs__wire_recv(fd, buf, fds, &nfds) : -ETIMEDOUT;
	hs__wire_close_fds(fds, nfds);
	Hs__Message *m = NULL;
	if (n <= 0 || hs__wire_decode(buf, (size_t)n, &m) < 0)
		return ht_child_fail("denied", "no ErrorReply (%d)", n);
	int code = m->body_case == HS__MESSAGE__BODY_ERROR ? m->error->code : 0;
	hs__wire_free(m);
	if (code != HS_EPERM)
		return ht_child_fail("denied", "got %s, expected HS_EPERM (refused unread)",
				     code ? hs__err_name(code) : "a reply that is not an error");
	n = poll(&p, 1, HT_DEADLINE_MS) == 1 ? hs__wire_recv(fd, buf, fds, &nfds) : -ETIMEDOUT;
	close(fd);
	if (n != -EPIPE)
		return ht_child_fail("denied", "the daemon kept the connection (%d)", n);
	return 0;
}

START_TEST(test_before_hello)
{
	if (geteuid() != 0)
		fprintf(stderr, "not root: the other-uid half is skipped\n");
	/* Only this uid allowed (root in CI): uid 65534 is a stranger. */
	char config[160];
	snprintf(config, sizeof(config),
		 "[access]\nallow_uids = %u\n[limits]\nhello_timeout_ms = 1500\nexempt_uids = none\n",
		 (unsigned)geteuid());
	struct ht_daemon d;
	HT_BEGIN_CONFIG(&d, config);

	/* An allowed uid: a datagram larger than any Hello is refused by its
	 * size (HS_EMSGSIZE), not decoded (which said HS_EVERSION). */
	int fd = rw_connect(d.sock);
	big_sndbuf(fd);
	ck_assert_int_eq(rw_send(fd, empty_fields(BIG_DATAGRAM), BIG_DATAGRAM, -1, 0), 0);
	static const int too_big[] = { HS_EMSGSIZE, 0 };
	rw_expect_disconnect(fd, too_big, true);

	/* Silence: closed at the hello timeout, with a reason. */
	fd = rw_connect(d.sock);
	static const int timed_out[] = { HS_ETIMEDOUT, 0 };
	int64_t t0 = ht_now_ms();
	rw_expect_disconnect(fd, timed_out, true);
	fprintf(stderr, "a silent connection was closed after %lld ms (hello_timeout_ms 1500)\n",
		(long long)(ht_now_ms() - t0));

	/* A uid not allowed is refused before anything is decoded. */
	if (geteuid() == 0) {
		pid_t child = ht_fork(denied_big_datagram, d.sock);
		ck_assert_int_gt(child, 0);
		ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);
	}
	expect_serving(&d);
	HT_END(&d);
}
END_TEST

/* ---- rows 9 and 6: per-uid caps ---- */

/* A round trip as uid NOBODY: another uid is not held back by this
 * one's caps. */
static int nobody_round_trip(void *arg)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return ht_child_fail("other-uid", "cannot become uid %d", NOBODY);
	return round_trip_child(arg);
}

static void expect_other_uid_served(struct ht_daemon *d)
{
	if (geteuid() != 0)
		return; /* cannot change uid */
	pid_t child = ht_fork(nobody_round_trip, d->sock);
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);
}

#define CONN_CAP 8

/* libhsclient's view of a uid at its cap: connect says HS_ELIMIT. */
static int connect_refused(void *arg)
{
	hs_client *c = NULL;
	int rc = hs_client_connect(arg, "over-the-cap", &c);
	if (rc == 0)
		hs_client_disconnect(c);
	if (rc != HS_ELIMIT)
		return ht_child_fail("over-the-cap", "connect returned %s, expected HS_ELIMIT",
				     rc ? hs_strerror(rc) : "success");
	return 0;
}

START_TEST(test_uid_connections)
{
	struct ht_daemon d;
	HT_BEGIN_CONFIG(&d, "[limits]\nmax_connections_per_uid = 8\nexempt_uids = none\n");
	int socks[CONN_CAP];
	for (int i = 0; i < CONN_CAP; i++)
		socks[i] = raw_session(d.sock);
	/* One more of this uid: told why (seq 0, HS_ELIMIT), hung up. */
	int extra = rw_connect(d.sock);
	(void)rw_hello(extra, HS_PROTOCOL_VERSION); /* may meet the hang-up */
	static const int limit[] = { HS_ELIMIT, 0 };
	rw_expect_disconnect(extra, limit, true);
	pid_t child = ht_fork(connect_refused, d.sock);
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);
	/* Others are served meanwhile. */
	expect_other_uid_served(&d);
	/* A slot freed is a slot to take. */
	close(socks[0]);
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		int fd = rw_connect(d.sock);
		ck_assert_int_eq(rw_hello(fd, HS_PROTOCOL_VERSION) == 0 || ht_now_ms() < end, 1);
		int err;
		Hs__Message *m = rw_recv(fd, &err);
		bool ok = m && m->body_case == HS__MESSAGE__BODY_HELLO_REPLY;
		if (m)
			hs__wire_free(m);
		if (ok) {
			socks[0] = fd;
			break;
		}
		close(fd); /* the daemon had not reaped the closed one yet */
		ck_assert_msg(ht_now_ms() < end, "the freed connection slot never came back");
		ht_sleep_ms(20);
	}
	for (int i = 0; i < CONN_CAP; i++)
		close(socks[i]);
	HT_END(&d);
}
END_TEST

/* SubscribeReq on a raw session: 0 with the subscription id, or the
 * ErrorReply's code. */
static int raw_subscribe(int fd, uint64_t seq, const char *topic, uint64_t *sub)
{
	Hs__SubscribeReq r = HS__SUBSCRIBE_REQ__INIT;
	r.topic = (char *)topic;
	r.depth = 1;
	r.credits = 1;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &r;
	ck_assert_int_eq(rw_send_msg(fd, &m, -1, 0), 0);
	int err;
	Hs__Message *rep = rw_recv(fd, &err);
	ck_assert_msg(rep, "no reply to subscribe: %s", strerror(-err));
	ck_assert_uint_eq(rep->seq, seq);
	int code = 0;
	if (rep->body_case == HS__MESSAGE__BODY_SUBSCRIBE_REPLY)
		*sub = rep->subscribe_reply->subscription;
	else if (rep->body_case == HS__MESSAGE__BODY_ERROR)
		code = rep->error->code;
	else
		ck_abort_msg("unexpected %s", hs__wire_body_name(rep));
	hs__wire_free(rep);
	return code;
}

START_TEST(test_uid_subscriptions_topics)
{
	struct ht_daemon d;
	HT_BEGIN_CONFIG(&d, "[limits]\nmax_subscriptions_per_uid = 10\nmax_topics_per_uid = 6\n"
			     "exempt_uids = none\n");
	int a = raw_session(d.sock), b = raw_session(d.sock);
	uint64_t seq = 10, sub, subs_a[6];
	char topic[32];
	/* Six topics made by this uid: a seventh is refused... */
	for (int i = 0; i < 6; i++) {
		snprintf(topic, sizeof(topic), "hostile/%d", i);
		ck_assert_int_eq(raw_subscribe(a, seq++, topic, &subs_a[i]), 0);
	}
	ck_assert_int_eq(raw_subscribe(a, seq++, "hostile/6", &sub), HS_ELIMIT);
	/* ...while subscribing to those that exist goes on, from any of its
	 * sessions, up to ten subscriptions for the uid. */
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(raw_subscribe(b, seq++, "hostile/0", &sub), 0);
	ck_assert_int_eq(raw_subscribe(b, seq++, "hostile/1", &sub), HS_ELIMIT);
	/* Another uid is not held back by either cap. */
	expect_other_uid_served(&d);
	/* Closing a session gives its subscriptions back; idle topics are
	 * freed to make room for new ones. */
	close(a);
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	int rc;
	while ((rc = raw_subscribe(b, seq++, "hostile/new", &sub)) == HS_ELIMIT &&
	       ht_now_ms() < end)
		ht_sleep_ms(20); /* until the daemon has reaped a */
	ck_assert_int_eq(rc, 0);
	close(b);
	HT_END(&d);
}
END_TEST

/* ---- row 5: readers that never read, all together ---- */

#define HOSTILE_READERS 10
#define LIST_TENSORS 1500

static void list_req(int fd, uint64_t seq, int flags)
{
	Hs__ListReq l = HS__LIST_REQ__INIT;
	l.what = HS__LIST_WHAT__LIST_TENSORS;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_LIST;
	m.list = &l;
	uint8_t buf[64];
	size_t len = rw_pack(&m, buf, sizeof(buf));
	(void)send(fd, buf, len, MSG_NOSIGNAL | flags);
}

/* VmRSS of pid in KiB, or -1: a figure for the log, not asserted. */
static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kib = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kib = atol(line + 6);
	if (f)
		fclose(f);
	return kib;
}

/* True when the daemon hung up fd (everything queued read first). */
static bool hung_up(int fd, int deadline_ms)
{
	static uint8_t buf[HS__WIRE_MAX_MSG];
	int64_t end = ht_now_ms() + deadline_ms;
	for (;;) {
		int left = (int)(end - ht_now_ms());
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (left <= 0 || poll(&p, 1, left) <= 0)
			return false;
		int fds[HS__WIRE_MAX_FDS], nfds = 0;
		int n = hs__wire_recv(fd, buf, fds, &nfds);
		hs__wire_close_fds(fds, nfds);
		if (n == -EPIPE)
			return true;
		if (n < 0 && n != -EAGAIN)
			return true;
	}
}

START_TEST(test_outbox_total)
{
	struct ht_daemon d;
	HT_BEGIN_CONFIG(&d, "[limits]\noutbox_total_bytes = 4M\nexempt_uids = none\n");
	long rss0;
	/* Enough tensors that each listing is ~100 KiB. */
	int holder = raw_session(d.sock);
	Hs__DType f32 = HS__DTYPE__INIT;
	f32.code = kDLFloat;
	f32.bits = 32;
	f32.lanes = 1;
	int64_t one[] = { 1 };
	for (int i = 0; i < LIST_TENSORS; i++) {
		alloc_req(holder, 100 + (uint64_t)i, &f32, 1, one, NULL);
		int err;
		Hs__Message *m = rw_recv(holder, &err);
		ck_assert_msg(m && m->body_case == HS__MESSAGE__BODY_ALLOC_REPLY, "alloc %d", i);
		hs__wire_free(m);
	}
	rss0 = rss_kib(d.pid);

	/* Ten sessions ask for listings and never read: together they pass
	 * outbox_total long before any reaches its own outbox_max_bytes. */
	int hostile[HOSTILE_READERS];
	for (int k = 0; k < HOSTILE_READERS; k++) {
		hostile[k] = raw_session(d.sock);
		for (uint64_t q = 0; q < 120; q++)
			list_req(hostile[k], 10 + q, MSG_DONTWAIT);
	}
	/* A reader that reads is served meanwhile. */
	int good = raw_session(d.sock);
	list_req(good, 5, 0);
	int err;
	Hs__Message *m = rw_recv(good, &err);
	ck_assert_msg(m && m->body_case == HS__MESSAGE__BODY_LIST_REPLY, "no listing: %s",
		      m ? hs__wire_body_name(m) : strerror(-err));
	hs__wire_free(m);

	long rss1 = rss_kib(d.pid);
	fprintf(stderr, "daemon RSS %ld KiB before the readers that never read, %ld KiB after\n",
		rss0, rss1);
	int dropped = 0;
	for (int k = 0; k < HOSTILE_READERS; k++) {
		dropped += hung_up(hostile[k], 3000);
		close(hostile[k]);
	}
	ck_assert_msg(dropped == HOSTILE_READERS, "%d of %d readers that never read were dropped",
		      dropped, HOSTILE_READERS);
	ck_assert_int_eq(rw_ping(good, 6, -1, 0), 0);
	rw_expect_ok(good, 6);
	close(good);
	close(holder);
	expect_serving(&d);
	HT_END(&d);
}
END_TEST

/* ---- row 11: listings larger than one message ---- */

#define LIST_SUBSCRIBERS 20
#define LIST_OWN_TOPICS 125
#define LIST_IDLE 240

static int named_session(const char *sock, const char *name)
{
	int fd = rw_connect(sock);
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = HS_PROTOCOL_VERSION;
	h.client_name = (char *)name;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 1;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	ck_assert_int_eq(rw_send_msg(fd, &m, -1, 0), 0);
	rw_expect_hello_reply(fd);
	return fd;
}

static json_int_t status_count(const char *sock, const char *what)
{
	const char *args[] = { "status", NULL };
	json_t *j = ht_hsctl_json(sock, args);
	ck_assert_ptr_nonnull(j);
	json_int_t n = json_integer_value(json_object_get(json_object_get(j, "counts"), what));
	json_decref(j);
	return n;
}

START_TEST(test_list_complete)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	/* Long names, many topics, one topic with more subscribers than a
	 * page holds: about 1.2 MB of listing. */
	char name[64], topic[256];
	memset(name, 'n', 63);
	name[63] = '\0';
	int subscribers[LIST_SUBSCRIBERS], idle[LIST_IDLE];
	uint64_t seq = 10, sub;
	for (int i = 0; i < LIST_SUBSCRIBERS; i++) {
		subscribers[i] = named_session(d.sock, name);
		for (int k = 0; k < LIST_OWN_TOPICS; k++) {
			snprintf(topic, sizeof(topic), "list/%0200d/%d.%d", 0, i, k);
			ck_assert_int_eq(raw_subscribe(subscribers[i], seq++, topic, &sub), 0);
			ck_assert_int_eq(raw_subscribe(subscribers[i], seq++, "list/crowded", &sub), 0);
		}
	}
	for (int i = 0; i < LIST_IDLE; i++)
		idle[i] = named_session(d.sock, name);
	int late = raw_session(d.sock);
	ck_assert_int_eq(raw_subscribe(late, seq++, "list/late", &sub), 0);

	/* Every client (hsctl's own session too), topic and subscriber. */
	json_int_t clients = status_count(d.sock, "clients");
	json_int_t topics = status_count(d.sock, "topics");
	json_int_t subs = status_count(d.sock, "subscribers");
	fprintf(stderr, "hsctl status: clients %lld, topics %lld, subscribers %lld\n",
		(long long)clients, (long long)topics, (long long)subs);
	ck_assert_int_eq(clients, LIST_SUBSCRIBERS + LIST_IDLE + 2);
	ck_assert_int_eq(topics, LIST_SUBSCRIBERS * LIST_OWN_TOPICS + 2);
	ck_assert_int_eq(subs, 2 * LIST_SUBSCRIBERS * LIST_OWN_TOPICS + 1);

	/* A producer waiting for the subscriber of the newest topic sees it. */
	const char *producer = getenv("HS_EXAMPLE_PRODUCER");
	if (producer && *producer) {
		char *argv[] = { (char *)producer, (char *)"--socket", d.sock, (char *)"--topic",
				 (char *)"list/late", (char *)"--count", (char *)"1",
				 (char *)"--wait-subscribers", (char *)"1", NULL };
		pid_t pid = ht_spawn(argv, NULL, -1, -1);
		ck_assert_int_gt(pid, 0);
		ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	}
	for (int i = 0; i < LIST_SUBSCRIBERS; i++)
		close(subscribers[i]);
	for (int i = 0; i < LIST_IDLE; i++)
		close(idle[i]);
	close(late);
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("hostile");
	ht_case(s, "flood_and_hang_up", test_flood_and_hang_up);
	ht_case(s, "alloc_extent_wrap", test_alloc_extent_wrap);
	ht_case(s, "socket_path_not_ours", test_socket_path_not_ours);
	ht_case(s, "sighup_ignored", test_sighup_ignored);
	ht_case(s, "before_hello", test_before_hello);
	ht_case(s, "uid_connections", test_uid_connections);
	ht_case(s, "uid_subscriptions_topics", test_uid_subscriptions_topics);
	ht_case(s, "outbox_total", test_outbox_total);
	ht_case(s, "list_complete", test_list_complete);
	return ht_main(s);
}
