/* hsbridge's internals: one process carries topics between its own broker
 * (public libhsclient API) and peers over UCX (UCP active messages).
 *
 * Threads: everything here runs on the bridge's one loop thread except the
 * lanes' threads (emit.c), which emit what the loop could not emit without
 * waiting and hand credits back through hsb_emitter_take_credits. */
#ifndef HSB_H
#define HSB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netinet/in.h>
#include <ucp/api/ucp.h>

#include "hsbroker/client.h"

#define HSB_MAX_GLOBS 64
#define HSB_MAX_ALLOW 64

/* ---- wire.c: the bytes of the four messages (docs/bridge.md) ---- */

enum hsb_am_id {
	HSB_AM_HELLO = 0x4853, /* connect -> serve: version, window, globs */
	HSB_AM_TENSOR,         /* serve -> connect: metadata; the block as data */
	HSB_AM_CREDIT,         /* connect -> serve: tensors of a topic handed on */
	HSB_AM_PING,           /* either way: still here (a heartbeat) */
};

#define HSB_WIRE_MAGIC 0x31425348u /* "HSB1" little-endian */
#define HSB_WIRE_VERSION 1
/* A header never needs more: 32 shapes, 32 strides and a 255-byte topic. */
#define HSB_HEADER_MAX 1024

struct hsb_meta {
	uint64_t seq;         /* the topic's sequence number at the sender */
	uint64_t nbytes;      /* bytes of the block, carried as the data */
	uint64_t byte_offset; /* DLPack's, within the block */
	DLDataType dtype;
	DLDevice device;
	int32_t ndim;
	bool has_strides;
	int64_t shape[HS_MAX_NDIM];
	int64_t strides[HS_MAX_NDIM];
	char topic[HS_MAX_TOPIC + 1];
};

struct hsb_hello {
	uint32_t window; /* tensors per topic in flight before a credit */
	uint32_t nglobs;
	char globs[HSB_MAX_GLOBS][HS_MAX_TOPIC + 1];
};

/* Each returns the length written (<= cap) or a negative HS_ code. */
int hsb_wire_put_meta(const struct hsb_meta *m, uint8_t *buf, size_t cap);
int hsb_wire_put_hello(const struct hsb_hello *h, uint8_t *buf, size_t cap);
int hsb_wire_put_credit(const char *topic, uint32_t count, uint8_t *buf, size_t cap);
int hsb_wire_put_ping(uint8_t *buf, size_t cap);
/* Each returns 0 or HS_EPROTO (with *why set to a static reason) for bytes
 * that are not exactly one well-formed message. */
int hsb_wire_get_meta(const void *buf, size_t len, struct hsb_meta *m, const char **why);
int hsb_wire_get_hello(const void *buf, size_t len, struct hsb_hello *h, const char **why);
int hsb_wire_get_credit(const void *buf, size_t len, char *topic, uint32_t *count,
			const char **why);
int hsb_wire_get_ping(const void *buf, size_t len, const char **why);
/* Bytes of the elements the shape names (product of the dimensions times
 * the element size): a lower bound on any block, checked against the
 * bridge's size limit before anything is allocated. HS_EOVERFLOW past 64
 * bits. */
int hsb_wire_elem_bytes(const struct hsb_meta *m, uint64_t *out);

/* ---- topic.c: glob lists and per-topic counters ---- */

struct hsb_rx;

struct hsb_topic {
	struct hsb_topic *next;
	struct hsb_rx *rx_head, *rx_tail; /* connect: being received, in arrival order */
	char name[HS_MAX_TOPIC + 1];
	uint64_t tensors;     /* sent (serve) or emitted locally (connect) */
	uint64_t bytes;
	uint64_t dropped;     /* lost to the local policy (serve) or to a refused
			       * allocation or emit (connect) */
	uint64_t credit_waits; /* times a tensor waited for the peer's credit */
	uint32_t in_flight;   /* sent or being received, not yet credited */
	uint32_t credit_owed; /* connect: handed on, credit not yet sent */
	uint64_t credit_since_us; /* connect: when the oldest of those was owed */
};

struct hsb_topics {
	struct hsb_topic *list;
};

bool hsb_glob_any(char globs[][HS_MAX_TOPIC + 1], uint32_t n, const char *name);
struct hsb_topic *hsb_topic_get(struct hsb_topics *ts, const char *name);
void hsb_topics_free(struct hsb_topics *ts);

/* ---- allow.c: the peer addresses a listener accepts ---- */

struct hsb_net {
	int family;
	uint8_t addr[16];
	int prefix; /* bits */
};

struct hsb_allow {
	int n; /* 0: every peer */
	struct hsb_net nets[HSB_MAX_ALLOW];
};

