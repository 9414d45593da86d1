/* The programs people run: hsctl against a live daemon (tables and
 * --json), hsctl without a daemon, and the C examples end to end. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "itest.h"
#include "roles.h"

/* ---- hsctl with tensors held ---- */

struct tools_holder {
	const char *sock;
	struct ht_chan ready, go;
};

static int tools_holder(void *arg)
{
	struct tools_holder *h = arg;
	hs_client *c;
	/* It counts every tensor it holds: no spare allocations. */
	setenv("HSBROKER_SPARES", "0", 1);
	if (ht_connect(h->sock, "it-tools", &c) < 0)
		return 1;
	hs_subscribe_opts opts = { .depth = 4, .policy = HS_POLICY_BLOCK };
	hs_subscription *sub;
	int rc = hs_subscribe(c, "it/tools", &opts, &sub);
	if (rc < 0)
		return ht_child_fail("tools", "subscribe: %s", hs_strerror(rc));
	DLDevice cpu = { kDLCPU, 0 };
	DLDataType f32 = { kDLFloat, 32, 1 };
	int64_t shape[2] = { 4, 256 };
	hs_tensor *own[2], *got[3];
	for (int i = 0; i < 2; i++) {
		rc = hs_tensor_alloc(c, cpu, f32, 2, shape, NULL, &own[i]);
		if (rc < 0)
			return ht_child_fail("tools", "alloc: %s", hs_strerror(rc));
	}
	for (int i = 0; i < 3; i++) {
		hs_tensor *t;
		rc = ht_tensor_make(c, (uint64_t)i + 1, HT_ELEMS, &t);
		if (rc == 0)
			rc = hs_tensor_emit(t, "it/tools", NULL, NULL);
		if (rc < 0)
			return ht_child_fail("tools", "emit: %s", hs_strerror(rc));
	}
	/* hold one received tensor; two stay queued in the daemon */
	rc = hs_subscription_receive(sub, HT_DEADLINE_MS, &got[0]);
	if (rc < 0)
		return ht_child_fail("tools", "receive: %s", hs_strerror(rc));
	ht_chan_send(&h->ready, 'R');
	if (ht_chan_recv(&h->go, HT_LONG_DEADLINE_MS) < 0)
		return ht_child_fail("tools", "no go signal");
	hs_tensor_release(got[0], NULL);
	hs_tensor_release(own[0], NULL);
	hs_tensor_release(own[1], NULL);
	hs_subscription_close(sub);
	hs_client_disconnect(c);
	return 0;
}

static char out[1 << 20], err[1 << 16];

static void run_hsctl_ok(const char *sock, const char *const *args)
{
	int rc = ht_hsctl(sock, args, out, sizeof(out), err, sizeof(err));
	ck_assert_msg(rc == 0, "hsctl %s %s %s exited %d: %s", args[0], args[1] ?: "",
		      args[1] && args[2] ? args[2] : "", rc, err);
	ck_assert_msg(out[0], "hsctl %s %s printed nothing", args[0], args[1] ?: "");
}

