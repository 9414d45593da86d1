/* What an operator does to a running daemon (issue 14): SIGHUP reloads
 * the configuration (a good file applied live, a bad one refused with the
 * old one kept), --check-config, the idle host slabs given back. */
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "itest.h"
#include "roles.h"

static char logbuf[1 << 20];

/* The daemon's log so far (stderr went to path). */
static const char *read_log(const char *path)
{
	logbuf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return logbuf;
	size_t n = fread(logbuf, 1, sizeof(logbuf) - 1, f);
	logbuf[n] = '\0';
	fclose(f);
	return logbuf;
}

/* Waits until the log holds text. */
static bool log_waits_for(const char *path, const char *text)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	while (ht_now_ms() < end) {
		if (strstr(read_log(path), text))
			return true;
		ht_sleep_ms(20);
	}
	return false;
}

/* Starts the daemon on a config file whose path goes to config, its
 * stderr to a file whose path goes to log. */
static void start_with_config(struct ht_daemon *d, const char *text, char *config, char *log)
{
	ck_assert_int_eq(ht_write_config(config, 300, text), 0);
	char dir[256];
	ht_tmpdir(dir, sizeof(dir));
	snprintf(log, 300, "%s/hsbrokerd.log", dir);
	int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	int saved = dup(2);
	ck_assert_int_ge(saved, 0);
	ck_assert_int_ge(dup2(fd, 2), 0);
	const char *extra[] = { "--config", config, NULL };
	int rc = ht_daemon_start(d, extra);
	dup2(saved, 2);
	close(saved);
	close(fd);
	ck_assert_int_eq(rc, 0);
}

