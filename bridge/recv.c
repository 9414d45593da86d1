/* connect's side of the stream: the hello that says which topics and how
 * large a window, and each tensor received straight into a broker tensor
 * allocated here with the sender's dtype, shape and strides (rendezvous:
 * UCX writes into the block; eager: one copy out of UCX's buffer, which
 * is what eager means). The tensor is allocated on its topic's lane and
 * emitted there (emit.c), from this loop when that cannot wait; its credit
 * goes back once the local emit returned. Every header is checked before
 * anything is allocated; a bad one ends the connection. */
#include <stdlib.h>
#include <string.h>

#include "hsb.h"

enum { RX_PENDING, RX_READY, RX_LOST };

struct hsb_rx {
	struct hsb_peer *peer;
	struct hsb_topic *topic;
	struct hsb_lane *lane;
	hs_tensor *t;
	void *stage;  /* pinned copy of a device tensor, or NULL */
	void *dev;    /* the device block the stage is copied to */
	atomic_bool copied;
	struct hsb_rx *next;  /* in the landing queue */
	struct hsb_rx *qnext; /* in the topic's arrival order */
	int state;
	uint64_t nbytes;
};

/* Device tensors being copied from pinned memory to the device, in the
 * order of their copies on the one stream. One bridge per process. */
static struct hsb_rx *landing_head, **landing_tail = &landing_head;

int hsb_recv_hello(struct hsb_peer *p)
{
	struct hsb_bridge *b = p->b;
	struct hsb_hello h = { .window = b->window, .nglobs = b->nglobs };
	memcpy(h.globs, b->globs, sizeof(h.globs));
	uint8_t hdr[HSB_HEADER_MAX];
	int n = hsb_wire_put_hello(&h, hdr, sizeof(hdr));
	return n < 0 ? n : hsb_peer_note(p, HSB_AM_HELLO, hdr, (size_t)n, "no connection");
}

static struct hsb_peer *live_peer(struct hsb_bridge *b)
{
	for (struct hsb_peer *p = b->peers; p; p = p->next)
		if (!p->failed)
			return p;
	return NULL;
}

static void on_emitted(void *arg, const char *topic, uint64_t gen, int status)
{
	struct hsb_bridge *b = arg;
	struct hsb_topic *t = hsb_topic_get(&b->topics, topic);
	if (!t)
		return;
	t->in_flight--;
	if (status == 0) {
		t->tensors++;
	} else {
		t->dropped++;
		if (t->dropped == 1 || t->dropped % 1000 == 0)
			hsb_log("topic %s: emit refused: %s (%llu so far)", topic,
				hs_strerror(status), (unsigned long long)t->dropped);
	}
	struct hsb_peer *p = live_peer(b);
	if (p && p->gen == gen && t->credit_owed++ == 0)
		t->credit_since_us = hsb_now_us();
}

/* Sends the credits owed, one message per topic; returns how many. Unless
 * all, a topic's credits wait until they are half its window, or
 * HSB_CREDIT_DELAY_US old: the sender needs them only once its window
 * runs out, and each credit message wakes it (a wake-up that, on a busy
 * host, takes its time from the tensors still on their way). */
static int credit_send(struct hsb_bridge *b, bool all)
{
	int sent = 0;
	struct hsb_peer *p = live_peer(b);
	uint64_t now = all ? 0 : hsb_now_us();
	for (struct hsb_topic *t = b->topics.list; t; t = t->next) {
		if (!t->credit_owed)
			continue;
		if (!all && t->credit_owed * 2 < b->window &&
		    now - t->credit_since_us < HSB_CREDIT_DELAY_US)
			continue;
		uint8_t hdr[HSB_HEADER_MAX];
		int n = hsb_wire_put_credit(t->name, t->credit_owed, hdr, sizeof(hdr));
		if (p && n > 0) {
			hsb_peer_note(p, HSB_AM_CREDIT, hdr, (size_t)n, "sending a credit failed");
			sent++;
		}
		t->credit_owed = 0;
	}
	return sent;
}

static int credit_flush(struct hsb_bridge *b)
{
	return credit_send(b, true);
}

bool hsb_recv_credit_due(struct hsb_bridge *b)
{
	for (struct hsb_topic *t = b->topics.list; t; t = t->next)
		if (t->credit_owed)
			return true;
	return false;
}

int hsb_recv_credits(struct hsb_bridge *b)
{
	hsb_emitter_take_credits(b->emitter, on_emitted, b);
	return credit_send(b, false);
}

