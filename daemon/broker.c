/* The broker: owns every noun and wires topics to sessions. */
#include "broker.h"
#include "channel.h"
#include "deliver.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hsbroker/error.h"
#include "log.h"
#include "session.h"

void hsd_broker_config_defaults(struct hsd_broker_config *cfg)
{
	*cfg = (struct hsd_broker_config){ 0 };
	cfg->cpu_slab_size = POOL_DEFAULT_SLAB_SIZE;
	cfg->cuda_slab_size = POOL_DEFAULT_SLAB_SIZE;
	cfg->max_subscriptions = 256;
	cfg->max_tensors = 65536;
	cfg->max_topics = TOPICS_DEFAULT_MAX;
	cfg->max_pending_emits = TOPIC_DEFAULT_MAX_PENDING;
	cfg->block_timeout_other_uid_ms = BROKER_DEFAULT_OTHER_UID_BLOCK_TIMEOUT_MS;
	cfg->outbox_max_msgs = 8192;
	cfg->outbox_max_bytes = 64ull << 20;
	cfg->hello_max_bytes = 4096;
	cfg->uid_max_connections = 256;
	cfg->uid_max_subscriptions = 16384;
	cfg->uid_max_topics = 4096;
	cfg->outbox_total_bytes = 256ull << 20;
	cfg->direct_rings = true;
}

bool hsd_broker_uid_capped(const struct hsd_broker *b, uid_t uid)
{
	const struct hsd_broker_config *cfg = &b->cfg;
	if (!cfg->exempt_set)
		return uid != 0 && uid != geteuid();
	for (uint32_t i = 0; i < cfg->n_exempt_uids; i++)
		if (cfg->exempt_uids[i] == uid)
			return false;
	return true;
}

static void on_deliver(void *data, struct hsd_sub *sub, struct hsd_tensor *t, uint64_t seq)
{
	(void)data;
	hsd_deliver_tensor(sub->owner, sub->id, t, seq, sub->topic->name, sub->dropped);
}

static void on_accepted(void *data, struct hsd_pending_emit *pe, uint64_t seq)
{
	struct hsd_broker *b = data;
	b->topics_accepted++;
	hsd_chan_activate_topic(pe->topic);
	hsd_session_pending_done(pe->owner, pe->bytes);
	hsd_deliver_emit_accepted(pe->owner, pe->req_seq, seq);
}

static void on_stalled(void *data, struct hsd_sub *sub)
{
	(void)data;
	struct hsd_session *s = sub->owner;
	char d[128];
	/* Once per stall, not per skipped emit: a stalled reader is skipped
	 * until it reads again. */
	log_warn("%s: subscription %llu to %s held an emit back past its block_timeout: "
		 "skipped until it reads (%llu dropped so far)",
		 hsd_session_describe(s, d, sizeof(d)), (unsigned long long)sub->id, sub->topic->name,
		 (unsigned long long)sub->dropped);
}

int64_t hsd_broker_expire(struct hsd_broker *b)
{
	if (list_empty(&b->topics.blocked))
		return -1;
	uint64_t accepted = b->topics_accepted;
	uint64_t now = hsd_tensor_now_us();
	uint64_t next = hsd_topics_expire(&b->topics, now);
	if (b->topics_accepted != accepted)
		return 0;
	if (next == UINT64_MAX)
		return -1;
	return (int64_t)((next - now + 999) / 1000);
}

static uint32_t on_owner_uid(void *data, void *owner)
{
	(void)data;
	return ((struct hsd_session *)owner)->uid;
}

static void on_topic_freed(void *data, struct hsd_topic *tp)
{
	struct hsd_broker *b = data;
	if (!tp->charged)
		return;
	struct hsd_uid_usage *u = hsd_usage_of(&b->usage, tp->uid);
	if (u) {
		u->topics--;
		hsd_usage_tidy(&b->usage, tp->uid);
	}
}

static uint64_t random_epoch(void)
{
	uint64_t e = 0;
	ssize_t n;
	do
		n = getrandom(&e, sizeof(e), 0);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)sizeof(e)) {
		/* No entropy source: time and pid still differ per start. */
		e = hsd_tensor_now_us() ^ ((uint64_t)getpid() << 40);
	}
	return e ? e : 1;
}

/* Unset (0) limits, as from a config built by hand: the defaults. */
static void fill_unset(struct hsd_broker_config *c)
{
	struct hsd_broker_config d;
	hsd_broker_config_defaults(&d);
	if (!c->outbox_max_msgs)
		c->outbox_max_msgs = d.outbox_max_msgs;
	if (!c->outbox_max_bytes)
		c->outbox_max_bytes = d.outbox_max_bytes;
	if (!c->hello_max_bytes)
		c->hello_max_bytes = d.hello_max_bytes;
	if (!c->uid_max_connections)
		c->uid_max_connections = d.uid_max_connections;
	if (!c->uid_max_subscriptions)
		c->uid_max_subscriptions = d.uid_max_subscriptions;
	if (!c->uid_max_topics)
		c->uid_max_topics = d.uid_max_topics;
	if (!c->outbox_total_bytes)
		c->outbox_total_bytes = d.outbox_total_bytes;
}

