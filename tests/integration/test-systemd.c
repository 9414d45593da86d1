/* systemd integration without a running systemd: socket activation
 * through systemd-socket-activate (LISTEN_FDS), and readiness through a
 * NOTIFY_SOCKET this test listens on (READY=1, then STOPPING=1). */
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "itest.h"
#include "roles.h"

struct rt {
	const char *sock;
};

static int round_trip_child(void *arg)
{
	struct rt *r = arg;
	hs_client *c;
	if (ht_connect(r->sock, "it-activated", &c) < 0)
		return 1;
	int rc = ht_round_trip(c, "it/activated");
	hs_client_disconnect(c);
	if (rc < 0)
		return ht_child_fail("activated", "round trip: %s", hs_strerror(rc));
	return 0;
}

START_TEST(test_socket_activation)
{
	ht_init();
	int fds0 = ht_count_fds();
	const char *activate = ht_prog("SYSTEMD_SOCKET_ACTIVATE");
	const char *daemon = ht_prog("HSBROKERD");
	ck_assert_msg(activate, "systemd-socket-activate not found (apt-get install systemd)");
	ck_assert(daemon);
	char dir[256], sock[300], decoy[300], decoy_env[320];
	ht_tmpdir(dir, sizeof(dir));
	snprintf(sock, sizeof(sock), "%s/activated.sock", dir);
	/* If the daemon ignored LISTEN_FDS it would bind its default path:
	 * point that somewhere we can check. systemd-socket-activate passes
	 * only -E variables to the program. */
	snprintf(decoy, sizeof(decoy), "%s/decoy.sock", dir);
	snprintf(decoy_env, sizeof(decoy_env), "HSBROKER_SOCKET=%s", decoy);
	char *argv[] = { (char *)activate, (char *)"--seqpacket", (char *)"-l", sock,
			 (char *)"-E", decoy_env, (char *)daemon, NULL };
	pid_t pid = ht_spawn(argv, NULL, -1, -1);
	ck_assert_int_gt(pid, 0);
	/* The socket exists before the daemon does; the first connection
	 * (this probe) makes systemd-socket-activate exec hsbrokerd. */
	ck_assert_int_eq(ht_wait_socket(sock, pid, HT_DEADLINE_MS), 0);

	struct rt r = { .sock = sock };
	pid_t child = ht_fork(round_trip_child, &r);
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(ht_wait(child, HT_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait_idle(sock, HT_DEADLINE_MS), 0);
	ck_assert_msg(access(decoy, F_OK) < 0, "hsbrokerd bound its default path instead of LISTEN_FDS");

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	/* A socket handed over by systemd belongs to systemd: left in place. */
	struct stat st;
	ck_assert_msg(stat(sock, &st) == 0 && S_ISSOCK(st.st_mode),
		      "hsbrokerd removed the socket systemd gave it");
	ck_assert_int_eq(ht_count_fds(), fds0);
}
END_TEST

/* Waits for a notification containing line (e.g. "READY=1"); everything
 * received is appended to log. Gives up early once pid has exited and
 * nothing is left to read. */
static bool wait_notify(int fd, pid_t pid, const char *line, char *log, size_t size)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (;;) {
		int left = (int)(end - ht_now_ms());
		if (left <= 0)
			return false;
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, left > 100 ? 100 : left);
		if (r == 0) {
			siginfo_t info = { 0 };
			if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
			    info.si_pid == pid) {
				size_t have = strlen(log);
				snprintf(log + have, size - have, "(hsbrokerd exited: %s %d)\n",
					 info.si_code == CLD_EXITED ? "status" : "signal", info.si_status);
				return false;
			}
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		char buf[4096];
		ssize_t n = recv(fd, buf, sizeof(buf) - 1, MSG_DONTWAIT);
		if (n < 0)
			continue;
		buf[n] = '\0';
		size_t have = strlen(log);
		snprintf(log + have, size - have, "%s\n", buf);
		/* one assignment a line, as sd_notify(3) says */
		for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			if (strcmp(l, line) == 0)
				return true;
	}
}

START_TEST(test_notify_ready)
{
	ht_init();
	int fds0 = ht_count_fds();
	const char *daemon = ht_prog("HSBROKERD");
	ck_assert(daemon);
	char dir[256], sock[300], notify[300], notify_env[320];
	ht_tmpdir(dir, sizeof(dir));
	snprintf(sock, sizeof(sock), "%s/hsbroker.sock", dir);
	snprintf(notify, sizeof(notify), "%s/notify", dir);
	snprintf(notify_env, sizeof(notify_env), "NOTIFY_SOCKET=%s", notify);

	int nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(nfd, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(notify), sizeof(addr.sun_path));
	memcpy(addr.sun_path, notify, strlen(notify) + 1);
	ck_assert_int_eq(bind(nfd, (struct sockaddr *)&addr, sizeof(addr)), 0);

	char *argv[] = { (char *)daemon, (char *)"--socket", sock, NULL };
	const char *env[] = { notify_env, NULL };
	pid_t pid = ht_spawn(argv, env, -1, -1);
	ck_assert_int_gt(pid, 0);

	static char log[16384];
	log[0] = '\0';
	ck_assert_msg(wait_notify(nfd, pid, "READY=1", log, sizeof(log)), "no READY=1; got:\n%s", log);
	fprintf(stderr, "notifications before ready:\n%s", log);
	/* Ready means ready: the socket accepts now, with no retry. */
	int c = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un saddr = { .sun_family = AF_UNIX };
	memcpy(saddr.sun_path, sock, strlen(sock) + 1);
	ck_assert_msg(connect(c, (struct sockaddr *)&saddr, sizeof(saddr)) == 0,
		      "READY=1 came before the socket accepted: %s", strerror(errno));
	close(c);

	ck_assert_int_eq(kill(pid, SIGTERM), 0);
	log[0] = '\0';
	ck_assert_msg(wait_notify(nfd, pid, "STOPPING=1", log, sizeof(log)), "no STOPPING=1; got:\n%s", log);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	ck_assert_msg(access(sock, F_OK) < 0, "hsbrokerd left its socket behind");
	close(nfd);
	ck_assert_int_eq(ht_count_fds(), fds0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("systemd");
	ht_case(s, "socket_activation", test_socket_activation);
	ht_case(s, "notify_ready", test_notify_ready);
	return ht_main(s);
}