static void rewrite(const char *config, const char *text)
{
	/* A new file renamed over the old one, as editors and config
	 * management do: the daemon never reads half a file. */
	char tmp[320];
	snprintf(tmp, sizeof(tmp), "%s.new", config);
	FILE *f = fopen(tmp, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(rename(tmp, config), 0);
}

static json_int_t host_cap(const char *sock)
{
	const char *args[] = { "ls", "pools", NULL };
	json_t *j = ht_hsctl_json(sock, args);
	ck_assert_ptr_nonnull(j);
	json_int_t cap = json_integer_value(json_object_get(
		json_array_get(json_object_get(j, "pools"), 0), "cap"));
	json_decref(j);
	return cap;
}

/* One emit on topic from a fresh client (waiting for the daemon's
 * answer): its result. */
static int emit_once(const char *sock, const char *topic)
{
	hs_client *c;
	ck_assert_int_eq(ht_connect(sock, "it-ops", &c), 0);
	hs_tensor *t;
	int rc = ht_tensor_make(c, 1, HT_ELEMS, &t);
	ck_assert_int_eq(rc, 0);
	uint64_t seq;
	rc = hs_tensor_emit(t, topic, NULL, &seq);
	hs_client_disconnect(c);
	return rc;
}

START_TEST(test_reload)
{
	ht_init();
	const int fds_at_start = ht_count_fds();
	struct ht_daemon d;
	char config[300], log[300];
	start_with_config(&d, "[pool.cpu]\ncap = 1G\n", config, log);
	ck_assert_int_eq(host_cap(d.sock), 1ll << 30);
	ck_assert_int_eq(emit_once(d.sock, "ops/a"), 0);

	/* A good file: the cap and an ACL apply live; a new slab size is
	 * logged as needing a restart and not applied. */
	rewrite(config, "[daemon]\nlog_level = debug\n[pool.cpu]\ncap = 2G\nslab_size = 1M\n"
			"[acl]\npublish = ops/*: 4242\n");
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert_msg(log_waits_for(log, "reload done"), "no reload in the log:\n%s", logbuf);
	ck_assert_msg(strstr(logbuf, "slab_size changed: needs a restart"), "%s", logbuf);
	ck_assert_int_eq(host_cap(d.sock), 2ll << 30);
	ck_assert_int_eq(emit_once(d.sock, "ops/a"), HS_EPERM);
	/* the log level too: a routine connection is logged at debug now */
	ck_assert_msg(log_waits_for(log, "hsbrokerd debug: "), "%s", logbuf);
	const char *args[] = { "ls", "pools", NULL };
	json_t *j = ht_hsctl_json(d.sock, args);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(json_integer_value(json_object_get(
				 json_array_get(json_object_get(j, "pools"), 0), "slab_size")),
			 64ll << 20);
	json_decref(j);

	/* A bad file: refused whole, the running configuration stays. */
	rewrite(config, "[pool.cpu]\ncap = 3G\n[acl]\npublish = ops/*\n");
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert_msg(log_waits_for(log, "reload refused"), "%s", logbuf);
	ck_assert_int_eq(host_cap(d.sock), 2ll << 30);
	ck_assert_int_eq(emit_once(d.sock, "ops/a"), HS_EPERM);

	/* A missing file too; then the good file back, without the ACL. */
	ck_assert_int_eq(unlink(config), 0);
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert_int_eq(host_cap(d.sock), 2ll << 30);
	rewrite(config, "[pool.cpu]\ncap = 512M\n");
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	while (host_cap(d.sock) != 512ll << 20 && ht_now_ms() < end)
		ht_sleep_ms(20);
	ck_assert_int_eq(host_cap(d.sock), 512ll << 20);
	ck_assert_int_eq(emit_once(d.sock, "ops/a"), 0);
	ck_assert_msg(strstr(read_log(log), "cannot read config"), "%s", logbuf);
	ck_assert(ht_daemon_alive(&d));
	ck_assert_int_eq(ht_wait_idle(d.sock, HT_DEADLINE_MS), 0);
	HT_STOP(&d);
	ck_assert_int_eq(ht_count_fds(), fds_at_start);
}
END_TEST

/* hsbrokerd --check-config FILE: 0 for a good file, 1 for a bad value,
 * an unknown key or a missing file. */
static int check_config(const char *text)
{
	char config[300];
	ck_assert_int_eq(ht_write_config(config, sizeof(config), text), 0);
	if (!text[0])
		unlink(config);
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	char *argv[] = { (char *)ht_prog("HSBROKERD"), "--check-config", "--config", config, NULL };
	pid_t pid = ht_spawn(argv, NULL, devnull, devnull);
	close(devnull);
	return ht_wait(pid, HT_DEADLINE_MS);
}

START_TEST(test_check_config)
{
	ht_init();
	ck_assert_int_eq(check_config("[pool.cpu]\ncap = 50%\nidle_release_ms = 1000\n"
				      "[limits]\nmax_topics = 10\n"), 0);
	ck_assert_int_eq(check_config("[pool.cpu]\ncap = lots\n"), 1);
	ck_assert_int_eq(check_config("[pool.cpu]\ncapp = 1G\n"), 1);
	ck_assert_int_eq(check_config("[acl]\npublish = a/*: nosuchuser-hsbroker\n"), 1);
	ck_assert_int_eq(check_config(""), 1);
}
END_TEST

/* With idle_release_ms, a slab nothing uses or maps any more is freed. */
START_TEST(test_idle_release)
{
	struct ht_daemon d;
	HT_BEGIN_CONFIG(&d, "[pool.cpu]\nidle_release_ms = 300\n");
	ck_assert_int_eq(emit_once(d.sock, "ops/idle"), 0);
	const char *args[] = { "ls", "pools", NULL };
	json_int_t slabs = -1;
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	while (ht_now_ms() < end) {
		json_t *j = ht_hsctl_json(d.sock, args);
		ck_assert_ptr_nonnull(j);
		slabs = json_integer_value(json_object_get(
			json_array_get(json_object_get(j, "pools"), 0), "slabs"));
		json_decref(j);
		if (slabs == 0)
			break;
		ht_sleep_ms(100);
	}
	ck_assert_int_eq(slabs, 0);
	HT_END(&d);
}
END_TEST

/* Log lines: an ISO 8601 local time with its zone, unless stderr is the
 * stream JOURNAL_STREAM names (then a <N> priority and no time). */
static void log_format_case(bool journal)
{
	ht_init();
	struct ht_daemon d;
	char config[300], log[300];
	char dir[256], path[300];
	ht_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/stderr", dir);
	/* The variable names a file: the daemon's stderr only when journal. */
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	ck_assert_int_ge(fd, 0);
	struct stat st;
	ck_assert_int_eq(fstat(fd, &st), 0);
	close(fd);
	char stream[64];
	snprintf(stream, sizeof(stream), "%llu:%llu", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino);
	setenv("JOURNAL_STREAM", stream, 1);
	if (journal) {
		/* start_with_config makes a new log file: point the variable
		 * at it once it exists, by starting with the log as that file. */
		ck_assert_int_eq(ht_write_config(config, sizeof(config), "[daemon]\n"), 0);
		snprintf(log, sizeof(log), "%s", path);
		int lfd = open(log, O_WRONLY | O_TRUNC | O_CLOEXEC);
		ck_assert_int_ge(lfd, 0);
		int saved = dup(2);
		ck_assert_int_ge(dup2(lfd, 2), 0);
		const char *extra[] = { "--config", config, NULL };
		int rc = ht_daemon_start(&d, extra);
		dup2(saved, 2);
		close(saved);
		close(lfd);
		ck_assert_int_eq(rc, 0);
	} else {
		start_with_config(&d, "[daemon]\n", config, log);
	}
	unsetenv("JOURNAL_STREAM");
	ck_assert_msg(log_waits_for(log, "listening on"), "%s", logbuf);
	const char *first = read_log(log);
	if (journal) {
		ck_assert_msg(!strncmp(first, "<6>hsbrokerd ", 13), "%s", first);
	} else {
		/* 2026-11-29T17:05:03.123+00:00 hsbrokerd info: ... */
		int y, mo, dd, h, mi, s, ms, zh, zm;
		char sign;
		ck_assert_msg(sscanf(first, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c%2d:%2d hsbrokerd info: ", &y,
				     &mo, &dd, &h, &mi, &s, &ms, &sign, &zh, &zm) == 10 &&
				      (sign == '+' || sign == '-'),
			      "not ISO 8601 with a zone: %s", first);
	}
	HT_STOP(&d);
}

START_TEST(test_log_format)
{
	log_format_case(false);
	log_format_case(true);
}
END_TEST

static char out[1 << 20], err[1 << 16];

/* doctor's lines: "VERDICT  CHECK: found[ — todo]", verdicts from a
 * short list; returns the line of check, or NULL. */
static const char *doctor_line(const char *text, const char *check)
{
	static char line[2048];
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		char verdict[8], name[32];
		ck_assert_msg(sscanf(line, "%7s %31[^:]:", verdict, name) == 2 &&
				      (!strcmp(verdict, "ok") || !strcmp(verdict, "info") ||
				       !strcmp(verdict, "warn") || !strcmp(verdict, "FAIL")),
			      "not a doctor line: '%s'", line);
		if (!strcmp(name, check))
			return line;
		p += n + (p[n] == '\n');
	}
	return NULL;
}

