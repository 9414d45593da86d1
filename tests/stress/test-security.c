/* Access control and quotas end to end, with the real daemon and client
 * processes that drop to other uids (the tests run as root in CI; as
 * another user the cases that need setuid skip):
 *  - allow_uids = 0: root is served, uid 65534 gets HS_EPERM and the
 *    daemon logs a line naming the uid;
 *  - allow_uids = 65534 / allow_gids: the other way round, and a peer let
 *    in by its primary gid;
 *  - socket_mode 0660 + socket_group: a uid outside the group cannot even
 *    connect (HS_EACCES), a member can;
 *  - quota_tensors / quota_bytes: the client passing its quota gets
 *    HS_EDQUOT and carries on; another client is unaffected. */
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "itest.h"
#include "roles.h"

#define NOBODY 65534

static void write_config(char *path, size_t size, const char *text)
{
	ck_assert_int_eq(ht_write_config(path, size, text), 0);
}

/* Starts the daemon with the config text, its stderr going to log, the
 * socket reachable by other uids (ht_daemon_start_config). */
static void start_with_config(struct ht_daemon *d, const char *text, char *log, size_t size)
{
	ck_assert_int_eq(ht_daemon_start_config(d, text, log, size), 0);
}

/* ---- a client that becomes uid/gid first ---- */

static const char *result(int rc)
{
	return rc == 0 ? "success" : hs_strerror(rc);
}

struct as_user {
	const char *sock;
	uid_t uid;
	gid_t gid;
	int expect;  /* what hs_client_connect must return */
	bool round_trip;
};

static int as_user(void *arg)
{
	struct as_user *u = arg;
	if (u->uid != 0 || u->gid != 0) {
		if (setgroups(0, NULL) < 0 || setgid(u->gid) < 0 || setuid(u->uid) < 0)
			return ht_child_fail("as-user", "cannot become %u/%u", (unsigned)u->uid,
					     (unsigned)u->gid);
	}
	hs_client *c = NULL;
	int rc = hs_client_connect(u->sock, "as-user", &c);
	if (rc != u->expect)
		return ht_child_fail("as-user", "uid %u gid %u: connect returned %s, expected %s",
				     (unsigned)u->uid, (unsigned)u->gid, result(rc), result(u->expect));
	if (rc < 0)
		return 0;
	int ret = 0;
	if (u->round_trip) {
		rc = ht_round_trip(c, "sec/rt");
		if (rc < 0)
			ret = ht_child_fail("as-user", "round trip: %s", hs_strerror(rc));
	}
	hs_client_disconnect(c);
	return ret;
}

static int run_as(const char *sock, uid_t uid, gid_t gid, int expect)
{
	struct as_user u = { .sock = sock, .uid = uid, .gid = gid, .expect = expect,
			     .round_trip = expect == 0 };
	pid_t pid = ht_fork(as_user, &u);
	ck_assert_int_gt(pid, 0);
	return ht_wait(pid, HT_DEADLINE_MS);
}

#define NEED_ROOT()                                                            \
	do {                                                                   \
		if (geteuid() != 0) {                                          \
			fprintf(stderr, "not root: setuid cases skipped\n");   \
			return;                                                \
		}                                                              \
	} while (0)

START_TEST(test_allow_root_only)
{
	NEED_ROOT();
	ht_init();
	const int fds0 = ht_count_fds();
	char log[300];
	struct ht_daemon d;
	start_with_config(&d, "[access]\nallow_uids = 0\n", log, sizeof(log));

	ck_assert_int_eq(run_as(d.sock, 0, 0, 0), 0);
	ck_assert_int_eq(run_as(d.sock, NOBODY, NOBODY, HS_EPERM), 0);
	ck_assert_int_eq(run_as(d.sock, 0, 0, 0), 0); /* still serving */
	ck_assert_msg(ht_log_has(log, "denied", "uid 65534"), "no log line names the denied uid");

	ck_assert_int_eq(ht_wait_idle(d.sock, HT_DEADLINE_MS), 0); /* hsctl runs as root */
	HT_STOP(&d);
	ck_assert_int_eq(ht_count_fds(), fds0);
}
END_TEST

START_TEST(test_allow_other_uid)
{
	NEED_ROOT();
	ht_init();
	const int fds0 = ht_count_fds();
	char log[300];
	/* uid 65534, or primary gid 4343: root is neither */
	struct ht_daemon d;
	start_with_config(&d, "[access]\nallow_uids = 65534\nallow_gids = 4343\n", log, sizeof(log));

	ck_assert_int_eq(run_as(d.sock, 0, 0, HS_EPERM), 0);
	ck_assert_int_eq(run_as(d.sock, NOBODY, NOBODY, 0), 0);
	ck_assert_int_eq(run_as(d.sock, 4242, 4343, 0), 0);  /* by its gid */
	ck_assert_int_eq(run_as(d.sock, 4242, 4242, HS_EPERM), 0);
	ck_assert_msg(ht_log_has(log, "denied", "uid 0 "), "no log line names the denied uid 0");
	ck_assert_msg(ht_log_has(log, "denied", "uid 4242"), "no log line names the denied uid 4242");

	/* hsctl (root) is refused too: stop without the idle check. */
	HT_STOP(&d);
	ck_assert_int_eq(ht_count_fds(), fds0);
}
END_TEST

