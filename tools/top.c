/* hsctl top: a live view like pw-top. Every second: per topic the tensors
 * emitted per second, per subscriber its queue and deliveries per second.
 * Rates come from the difference of two snapshots' counters. On a
 * terminal, keys: q quits, s changes the sort, p or space pauses. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <termios.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hsctl.h"

/* A counter seen in the previous snapshot: a topic's emitted count (key
 * by name) or a subscription's delivered count (key by id). */
struct seen {
	char name[HS_MAX_TOPIC + 1];
	uint64_t sub;
	uint64_t count;
};

struct history {
	struct seen *v;
	size_t n;
};

static const struct seen *find(const struct history *h, const char *name, uint64_t sub)
{
	for (size_t i = 0; i < h->n; i++)
		if (h->v[i].sub == sub && strcmp(h->v[i].name, name) == 0)
			return &h->v[i];
	return NULL;
}

/* Per second since the last snapshot; -1 when there is none to compare. */
static double rate(const struct history *h, const char *name, uint64_t sub, uint64_t now,
		   double dt)
{
	const struct seen *s = find(h, name, sub);
	if (!s || dt <= 0 || now < s->count)
		return -1;
	return (double)(now - s->count) / dt;
}

static bool remember(struct history *h, const hs_info *info)
{
	size_t n = 0;
	for (size_t i = 0; i < info->n_topics; i++)
		n += 1 + info->topics[i].n_subscribers;
	struct seen *v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		return false;
	size_t k = 0;
	for (size_t i = 0; i < info->n_topics; i++) {
		const hs_topic_info *t = &info->topics[i];
		snprintf(v[k].name, sizeof(v[k].name), "%s", t->name);
		v[k++].count = t->emitted;
		for (uint32_t j = 0; j < t->n_subscribers; j++) {
			snprintf(v[k].name, sizeof(v[k].name), "%s", t->name);
			v[k].sub = t->subscribers[j].subscription;
			v[k++].count = t->subscribers[j].delivered;
		}
	}
	free(h->v);
	h->v = v;
	h->n = k;
	return true;
}

/* Rates to 0.1/s; null on the first refresh, which has nothing to
 * compare with. */
static json_t *jrate(double r)
{
	return r < 0 ? json_null() : json_real((double)(long long)(r * 10 + 0.5) / 10);
}

static json_t *json_sub(const hs_topic_info *t, const hs_subscriber_info *s,
			const struct history *h, double dt)
{
	return json_pack("{s:I, s:i, s:s, s:s, s:I, s:I, s:I, s:o, s:I}",
			 "subscription", (json_int_t)s->subscription, "pid", (int)s->pid,
			 "name", s->name, "policy", fmt_policy(s->policy),
			 "depth", (json_int_t)s->depth, "queued", (json_int_t)s->queued,
			 "delivered", (json_int_t)s->delivered,
			 "delivered_per_s", jrate(rate(h, t->name, s->subscription, s->delivered, dt)),
			 "dropped", (json_int_t)s->dropped);
}

static json_t *json_top_topic(const hs_topic_info *t, const struct history *h, double dt)
{
	json_t *subs = json_array();
	for (uint32_t j = 0; subs && j < t->n_subscribers; j++) {
		if (json_array_append_new(subs, json_sub(t, &t->subscribers[j], h, dt)) != 0) {
			json_decref(subs);
			subs = NULL;
		}
	}
	if (!subs)
		return NULL;
	/* "o" steals subs, also when json_pack fails. */
	return json_pack("{s:s, s:I, s:o, s:I, s:I, s:o}", "name", t->name,
			 "emitted", (json_int_t)t->emitted,
			 "emitted_per_s", jrate(rate(h, t->name, 0, t->emitted, dt)),
			 "dropped", (json_int_t)t->dropped,
			 "blocked_emits", (json_int_t)t->blocked_emits, "subscribers", subs);
}