START_TEST(test_hsctl_ls)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	struct tools_holder h = { .sock = d.sock };
	ht_chan_open(&h.ready);
	ht_chan_open(&h.go);
	pid_t pid = ht_fork(tools_holder, &h);
	ck_assert_int_gt(pid, 0);
	ck_assert_int_eq(ht_chan_recv(&h.ready, HT_DEADLINE_MS), 'R');
	char pidstr[16];
	snprintf(pidstr, sizeof(pidstr), "%d", (int)pid);

	/* Tables for people. */
	const char *ls[] = { "ls", NULL };
	run_hsctl_ok(d.sock, ls);
	fprintf(stderr, "---- hsctl ls ----\n%s", out);
	ck_assert_ptr_nonnull(strstr(out, "it/tools"));
	ck_assert_ptr_nonnull(strstr(out, pidstr));
	const char *ls_tensors[] = { "ls", "tensors", NULL };
	run_hsctl_ok(d.sock, ls_tensors);
	ck_assert_ptr_nonnull(strstr(out, "ID"));
	ck_assert_ptr_nonnull(strstr(out, "float32"));
	ck_assert_ptr_nonnull(strstr(out, "4x256"));
	const char *ls_topics[] = { "ls", "topics", NULL };
	run_hsctl_ok(d.sock, ls_topics);
	ck_assert_ptr_nonnull(strstr(out, "it/tools"));
	const char *ls_clients[] = { "ls", "clients", NULL };
	run_hsctl_ok(d.sock, ls_clients);
	ck_assert_ptr_nonnull(strstr(out, "it-tools"));
	const char *ls_pools[] = { "ls", "pools", NULL };
	run_hsctl_ok(d.sock, ls_pools);
	ck_assert_ptr_nonnull(strstr(out, "cpu"));
	const char *status[] = { "status", NULL };
	run_hsctl_ok(d.sock, status);
	const char *top[] = { "top", "--iterations", "1", NULL };
	run_hsctl_ok(d.sock, top);
	ck_assert_ptr_nonnull(strstr(out, "it/tools"));
	/* HS_DEBUG=1 prints every message (docs/protocol.md) */
	setenv("HS_DEBUG", "1", 1);
	run_hsctl_ok(d.sock, ls_pools);
	unsetenv("HS_DEBUG");
	ck_assert_msg(strstr(err, "hello") && strstr(err, "list"), "HS_DEBUG=1 printed: %s", err);

	/* JSON for programs: the stable keys of docs/hsctl.md. */
	json_t *j = ht_hsctl_json(d.sock, ls);
	ck_assert_ptr_nonnull(j);
	ck_assert(json_is_string(json_object_get(j, "version")));
	ck_assert(json_is_integer(json_object_get(j, "epoch")));
	ck_assert(json_is_integer(json_object_get(j, "uptime_us")));
	size_t i, n_f32 = 0, n_topic = 0;
	json_t *v;
	json_array_foreach(json_object_get(j, "tensors"), i, v) {
		ck_assert_int_eq(json_integer_value(json_object_get(v, "owner_pid")), pid);
		ck_assert_str_eq(json_string_value(json_object_get(v, "device")) ?: "", "cpu");
		ck_assert_int_ge(json_integer_value(json_object_get(v, "refs")), 1);
		ck_assert(json_is_integer(json_object_get(v, "id")));
		ck_assert(json_is_integer(json_object_get(v, "age_us")));
		const char *dtype = json_string_value(json_object_get(v, "dtype")) ?: "";
		json_t *shape = json_object_get(v, "shape");
		if (strcmp(dtype, "float32") == 0) {
			n_f32++;
			ck_assert_int_eq(json_array_size(shape), 2);
			ck_assert_int_eq(json_integer_value(json_array_get(shape, 0)), 4);
			ck_assert_int_eq(json_integer_value(json_array_get(shape, 1)), 256);
			ck_assert_int_ge(json_integer_value(json_object_get(v, "nbytes")), 4096);
		} else {
			ck_assert_str_eq(dtype, "uint32");
			ck_assert_str_eq(json_string_value(json_object_get(v, "topic")) ?: "", "it/tools");
			ck_assert_int_ge(json_integer_value(json_object_get(v, "seq")), 1);
			n_topic++;
		}
	}
	ck_assert_uint_eq(n_f32, 2);
	ck_assert_uint_eq(n_topic, 3); /* one held, two queued */
	json_t *topic = json_array_get(json_object_get(j, "topics"), 0);
	ck_assert_ptr_nonnull(topic);
	ck_assert_str_eq(json_string_value(json_object_get(topic, "name")) ?: "", "it/tools");
	ck_assert_int_eq(json_integer_value(json_object_get(topic, "emitted")), 3);
	json_t *sub = json_array_get(json_object_get(topic, "subscribers"), 0);
	ck_assert_ptr_nonnull(sub);
	ck_assert_int_eq(json_integer_value(json_object_get(sub, "pid")), pid);
	ck_assert_str_eq(json_string_value(json_object_get(sub, "policy")) ?: "", "block");
	ck_assert_int_eq(json_integer_value(json_object_get(sub, "depth")), 4);
	json_t *client = NULL;
	json_array_foreach(json_object_get(j, "clients"), i, v)
		if (json_integer_value(json_object_get(v, "pid")) == pid)
			client = v;
	ck_assert_ptr_nonnull(client);
	ck_assert_str_eq(json_string_value(json_object_get(client, "name")) ?: "", "it-tools");
	/* 2 allocated, 1 received; more if queued ones were already pushed */
	ck_assert_int_ge(json_integer_value(json_object_get(client, "tensors_held")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(client, "subscriptions")), 1);
	ck_assert_int_ge(json_integer_value(json_object_get(client, "slabs_mapped")), 1);
	/* libhsclient asks for the shared-memory channel by default */
	ck_assert_str_eq(json_string_value(json_object_get(client, "transport")) ?: "", "shm");
	json_t *pool = json_array_get(json_object_get(j, "pools"), 0);
	ck_assert_ptr_nonnull(pool);
	ck_assert_str_eq(json_string_value(json_object_get(pool, "device")) ?: "", "cpu");
	json_int_t total = json_integer_value(json_object_get(pool, "total"));
	json_int_t used = json_integer_value(json_object_get(pool, "used"));
	json_int_t free_ = json_integer_value(json_object_get(pool, "free"));
	ck_assert_int_gt(used, 0);
	ck_assert_int_eq(used + free_, total);
	ck_assert_int_ge(json_integer_value(json_object_get(pool, "tensors")), 5);
	json_decref(j);

	/* One section: that array only. */
	const char *sections[] = { "tensors", "topics", "clients", "pools" };
	for (size_t s = 0; s < 4; s++) {
		const char *args[] = { "ls", sections[s], NULL };
		j = ht_hsctl_json(d.sock, args);
		ck_assert_ptr_nonnull(j);
		for (size_t o = 0; o < 4; o++)
			ck_assert_msg((json_object_get(j, sections[o]) != NULL) == (o == s),
				      "hsctl ls %s --json: key %s", sections[s], sections[o]);
		ck_assert(json_array_size(json_object_get(j, sections[s])) > 0);
		json_decref(j);
	}
	j = ht_hsctl_json(d.sock, status);
	ck_assert_ptr_nonnull(j);
	ck_assert(json_is_object(json_object_get(j, "counts")));
	json_decref(j);

	ck_assert_int_eq(ht_chan_send(&h.go, 'G'), 0);
	ck_assert_int_eq(ht_wait(pid, HT_DEADLINE_MS), 0);
	ht_chan_close(&h.ready);
	ht_chan_close(&h.go);
	HT_END(&d);
}
END_TEST

