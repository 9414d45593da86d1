/* Two-uid test helpers (twouid.h). */
#include "twouid.h"

#include <hsbroker/client.h>

#include <errno.h>
#include <poll.h>
#include <grp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

int tu_daemon_start(struct ht_daemon *d, const char *text, char *log, size_t log_size)
{
	/* An empty file is the defaults. */
	return ht_daemon_start_config(d, text ? text : "", log, log_size);
}

int tu_become(uid_t uid, gid_t gid)
{
	if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		return ht_child_fail("become", "cannot become uid %u gid %u", (unsigned)uid,
				     (unsigned)gid);
	return 0;
}

int tu_raw_open(const char *sock, bool hello, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	int sk = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (sk < 0)
		return -1;
	if (connect(sk, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(sk);
		return -1;
	}
	if (!hello)
		return sk;
	Hs__Hello h = HS__HELLO__INIT;
	h.protocol_version = HS_PROTOCOL_VERSION;
	h.client_name = (char *)"hostile";
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = 1;
	m.body_case = HS__MESSAGE__BODY_HELLO;
	m.hello = &h;
	static uint8_t buf[HS__WIRE_MAX_MSG];
	struct pollfd p = { .fd = sk, .events = POLLIN };
	int fds[HS__WIRE_MAX_FDS], nfds = 0, n = -1;
	if (hs__wire_send(sk, &m, NULL, 0) == 0 && poll(&p, 1, timeout_ms) == 1)
		n = hs__wire_recv(sk, buf, fds, &nfds);
	hs__wire_close_fds(fds, nfds);
	Hs__Message *r = NULL;
	bool ok = n > 0 && hs__wire_decode(buf, (size_t)n, &r) == 0 &&
		  r->body_case == HS__MESSAGE__BODY_HELLO_REPLY;
	if (r)
		hs__wire_free(r);
	if (!ok) {
		close(sk);
		return -1;
	}
	return sk;
}

int tu_raw_subscribe(int sk, uint64_t seq, const char *topic, uint32_t depth,
		     Hs__Policy policy, uint32_t credits)
{
	Hs__SubscribeReq sr = HS__SUBSCRIBE_REQ__INIT;
	sr.topic = (char *)topic;
	sr.depth = depth;
	sr.policy = policy;
	sr.credits = credits;
	Hs__Message m = HS__MESSAGE__INIT;
	m.seq = seq;
	m.body_case = HS__MESSAGE__BODY_SUBSCRIBE;
	m.subscribe = &sr;
	return hs__wire_send(sk, &m, NULL, 0);
}
