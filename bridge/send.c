/* serve's side of the stream: a local subscription per peer and topic,
 * and each tensor taken from it sent as one active message whose data is
 * the broker block itself (registered once per slab, slab.c), held until
 * UCX says it is sent. A tensor is taken from the subscription only while
 * the peer's window for that topic has room; otherwise it waits in the
 * local broker's queue, where the subscription's policy decides: BLOCK
 * holds the local producer back, the drop policies drop here at the
 * sender, never in an unbounded queue. */
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include "hsbroker/info.h"
#include "hsb.h"

#define HELLO_DUE_MS 10000

struct tx {
	struct hsb_peer *peer;
	struct hsb_topic *topic;
	hs_tensor *t;     /* NULL once staged: the copy is all that is sent */
	void *stage;
	atomic_bool copied; /* staged: the copy to stage is done */
	struct tx *next;  /* in the staged queue */
	uint64_t nbytes;
	size_t hlen;
	uint8_t hdr[HSB_HEADER_MAX]; /* UCX 1.13 reads it until completion */
};

/* Device tensors being copied to pinned memory, in the order of their
 * copies on the one stream (so in the order they complete). One bridge
 * per process. */
static struct tx *staged_head, **staged_tail = &staged_head;

static void tx_end(struct tx *x, ucs_status_t st)
{
	if (x->t)
		hs_tensor_release(x->t, NULL);
	if (x->stage)
		hsb_stage_put(x->stage);
	if (st == UCS_OK) {
		x->topic->tensors++;
		x->topic->bytes += x->nbytes;
	} else if (st != UCS_ERR_CANCELED) {
		hsb_peer_fail(x->peer, "send failed", st);
	}
	hsb_peer_op_done(x->peer);
	free(x);
}

static void on_sent(void *req, ucs_status_t st, void *user)
{
	tx_end(user, st);
	ucp_request_free(req);
}

static void fill_meta(struct hsb_meta *m, const hs_tensor *t, const char *topic)
{
	const DLTensor *dl = hs_tensor_dltensor(t);
	memset(m, 0, sizeof(*m));
	m->seq = hs_tensor_seq(t);
	m->nbytes = hs_tensor_nbytes(t);
	m->byte_offset = dl->byte_offset;
	m->dtype = dl->dtype;
	m->device = dl->device;
	m->ndim = dl->ndim;
	m->has_strides = dl->strides != NULL;
	for (int i = 0; i < dl->ndim; i++) {
		m->shape[i] = dl->shape[i];
		if (dl->strides)
			m->strides[i] = dl->strides[i];
	}
	strcpy(m->topic, topic); /* a topic name the broker accepted */
}

/* Hands x to UCX; its callback (or this, if it ends at once) ends it. */
static void tx_post(struct tx *x, void *data, ucp_mem_h memh, bool cuda)
{
	ucp_request_param_t rp = {
		.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
		.cb.send = on_sent,
		.user_data = x,
	};
	if (cuda) {
		rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMORY_TYPE;
		rp.memory_type = UCS_MEMORY_TYPE_CUDA;
	} else if (memh) {
		rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
		rp.memh = memh;
	}
	void *r = ucp_am_send_nbx(x->peer->ep, HSB_AM_TENSOR, x->hdr, x->hlen, data, x->nbytes, &rp);
	if (r == NULL)
		tx_end(x, UCS_OK);
	else if (UCS_PTR_IS_ERR(r))
		tx_end(x, UCS_PTR_STATUS(r));
}

/* A device tensor without UCX's CUDA support: the copy to pinned memory
 * is queued on the bridge's stream after the writer's ready fence, and the
 * send waits for it in the staged queue (hsb_send_staged), so the loop
 * goes on taking and sending other tensors meanwhile. */
static int stage(struct tx *x, const void *dev)
{
	void *stream = hsb_stage_stream();
	if (!stream || !(x->stage = hsb_stage_get(x->nbytes)))
		return HS_ENOCUDA;
	int err = hs_tensor_wait(x->t, stream);
	if (!err)
		err = hsb_stage_copy(x->stage, dev, x->nbytes, false, &x->copied);
	if (err)
		return err;
	*staged_tail = x;
	staged_tail = &x->next;
	return 0;
}