int hsd_broker_new(const struct hsd_broker_config *cfg, const struct hsd_broker_hooks *hooks,
		   struct hsd_broker **out)
{
	struct hsd_broker *b = calloc(1, sizeof(*b));
	if (!b)
		return HS_ENOMEM;
	b->cfg = *cfg;
	fill_unset(&b->cfg);
	hsd_usage_init(&b->usage);
	if (hooks)
		b->hooks = *hooks;
	b->epoch = random_epoch();
	b->start_us = hsd_tensor_now_us();
	list_init(&b->sessions);
	list_init(&b->chan_active);
	hsd_pool_init(&b->cpu, (DLDevice){ kDLCPU, 0 }, &hsd_slab_host_ops, cfg->cpu_slab_size,
		      cfg->cpu_cap, &b->next_slab_id);
	b->cpu.idle_release_us = (uint64_t)cfg->idle_release_ms * 1000u;
	hsd_tensor_table_init(&b->tensors, 0);
	struct hsd_topic_hooks th = { .deliver = on_deliver, .accepted = on_accepted,
				  .stalled = on_stalled, .freed = on_topic_freed,
				  .owner_uid = on_owner_uid, .data = b };
	hsd_topics_init(&b->topics, &b->tensors, cfg->max_topics, cfg->max_pending_emits, &th);
	b->topics.other_uid_timeout_us = (uint64_t)cfg->block_timeout_other_uid_ms * 1000u;
	*out = b;
	return 0;
}

int hsd_broker_reload(struct hsd_broker *b, const struct hsd_broker_config *cfg)
{
	struct hsd_broker_config n = *cfg;
	fill_unset(&n);
	int kept = 0;
	/* A slab's size is fixed when it is made and clients map slabs
	 * whole: pools keep theirs until a restart. */
	if (n.cpu_slab_size != b->cfg.cpu_slab_size) {
		log_warn("reload: [pool.cpu] slab_size changed: needs a restart (keeping %llu)",
			 (unsigned long long)b->cfg.cpu_slab_size);
		n.cpu_slab_size = b->cfg.cpu_slab_size;
		kept++;
	}
	if (n.cuda_slab_size != b->cfg.cuda_slab_size) {
		log_warn("reload: [pool.cuda] slab_size changed: needs a restart (keeping %llu)",
			 (unsigned long long)b->cfg.cuda_slab_size);
		n.cuda_slab_size = b->cfg.cuda_slab_size;
		kept++;
	}
	if (n.cuda_vmm != b->cfg.cuda_vmm) {
		log_warn("reload: [pool.cuda] export changed: needs a restart (keeping %s)",
			 b->cfg.cuda_vmm ? "vmm" : "ipc");
		n.cuda_vmm = b->cfg.cuda_vmm;
		kept++;
	}
	/* Everything else is read where it is used, except what pools and
	 * topics copied: a lower cap or limit refuses what comes next and
	 * takes nothing back. */
	b->cfg = n;
	b->cpu.cap = n.cpu_cap;
	b->cpu.idle_release_us = (uint64_t)n.idle_release_ms * 1000u;
	for (int i = 0; i < HS_CUDA_MAX_DEVICES; i++)
		if (b->cuda[i])
			b->cuda[i]->pool.cap = n.cuda_cap;
	b->topics.max = n.max_topics ? n.max_topics : TOPICS_DEFAULT_MAX;
	b->topics.max_pending = n.max_pending_emits ? n.max_pending_emits : TOPIC_DEFAULT_MAX_PENDING;
	b->topics.other_uid_timeout_us = (uint64_t)n.block_timeout_other_uid_ms * 1000u;
	return kept;
}

uint64_t hsd_broker_trim(struct hsd_broker *b)
{
	return hsd_pool_trim(&b->cpu, hsd_tensor_now_us());
}

void hsd_broker_free(struct hsd_broker *b)
{
	if (!b)
		return;
	while (!list_empty(&b->sessions))
		hsd_broker_session_close(b, list_first(&b->sessions, struct hsd_session, link));
	hsd_topics_fini(&b->topics);
	hsd_usage_fini(&b->usage);
	hsd_tensor_table_fini(&b->tensors);
	hsd_pool_fini(&b->cpu);
	for (int i = 0; i < HS_CUDA_MAX_DEVICES; i++) {
		struct hsd_cuda_device *cd = b->cuda[i];
		if (!cd)
			continue;
		hsd_pool_fini(&cd->pool);
		hsd_event_pool_fini(&cd->events);
		free(cd);
	}
	free(b->chan_buf);
	free(b);
}

