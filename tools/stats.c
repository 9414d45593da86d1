/* hsctl stats: the broker's counters as named metrics, printed as a
 * table, JSON, or the Prometheus text exposition format (for
 * node_exporter's textfile collector).
 *
 * Every number goes through one list of samples (family, labels, value),
 * filled by sources and printed by one of the writers, so another
 * program's counters (the bridge's per-topic ones, say) are one more
 * source function adding families: the writers need no change
 * (docs/hsctl.md, "Adding counters"). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsctl.h"

/* A metric family: Prometheus names it, types it and says what it is. */
struct family {
	const char *name;
	const char *type; /* "counter" or "gauge" */
	const char *help;
};

struct sample {
	const struct family *f;
	char topic[HS_MAX_TOPIC + 1]; /* label topic="...", "" for none */
	char device[16];              /* label device="...", "" for none */
	double value;
};

struct samples {
	struct sample *v;
	size_t n, cap;
};

static bool add(struct samples *s, const struct family *f, const char *topic,
		const char *device, double value)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct sample *v = realloc(s->v, cap * sizeof(*v));
		if (!v)
			return false;
		s->v = v;
		s->cap = cap;
	}
	struct sample *x = &s->v[s->n++];
	x->f = f;
	snprintf(x->topic, sizeof(x->topic), "%s", topic ? topic : "");
	snprintf(x->device, sizeof(x->device), "%s", device ? device : "");
	x->value = value;
	return true;
}

static const struct family
	F_UP = { "hsbroker_up", "gauge", "1 when hsctl reached the daemon" },
	F_UPTIME = { "hsbroker_uptime_seconds", "gauge", "Time since the daemon started" },
	F_CPU = { "hsbroker_cpu_seconds_total", "counter",
		  "CPU time the daemon has used, user and system" },
	F_CPU_PER = { "hsbroker_cpu_seconds_per_tensor", "gauge",
		      "Daemon CPU time per tensor emitted, since it started" },
	F_CLIENTS = { "hsbroker_clients", "gauge", "Connected clients" },
	F_TENSORS = { "hsbroker_tensors", "gauge", "Live tensors" },
	F_EMITTED = { "hsbroker_emitted_total", "counter", "Tensors emitted on topics that exist" },
	F_DELIVERED = { "hsbroker_delivered_total", "counter",
			"Tensors delivered to subscribers now subscribed" },
	F_DROPPED = { "hsbroker_dropped_total", "counter",
		      "Tensors a subscriber missed (full queue, stalled BLOCK reader)" },
	F_BYTES = { "hsbroker_emitted_bytes_total", "counter", "Bytes of the tensors emitted" },
	F_T_EMITTED = { "hsbroker_topic_emitted_total", "counter", "Tensors emitted on the topic" },
	F_T_DELIVERED = { "hsbroker_topic_delivered_total", "counter",
			  "Tensors delivered to the topic's current subscribers" },
	F_T_DROPPED = { "hsbroker_topic_dropped_total", "counter",
			"Tensors the topic's subscribers missed" },
	F_T_BYTES = { "hsbroker_topic_emitted_bytes_total", "counter",
		      "Bytes of the tensors emitted on the topic" },
	F_T_SUBS = { "hsbroker_topic_subscribers", "gauge", "Subscribers of the topic" },
	F_T_BLOCKED = { "hsbroker_topic_blocked_emits", "gauge",
			"Emits held back by a full BLOCK subscriber" },
	F_P_TOTAL = { "hsbroker_pool_bytes", "gauge", "Bytes of the pool's slabs" },
	F_P_USED = { "hsbroker_pool_used_bytes", "gauge", "Bytes of the pool's tensors" },
	F_P_CAP = { "hsbroker_pool_cap_bytes", "gauge", "The pool's cap; 0 = none" };

