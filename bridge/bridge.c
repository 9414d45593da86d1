/* The bridge's loop: one thread that turns UCX's worker, the broker
 * client and the control socket. One poll() per pass tells which of them
 * has something (the broker client is read only when its fd says so);
 * between bursts the loop sleeps in that poll (UCX's wake-up fd armed
 * with ucp_worker_arm), or, while traffic flows, keeps looking for a
 * short while first (--busy-poll). Also the counters an operator reads:
 * `hsbridge stats` asks the control socket, which answers with one JSON
 * object and closes; --stats-interval logs them. */
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hsb.h"

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

uint64_t hsb_now_ms(void)
{
	return hsb_now_us() / 1000;
}

uint64_t hsb_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void hsb_log(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "hsbridge: %s\n", buf);
}

void hsb_am_handler(struct hsb_bridge *b, unsigned id, ucp_am_recv_callback_t cb)
{
	ucp_am_handler_param_t hp = {
		.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
			      UCP_AM_HANDLER_PARAM_FIELD_ARG,
		.id = id,
		.cb = cb,
		.arg = b,
	};
	ucp_worker_set_am_recv_handler(b->worker, &hp);
}

static int ucx_start(struct hsb_bridge *b)
{
	ucp_config_t *cfg;
	/* A restarted serve takes its port back at once, as daemons do
	 * (UCX's own default leaves it in TIME_WAIT for a minute). */
	setenv("UCX_TCP_CM_REUSEADDR", "y", 0);
	ucs_status_t st = ucp_config_read(NULL, NULL, &cfg);
	if (st != UCS_OK)
		goto fail;
	/* Keepalive is how a peer host that vanished (no FIN, no RST) is
	 * noticed; UCX's own default is 20 s. */
	if (b->keepalive &&
	    (st = ucp_config_modify(cfg, "KEEPALIVE_INTERVAL", b->keepalive)) != UCS_OK) {
		ucp_config_release(cfg);
		goto fail;
	}
	ucp_params_t up = {
		.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME,
		.features = UCP_FEATURE_AM | UCP_FEATURE_WAKEUP,
		.name = "hsbridge",
	};
	st = ucp_init(&up, cfg, &b->ucp);
	ucp_config_release(cfg);
	if (st != UCS_OK)
		goto fail;
	ucp_context_attr_t ca = { .field_mask = UCP_ATTR_FIELD_MEMORY_TYPES };
	if (ucp_context_query(b->ucp, &ca) == UCS_OK)
		b->ucx_cuda = (ca.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA)) != 0;
	ucp_worker_params_t wp = {
		.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE,
		.thread_mode = UCS_THREAD_MODE_SINGLE,
	};
	if ((st = ucp_worker_create(b->ucp, &wp, &b->worker)) != UCS_OK ||
	    (st = ucp_worker_get_efd(b->worker, &b->efd)) != UCS_OK)
		goto fail;
	b->slabs.ucp = b->ucp;
	hsb_log("UCX %s; device tensors %s", ucp_get_version_string(),
		b->ucx_cuda ? "sent from device memory" : "staged through pinned host memory");
	return 0;
fail:
	hsb_log("UCX: %s", ucs_status_string(st));
	return HS_EIO;
}

static int control_open(struct hsb_bridge *b)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (!b->ctl_path[0])
		return 0;
	if (strlen(b->ctl_path) >= sizeof(sa.sun_path))
		return HS_ENAMETOOLONG;
	strcpy(sa.sun_path, b->ctl_path);
	b->ctl_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (b->ctl_fd < 0)
		return HS_EIO;
	unlink(b->ctl_path); /* a stale socket of an earlier run */
	if (bind(b->ctl_fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(b->ctl_fd, 8) < 0) {
		hsb_log("control socket %s: %s", b->ctl_path, strerror(errno));
		return HS_EIO;
	}
	return 0;
}