int hsd_broker_session_open(struct hsd_broker *b, int fd, pid_t pid, uid_t uid, gid_t gid,
			    struct hsd_session **out)
{
	struct hsd_uid_usage *u = hsd_usage_of(&b->usage, uid);
	if (!u)
		return HS_ENOMEM;
	bool over = u->conns >= b->cfg.uid_max_connections && hsd_broker_uid_capped(b, uid);
	if (over) {
		log_warn("connection from pid %d uid %u refused: %u connections of that uid "
			 "(max_connections_per_uid)", (int)pid, (unsigned)uid, u->conns);
		if (u->refused >= BROKER_MAX_REFUSING)
			return HS_ELIMIT;
	}
	struct hsd_session *s = malloc(sizeof(*s));
	if (!s) {
		hsd_usage_tidy(&b->usage, uid);
		return HS_ENOMEM;
	}
	hsd_session_init(s, b, ++b->next_session_id, fd, pid, uid, gid);
	s->usage = u;
	if (over) {
		s->refuse = HS_ELIMIT;
		u->refused++;
	} else {
		u->conns++;
	}
	/* A datagram larger than the send buffer fails with EMSGSIZE, and
	 * the default (208 KiB) is below HS__WIRE_MAX_MSG: a full ListReply
	 * needs more. The kernel doubles and caps the value; best effort. */
	int sndbuf = HS__WIRE_MAX_MSG * 2;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) < 0)
		log_debug("SO_SNDBUF: %s", strerror(errno));
	list_insert_tail(&b->sessions, &s->link);
	b->nsessions++;
	log_debug("session %llu: connection from pid %d uid %u gid %u",
		  (unsigned long long)s->id, (int)pid, (unsigned)uid, (unsigned)gid);
	*out = s;
	return 0;
}

void hsd_broker_session_close(struct hsd_broker *b, struct hsd_session *s)
{
	hsd_session_release_all(s);
	hsd_chan_close(s);
	list_remove(&s->link);
	b->nsessions--;
	if (s->refuse)
		s->usage->refused--;
	else
		s->usage->conns--;
	hsd_usage_tidy(&b->usage, s->uid);
	free(s);
}

void hsd_broker_shutdown_notice(struct hsd_broker *b, const char *reason)
{
	Hs__ShutdownNotice sn = HS__SHUTDOWN_NOTICE__INIT;
	sn.reason = (char *)reason;
	Hs__Message m = HS__MESSAGE__INIT;
	m.body_case = HS__MESSAGE__BODY_SHUTDOWN;
	m.shutdown = &sn;
	struct hsd_session *s;
	list_for_each(s, &b->sessions, link) {
		if (hsd_outbox_send(s, &m, NULL, 0) == 0)
			hsd_outbox_flush(s);
	}
}

int hsd_broker_pool_for(struct hsd_broker *b, DLDevice device, struct hsd_pool **out)
{
	if (device.device_type == kDLCPU && device.device_id == 0) {
		*out = &b->cpu;
		return 0;
	}
	if (device.device_type != kDLCUDA)
		return HS_ENODEV;
	int n = hsd_cuda_device_count(); /* probes once, logs why there is no GPU */
	if (n < 0)
		return n;
	if (device.device_id < 0 || device.device_id >= n)
		return HS_ENODEV;
	struct hsd_cuda_device *cd = b->cuda[device.device_id];
	if (!cd) {
		cd = calloc(1, sizeof(*cd));
		if (!cd)
			return HS_ENOMEM;
		hsd_pool_init(&cd->pool, device, b->cfg.cuda_vmm ? &hsd_slab_cuda_vmm_ops : &hsd_slab_cuda_ops,
			      b->cfg.cuda_slab_size, b->cfg.cuda_cap, &b->next_slab_id);
		/* Clients keep device slabs open until they disconnect, and
		 * a killed client's mappings go on the driver's schedule:
		 * device slabs stay until the daemon exits. */
		cd->pool.retain_slabs = true;
		hsd_event_pool_init(&cd->events, device.device_id, &b->next_event_id);
		b->cuda[device.device_id] = cd;
		log_info("pool cuda:%d: slabs of %llu bytes, cap %llu bytes (0 = none), %s",
			 device.device_id, (unsigned long long)cd->pool.slab_size,
			 (unsigned long long)cd->pool.cap, cd->pool.ops->name);
	}
	*out = &cd->pool;
	return 0;
}

int hsd_broker_fence_for(struct hsd_broker *b, DLDevice device, struct hsd_fence_event **out)
{
	if (device.device_type != kDLCUDA || device.device_id < 0 ||
	    device.device_id >= HS_CUDA_MAX_DEVICES || !b->cuda[device.device_id])
		return HS_ENODEV;
	return hsd_event_pool_get(&b->cuda[device.device_id]->events, out);
}

size_t hsd_broker_pools(struct hsd_broker *b, struct hsd_pool **out, size_t max)
{
	size_t n = 0;
	if (n < max)
		out[n++] = &b->cpu;
	for (int i = 0; i < HS_CUDA_MAX_DEVICES && n < max; i++)
		if (b->cuda[i])
			out[n++] = &b->cuda[i]->pool;
	return n;
}