/* The broker's own counters, from one snapshot. */
static bool source_broker(struct samples *s, const hs_info *info)
{
	uint64_t emitted = 0, delivered = 0, dropped = 0, bytes = 0;
	bool ok = add(s, &F_UP, NULL, NULL, 1) &&
		  add(s, &F_UPTIME, NULL, NULL, (double)info->uptime_us / 1e6) &&
		  add(s, &F_CPU, NULL, NULL, (double)info->daemon_cpu_us / 1e6) &&
		  add(s, &F_CLIENTS, NULL, NULL, (double)info->n_clients) &&
		  add(s, &F_TENSORS, NULL, NULL, (double)info->n_tensors);
	for (size_t i = 0; ok && i < info->n_topics; i++) {
		const hs_topic_info *t = &info->topics[i];
		uint64_t d = 0;
		for (uint32_t j = 0; j < t->n_subscribers; j++)
			d += t->subscribers[j].delivered;
		emitted += t->emitted;
		delivered += d;
		dropped += t->dropped;
		bytes += t->bytes_emitted;
		ok = add(s, &F_T_EMITTED, t->name, NULL, (double)t->emitted) &&
		     add(s, &F_T_DELIVERED, t->name, NULL, (double)d) &&
		     add(s, &F_T_DROPPED, t->name, NULL, (double)t->dropped) &&
		     add(s, &F_T_BYTES, t->name, NULL, (double)t->bytes_emitted) &&
		     add(s, &F_T_SUBS, t->name, NULL, (double)t->n_subscribers) &&
		     add(s, &F_T_BLOCKED, t->name, NULL, (double)t->blocked_emits);
	}
	ok = ok && add(s, &F_EMITTED, NULL, NULL, (double)emitted) &&
	     add(s, &F_DELIVERED, NULL, NULL, (double)delivered) &&
	     add(s, &F_DROPPED, NULL, NULL, (double)dropped) &&
	     add(s, &F_BYTES, NULL, NULL, (double)bytes) &&
	     add(s, &F_CPU_PER, NULL, NULL,
		 emitted ? (double)info->daemon_cpu_us / 1e6 / (double)emitted : 0);
	for (size_t i = 0; ok && i < info->n_pools; i++) {
		const hs_pool_info *p = &info->pools[i];
		char dev[16];
		fmt_device(p->device, dev, sizeof(dev));
		ok = add(s, &F_P_TOTAL, NULL, dev, (double)p->total) &&
		     add(s, &F_P_USED, NULL, dev, (double)p->used) &&
		     add(s, &F_P_CAP, NULL, dev, (double)p->cap);
	}
	return ok;
}

/* ---- the Prometheus text format (version 0.0.4) ---- */

/* A label value: backslash, double quote and newline escaped. */
static void put_label(FILE *f, const char *name, const char *v, bool *first)
{
	fprintf(f, "%s%s=\"", *first ? "{" : ",", name);
	*first = false;
	for (; *v; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
	fputc('"', f);
}

static void put_value(FILE *f, double v)
{
	if (v == floor(v) && fabs(v) < 9e15)
		fprintf(f, "%.0f\n", v);
	else
		fprintf(f, "%.9g\n", v);
}

/* Every family once, HELP and TYPE first, its samples together, in the
 * order families were first added. */
static int write_prometheus(const struct samples *s)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct family *f = s->v[i].f;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = s->v[j].f == f;
		if (seen)
			continue;
		printf("# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, f->type);
		for (size_t j = i; j < s->n; j++) {
			const struct sample *x = &s->v[j];
			if (x->f != f)
				continue;
			fputs(f->name, stdout);
			bool first = true;
			if (x->topic[0])
				put_label(stdout, "topic", x->topic, &first);
			if (x->device[0])
				put_label(stdout, "device", x->device, &first);
			if (!first)
				fputc('}', stdout);
			fputc(' ', stdout);
			put_value(stdout, x->value);
		}
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

/* ---- JSON and tables: the same samples, with rates ---- */

static double find(const struct samples *s, const struct family *f, const char *topic)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->v[i].f == f && !strcmp(s->v[i].topic, topic ? topic : ""))
			return s->v[i].value;
	return NAN;
}

