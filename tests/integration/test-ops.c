/* What an operator does to a running daemon (issue 14): SIGHUP reloads
 * the configuration (a good file applied live, a bad one refused with the
 * old one kept), --check-config, the idle host slabs given back. */
#include <fcntl.h>
#include <signal.h>
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
	rewrite(config, "[pool.cpu]\ncap = 2G\nslab_size = 1M\n"
			"[acl]\npublish = ops/*: 4242\n");
	ck_assert_int_eq(kill(d.pid, SIGHUP), 0);
	ck_assert_msg(log_waits_for(log, "reload done"), "no reload in the log:\n%s", logbuf);
	ck_assert_msg(strstr(logbuf, "slab_size changed: needs a restart"), "%s", logbuf);
	ck_assert_int_eq(host_cap(d.sock), 2ll << 30);
	ck_assert_int_eq(emit_once(d.sock, "ops/a"), HS_EPERM);
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

int main(void)
{
	Suite *s = suite_create("ops");
	ht_case(s, "reload", test_reload);
	ht_case(s, "check_config", test_check_config);
	ht_case(s, "idle_release", test_idle_release);
	return ht_main(s);
}
