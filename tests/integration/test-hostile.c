/* Hostile local clients (issue 11, part A) against the real daemon: a
 * client that floods and hangs up without reading, an alloc whose extent
 * wraps, --socket aimed at a file or a live socket that is not ours,
 * SIGHUP, and the limits a client of one uid cannot pass (pre-hello size
 * and hello timeout, per-uid caps, the total outbox, complete listings).
 * Each case first did the damage on b0d654f; now the daemon holds and a
 * well-behaved client still gets through. */
#include <fcntl.h>
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
	for (int round = 0; round < 8; round++) {
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

/* ---- SIGHUP ---- */

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

int main(void)
{
	Suite *s = suite_create("hostile");
	ht_case(s, "flood_and_hang_up", test_flood_and_hang_up);
	ht_case(s, "alloc_extent_wrap", test_alloc_extent_wrap);
	ht_case(s, "socket_path_not_ours", test_socket_path_not_ours);
	ht_case(s, "sighup_ignored", test_sighup_ignored);
	return ht_main(s);
}