/* Per second between two samples of one counter; NAN without both. */
static double per_s(const struct samples *a, const struct samples *b, const struct family *f,
		    const char *topic, double dt)
{
	double x = find(a, f, topic), y = find(b, f, topic);
	if (isnan(x) || isnan(y) || dt <= 0 || y < x)
		return NAN;
	return (y - x) / dt;
}

static json_t *jnum(double v)
{
	return isnan(v) ? json_null() : json_real(round(v * 10) / 10);
}

static int write_json(const hs_info *info, const struct samples *a, const struct samples *b,
		      double dt)
{
	json_t *topics = json_array();
	for (size_t i = 0; topics && i < info->n_topics; i++) {
		const char *n = info->topics[i].name;
		json_t *t = json_pack(
			"{s:s, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "name", n,
			"emitted", (json_int_t)find(b, &F_T_EMITTED, n),
			"delivered", (json_int_t)find(b, &F_T_DELIVERED, n),
			"dropped", (json_int_t)find(b, &F_T_DROPPED, n),
			"bytes", (json_int_t)find(b, &F_T_BYTES, n),
			"emitted_per_s", jnum(per_s(a, b, &F_T_EMITTED, n, dt)),
			"delivered_per_s", jnum(per_s(a, b, &F_T_DELIVERED, n, dt)),
			"bytes_per_s", jnum(per_s(a, b, &F_T_BYTES, n, dt)));
		if (json_array_append_new(topics, t) != 0) {
			json_decref(topics);
			topics = NULL;
		}
	}
	double cpu = per_s(a, b, &F_CPU, NULL, dt), em = per_s(a, b, &F_EMITTED, NULL, dt);
	json_t *o = topics ? json_pack(
		"{s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:o, s:o, s:o}",
		"version", info->daemon_version, "pid", (int)info->daemon_pid,
		"uptime_us", (json_int_t)info->uptime_us,
		"cpu_us", (json_int_t)info->daemon_cpu_us,
		"emitted", (json_int_t)find(b, &F_EMITTED, NULL),
		"delivered", (json_int_t)find(b, &F_DELIVERED, NULL),
		"dropped", (json_int_t)find(b, &F_DROPPED, NULL),
		"bytes", (json_int_t)find(b, &F_BYTES, NULL),
		"cpu_us_per_tensor", find(b, &F_CPU_PER, NULL) * 1e6,
		"cpu_us_per_tensor_now", jnum(em > 0 ? cpu * 1e6 / em : NAN),
		"emitted_per_s", jnum(em), "topics", topics)
			   : NULL;
	return hsctl_json_print(o, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
}

/* fmt_rate's "-" for a rate there is none of. */
static double or_none(double v)
{
	return isnan(v) ? -1 : v;
}

static const char *count(double v, char *buf, size_t size)
{
	snprintf(buf, size, "%.0f", v);
	return buf;
}

static int write_table(const hs_info *info, const struct samples *a, const struct samples *b,
		       double dt)
{
	static const char *const hdr[] = { "TOPIC", "EMITTED", "EMIT/s", "DELIVERED", "DELIV/s",
					   "DROPPED", "BYTES", "BYTES/s" };
	static const bool right[] = { false, true, true, true, true, true, true, true };
	struct table *tb = table_new(8, hdr, right);
	if (!tb)
		return hsctl_fail("formatting", HS_ENOMEM);
	bool ok = true;
	char c[6][32];
	for (size_t i = 0; ok && i <= info->n_topics; i++) {
		const char *n = i < info->n_topics ? info->topics[i].name : NULL;
		const struct family *fe = n ? &F_T_EMITTED : &F_EMITTED,
				    *fd = n ? &F_T_DELIVERED : &F_DELIVERED,
				    *fx = n ? &F_T_DROPPED : &F_DROPPED,
				    *fb = n ? &F_T_BYTES : &F_BYTES;
		double bps = per_s(a, b, fb, n, dt);
		char bpsbuf[40];
		if (!isnan(bps)) {
			fmt_bytes((uint64_t)bps, bpsbuf, sizeof(bpsbuf));
			strncat(bpsbuf, "/s", sizeof(bpsbuf) - strlen(bpsbuf) - 1);
		} else {
			snprintf(bpsbuf, sizeof(bpsbuf), "-");
		}
		const char *row[] = { n ? n : "(all topics)", count(find(b, fe, n), c[0], 32),
				      fmt_rate(or_none(per_s(a, b, fe, n, dt)), c[1], 32),
				      count(find(b, fd, n), c[2], 32),
				      fmt_rate(or_none(per_s(a, b, fd, n, dt)), c[3], 32),
				      count(find(b, fx, n), c[4], 32),
				      fmt_bytes((uint64_t)find(b, fb, n), c[5], 32), bpsbuf };
		ok = table_row(tb, row);
	}
	if (ok) {
		char up[32];
		double cpu = per_s(a, b, &F_CPU, NULL, dt), em = per_s(a, b, &F_EMITTED, NULL, dt);
		printf("hsbrokerd %s  pid %d  up %s  cpu %.2f s  clients %zu  tensors %zu\n\n",
		       info->daemon_version, (int)info->daemon_pid,
		       fmt_age(info->uptime_us, up, sizeof(up)),
		       (double)info->daemon_cpu_us / 1e6, info->n_clients, info->n_tensors);
		table_print(tb);
		printf("\ndaemon CPU per tensor: ");
		if (em > 0)
			printf("%.1f us over the last %.1f s, ", cpu * 1e6 / em, dt);
		double life = find(b, &F_CPU_PER, NULL);
		if (life > 0)
			printf("%.1f us since the start\n", life * 1e6);
		else
			printf("no tensor emitted yet\n");
	}
	table_free(tb);
	if (!ok)
		return hsctl_fail("formatting", HS_ENOMEM);
	return fflush(stdout) == 0 ? 0 : 1;
}

static int snapshot(struct hsctl *ctl, hs_info **info, struct samples *s, double *at)
{
	int err = hs_client_get_info(ctl->client, HS_INFO_ALL, info);
	if (err)
		return hsctl_fail("stats", err);
	*at = hsctl_now_s();
	s->n = 0;
	if (!source_broker(s, *info)) {
		hs_info_free(*info);
		*info = NULL;
		return hsctl_fail("stats", HS_ENOMEM);
	}
	return 0;
}

int hsctl_stats(struct hsctl *ctl)
{
	struct samples a = { 0 }, b = { 0 };
	hs_info *first = NULL, *info = NULL;
	double ta, tb;
	int rc = snapshot(ctl, &first, &a, &ta);
	if (rc)
		goto out;
	if (ctl->prometheus) {
		/* One snapshot: Prometheus takes rates itself (rate()). */
		rc = write_prometheus(&a);
		goto out;
	}
	/* Rates over one second, as top shows them. */
	long n = ctl->iterations ? ctl->iterations : 1;
	for (long i = 0; i < n && !rc; i++) {
		struct timespec ts = { .tv_sec = 1 };
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		rc = snapshot(ctl, &info, &b, &tb);
		if (rc)
			break;
		rc = ctl->json ? write_json(info, &a, &b, tb - ta) : write_table(info, &a, &b, tb - ta);
		hs_info_free(first);
		first = info;
		info = NULL;
		struct samples t = a;
		a = b;
		b = t;
		ta = tb;
	}
out:
	hs_info_free(first);
	hs_info_free(info);
	free(a.v);
	free(b.v);
	return rc;
}