int hsb_send_staged(struct hsb_bridge *b)
{
	int n = 0;
	while (staged_head && atomic_load_explicit(&staged_head->copied, memory_order_acquire)) {
		struct tx *x = staged_head;
		if (!(staged_head = x->next))
			staged_tail = &staged_head;
		hs_tensor_release(x->t, NULL); /* copied: the block may go */
		x->t = NULL;
		if (x->peer->failed)
			tx_end(x, UCS_ERR_CANCELED);
		else
			tx_post(x, x->stage, NULL, false);
		n++;
	}
	return n;
}

/* Sends t (taking over the reference) to p. */
static void send_tensor(struct hsb_peer *p, struct hsb_sub *s, hs_tensor *t)
{
	struct hsb_bridge *b = p->b;
	struct tx *x = calloc(1, sizeof(*x));
	if (!x) {
		hs_tensor_release(t, NULL);
		s->topic->dropped++;
		return;
	}
	struct hsb_meta m;
	fill_meta(&m, t, s->topic->name);
	int hl = hsb_wire_put_meta(&m, x->hdr, sizeof(x->hdr));
	x->peer = p;
	x->topic = s->topic;
	x->t = t;
	x->nbytes = m.nbytes;
	x->hlen = hl > 0 ? (size_t)hl : 0;
	void *data = hs_tensor_dltensor(t)->data;
	bool device = m.device.device_type == kDLCUDA;
	int err = hl < 0 ? hl : m.nbytes > b->max_bytes ? HS_EMSGSIZE : 0;
	p->pending++;
	if (!err && device && !b->ucx_cuda)
		err = stage(x, data);
	if (err) {
		if (s->topic->dropped++ % 1000 == 0)
			hsb_log("topic %s: tensor %llu not sent: %s (%llu so far)", m.topic,
				(unsigned long long)m.seq, hs_strerror(err),
				(unsigned long long)s->topic->dropped);
		tx_end(x, UCS_ERR_CANCELED);
		return;
	}
	s->in_flight++; /* until its credit comes back */
	s->topic->in_flight++;
	if (!device)
		tx_post(x, data, hsb_slab_memh(&b->slabs, t, data, m.nbytes), false);
	else if (b->ucx_cuda)
		tx_post(x, data, NULL, true);
	/* else staged: sent by hsb_send_staged */
}

static struct hsb_sub *sub_find(struct hsb_peer *p, const char *topic)
{
	for (struct hsb_sub *s = p->subs; s; s = s->next)
		if (strcmp(s->topic->name, topic) == 0)
			return s;
	return NULL;
}

static void count_dropped(struct hsb_sub *s)
{
	uint64_t d = hs_subscription_dropped(s->sub);
	s->topic->dropped += d - s->dropped_seen;
	s->dropped_seen = d;
}

void hsb_send_drop_subs(struct hsb_peer *p)
{
	while (p->subs) {
		struct hsb_sub *s = p->subs;
		p->subs = s->next;
		count_dropped(s);
		s->topic->in_flight -= s->in_flight;
		hs_subscription_close(s->sub); /* releases what is queued */
		free(s);
	}
}

/* Subscribes each peer to the local topics both sides' globs select. The
 * broker has no wildcard subscriptions, so new topics are found by
 * listing them (every 200 ms): the first tensors of a new topic, emitted
 * before the bridge subscribed, are not carried. */
void hsb_send_scan(struct hsb_bridge *b)
{
	hs_info *info = NULL;
	int err = hs_client_get_info(b->client, HS_INFO_TOPICS, &info);
	if (err < 0) {
		hsb_log("listing topics: %s", hs_strerror(err));
		if (err == HS_EPIPE || err == HS_ESHUTDOWN)
			b->exit_code = 1;
		return;
	}
	for (size_t i = 0; i < info->n_topics; i++) {
		const char *name = info->topics[i].name;
		if (!hsb_glob_any(b->globs, b->nglobs, name))
			continue;
		for (struct hsb_peer *p = b->peers; p; p = p->next) {
			if (p->failed || !p->have_hello || sub_find(p, name) ||
			    !hsb_glob_any(p->hello.globs, p->hello.nglobs, name))
				continue;
			struct hsb_sub *s = calloc(1, sizeof(*s));
			hs_subscribe_opts o = { .depth = b->depth, .policy = b->policy };
			if (!s || !(s->topic = hsb_topic_get(&b->topics, name)) ||
			    (err = hs_subscribe(b->client, name, &o, &s->sub)) < 0) {
				hsb_log("subscribing to %s: %s", name, s ? hs_strerror(err) : "out of memory");
				free(s);
				continue;
			}
			s->ready = true;
			s->next = p->subs;
			p->subs = s;
			hsb_log("peer %s: streaming topic %s", p->addr, name);
		}
	}
	for (struct hsb_peer *p = b->peers; p; p = p->next) {
		for (struct hsb_sub *s = p->subs; s; s = s->next)
			count_dropped(s);
		/* a peer that holds a slot and never says what it wants */
		if (!p->have_hello && hsb_now_ms() - p->born_ms > HELLO_DUE_MS) {
			b->protocol_errors++;
			hsb_peer_fail(p, "no hello", UCS_OK);
		}
	}
	hs_info_free(info);
}