/* A client subscribed to topic (policy, depth) that then emits n
 * tensors there, waiting for each to be accepted when wait. */
static void subscribe_and_emit(const char *sock, const char *name, const char *topic,
			       enum hs_policy policy, uint32_t depth, uint64_t n, bool wait,
			       hs_client **c, hs_subscription **sub)
{
	ck_assert_int_eq(ht_connect(sock, name, c), 0);
	hs_subscribe_opts o = { .depth = depth, .policy = policy };
	ck_assert_int_eq(hs_subscribe(*c, topic, &o, sub), 0);
	for (uint64_t k = 1; k <= n; k++) {
		hs_tensor *t;
		uint64_t seq;
		ck_assert_int_eq(ht_tensor_make(*c, k, HT_ELEMS, &t), 0);
		ck_assert_int_eq(hs_tensor_emit(t, topic, NULL, wait ? &seq : NULL), 0);
	}
}

START_TEST(test_doctor)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	const char *args[] = { "doctor", NULL };
	int rc = ht_hsctl(d.sock, args, out, sizeof(out), err, sizeof(err));
	ck_assert_msg(rc == 0, "doctor exited %d:\n%s%s", rc, out, err);
	static const char *const checks[] = { "socket", "daemon", "cuda", "mps", "pools",
					      "subscribers" };
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
		ck_assert_msg(doctor_line(out, checks[i]), "no %s check in:\n%s", checks[i], out);
	ck_assert_msg(!strncmp(doctor_line(out, "daemon"), "ok ", 3), "%s", out);
	/* This machine (CI) has no GPU: the CUDA check says so, not a failure. */
	if (access("/proc/driver/nvidia/version", F_OK) < 0)
		ck_assert_msg(strstr(doctor_line(out, "cuda"), "info  cuda: no NVIDIA driver"),
			      "%s", out);

	/* A BLOCK subscriber that does not read, full, holding an emit. */
	hs_client *c;
	hs_subscription *sub;
	subscribe_and_emit(d.sock, "it-stalled", "ops/stalled", HS_POLICY_BLOCK, 1, 2, false, &c,
			   &sub);
	const char *line = NULL;
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	do {
		rc = ht_hsctl(d.sock, args, out, sizeof(out), err, sizeof(err));
		line = doctor_line(out, "subscribers");
	} while (!strstr(line, "warn  subscribers") && ht_now_ms() < end && (ht_sleep_ms(50), 1));
	ck_assert_msg(strstr(line, "warn  subscribers: ") && strstr(line, "it-stalled on ops/stalled"),
		      "%s", out);
	ck_assert_int_eq(rc, 0); /* a warning is not a failure */
	hs_subscription_close(sub);
	hs_client_disconnect(c);

	/* --json: the same checks for programs. */
	json_t *j = ht_hsctl_json(d.sock, args);
	ck_assert_ptr_nonnull(j);
	ck_assert(json_is_true(json_object_get(j, "ok")));
	ck_assert_int_eq(json_array_size(json_object_get(j, "checks")), 6);
	json_decref(j);
	HT_END(&d);

	/* No daemon: the socket and daemon checks fail, exit 1. */
	rc = ht_hsctl(d.sock, args, out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(doctor_line(out, "socket"), "FAIL  socket: "), "%s", out);
	ck_assert_msg(strstr(doctor_line(out, "daemon"), "FAIL  daemon: cannot connect"), "%s", out);
}
END_TEST