static int show_json(const hs_info *info, const struct history *h, double dt)
{
	json_t *topics = json_array();
	for (size_t i = 0; topics && i < info->n_topics; i++) {
		if (json_array_append_new(topics, json_top_topic(&info->topics[i], h, dt)) != 0) {
			json_decref(topics);
			topics = NULL;
		}
	}
	json_t *o = topics ? json_pack("{s:I, s:I, s:I, s:o}",
				       "uptime_us", (json_int_t)info->uptime_us,
				       "clients", (json_int_t)info->n_clients,
				       "tensors", (json_int_t)info->n_tensors,
				       "topics", topics)
			   : NULL;
	/* One compact line per refresh: JSON lines a script can follow. */
	return hsctl_json_print(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
}

/* The keys' state: the order of topics and whether refreshing stopped. */
enum sort_by { SORT_NAME, SORT_RATE, SORT_EMITTED, SORT_COUNT };
static const char *const sort_names[] = { "name", "emit/s", "emitted" };

struct view {
	enum sort_by sort;
	bool paused;
};

static const struct history *sort_history;
static double sort_dt;

static int by_sort(const void *pa, const void *pb, enum sort_by how)
{
	const hs_topic_info *a = pa, *b = pb;
	if (how == SORT_RATE) {
		double ra = rate(sort_history, a->name, 0, a->emitted, sort_dt);
		double rb = rate(sort_history, b->name, 0, b->emitted, sort_dt);
		if (ra != rb)
			return ra < rb ? 1 : -1; /* busiest first */
	} else if (how == SORT_EMITTED && a->emitted != b->emitted) {
		return a->emitted < b->emitted ? 1 : -1;
	}
	return strcmp(a->name, b->name);
}

static int by_name(const void *a, const void *b) { return by_sort(a, b, SORT_NAME); }
static int by_rate(const void *a, const void *b) { return by_sort(a, b, SORT_RATE); }
static int by_emitted(const void *a, const void *b) { return by_sort(a, b, SORT_EMITTED); }

static void sort_topics(hs_info *info, const struct history *h, double dt, enum sort_by how)
{
	static int (*const cmp[])(const void *, const void *) = { by_name, by_rate, by_emitted };
	sort_history = h;
	sort_dt = dt;
	if (info->n_topics > 1)
		qsort(info->topics, info->n_topics, sizeof(*info->topics), cmp[how]);
}

static int show_table(const hs_info *info, const struct history *h, double dt, bool tty,
		      const struct view *v)
{
	static const char *const hdr[] = { "TOPIC", "EMIT/s", "EMITTED", "DROPPED", "BLOCKED",
					   "SUB", "PID/NAME", "POLICY", "QUEUED", "DEPTH",
					   "DELIV/s", "DELIVERED", "SUB-DROPPED" };
	static const bool right[] = { false, true, true, true, true, true, false,
				      false, true, true, true, true, true };
	struct table *tb = table_new(13, hdr, right);
	if (!tb)
		return hsctl_fail("formatting", HS_ENOMEM);
	bool ok = true;
	for (size_t i = 0; ok && i < info->n_topics; i++) {
		const hs_topic_info *t = &info->topics[i];
		char r[32], em[24], dr[24], bl[16];
		fmt_rate(rate(h, t->name, 0, t->emitted, dt), r, sizeof(r));
		snprintf(em, sizeof(em), "%" PRIu64, t->emitted);
		snprintf(dr, sizeof(dr), "%" PRIu64, t->dropped);
		snprintf(bl, sizeof(bl), "%u", t->blocked_emits);
		const char *row[] = { t->name, r, em, dr, bl, "", "", "", "", "", "", "", "" };
		ok = table_row(tb, row);
		for (uint32_t j = 0; ok && j < t->n_subscribers; j++) {
			const hs_subscriber_info *s = &t->subscribers[j];
			char id[24], who[96], q[16], d[16], sr[32], del[24], sdr[24];
			snprintf(id, sizeof(id), "%" PRIu64, s->subscription);
			snprintf(who, sizeof(who), "%d/%s", s->pid, s->name);
			snprintf(q, sizeof(q), "%u", s->queued);
			snprintf(d, sizeof(d), "%u", s->depth);
			fmt_rate(rate(h, t->name, s->subscription, s->delivered, dt), sr, sizeof(sr));
			snprintf(del, sizeof(del), "%" PRIu64, s->delivered);
			snprintf(sdr, sizeof(sdr), "%" PRIu64, s->dropped);
			const char *srow[] = { "", "", "", "", "", id, who, fmt_policy(s->policy),
					       q, d, sr, del, sdr };
			ok = table_row(tb, srow);
		}
	}
	if (ok) {
		uint64_t used = 0, total = 0;
		for (size_t i = 0; i < info->n_pools; i++) {
			used += info->pools[i].used;
			total += info->pools[i].total;
		}
		char up[32], ub[32], tot[32];
		if (tty)
			fputs("\033[H\033[2J", stdout); /* home and clear, as pw-top */
		printf("hsbrokerd %s  up %s  clients %zu  tensors %zu  memory %s / %s\n",
		       info->daemon_version, fmt_age(info->uptime_us, up, sizeof(up)),
		       info->n_clients, info->n_tensors, fmt_bytes(used, ub, sizeof(ub)),
		       fmt_bytes(total, tot, sizeof(tot)));
		if (v)
			printf("sorted by %s%s  (q quit, s sort, p pause)\n", sort_names[v->sort],
			       v->paused ? "  PAUSED" : "");
		putchar('\n');
		table_print(tb);
		if (!tty)
			putchar('\n');
	}
	table_free(tb);
	if (!ok)
		return hsctl_fail("formatting", HS_ENOMEM);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* The terminal as it was, restored at exit (also after ^C). */
static struct termios saved_tty;
static bool raw_tty;

static void tty_restore(void)
{
	if (raw_tty)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_tty);
	raw_tty = false;
}

static void on_quit_signal(int sig)
{
	tty_restore();
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Keys one at a time, unechoed: only when both ends are a terminal. */
static bool tty_keys(void)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_tty) < 0)
		return false;
	struct termios t = saved_tty;
	t.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(STDIN_FILENO, TCSANOW, &t) < 0)
		return false;
	raw_tty = true;
	atexit(tty_restore);
	signal(SIGINT, on_quit_signal);
	signal(SIGTERM, on_quit_signal);
	return true;
}

