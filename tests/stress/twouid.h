/* Helpers for tests with clients of two uids (test-trust.c,
 * noisy-neighbour.c): a daemon started with a config text and its log in a
 * file, its socket reachable by other uids, and children that drop to
 * another uid before they connect. The tests run as root in CI; as
 * another user the cases that need setuid skip (TU_NEED_ROOT). */
#ifndef HS_TEST_TWOUID_H
#define HS_TEST_TWOUID_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>
#include <unistd.h>

#include "harness.h"
#include "wire.h"

#define TU_OTHER_UID 65534 /* nobody */
#define TU_OTHER_GID 65534

#define TU_NEED_ROOT()                                                         \
	do {                                                                   \
		if (geteuid() != 0) {                                          \
			fprintf(stderr, "not root: the two-uid case is skipped\n"); \
			return;                                                \
		}                                                              \
	} while (0)

/* For Check cases (itest.h): the daemon started with config text and its
 * log in log (a char array); HT_END(d) then ends the case as usual. */
#define TU_BEGIN(d, text, log)                                                 \
	ht_init();                                                             \
	const int ht_fds_at_start_ = ht_count_fds();                           \
	ck_assert_int_eq(tu_daemon_start((d), (text), (log), sizeof(log)), 0)

/* Starts hsbrokerd with a config file holding text (may be NULL: no
 * --config), log level info, stderr into a log file whose path goes to
 * log; opens the socket's folders to other uids. 0 or -1. */
int tu_daemon_start(struct ht_daemon *d, const char *text, char *log, size_t log_size);

/* In a child: drops every group and becomes uid/gid. 0 or -1 (printed). */
int tu_become(uid_t uid, gid_t gid);

/* A raw connection (no libhsclient, no channel), non-blocking: the
 * socket, after a Hello and its HelloReply (waited for up to timeout_ms)
 * when hello is set, or -1 (also when the daemon's backlog is full). The
 * replies and pushes that follow are the caller's to read (or not). */
int tu_raw_open(const char *sock, bool hello, int timeout_ms);

/* Sends SubscribeReq{topic, depth, policy, credits} as seq on a raw
 * connection: 0 or a negative errno (hs__wire_send). */
int tu_raw_subscribe(int sk, uint64_t seq, const char *topic, uint32_t depth,
		     Hs__Policy policy, uint32_t credits);

#endif