void hsb_send_ready(struct hsb_bridge *b)
{
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		for (struct hsb_sub *s = p->subs; s; s = s->next)
			s->ready = true;
}

/* A subscription is asked only while it may hold something (a look at an
 * empty one costs the client a few system calls): after the client's fd
 * woke, until it is found empty. A delivery read meanwhile by one of
 * these looks wakes the fd again (hs_client_get_fd). */
int hsb_send_pump(struct hsb_bridge *b)
{
	int sent = 0;
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		for (struct hsb_sub *s = p->subs; s && !p->failed; s = s->next)
			while (s->ready && s->in_flight < p->hello.window && !p->failed) {
				hs_tensor *t;
				int err = hs_subscription_receive(s->sub, 0, &t);
				if (err == HS_ETIMEDOUT) {
					s->ready = false;
					break;
				}
				if (err < 0) {
					hsb_log("topic %s: %s", s->topic->name, hs_strerror(err));
					b->exit_code = 1;
					return sent;
				}
				send_tensor(p, s, t);
				sent++;
			}
	return sent;
}

/* The live peer a hello or credit came from (connect sends them with
 * UCP_AM_SEND_FLAG_REPLY), or NULL: ignore the message. */
static struct hsb_peer *replier(struct hsb_bridge *b, const ucp_am_recv_param_t *prm)
{
	struct hsb_peer *p = (prm->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP)
				     ? hsb_peer_by_ep(b, prm->reply_ep) : NULL;
	if (!p || p->failed)
		return NULL;
	p->heard_ms = hsb_now_ms();
	return p;
}

static ucs_status_t on_ping(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
			    const ucp_am_recv_param_t *prm)
{
	struct hsb_peer *p = replier(arg, prm);
	if (p)
		hsb_peer_heard(p, hdr, hlen, len);
	return UCS_OK;
}

static ucs_status_t on_hello(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
			     const ucp_am_recv_param_t *prm)
{
	struct hsb_bridge *b = arg;
	struct hsb_peer *p = replier(b, prm);
	const char *why = NULL;
	if (!p)
		return UCS_OK;
	if (p->have_hello)
		why = "a second hello";
	else if (len != 0 || hsb_wire_get_hello(hdr, hlen, &p->hello, &why) < 0)
		why = why ? why : "data with a hello";
	if (why) {
		b->protocol_errors++;
		hsb_peer_fail(p, why, UCS_OK);
		return UCS_OK;
	}
	p->have_hello = true;
	b->next_scan_ms = 0; /* subscribe now */
	return UCS_OK;
}

static ucs_status_t on_credit(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
			      const ucp_am_recv_param_t *prm)
{
	struct hsb_bridge *b = arg;
	struct hsb_peer *p = replier(b, prm);
	char topic[HS_MAX_TOPIC + 1];
	uint32_t n;
	const char *why = NULL;
	if (!p)
		return UCS_OK;
	struct hsb_sub *s = NULL;
	if (len != 0 || hsb_wire_get_credit(hdr, hlen, topic, &n, &why) < 0)
		why = why ? why : "data with a credit";
	else if (!(s = sub_find(p, topic)) || n > s->in_flight)
		why = "credit for tensors never sent";
	if (why) {
		b->protocol_errors++;
		hsb_peer_fail(p, why, UCS_OK);
		return UCS_OK;
	}
	if (s->in_flight >= p->hello.window)
		s->topic->credit_waits++;
	s->in_flight -= n;
	s->topic->in_flight -= n;
	return UCS_OK;
}

void hsb_send_register(struct hsb_bridge *b)
{
	hsb_am_handler(b, HSB_AM_HELLO, on_hello);
	hsb_am_handler(b, HSB_AM_CREDIT, on_credit);
	hsb_am_handler(b, HSB_AM_PING, on_ping);
}
