/* hsctl ls and hsctl status: one snapshot of the broker, as tables for
 * people or as JSON (keys listed in docs/hsctl.md; keep them stable). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsctl.h"

/* ---- JSON ---- */

/* Sets key to v; v is always consumed (jansson's _new calls drop it on
 * failure too). False when v is NULL or jansson fails, so one check at the
 * end covers every allocation. */
static bool put(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0;
}

static json_t *juint(uint64_t v)
{
	return json_integer((json_int_t)v);
}

/* The epoch is a random 64-bit number, which JSON integers (jansson's are
 * signed 64-bit) cannot always hold: "epoch" carries its bits as a signed
 * integer, for equality tests, and "epoch_hex" the number as hsbrokerd
 * logs it. */
static bool put_epoch(json_t *o, uint64_t epoch)
{
	char hex[24];
	snprintf(hex, sizeof(hex), "%016" PRIx64, epoch);
	return put(o, "epoch", json_integer((json_int_t)epoch)) &&
	       put(o, "epoch_hex", json_string(hex));
}

static json_t *json_ints(const int64_t *v, int32_t n)
{
	json_t *a = json_array();
	for (int32_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, json_integer(v[i])) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *json_tensor(const hs_tensor_info *t)
{
	char dt[32], dev[32];
	json_t *o = json_object();
	if (!o)
		return NULL;
	/* Keys in the order people read them; jansson keeps insertion order. */
	bool ok = put(o, "id", juint(t->id)) && put(o, "topic", json_string(t->topic)) &&
		  put(o, "seq", juint(t->seq)) &&
		  put(o, "dtype", json_string(fmt_dtype(t->dtype, dt, sizeof(dt)))) &&
		  put(o, "shape", json_ints(t->shape, t->ndim));
	if (ok && t->nstrides > 0)
		ok = put(o, "strides", json_ints(t->strides, t->nstrides));
	ok = ok && put(o, "device", json_string(fmt_device(t->device, dev, sizeof(dev)))) &&
	     put(o, "nbytes", juint(t->nbytes)) && put(o, "refs", juint(t->refs)) &&
	     put(o, "owner_pid", json_integer(t->owner_pid)) &&
	     put(o, "owner_name", json_string(t->owner_name)) &&
	     put(o, "age_us", juint(t->age_us)) && put(o, "slab", juint(t->slab_id)) &&
	     put(o, "offset", juint(t->offset));
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *json_subscriber(const hs_subscriber_info *s)
{
	json_t *o = json_object();
	bool ok = o && put(o, "subscription", juint(s->subscription)) &&
		  put(o, "session", juint(s->session_id)) && put(o, "pid", json_integer(s->pid)) &&
		  put(o, "name", json_string(s->name)) && put(o, "depth", juint(s->depth)) &&
		  put(o, "policy", json_string(fmt_policy(s->policy))) &&
		  put(o, "queued", juint(s->queued)) && put(o, "delivered", juint(s->delivered)) &&
		  put(o, "dropped", juint(s->dropped));
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *json_topic(const hs_topic_info *t)
{
	json_t *o = json_object();
	if (!o)
		return NULL;
	bool ok = put(o, "name", json_string(t->name)) && put(o, "emitted", juint(t->emitted)) &&
		  put(o, "dropped", juint(t->dropped)) &&
		  put(o, "blocked_emits", juint(t->blocked_emits));
	json_t *subs = ok ? json_array() : NULL;
	for (uint32_t i = 0; subs && ok && i < t->n_subscribers; i++)
		ok = json_array_append_new(subs, json_subscriber(&t->subscribers[i])) == 0;
	ok = put(o, "subscribers", subs) && ok; /* consumes subs */
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *json_client(const hs_client_info *c)
{
	json_t *o = json_object();
	bool ok = o && put(o, "session", juint(c->session_id)) &&
		  put(o, "pid", json_integer(c->pid)) && put(o, "uid", juint(c->uid)) &&
		  put(o, "gid", juint(c->gid)) && put(o, "name", json_string(c->name)) &&
		  put(o, "tensors_held", juint(c->tensors_held)) &&
		  put(o, "bytes_held", juint(c->bytes_held)) &&
		  put(o, "subscriptions", juint(c->subscriptions)) &&
		  put(o, "slabs_mapped", juint(c->slabs_mapped)) &&
		  put(o, "transport", json_string(c->shared_channel ? "shm" : "socket")) &&
		  put(o, "age_us", juint(c->age_us));
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *json_pool(const hs_pool_info *p)
{
	char dev[32];
	json_t *o = json_object();
	bool ok = o && put(o, "device", json_string(fmt_device(p->device, dev, sizeof(dev)))) &&
		  put(o, "slab_size", juint(p->slab_size)) && put(o, "slabs", juint(p->slabs)) &&
		  put(o, "total", juint(p->total)) && put(o, "used", juint(p->used)) &&
		  put(o, "free", juint(p->free)) &&
		  put(o, "largest_free", juint(p->largest_free)) && put(o, "cap", juint(p->cap)) &&
		  put(o, "tensors", juint(p->tensors)) &&
		  put(o, "slab_kind", json_string(p->slab_kind));
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* An array from n items of size sz converted by fn; NULL on failure. */
static json_t *json_list(const void *items, size_t n, size_t sz, json_t *(*fn)(const void *))
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < n; i++) {
		if (json_array_append_new(a, fn((const char *)items + i * sz)) != 0) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *tensor_fn(const void *p) { return json_tensor(p); }
static json_t *topic_fn(const void *p) { return json_topic(p); }
static json_t *client_fn(const void *p) { return json_client(p); }
static json_t *pool_fn(const void *p) { return json_pool(p); }

json_t *hsctl_json_info(const hs_info *info, enum hs_info_what what)
{
	json_t *o = json_object();
	bool all = what == HS_INFO_ALL;
	bool ok = o && put(o, "version", json_string(info->daemon_version)) &&
		  put_epoch(o, info->epoch) && put(o, "uptime_us", juint(info->uptime_us));
	if (ok && (all || what == HS_INFO_TENSORS))
		ok = put(o, "tensors", json_list(info->tensors, info->n_tensors,
						 sizeof(*info->tensors), tensor_fn));
	if (ok && (all || what == HS_INFO_TOPICS))
		ok = put(o, "topics", json_list(info->topics, info->n_topics,
						sizeof(*info->topics), topic_fn));
	if (ok && (all || what == HS_INFO_CLIENTS))
		ok = put(o, "clients", json_list(info->clients, info->n_clients,
						 sizeof(*info->clients), client_fn));
	if (ok && (all || what == HS_INFO_POOLS))
		ok = put(o, "pools", json_list(info->pools, info->n_pools,
					       sizeof(*info->pools), pool_fn));
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int hsctl_json_print(json_t *obj, size_t flags)
{
	if (!obj)
		return hsctl_fail("building JSON", HS_ENOMEM);
	char *s = json_dumps(obj, flags);
	json_decref(obj);
	if (!s)
		return hsctl_fail("writing JSON", HS_ENOMEM);
	int r = puts(s) == EOF ? 1 : 0;
	free(s);
	if (fflush(stdout) != 0)
		r = 1;
	return r;
}

/* ---- tables ---- */

static bool print_tensors(const hs_info *info)
{
	static const char *const hdr[] = { "ID", "TOPIC", "SEQ", "DTYPE", "SHAPE", "DEVICE",
					   "BYTES", "REFS", "OWNER", "AGE" };
	static const bool right[] = { true, false, true, false, false, false,
				      true, true, false, true };
	struct table *t = table_new(10, hdr, right);
	if (!t)
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < info->n_tensors; i++) {
		const hs_tensor_info *x = &info->tensors[i];
		char id[24], seq[24], dt[32], shape[HS_MAX_NDIM * 21], dev[32], bytes[32],
			refs[16], owner[96], age[32];
		snprintf(id, sizeof(id), "%" PRIu64, x->id);
		snprintf(seq, sizeof(seq), x->seq ? "%" PRIu64 : "-", x->seq);
		snprintf(refs, sizeof(refs), "%u", x->refs);
		snprintf(owner, sizeof(owner), "%d/%s", x->owner_pid, x->owner_name);
		const char *row[] = { id, x->topic[0] ? x->topic : "-", seq,
				      fmt_dtype(x->dtype, dt, sizeof(dt)),
				      fmt_shape(x->ndim, x->shape, shape, sizeof(shape)),
				      fmt_device(x->device, dev, sizeof(dev)),
				      fmt_bytes(x->nbytes, bytes, sizeof(bytes)), refs, owner,
				      fmt_age(x->age_us, age, sizeof(age)) };
		ok = table_row(t, row);
	}
	if (ok)
		table_print(t);
	table_free(t);
	return ok;
}

static bool print_topics(const hs_info *info)
{
	static const char *const hdr[] = { "TOPIC", "EMITTED", "DROPPED", "BLOCKED",
					   "SUB", "PID/NAME", "POLICY", "DEPTH", "QUEUED",
					   "DELIVERED", "SUB-DROPPED" };
	static const bool right[] = { false, true, true, true, true, false,
				      false, true, true, true, true };
	struct table *t = table_new(11, hdr, right);
	if (!t)
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < info->n_topics; i++) {
		const hs_topic_info *x = &info->topics[i];
		char em[24], dr[24], bl[16];
		snprintf(em, sizeof(em), "%" PRIu64, x->emitted);
		snprintf(dr, sizeof(dr), "%" PRIu64, x->dropped);
		snprintf(bl, sizeof(bl), "%u", x->blocked_emits);
		/* The topic's own line, then one per subscriber below it. */
		const char *row[] = { x->name, em, dr, bl, "", "", "", "", "", "", "" };
		ok = table_row(t, row);
		for (uint32_t k = 0; ok && k < x->n_subscribers; k++) {
			const hs_subscriber_info *s = &x->subscribers[k];
			char id[24], who[96], depth[16], q[16], del[24], sdr[24];
			snprintf(id, sizeof(id), "%" PRIu64, s->subscription);
			snprintf(who, sizeof(who), "%d/%s", s->pid, s->name);
			snprintf(depth, sizeof(depth), "%u", s->depth);
			snprintf(q, sizeof(q), "%u", s->queued);
			snprintf(del, sizeof(del), "%" PRIu64, s->delivered);
			snprintf(sdr, sizeof(sdr), "%" PRIu64, s->dropped);
			const char *srow[] = { "", "", "", "", id, who, fmt_policy(s->policy),
					       depth, q, del, sdr };
			ok = table_row(t, srow);
		}
	}
	if (ok)
		table_print(t);
	table_free(t);
	return ok;
}

static bool print_clients(const hs_info *info)
{
	static const char *const hdr[] = { "SESSION", "PID", "UID", "GID", "NAME", "TENSORS",
					   "BYTES", "SUBS", "SLABS", "VIA", "AGE" };
	static const bool right[] = { true, true,  true,  true,  false, true,
				      true, true,  true,  false, true };
	struct table *t = table_new(11, hdr, right);
	if (!t)
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < info->n_clients; i++) {
		const hs_client_info *x = &info->clients[i];
		char ses[24], pid[16], uid[16], gid[16], ten[16], bytes[32], subs[16], slabs[16],
			age[32];
		snprintf(ses, sizeof(ses), "%" PRIu64, x->session_id);
		snprintf(pid, sizeof(pid), "%d", x->pid);
		snprintf(uid, sizeof(uid), "%u", x->uid);
		snprintf(gid, sizeof(gid), "%u", x->gid);
		snprintf(ten, sizeof(ten), "%u", x->tensors_held);
		snprintf(subs, sizeof(subs), "%u", x->subscriptions);
		snprintf(slabs, sizeof(slabs), "%u", x->slabs_mapped);
		const char *row[] = { ses, pid, uid, gid, x->name, ten,
				      fmt_bytes(x->bytes_held, bytes, sizeof(bytes)), subs, slabs,
				      x->shared_channel ? "shm" : "socket",
				      fmt_age(x->age_us, age, sizeof(age)) };
		ok = table_row(t, row);
	}
	if (ok)
		table_print(t);
	table_free(t);
	return ok;
}

static bool print_pools(const hs_info *info)
{
	static const char *const hdr[] = { "DEVICE", "SLAB-SIZE", "SLABS", "TOTAL", "USED",
					   "FREE", "LARGEST-FREE", "CAP", "TENSORS", "SLAB-KIND" };
	static const bool right[] = { false, true, true, true, true, true, true, true, true, false };
	struct table *t = table_new(10, hdr, right);
	if (!t)
		return false;
	bool ok = true;
	for (size_t i = 0; ok && i < info->n_pools; i++) {
		const hs_pool_info *x = &info->pools[i];
		char dev[32], ss[32], slabs[16], tot[32], used[32], fr[32], lf[32], cap[32], ten[16];
		snprintf(slabs, sizeof(slabs), "%u", x->slabs);
		snprintf(ten, sizeof(ten), "%u", x->tensors);
		if (x->cap)
			fmt_bytes(x->cap, cap, sizeof(cap));
		else
			snprintf(cap, sizeof(cap), "none");
		const char *row[] = { fmt_device(x->device, dev, sizeof(dev)),
				      fmt_bytes(x->slab_size, ss, sizeof(ss)), slabs,
				      fmt_bytes(x->total, tot, sizeof(tot)),
				      fmt_bytes(x->used, used, sizeof(used)),
				      fmt_bytes(x->free, fr, sizeof(fr)),
				      fmt_bytes(x->largest_free, lf, sizeof(lf)), cap, ten,
				      x->slab_kind[0] ? x->slab_kind : "-" };
		ok = table_row(t, row);
	}
	if (ok)
		table_print(t);
	table_free(t);
	return ok;
}

static const struct {
	const char *name;
	enum hs_info_what what;
	bool (*print)(const hs_info *);
} sections[] = {
	{ "tensors", HS_INFO_TENSORS, print_tensors },
	{ "topics", HS_INFO_TOPICS, print_topics },
	{ "clients", HS_INFO_CLIENTS, print_clients },
	{ "pools", HS_INFO_POOLS, print_pools },
};

#define N_SECTIONS (sizeof(sections) / sizeof(sections[0]))

int hsctl_ls(struct hsctl *ctl, const char *section)
{
	enum hs_info_what what = HS_INFO_ALL;
	if (section) {
		size_t i;
		for (i = 0; i < N_SECTIONS; i++)
			if (strcmp(section, sections[i].name) == 0)
				break;
		if (i == N_SECTIONS) {
			fprintf(stderr, "hsctl: ls: unknown section '%s' (tensors, topics, clients, pools)\n",
				section);
			return 1;
		}
		what = sections[i].what;
	}

	hs_info *info;
	int err = hs_client_get_info(ctl->client, what, &info);
	if (err)
		return hsctl_fail("listing", err);
	int rc = 0;
	if (ctl->json) {
		rc = hsctl_json_print(hsctl_json_info(info, what), JSON_INDENT(2));
	} else {
		bool first = true;
		for (size_t i = 0; i < N_SECTIONS; i++) {
			if (what != HS_INFO_ALL && what != sections[i].what)
				continue;
			/* Headings only when several sections share the page. */
			if (what == HS_INFO_ALL)
				printf("%s%s\n", first ? "" : "\n", sections[i].name);
			first = false;
			if (!sections[i].print(info)) {
				rc = hsctl_fail("formatting", HS_ENOMEM);
				break;
			}
		}
		if (fflush(stdout) != 0)
			rc = 1;
	}
	hs_info_free(info);
	return rc;
}

int hsctl_status(struct hsctl *ctl)
{
	hs_info *info;
	int err = hs_client_get_info(ctl->client, HS_INFO_ALL, &info);
	if (err)
		return hsctl_fail("status", err);
	uint64_t subs = 0, used = 0, total = 0;
	for (size_t i = 0; i < info->n_topics; i++)
		subs += info->topics[i].n_subscribers;
	for (size_t i = 0; i < info->n_pools; i++) {
		used += info->pools[i].used;
		total += info->pools[i].total;
	}
	int rc = 0;
	if (ctl->json) {
		json_t *o = json_object();
		bool ok = o && put(o, "version", json_string(info->daemon_version)) &&
			  put_epoch(o, info->epoch) &&
			  put(o, "uptime_us", juint(info->uptime_us)) &&
			  put(o, "socket", json_string(ctl->socket));
		json_t *counts = json_object();
		ok = ok && counts && put(counts, "tensors", juint(info->n_tensors)) &&
			  put(counts, "topics", juint(info->n_topics)) &&
			  put(counts, "clients", juint(info->n_clients)) &&
			  put(counts, "pools", juint(info->n_pools)) &&
			  put(counts, "subscribers", juint(subs)) &&
			  put(counts, "bytes_used", juint(used)) &&
			  put(counts, "bytes_total", juint(total));
		ok = put(o, "counts", counts) && ok; /* consumes counts */
		if (!ok) {
			json_decref(o);
			o = NULL;
		}
		rc = hsctl_json_print(o, JSON_INDENT(2));
	} else {
		char up[32], ub[32], tb[32];
		printf("hsbrokerd %s at %s\n", info->daemon_version, ctl->socket);
		printf("  epoch        %016" PRIx64 "\n", info->epoch);
		printf("  uptime       %s\n", fmt_age(info->uptime_us, up, sizeof(up)));
		printf("  clients      %zu\n", info->n_clients);
		printf("  tensors      %zu\n", info->n_tensors);
		printf("  topics       %zu (%" PRIu64 " subscribers)\n", info->n_topics, subs);
		printf("  pools        %zu (%s used of %s)\n", info->n_pools,
		       fmt_bytes(used, ub, sizeof(ub)), fmt_bytes(total, tb, sizeof(tb)));
		if (fflush(stdout) != 0)
			rc = 1;
	}
	hs_info_free(info);
	return rc;
}