/* The pools check: a pool with no room for another slab, and a host pool
 * with no cap at all, are warnings. */
START_TEST(test_doctor_pools)
{
	struct ht_daemon d;
	HT_BEGIN_CONFIG(&d, "[pool.cpu]\ncap = 64K\nslab_size = 64K\n");
	hs_client *c;
	ck_assert_int_eq(ht_connect(d.sock, "it-pools", &c), 0);
	hs_tensor *t;
	ck_assert_int_eq(ht_tensor_make(c, 1, HT_ELEMS, &t), 0);
	const char *args[] = { "doctor", NULL };
	int rc = ht_hsctl(d.sock, args, out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(doctor_line(out, "pools"), "warn  pools: cpu near its cap"), "%s", out);
	hs_tensor_release(t, NULL);
	hs_client_disconnect(c);
	HT_END(&d);

	const char *none[] = { "--host-cap", "none", NULL };
	ck_assert_int_eq(ht_daemon_start(&d, none), 0);
	rc = ht_hsctl(d.sock, args, out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(doctor_line(out, "pools"), "warn  pools: cpu has no cap"), "%s", out);
	HT_STOP(&d);
}
END_TEST

START_TEST(test_stats)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	hs_client *c;
	hs_subscription *sub;
	subscribe_and_emit(d.sock, "it-stats", "ops/stats", HS_POLICY_DROP_OLDEST, 16, 10, true,
			   &c, &sub);
	for (int k = 0; k < 4; k++) {
		hs_tensor *t;
		ck_assert_int_eq(hs_subscription_receive(sub, HT_DEADLINE_MS, &t), 0);
		hs_tensor_release(t, NULL);
	}

	char dir[256], file[300];
	ht_tmpdir(dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s/hsbroker.prom", dir);
	const char *args[] = { "stats", "--prometheus", NULL };
	int rc = ht_hsctl(d.sock, args, out, sizeof(out), err, sizeof(err));
	ck_assert_msg(rc == 0, "stats --prometheus exited %d: %s", rc, err);
	FILE *f = fopen(file, "w");
	ck_assert_ptr_nonnull(f);
	fputs(out, f);
	ck_assert_int_eq(fclose(f), 0);
	char *argv[] = { "/usr/bin/python3", (char *)ht_prog("HS_PROM_CHECK"), file,
			 "hsbroker_up=1",
			 "hsbroker_topic_emitted_total{topic=\"ops/stats\"}=10",
			 "hsbroker_topic_delivered_total{topic=\"ops/stats\"}=>0",
			 "hsbroker_topic_emitted_bytes_total{topic=\"ops/stats\"}=>0",
			 "hsbroker_topic_subscribers{topic=\"ops/stats\"}=1",
			 "hsbroker_emitted_total=10", "hsbroker_cpu_seconds_total=>0",
			 "hsbroker_pool_cap_bytes{device=\"cpu\"}=>0", NULL };
	pid_t pid = ht_spawn(argv, NULL, -1, -1);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);

	/* The table and --json: the counters and a rate over a second. */
	const char *targs[] = { "stats", NULL };
	rc = ht_hsctl(d.sock, targs, out, sizeof(out), err, sizeof(err));
	ck_assert_msg(rc == 0 && strstr(out, "ops/stats") && strstr(out, "daemon CPU per tensor"),
		      "%d: %s%s", rc, out, err);
	json_t *j = ht_hsctl_json(d.sock, targs);
	ck_assert_ptr_nonnull(j);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "emitted")), 10);
	json_t *t0 = json_array_get(json_object_get(j, "topics"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(t0, "name")), "ops/stats");
	ck_assert_int_ge(json_integer_value(json_object_get(t0, "delivered")), 4);
	ck_assert(json_is_number(json_object_get(t0, "emitted_per_s")));
	json_decref(j);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	HT_END(&d);
}
END_TEST