/* "ADDR" or "ADDR/BITS", IPv4 or IPv6. Returns 0 or HS_EINVAL. */
int hsb_allow_add(struct hsb_allow *a, const char *spec);
bool hsb_allow_check(const struct hsb_allow *a, const struct sockaddr_storage *ss);
void hsb_addr_format(const struct sockaddr_storage *ss, char *buf, size_t size);
/* "HOST:PORT" (an IPv6 HOST in brackets) to a socket address. */
int hsb_addr_parse(const char *spec, struct sockaddr_storage *ss, socklen_t *len);

/* ---- slab.c: host memory registered with UCX once per broker slab ---- */

struct hsb_reg;
struct hsb_slabs {
	ucp_context_h ucp;
	struct hsb_reg *list;
	uint64_t registered; /* ucp_mem_map calls ever made */
};

/* The memory handle of the slab holding [p, p + n), registering the slab
 * on first use; NULL when it cannot be found or registered (the caller
 * sends without one: UCX then registers on its own). */
ucp_mem_h hsb_slab_memh(struct hsb_slabs *s, const hs_tensor *t, const void *p, uint64_t n);
void hsb_slabs_free(struct hsb_slabs *s);

/* ---- stage.c: device tensors through pinned host memory ---- */

/* A pinned host buffer of at least n bytes (reused once released), or NULL
 * (no CUDA in this build, or allocation failed). */
void *hsb_stage_get(uint64_t n);
void hsb_stage_put(void *buf);
/* The bridge's copy stream (a cudaStream_t), or NULL without CUDA. */
void *hsb_stage_stream(void);
/* Queues a copy of n bytes between pinned memory and a device pointer on
 * that stream; *done becomes true once it is complete, and the fd below
 * is written then. 0 or HS_ECUDA / HS_ENOCUDA. */
int hsb_stage_copy(void *dst, const void *src, uint64_t n, bool to_device, atomic_bool *done);
/* Readable when a copy completed (-1 before the first copy, or without
 * CUDA); hsb_stage_drain clears it. */
int hsb_stage_fd(void);
void hsb_stage_drain(void);
void hsb_stage_free_all(void);

/* ---- emit.c: received tensors emitted in the local broker, one lane per topic ---- */

/* Topics with a broker connection and a thread of their own; the later
 * ones share one more. */
#define HSB_MAX_LANES 64

struct hsb_emitter;
struct hsb_lane;
/* socket: the local broker, as for hs_client_connect. */
int hsb_emitter_start(const char *socket, struct hsb_emitter **out);
/* An eventfd written when a lane's thread finished an emit. */
int hsb_emitter_fd(struct hsb_emitter *e);
/* The topic's lane (connecting it on first use), or NULL when no
 * connection could be made. */
struct hsb_lane *hsb_emitter_lane(struct hsb_emitter *e, const char *topic);
/* The lane's client: tensors of its topic are allocated on it. */
hs_client *hsb_lane_client(struct hsb_lane *l);
/* Emits t (a tensor of the lane's client; the reference is taken over) on
 * topic: from the calling loop when that cannot wait, returning the emit's
 * status (0 or a negative HS_ code; the credit is the caller's to return
 * now), else through the lane's thread, returning 1 (the credit comes
 * through hsb_emitter_take_credits; gen names the connection it goes
 * back to). */
int hsb_lane_emit(struct hsb_lane *l, hs_tensor *t, const char *topic, uint64_t gen);
/* Calls fn for each tensor a lane's thread emitted (or failed to) since
 * the last call; costs nothing when there is none. */
void hsb_emitter_take_credits(struct hsb_emitter *e,
			      void (*fn)(void *arg, const char *topic, uint64_t gen, int status),
			      void *arg);
/* Emits from the loop, through a thread, and lanes open (hsbridge stats). */
void hsb_emitter_counts(const struct hsb_emitter *e, uint64_t *direct, uint64_t *threaded,
			uint32_t *lanes);
/* Each thread emits what it was given, then the lanes close. */
void hsb_emitter_stop(struct hsb_emitter *e);

/* ---- bridge.c, peer.c, send.c, recv.c: the bridge itself ---- */

struct hsb_sub { /* serve: one local subscription per peer and topic */
	struct hsb_sub *next;
	hs_subscription *sub;
	struct hsb_topic *topic;
	uint32_t in_flight;    /* sent to the peer, not yet credited */
	uint64_t dropped_seen; /* hs_subscription_dropped already counted */
	bool ready;            /* may hold tensors: the client's fd woke since
				* the subscription was last found empty */
};

struct hsb_bridge;

struct hsb_peer {
	struct hsb_peer *next;
	struct hsb_bridge *b;
	ucp_ep_h ep;
	char addr[80];
	uint64_t gen;           /* a number per connection, never reused */
	const char *failed;     /* why it ends (static), or NULL while it lives */
	bool closing;           /* ucp_ep_close_nbx issued */
	void *close_req;
	uint32_t pending;       /* UCX operations whose callbacks point here */
	bool have_hello;        /* serve: the peer said what it wants */
	uint64_t born_ms;       /* serve: when accepted (the hello is due) */
	struct hsb_hello hello;
	struct hsb_sub *subs;
	bool streaming;         /* connect: a tensor arrived on this connection */
	uint64_t heard_ms;      /* when the peer last sent anything (or we began) */
	uint64_t pinged_ms;     /* when we last sent it a heartbeat */
};