static json_t *stats_json(struct hsb_bridge *b)
{
	json_t *o = json_object(), *topics = json_array(), *peers = json_array();
	json_object_set_new(o, "mode", json_string(b->serve ? "serve" : "connect"));
	json_object_set_new(o, "address", json_string(b->addr_str));
	json_object_set_new(o, "peers_accepted", json_integer((json_int_t)b->peers_accepted));
	json_object_set_new(o, "peers_refused", json_integer((json_int_t)b->peers_refused));
	json_object_set_new(o, "peers_lost", json_integer((json_int_t)b->peers_lost));
	json_object_set_new(o, "connects", json_integer((json_int_t)b->connects));
	json_object_set_new(o, "protocol_errors", json_integer((json_int_t)b->protocol_errors));
	json_object_set_new(o, "slabs_registered", json_integer((json_int_t)b->slabs.registered));
	json_object_set_new(o, "ucx_cuda", json_boolean(b->ucx_cuda));
	/* the loop's own: how often it slept, and what that cost (asked from
	 * the loop thread, which answers the control socket) */
	struct rusage ru;
	getrusage(RUSAGE_THREAD, &ru);
	json_object_set_new(o, "loop_sleeps", json_integer((json_int_t)b->sleeps));
	json_object_set_new(o, "loop_wakeups", json_integer((json_int_t)ru.ru_nvcsw));
	json_object_set_new(o, "loop_preempted", json_integer((json_int_t)ru.ru_nivcsw));
	json_object_set_new(o, "loop_cpu_us",
			    json_integer((json_int_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
					 ru.ru_utime.tv_usec + ru.ru_stime.tv_usec));
	json_object_set_new(o, "busy_poll_us", json_integer(b->busy_poll_us));
	json_object_set_new(o, "busy_poll_hits", json_integer((json_int_t)b->busy_poll_hits));
	if (b->emitter) {
		uint64_t direct, threaded;
		uint32_t lanes;
		hsb_emitter_counts(b->emitter, &direct, &threaded, &lanes);
		json_object_set_new(o, "emits_from_loop", json_integer((json_int_t)direct));
		json_object_set_new(o, "emits_from_lanes", json_integer((json_int_t)threaded));
		json_object_set_new(o, "lanes", json_integer(lanes));
	}
	for (struct hsb_peer *p = b->peers; p; p = p->next) {
		json_t *j = json_object();
		json_object_set_new(j, "address", json_string(p->addr));
		json_object_set_new(j, "state", json_string(p->failed ? "closing" : "open"));
		int n = 0;
		for (struct hsb_sub *s = p->subs; s; s = s->next)
			n++;
		json_object_set_new(j, "topics", json_integer(n));
		json_array_append_new(peers, j);
	}
	for (struct hsb_topic *t = b->topics.list; t; t = t->next) {
		json_t *j = json_object();
		json_object_set_new(j, "name", json_string(t->name));
		json_object_set_new(j, "tensors", json_integer((json_int_t)t->tensors));
		json_object_set_new(j, "bytes", json_integer((json_int_t)t->bytes));
		json_object_set_new(j, "dropped", json_integer((json_int_t)t->dropped));
		json_object_set_new(j, "credit_waits", json_integer((json_int_t)t->credit_waits));
		json_object_set_new(j, "in_flight", json_integer(t->in_flight));
		json_array_append_new(topics, j);
	}
	json_object_set_new(o, "peers", peers);
	json_object_set_new(o, "topics", topics);
	return o;
}

static void control_answer(struct hsb_bridge *b)
{
	int fd = accept4(b->ctl_fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return;
	json_t *o = stats_json(b);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s) {
		size_t n = strlen(s), at = 0;
		/* a small answer: a blocking send with a timeout so that a
		 * stuck reader cannot hold the loop */
		struct timeval tv = { .tv_sec = 1 };
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		while (at < n) {
			ssize_t w = send(fd, s + at, n - at, MSG_NOSIGNAL);
			if (w <= 0)
				break;
			at += (size_t)w;
		}
		free(s);
	}
	close(fd);
}

static void stats_log(struct hsb_bridge *b)
{
	for (struct hsb_topic *t = b->topics.list; t; t = t->next)
		hsb_log("stats: topic %s: %llu tensors, %llu bytes, %llu dropped, %llu credit waits, "
			"%u in flight", t->name, (unsigned long long)t->tensors,
			(unsigned long long)t->bytes, (unsigned long long)t->dropped,
			(unsigned long long)t->credit_waits, t->in_flight);
}

static bool has_live_peer(struct hsb_bridge *b)
{
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		if (!p->failed)
			return true;
	return false;
}

/* One pass over everything that may have work; returns how much it did.
 * client_ready, stage_ready: poll found the broker client's fd, the
 * staging copies' fd readable. */
static int turn(struct hsb_bridge *b, bool client_ready, bool stage_ready)
{
	int did = 0;
	uint64_t now = hsb_now_ms();
	/* The broker's messages are read when its fd says so (its hang-up
	 * too: how a bridge learns that its broker is gone), and once a
	 * second whatever it says; serve sends what they delivered before
	 * it turns UCX (nothing there is needed first). */
	if (client_ready || now >= b->next_dispatch_ms) {
		int n = hs_client_dispatch(b->client);
		if (n == HS_EPIPE || n == HS_ESHUTDOWN) {
			hsb_log("broker: %s", hs_strerror(n));
			b->exit_code = 1;
			return did;
		}
		b->next_dispatch_ms = now + 1000;
		if (b->serve && client_ready) {
			hsb_send_ready(b);
			did += hsb_send_pump(b);
		}
	}
	while (ucp_worker_progress(b->worker))
		did++;
	now = hsb_now_ms(); /* what progress did (a peer accepted, heard) is no later */
	if (stage_ready) {
		hsb_stage_drain();
		did += b->serve ? hsb_send_staged(b) : hsb_recv_landed(b);
	}
	if (b->serve) {
		if (now >= b->next_scan_ms) {
			hsb_send_scan(b);
			b->next_scan_ms = now + 200;
		}
		did += hsb_send_pump(b); /* what the credits that came let go */
	} else {
		did += hsb_recv_credits(b);
	}
	b->next_ping_ms = hsb_peers_heartbeat(b, now);
	did += hsb_peers_reap(b); /* a lost connect peer sets retry_at_ms */
	if (!b->serve && !has_live_peer(b) && now >= b->retry_at_ms) {
		b->retry_at_ms = now + b->backoff_ms; /* if this fails at once */
		hsb_peer_connect(b);
	}
	if (b->stats_every_ms && now >= b->next_stats_ms) {
		stats_log(b);
		b->next_stats_ms = now + b->stats_every_ms;
	}
	return did;
}

static int wait_ms(struct hsb_bridge *b)
{
	uint64_t now = hsb_now_ms(), next = now + 1000;
	if (b->serve && b->next_scan_ms < next)
		next = b->next_scan_ms;
	if (!b->serve && !has_live_peer(b) && b->retry_at_ms < next)
		next = b->retry_at_ms;
	if (b->stats_every_ms && b->next_stats_ms < next)
		next = b->next_stats_ms;
	if (b->next_ping_ms < next)
		next = b->next_ping_ms;
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		if (p->failed) /* closing: progress it soon */
			next = now + 10;
	if (!b->serve && hsb_recv_credit_due(b) && now + HSB_CREDIT_DELAY_US / 1000 < next)
		next = now + HSB_CREDIT_DELAY_US / 1000;
	return next > now ? (int)(next - now) : 0;
}

int hsb_bridge_run(struct hsb_bridge *b)
{
	b->ctl_fd = -1;
	b->efd = -1;
	b->exit_code = -1;
	b->backoff_ms = b->backoff_min_ms;
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (ucx_start(b) < 0)
		return 1;
	if (control_open(b) < 0)
		return 1;
	if (b->serve) {
		hsb_send_register(b);
		if (hsb_peer_listen(b) < 0)
			return 1;
	} else {
		hsb_recv_register(b);
		if (hsb_emitter_start(b->socket, &b->emitter) < 0)
			return 1;
	}
	b->next_stats_ms = hsb_now_ms() + b->stats_every_ms;
	/* Busy polling (--busy-poll): after a pass that did something the
	 * loop keeps looking without sleeping for up to busy_poll_us, but only
	 * while traffic flows: while the idle gaps it saw lately (an average)
	 * were shorter than that, so that a look is likely to find the next
	 * tensor and save a wake-up. Traffic that stops costs one such
	 * stretch, then the gaps grow and the loop sleeps at once again. */
	uint64_t idle_since = 0, gap_avg = 0, spin_until = 0;
	int worked = 1;
	while (b->exit_code < 0 && !stop_signal) {
		int timeout = 0;
		bool slept = false, spun = false;
		if (!worked) {
			uint64_t now = hsb_now_us();
			if (!idle_since) {
				idle_since = now;
				spin_until = b->busy_poll_us && gap_avg < b->busy_poll_us
						     ? now + b->busy_poll_us : 0;
			}
			if (now < spin_until) {
				spun = true;
			} else if (ucp_worker_arm(b->worker) != UCS_ERR_BUSY) {
				timeout = wait_ms(b);
				slept = true;
			}
		}
		struct pollfd fds[5] = { { .fd = b->efd, .events = POLLIN },
					 { .fd = b->ctl_fd, .events = POLLIN },
					 { .fd = hs_client_get_fd(b->client), .events = POLLIN },
					 { .fd = b->emitter ? hsb_emitter_fd(b->emitter) : -1,
					   .events = POLLIN },
					 { .fd = hsb_stage_fd(), .events = POLLIN } };
		int n = poll(fds, 5, timeout);
		b->sleeps += slept;
		if (n > 0 && (fds[1].revents & POLLIN))
			control_answer(b);
		worked = turn(b, n > 0 && fds[2].revents, n > 0 && fds[4].revents);
		if (worked && idle_since) { /* a gap ended: learn its length */
			uint64_t gap = hsb_now_us() - idle_since;
			gap_avg = gap_avg ? (gap_avg * 7 + gap) / 8 : gap;
			b->busy_poll_hits += spun;
			idle_since = 0;
		}
	}
	if (stop_signal)
		hsb_log("stopping (signal %d)", (int)stop_signal);
	/* every peer closed, every operation on them ended (5 s at most) */
	hsb_peers_fail_all(b);
	for (uint64_t until = hsb_now_ms() + 5000; b->peers && hsb_now_ms() < until;) {
		ucp_worker_progress(b->worker);
		b->serve ? hsb_send_staged(b) : hsb_recv_landed(b);
		if (!b->serve)
			hsb_recv_credits(b);
		hsb_peers_reap(b);
	}
	/* the registrations go before the lanes' mappings do */
	hsb_slabs_free(&b->slabs);
	if (b->emitter)
		hsb_emitter_stop(b->emitter); /* emits what was received */
	if (b->listener)
		ucp_listener_destroy(b->listener);
	hsb_stage_free_all();
	ucp_worker_destroy(b->worker);
	ucp_cleanup(b->ucp);
	hsb_topics_free(&b->topics);
	if (b->ctl_fd >= 0) {
		close(b->ctl_fd);
		unlink(b->ctl_path);
	}
	return b->exit_code > 0 ? b->exit_code : 0;
}

int hsb_stats_print(const char *control, bool as_json)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	if (strlen(control) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "hsbridge stats: %s: path too long\n", control);
		return 1;
	}
	strcpy(sa.sun_path, control);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "hsbridge stats: %s: %s\n", control, strerror(errno));
		if (fd >= 0)
			close(fd);
		return 1;
	}
	json_error_t je;
	json_t *o = json_loadfd(fd, 0, &je);
	close(fd);
	if (!o) {
		fprintf(stderr, "hsbridge stats: %s: %s\n", control, je.text);
		return 1;
	}
	if (as_json) {
		json_dumpf(o, stdout, JSON_INDENT(2));
		putchar('\n');
		json_decref(o);
		return 0;
	}
	printf("%s %s: %lld peers accepted, %lld refused, %lld lost, %lld connects, "
	       "%lld protocol errors\n",
	       json_string_value(json_object_get(o, "mode")),
	       json_string_value(json_object_get(o, "address")),
	       json_integer_value(json_object_get(o, "peers_accepted")),
	       json_integer_value(json_object_get(o, "peers_refused")),
	       json_integer_value(json_object_get(o, "peers_lost")),
	       json_integer_value(json_object_get(o, "connects")),
	       json_integer_value(json_object_get(o, "protocol_errors")));
	printf("%-32s %12s %16s %10s %12s %9s\n", "TOPIC", "TENSORS", "BYTES", "DROPPED",
	       "CREDIT-WAITS", "IN-FLIGHT");
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(o, "topics"), i, t)
		printf("%-32s %12lld %16lld %10lld %12lld %9lld\n",
		       json_string_value(json_object_get(t, "name")),
		       json_integer_value(json_object_get(t, "tensors")),
		       json_integer_value(json_object_get(t, "bytes")),
		       json_integer_value(json_object_get(t, "dropped")),
		       json_integer_value(json_object_get(t, "credit_waits")),
		       json_integer_value(json_object_get(t, "in_flight")));
	json_decref(o);
	return 0;
}