START_TEST(test_socket_mode_group)
{
	NEED_ROOT();
	ht_init();
	const int fds0 = ht_count_fds();
	char log[300];
	struct ht_daemon d;
	start_with_config(&d, "[access]\nsocket_mode = 0660\nsocket_group = 4343\n", log,
			  sizeof(log));
	struct stat st;
	ck_assert_int_eq(stat(d.sock, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0660);
	ck_assert_uint_eq(st.st_gid, 4343);

	/* not in the group: the kernel refuses the connect itself */
	ck_assert_int_eq(run_as(d.sock, NOBODY, NOBODY, HS_EACCES), 0);
	/* in the group: served (no allow lists) */
	ck_assert_int_eq(run_as(d.sock, 4242, 4343, 0), 0);
	ck_assert_int_eq(run_as(d.sock, 0, 0, 0), 0);

	ck_assert_int_eq(ht_wait_idle(d.sock, HT_DEADLINE_MS), 0);
	HT_STOP(&d);
	ck_assert_int_eq(ht_count_fds(), fds0);
}
END_TEST

/* ---- quotas ---- */

#define QUOTA_TENSORS 4
#define QUOTA_BYTES (64 * 1024)

struct quota_client {
	const char *sock;
	struct ht_chan refused; /* 'Q' once it has been refused */
	struct ht_chan go_on;   /* the other client is done */
	bool bytes;             /* pass the byte quota, else the tensor quota */
};

static int alloc_bytes(hs_client *c, uint32_t bytes, hs_tensor **t)
{
	return ht_tensor_make(c, 1, bytes / 4, t);
}

/* Allocates up to its quota, is refused once more, checks that it still
 * works (ping, a release and an alloc again), waits for the other client,
 * then lets everything go. */
static int over_quota(void *arg)
{
	struct quota_client *q = arg;
	const char *who = q->bytes ? "quota-bytes" : "quota-tensors";
	hs_client *c;
	if (ht_connect(q->sock, who, &c) < 0)
		return 1;
	hs_tensor *held[QUOTA_TENSORS + 1] = { 0 };
	int n = q->bytes ? 2 : QUOTA_TENSORS;
	uint32_t size = q->bytes ? 30 * 1024 : 1024;
	for (int i = 0; i < n; i++) {
		int rc = alloc_bytes(c, size, &held[i]);
		if (rc < 0)
			return ht_child_fail(who, "alloc %d within the quota: %s", i, hs_strerror(rc));
	}
	hs_tensor *extra = NULL;
	int rc = alloc_bytes(c, size, &extra);
	if (rc != HS_EDQUOT)
		return ht_child_fail(who, "alloc past the quota returned %s, expected HS_EDQUOT",
				     rc < 0 ? hs_strerror(rc) : "success");
	if ((rc = hs_client_ping(c)) < 0)
		return ht_child_fail(who, "ping after the refusal: %s", hs_strerror(rc));
	hs_tensor_release(held[0], NULL);
	held[0] = NULL;
	if ((rc = alloc_bytes(c, size, &held[0])) < 0)
		return ht_child_fail(who, "alloc after a release: %s", hs_strerror(rc));
	ht_chan_send(&q->refused, 'Q');
	if (ht_chan_recv(&q->go_on, HT_DEADLINE_MS) < 0)
		return ht_child_fail(who, "no go-on signal");
	for (int i = 0; i < n; i++)
		hs_tensor_release(held[i], NULL);
	hs_client_disconnect(c);
	return 0;
}

/* Another client, while the first one sits at its quota: its own quota is
 * whole. */
static int bystander(void *arg)
{
	const char *sock = arg;
	hs_client *c;
	if (ht_connect(sock, "quota-bystander", &c) < 0)
		return 1;
	hs_tensor *held[QUOTA_TENSORS - 1];
	for (int i = 0; i < QUOTA_TENSORS - 1; i++) {
		int rc = alloc_bytes(c, 1024, &held[i]);
		if (rc < 0)
			return ht_child_fail("bystander", "alloc %d: %s", i, hs_strerror(rc));
	}
	for (int i = 0; i < QUOTA_TENSORS - 1; i++)
		hs_tensor_release(held[i], NULL);
	int rc = ht_round_trip(c, "sec/bystander");
	if (rc < 0)
		return ht_child_fail("bystander", "round trip: %s", hs_strerror(rc));
	hs_client_disconnect(c);
	return 0;
}

static void quota_case(bool bytes)
{
	struct ht_daemon d;
	char config[300];
	char text[128];
	snprintf(text, sizeof(text), "[limits]\nquota_tensors = %d\nquota_bytes = %d\n",
		 QUOTA_TENSORS, QUOTA_BYTES);
	write_config(config, sizeof(config), text);
	const char *extra[] = { "--config", config, NULL };
	HT_BEGIN(&d, extra);
	struct quota_client q = { .sock = d.sock, .bytes = bytes };
	ht_chan_open(&q.refused);
	ht_chan_open(&q.go_on);
	pid_t over = ht_fork(over_quota, &q);
	ck_assert_int_gt(over, 0);
	ck_assert_int_eq(ht_chan_recv(&q.refused, HT_DEADLINE_MS), 'Q');
	/* the first client holds its whole quota now */
	pid_t other = ht_fork(bystander, (void *)d.sock);
	ck_assert_int_gt(other, 0);
	ck_assert_int_eq(ht_wait(other, HT_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_chan_send(&q.go_on, 'G'), 0);
	ck_assert_int_eq(ht_wait(over, HT_DEADLINE_MS), 0);
	ht_chan_close(&q.refused);
	ht_chan_close(&q.go_on);
	HT_END(&d);
}

START_TEST(test_quota_tensors)
{
	quota_case(false);
}
END_TEST

START_TEST(test_quota_bytes)
{
	quota_case(true);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("security");
	ht_case(s, "allow_root_only", test_allow_root_only);
	ht_case(s, "allow_other_uid", test_allow_other_uid);
	ht_case(s, "socket_mode_group", test_socket_mode_group);
	ht_case(s, "quota_tensors", test_quota_tensors);
	ht_case(s, "quota_bytes", test_quota_bytes);
	return ht_main(s);
}