START_TEST(test_hsctl_no_daemon)
{
	ht_init();
	int fds0 = ht_count_fds();
	const char *ls[] = { "ls", NULL };
	int rc = ht_hsctl("/nonexistent", ls, out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(rc, 1);
	fprintf(stderr, "hsctl without a daemon said: %s", err);
	ck_assert_msg(strstr(err, "is hsbrokerd running"), "unhelpful message: %s", err);

	/* $HSBROKER_SOCKET is read when --socket is absent */
	const char *ls_json[] = { "ls", "--json", NULL };
	setenv("HSBROKER_SOCKET", "/nonexistent/hsbroker.sock", 1);
	rc = ht_hsctl(NULL, ls_json, out, sizeof(out), err, sizeof(err));
	unsetenv("HSBROKER_SOCKET");
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(err, "/nonexistent/hsbroker.sock"), "the path is not named: %s", err);

	/* a socket file with nobody listening */
	char dir[256], path[300];
	ht_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/dead.sock", dir);
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	ck_assert_uint_lt(strlen(path), sizeof(addr.sun_path));
	memcpy(addr.sun_path, path, strlen(path) + 1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	close(fd);
	rc = ht_hsctl(path, ls, out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(err[0], "no message on stderr");

	/* a bad command line */
	const char *bad[] = { "frobnicate", NULL };
	rc = ht_hsctl("/nonexistent", bad, out, sizeof(out), err, sizeof(err));
	ck_assert_int_eq(rc, 1);
	ck_assert_int_eq(ht_count_fds(), fds0);
}
END_TEST

/* ---- the C examples ---- */

#define EXAMPLE_COUNT 1000

START_TEST(test_examples)
{
	struct ht_daemon d;
	HT_BEGIN(&d, NULL);
	const char *prod = ht_prog("HS_EXAMPLE_PRODUCER");
	const char *cons = ht_prog("HS_EXAMPLE_CONSUMER");
	ck_assert_msg(prod && cons, "the C examples are not built");
	char count[16];
	snprintf(count, sizeof(count), "%d", EXAMPLE_COUNT);

	int po[2];
	ck_assert_int_eq(pipe2(po, O_CLOEXEC), 0);
	char *cargv[] = { (char *)cons, (char *)"--socket", d.sock, (char *)"--count", count, NULL };
	pid_t consumer = ht_spawn(cargv, NULL, po[1], -1);
	close(po[1]);
	ck_assert_int_gt(consumer, 0);

	/* Subscribed yet? Ask the daemon. */
	int64_t end = ht_now_ms() + HT_DEADLINE_MS;
	for (bool subscribed = false; !subscribed;) {
		const char *args[] = { "ls", "topics", NULL };
		json_t *j = ht_hsctl_json(d.sock, args);
		ck_assert_ptr_nonnull(j);
		size_t i, k;
		json_t *t, *s;
		json_array_foreach(json_object_get(j, "topics"), i, t)
			json_array_foreach(json_object_get(t, "subscribers"), k, s)
				if (json_integer_value(json_object_get(s, "pid")) == consumer)
					subscribed = true;
		json_decref(j);
		ck_assert_msg(subscribed || ht_now_ms() < end, "hs-example-consumer never subscribed");
		if (!subscribed)
			ht_sleep_ms(20);
	}

	char *pargv[] = { (char *)prod, (char *)"--socket", d.sock, (char *)"--count", count, NULL };
	pid_t producer = ht_spawn(pargv, NULL, -1, -1);
	ck_assert_int_gt(producer, 0);
	ck_assert_int_eq(ht_wait(producer, HT_LONG_DEADLINE_MS), 0);
	ck_assert_int_eq(ht_wait(consumer, HT_LONG_DEADLINE_MS), 0);

	char text[4096];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(po[0], text + len, sizeof(text) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	text[len] = '\0';
	close(po[0]);
	fprintf(stderr, "hs-example-consumer printed: %s", text);
	char want[64];
	snprintf(want, sizeof(want), "received %d tensors, 0 mismatches", EXAMPLE_COUNT);
	ck_assert_msg(strstr(text, want), "expected \"%s\" in: %s", want, text);
	HT_END(&d);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("tools");
	ht_case(s, "hsctl_ls", test_hsctl_ls);
	ht_case(s, "hsctl_no_daemon", test_hsctl_no_daemon);
	ht_case(s, "examples", test_examples);
	return ht_main(s);
}