/* Waits up to ms for keys, applying them to v. Returns true on q, and
 * early (so the screen shows the change) after a key that changes it. */
static bool wait_keys(struct view *v, int ms, bool *redraw)
{
	struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };
	*redraw = false;
	int r = poll(&p, 1, ms);
	if (r <= 0)
		return false;
	char c;
	if (read(STDIN_FILENO, &c, 1) != 1)
		return true; /* the terminal went away */
	switch (c) {
	case 'q': case 'Q':
		return true;
	case 's': case 'S':
		v->sort = (enum sort_by)((v->sort + 1) % SORT_COUNT);
		*redraw = true;
		break;
	case 'p': case 'P': case ' ':
		v->paused = !v->paused;
		*redraw = true;
		break;
	default:
		break;
	}
	return false;
}

int hsctl_top(struct hsctl *ctl)
{
	struct history h = { 0 };
	bool tty = !ctl->json && isatty(STDOUT_FILENO);
	bool keys = tty && tty_keys();
	struct view view = { SORT_NAME, false };
	double last = 0;
	int rc = 0;
	for (long i = 0; ctl->iterations == 0 || i < ctl->iterations; i++) {
		if (i > 0 && keys) {
			/* A second between refreshes, keys read meanwhile; a
			 * paused view waits for keys only. */
			bool redraw = false, quit = false;
			double until = hsctl_now_s() + 1;
			while (!quit && !redraw && (view.paused || hsctl_now_s() < until)) {
				int ms = view.paused ? -1 : (int)((until - hsctl_now_s()) * 1000) + 1;
				quit = wait_keys(&view, ms, &redraw);
			}
			if (quit)
				break;
			if (view.paused) {
				/* Paused: redraw the header line only. */
				printf("\033[2;1H\033[Ksorted by %s  PAUSED  (q quit, s sort, p pause)",
				       sort_names[view.sort]);
				fflush(stdout);
				i--;
				continue;
			}
		} else if (i > 0) {
			struct timespec ts = { .tv_sec = 1 };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
		}
		hs_info *info;
		/* One snapshot feeds both the header's counts and the rates. */
		int err = hs_client_get_info(ctl->client, HS_INFO_ALL, &info);
		if (err) {
			rc = hsctl_fail("top", err);
			break;
		}
		double t = hsctl_now_s();
		double dt = i > 0 ? t - last : 0;
		if (!ctl->json)
			sort_topics(info, &h, dt, view.sort);
		rc = ctl->json ? show_json(info, &h, dt)
			       : show_table(info, &h, dt, tty, keys ? &view : NULL);
		last = t;
		bool ok = remember(&h, info);
		hs_info_free(info);
		if (rc)
			break;
		if (!ok) {
			rc = hsctl_fail("top", HS_ENOMEM);
			break;
		}
	}
	free(h.v);
	tty_restore();
	return rc;
}