struct hsb_bridge {
	bool serve;
	hs_client *client;
	ucp_context_h ucp;
	ucp_worker_h worker;
	int efd;
	bool ucx_cuda;          /* UCX moves CUDA memory itself */
	struct hsb_slabs slabs;
	struct hsb_topics topics;
	char globs[HSB_MAX_GLOBS][HS_MAX_TOPIC + 1];
	uint32_t nglobs;
	struct hsb_allow allow;
	struct sockaddr_storage addr; /* serve: where to listen; connect: where to */
	socklen_t addrlen;
	char addr_str[72];
	ucp_listener_h listener;
	struct hsb_peer *peers;
	uint64_t next_gen;
	/* settings */
	uint32_t window, depth, max_peers;
	enum hs_policy policy;
	uint64_t max_bytes;
	const char *keepalive;  /* UCX_KEEPALIVE_INTERVAL's value, or NULL */
	uint32_t heartbeat_ms;  /* a ping this often; silent 5 times: gone */
	uint32_t backoff_min_ms, backoff_max_ms, backoff_ms;
	uint64_t retry_at_ms;   /* connect: when to try again; 0: connected */
	uint64_t stats_every_ms, next_stats_ms, next_scan_ms, next_ping_ms, next_dispatch_ms;
	uint32_t busy_poll_us;  /* 0: sleep as soon as there is nothing to do */
	const char *socket;     /* the local broker (NULL: the default) */
	struct hsb_emitter *emitter;
	int ctl_fd;
	char ctl_path[108];
	/* counters (hsbridge stats) */
	uint64_t peers_accepted, peers_refused, peers_lost, protocol_errors, connects;
	uint64_t sleeps, busy_poll_hits;
	int exit_code;          /* set (>= 0) when the loop must end */
};

uint64_t hsb_now_ms(void);
uint64_t hsb_now_us(void);
/* Marks the peer as ending (the loop closes it); logs why once. */
void hsb_peer_fail(struct hsb_peer *p, const char *why, ucs_status_t status);
struct hsb_peer *hsb_peer_by_ep(struct hsb_bridge *b, ucp_ep_h ep);
int hsb_peer_listen(struct hsb_bridge *b);
int hsb_peer_connect(struct hsb_bridge *b);
/* Closes failed peers and frees closed ones; returns how many changed. */
int hsb_peers_reap(struct hsb_bridge *b);
/* Marks every peer as ending (shutdown); the loop's drain closes them. */
void hsb_peers_fail_all(struct hsb_bridge *b);
/* Called when an operation counted in p->pending ends. */
void hsb_peer_op_done(struct hsb_peer *p);
/* Sends a message of header bytes only (copied), failing the peer with
 * `what` if it cannot be sent. 0 or a negative HS_ code. */
int hsb_peer_note(struct hsb_peer *p, unsigned id, const uint8_t *hdr, size_t len,
		  const char *what);
/* A heartbeat arrived: checks it (a bad one fails the peer). */
void hsb_peer_heard(struct hsb_peer *p, const void *hdr, size_t hlen, size_t len);
/* Pings peers that are due and fails those silent too long; returns the
 * time of the next heartbeat due. */
uint64_t hsb_peers_heartbeat(struct hsb_bridge *b, uint64_t now);

/* send.c (serve) */
void hsb_send_register(struct hsb_bridge *b);
void hsb_send_scan(struct hsb_bridge *b);
/* The client's fd woke: every subscription may hold tensors. */
void hsb_send_ready(struct hsb_bridge *b);
/* Sends what the ready subscriptions hold, as far as the windows allow. */
int hsb_send_pump(struct hsb_bridge *b);
/* Sends the staged device tensors whose copy to pinned memory is done. */
int hsb_send_staged(struct hsb_bridge *b);
void hsb_send_drop_subs(struct hsb_peer *p);

/* recv.c (connect) */
void hsb_recv_register(struct hsb_bridge *b);
int hsb_recv_hello(struct hsb_peer *p);
/* Takes the lanes' credits and sends those due; returns messages sent. */
int hsb_recv_credits(struct hsb_bridge *b);
/* Credits wait to be sent (the loop wakes within HSB_CREDIT_DELAY_US). */
bool hsb_recv_credit_due(struct hsb_bridge *b);
#define HSB_CREDIT_DELAY_US 1000
/* Hands on the received device tensors whose copy to the device is done. */
int hsb_recv_landed(struct hsb_bridge *b);

/* bridge.c */
void hsb_am_handler(struct hsb_bridge *b, unsigned id, ucp_am_recv_callback_t cb);
int hsb_bridge_run(struct hsb_bridge *b);
int hsb_stats_print(const char *control, bool json);

void hsb_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