/* Hands on, in the order they arrived, the topic's tensors whose data is
 * all here: receives complete in any order (rendezvous transfers run side
 * by side), a topic's tensors are emitted in the sender's order. */
static void rx_drain(struct hsb_topic *t)
{
	struct hsb_rx *x;
	while ((x = t->rx_head) && x->state != RX_PENDING) {
		if (!(t->rx_head = x->qnext))
			t->rx_tail = NULL;
		if (x->state == RX_READY) {
			struct hsb_bridge *b = x->peer->b;
			t->bytes += x->nbytes;
			int r = hsb_lane_emit(x->lane, x->t, t->name, x->peer->gen);
			if (r <= 0) /* emitted here (or refused): the credit is owed now */
				on_emitted(b, t->name, x->peer->gen, r);
		} else {
			/* lost with its connection (or its copy to the device):
			 * the tensor goes back to the pool, nothing is emitted */
			hs_tensor_release(x->t, NULL);
			t->in_flight--;
			t->dropped++;
		}
		hsb_peer_op_done(x->peer);
		free(x);
	}
}

/* The tensor is complete (st == UCS_OK: it is emitted once those before
 * it are) or lost (released, counted as dropped). */
static void rx_finish(struct hsb_rx *x, ucs_status_t st)
{
	if (x->stage)
		hsb_stage_put(x->stage);
	x->stage = NULL;
	x->state = st == UCS_OK ? RX_READY : RX_LOST;
	rx_drain(x->topic);
}

/* The data arrived (or the receive failed). A staged device tensor is
 * then copied to the device on the bridge's stream, and handed on once
 * that is done (hsb_recv_landed), while the loop receives the next one. */
static void rx_end(struct hsb_rx *x, ucs_status_t st)
{
	if (st == UCS_OK && x->stage) {
		int err = hsb_stage_copy(x->dev, x->stage, x->nbytes, true, &x->copied);
		if (!err) {
			*landing_tail = x;
			landing_tail = &x->next;
			return;
		}
		hsb_log("topic %s: copy to the device: %s", x->topic->name, hs_strerror(err));
		x->topic->credit_owed++;
		st = UCS_ERR_IO_ERROR;
	}
	rx_finish(x, st);
}

int hsb_recv_landed(struct hsb_bridge *b)
{
	int n = 0;
	while (landing_head && atomic_load_explicit(&landing_head->copied, memory_order_acquire)) {
		struct hsb_rx *x = landing_head;
		if (!(landing_head = x->next))
			landing_tail = &landing_head;
		rx_finish(x, UCS_OK);
		n++;
	}
	return n;
}

static void on_received(void *req, ucs_status_t st, size_t len, void *user)
{
	struct hsb_rx *x = user;
	if (st == UCS_OK && len != x->nbytes)
		st = UCS_ERR_MESSAGE_TRUNCATED;
	if (st != UCS_OK)
		hsb_peer_fail(x->peer, "receive failed", st);
	rx_end(x, st);
	ucp_request_free(req);
}

/* Refuses one tensor that cannot be taken (allocation failed): UCX
 * drops its data when the callback returns without receiving it, and the
 * credit goes back at once, so the stream goes on. */
static void refuse(struct hsb_bridge *b, struct hsb_topic *t, const struct hsb_meta *m, int err)
{
	t->dropped++;
	t->credit_owed++;
	if (t->dropped == 1 || t->dropped % 1000 == 0)
		hsb_log("topic %s: tensor %llu (%llu bytes) dropped: %s (%llu so far)", t->name,
			(unsigned long long)m->seq, (unsigned long long)m->nbytes, hs_strerror(err),
			(unsigned long long)t->dropped);
	if (err == HS_EPIPE || err == HS_ESHUTDOWN)
		b->exit_code = 1;
}