/* Reads what the pty shows until text appears (appending to buf). */
static bool pty_waits_for(int fd, char *buf, size_t size, size_t *len, const char *text)
{
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	while (!strstr(buf, text) && ht_now_ms() < end) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		if (poll(&p, 1, 100) != 1)
			continue;
		ssize_t n = read(fd, buf + *len, size - 1 - *len);
		if (n <= 0)
			return false;
		*len += (size_t)n;
		buf[*len] = '\0';
		if (*len + 1 >= size)
			*len = 0; /* keep reading: only the newest screen matters */
	}
	return strstr(buf, text) != NULL;
}

/* hsctl top on a terminal: s sorts, p pauses and resumes, q quits. */
START_TEST(test_top_keys)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	ck_assert_int_eq(emit_once(d.sock, "ops/top"), 0);
	int fd;
	pid_t pid = forkpty(&fd, NULL, NULL, NULL);
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(ht_prog("HSCTL"), "hsctl", "--socket", d.sock, "top", (char *)NULL);
		_exit(127);
	}
	static char screen[1 << 16];
	size_t len = 0;
	screen[0] = '\0';
	ck_assert_msg(pty_waits_for(fd, screen, sizeof(screen), &len, "sorted by name"), "%s",
		      screen);
	ck_assert_msg(pty_waits_for(fd, screen, sizeof(screen), &len, "ops/top"), "%s", screen);
	ck_assert_int_eq(write(fd, "s", 1), 1);
	ck_assert_msg(pty_waits_for(fd, screen, sizeof(screen), &len, "sorted by emit/s"), "%s",
		      screen);
	ck_assert_int_eq(write(fd, "p", 1), 1);
	ck_assert_msg(pty_waits_for(fd, screen, sizeof(screen), &len, "PAUSED"), "%s", screen);
	ck_assert_int_eq(write(fd, " ", 1), 1);
	len = 0;
	screen[0] = '\0';
	ck_assert_msg(pty_waits_for(fd, screen, sizeof(screen), &len, "hsbrokerd "), "%s", screen);
	ck_assert_int_eq(write(fd, "q", 1), 1);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	close(fd);
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("ops");
	ht_case(s, "reload", test_reload);
	ht_case(s, "check_config", test_check_config);
	ht_case(s, "idle_release", test_idle_release);
	ht_case(s, "doctor", test_doctor);
	ht_case(s, "doctor_pools", test_doctor_pools);
	ht_case(s, "stats", test_stats);
	ht_case(s, "top_keys", test_top_keys);
	ht_case(s, "log_format", test_log_format);
	return ht_main(s);
}