static ucs_status_t on_tensor(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
			      const ucp_am_recv_param_t *prm)
{
	struct hsb_bridge *b = arg;
	struct hsb_peer *p = live_peer(b);
	struct hsb_meta m;
	const char *why = NULL;
	uint64_t elem = 0;
	if (!p) /* a message from a connection already given up */
		return UCS_OK;
	p->heard_ms = hsb_now_ms();
	if (hlen > HSB_HEADER_MAX)
		why = "oversized header";
	else if (hsb_wire_get_meta(hdr, hlen, &m, &why) < 0)
		;
	else if (m.nbytes != len)
		why = "data length differs from the header";
	else if (m.nbytes > b->max_bytes || hsb_wire_elem_bytes(&m, &elem) < 0 || elem > b->max_bytes)
		why = "tensor larger than --max-bytes";
	else if (!hsb_glob_any(b->globs, b->nglobs, m.topic))
		why = "a topic this bridge did not ask for";
	if (why) {
		b->protocol_errors++;
		hsb_peer_fail(p, why, UCS_OK);
		return UCS_OK;
	}
	p->streaming = true;
	struct hsb_topic *t = hsb_topic_get(&b->topics, m.topic);
	if (!t)
		return UCS_OK;
	t->in_flight++;
	DLDevice dev = m.device.device_type == kDLCUDA ? m.device : (DLDevice){ kDLCPU, 0 };
	hs_tensor *ten;
	struct hsb_lane *lane = hsb_emitter_lane(b->emitter, m.topic);
	int err = !lane ? HS_ENOMEM
			: hs_tensor_alloc(hsb_lane_client(lane), dev, m.dtype, m.ndim, m.shape,
					  m.has_strides ? m.strides : NULL, &ten);
	if (err < 0) {
		t->in_flight--;
		refuse(b, t, &m, err);
		credit_flush(b);
		return UCS_OK;
	}
	const DLTensor *dl = hs_tensor_dltensor(ten);
	if (hs_tensor_nbytes(ten) != m.nbytes || dl->byte_offset != m.byte_offset) {
		t->in_flight--;
		hs_tensor_release(ten, NULL);
		b->protocol_errors++;
		hsb_peer_fail(p, "block size or offset differs from the local allocation", UCS_OK);
		return UCS_OK;
	}
	struct hsb_rx *x = calloc(1, sizeof(*x));
	if (!x) {
		t->in_flight--;
		hs_tensor_release(ten, NULL);
		refuse(b, t, &m, HS_ENOMEM);
		credit_flush(b);
		return UCS_OK;
	}
	x->peer = p;
	x->topic = t;
	x->lane = lane;
	x->t = ten;
	x->nbytes = m.nbytes;
	if (t->rx_tail)
		t->rx_tail->qnext = x;
	else
		t->rx_head = x;
	t->rx_tail = x;
	p->pending++;
	ucp_request_param_t rp = {
		.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA,
		.cb.recv_am = on_received,
		.user_data = x,
	};
	void *dst = dl->data;
	if (dev.device_type == kDLCUDA && b->ucx_cuda) {
		rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMORY_TYPE;
		rp.memory_type = UCS_MEMORY_TYPE_CUDA;
	} else if (dev.device_type == kDLCUDA) {
		x->dev = dst;
		dst = x->stage = hsb_stage_get(m.nbytes);
		if (!dst) {
			hsb_log("topic %s: device tensor dropped: no pinned buffer to stage it "
				"(built without CUDA, or cudaHostAlloc failed)", t->name);
			rx_end(x, UCS_ERR_NO_MEMORY);
			t->credit_owed++;
			credit_flush(b);
			return UCS_OK;
		}
	} else {
		ucp_mem_h mh = hsb_slab_memh(&b->slabs, ten, dst, m.nbytes);
		if (mh) {
			rp.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
			rp.memh = mh;
		}
	}
	if (!(prm->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV)) {
		memcpy(dst, data, m.nbytes); /* eager: data is in UCX's buffer */
		rx_end(x, UCS_OK);
		return UCS_OK;
	}
	void *r = ucp_am_recv_data_nbx(b->worker, data, dst, m.nbytes, &rp);
	if (r == NULL)
		rx_end(x, UCS_OK);
	else if (UCS_PTR_IS_ERR(r)) {
		hsb_peer_fail(p, "receive failed", UCS_PTR_STATUS(r));
		rx_end(x, UCS_PTR_STATUS(r));
	}
	return UCS_OK;
}

static ucs_status_t on_ping(void *arg, const void *hdr, size_t hlen, void *data, size_t len,
			    const ucp_am_recv_param_t *prm)
{
	struct hsb_peer *p = live_peer(arg);
	if (p)
		hsb_peer_heard(p, hdr, hlen, len);
	return UCS_OK;
}

void hsb_recv_register(struct hsb_bridge *b)
{
	hsb_am_handler(b, HSB_AM_TENSOR, on_tensor);
	hsb_am_handler(b, HSB_AM_PING, on_ping);
}
