/* Internal to libhsclient: the structs behind the opaque handles and the
 * functions the client's files share. Nothing here is exported. */
#ifndef HS_CLIENT_INTERNAL_H
#define HS_CLIENT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "hsbroker/client.h"
#include "hsbroker/info.h"
#include "chan.h"
#include "pring.h"
#include "wire.h"

/* A slab of broker memory, mapped once per connection and kept until
 * disconnect: mapping costs far more than a tensor hand-off. Keyed by its
 * id, which the daemon never reuses within one epoch (a connection lives
 * in one epoch, so the id alone is the key here). */
struct hs__slab {
	uint64_t id;
	int kind;          /* Hs__SlabKind */
	DLDevice device;
	uint64_t size;
	void *base;        /* NULL when the slab is not (yet) mapped here */
	bool readonly;     /* memory of another uid: mapped PROT_READ (host), or
			    * CU_MEM_ACCESS_FLAGS_PROT_READ (VMM) where the driver allows */
	int map_err;       /* why base is NULL (e.g. HS_ENOCUDA) */
	uint8_t ipc_handle[64]; /* SLAB_CUDA_IPC: opened at the first tensor in it */
	int vmm_fd;        /* SLAB_CUDA_VMM: the fd until it is imported, else -1 */
	uint64_t epoch;    /* SLAB_CUDA_VMM: with id, the key of the process's import */
	struct hs__slab *next;
};

/* A ready-fence event the daemon announced (EventAnnounce): opened with
 * cudaIpcOpenEventHandle at its first use here, destroyed at disconnect.
 * Ids are never reused within an epoch. */
struct hs__event {
	uint64_t id;
	int device;
	uint8_t ipc_handle[64];
	void *event;       /* cudaEvent_t once opened */
	int open_err;      /* why it could not be opened (sticky) */
	struct hs__event *next;
};

/* One thread waiting for the reply to its request. Lives on that thread's
 * stack, linked into the client while it waits. */
struct hs__reply_slot {
	uint64_t seq;      /* set under slots_lock, atomically (post.c reads it) */
	Hs__Message *msg;  /* set by the reader when the reply arrives */
	/* A subscription to link when its SubscribeReply is dispatched, so a
	 * Deliver right behind the reply finds it. */
	struct hs_subscription *sub;
	struct hs__reply_slot *next;
};

/* What a spare allocation is for: a tensor's metadata (post.c). */
struct hs__spare_key {
	DLDevice device;
	DLDataType dtype;
	int32_t ndim;
	bool has_strides;
	int64_t shape[HS_MAX_NDIM];
	int64_t strides[HS_MAX_NDIM];
};

struct hs__post;
struct hs__transport;

/* A pair ring this client writes (producer) or reads (subscriber):
 * ring.c. */
struct hs__ring {
	uint64_t id;
	bool producer;
	struct hs__pring r;
	int efd_data;          /* producer: the subscriber's wake-up */
	int efd_space;         /* producer: where it waits for room */
	char topic[HS_MAX_TOPIC + 1];
	uint64_t subscription;
	struct hs_subscription *sub; /* subscriber: its subscription, NULL once it ended */
	bool closed;           /* the daemon ended it (RingClose, or its header) */
	bool dead;             /* subscriber: read out or broken; freed by hs__ring_reap */
	bool stalled;          /* producer, BLOCK: waited past its timeout ... */
	uint64_t stall_tail;   /* ... and it has not taken anything since */
	struct hs__ring *next;
};

/* A topic this client emitted on with rings on: its page, route and the
 * rings it writes there. */
struct hs__route {
	char topic[HS_MAX_TOPIC + 1];
	struct hs__pring_page *page;
	uint64_t gen;          /* current while the page says so */
	bool relay;            /* through the daemon, for good */
	struct hs__ring *rings;
	struct hs__route *next;
};

struct hs_tensor {
	hs_client *client;     /* NULL once the client is gone (DLPack only) */
	uint64_t id;
	uint64_t seq;
	uint64_t nbytes;       /* the block's length */
	struct hs__slab *slab;
	struct hs__event *fence; /* device tensors: the ready fence, or NULL */
	DLTensor dl;
	int64_t shape[HS_MAX_NDIM];
	int64_t strides[HS_MAX_NDIM];
	char topic[HS_MAX_TOPIC + 1];
	bool exported;         /* handed out as a DLManagedTensor */
	void *dl_stream;       /* exported: the reader's stream, for the deleter */
	DLManagedTensor managed;
	struct hs_tensor *prev, *next; /* the client's live handles */
	struct hs_tensor *qnext;       /* in a subscription's local buffer */
};

struct hs_subscription {
	hs_client *client;
	uint64_t id;
	char topic[HS_MAX_TOPIC + 1];
	uint64_t dropped;
	uint32_t credits;      /* deliveries the daemon may still push */
	int err;               /* a delivery this client could not use */
	struct hs_tensor *head, *tail; /* delivered, not yet received */
	struct hs_subscription *next;
};

struct hs_client {
	int fd;
	const struct hs__transport *tr; /* conn.c: the socket, then the channel */

	/* The shared-memory channel (proto/chan.h), when the daemon gave
	 * one: every message goes through it; the socket carries only the
	 * datagrams a record marks, and tells of the daemon's death. Its
	 * tx end is guarded by send_lock, its rx end by the reader role. */
	bool use_chan;
	bool spares_on;    /* ask spares ahead (post.c) */
	int64_t spin_ns;   /* HSBROKER_SPIN_US: poll the ring before sleeping */
	bool spin_set;     /* ... given: it decides, not the adaptive wait */
	/* The adaptive wait (conn.c), the reader's alone: how long waits
	 * that ended with something to read took lately, and whether a core
	 * was free when last looked (every 100 ms). */
	int64_t wait_avg_ns;
	int64_t load_seen_ns;
	bool core_free;
	struct hs__chan ch;
	int efd_daemon;    /* we write it to wake the daemon */
	int efd_client;    /* the daemon writes it to wake us */
	int poll_fd;       /* hs_client_get_fd with a channel: an epoll fd */
	bool fd_mode;      /* the application polls poll_fd: stay armed */
	bool chan_hup;     /* the reader saw the socket hang up */

	/* Pair rings (ring.c), when HSBROKER_RINGS asked and the daemon
	 * agreed. out_rings and routes are ring_lock's; ring_news,
	 * route_page and in_rings are lock's (in_rings: see ring.c). */
	bool rings_on;
	pthread_mutex_t ring_lock;
	struct hs__ring *out_rings; /* announced for a topic with no route yet */
	struct hs__ring *ring_news;
	struct hs__route *routes;
	struct hs__pring_page *route_page; /* from the last RouteReply */
	struct hs__ring *in_rings;
	bool rings_closed;

	/* lock guards everything below except what send_lock and slots_lock
	 * guard; cond is broadcast whenever the reader dispatched something or
	 * gave up the reader role. send_lock is never held while waiting for
	 * lock: lock may be held across CUDA calls, and CUDA's host-function
	 * thread takes send_lock (release notes). */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_mutex_t send_lock; /* socket writes and next_seq */
	/* The list of reply slots (below): taken under send_lock or lock,
	 * and holding it, nothing else is taken. */
	pthread_mutex_t slots_lock;
	uint64_t next_seq;

	bool reading;      /* some thread is the reader (see conn.c) */
	bool app_reading;  /* ... and it is hs_client_dispatch */
	bool wake_app;     /* a delivery the application's fd has not told of */
	int efd_app;       /* socket transport: wakes poll_fd (hs_client_get_fd) */
	/* The highest seq of any reply read: the daemon answered every
	 * request below it (post.c relies on the order). */
	uint64_t synced_seq;
	int dead;          /* 0, or what every call returns from now on */
	uint8_t *rbuf;     /* the reader's datagram buffer */

	struct hs__reply_slot *slots;
	struct hs__slab *slabs;
	struct hs__event *events;
	struct hs__bridge *bridges; /* fence.c: cross-GPU ordering helpers */
	/* Deferred release notes not yet sent (fence.c); guarded by
	 * pending_lock, never by lock (see hs__client_note_unlocked). */
	pthread_mutex_t pending_lock;
	pthread_cond_t pending_cond;
	uint32_t pending_releases;
	struct hs_subscription *subs;
	struct hs_tensor *tensors;

	/* References to give back that the reader found while it held lock
	 * (deliveries for closed subscriptions); sent once it lets go. */
	uint64_t *orphans;
	size_t n_orphans, cap_orphans;

	/* Posted requests (post.c), oldest first; guarded by lock. */
	struct hs__post *posts;
	struct hs__post *post_cache;  /* freed posts kept for reuse */
	uint32_t n_post_cache;
	uint32_t emits_posted;
	uint32_t spares;
	struct hs__spare_key recent[4]; /* shapes allocated lately */
	uint32_t nrecent, recent_next;

	uint64_t epoch;
	uint64_t session_id;
	char daemon_version[32];
	hs_client_stats stats;
};

/* ---- conn.c ---- */

/* Sends a request and waits for its reply (any body, ErrorReply
 * included); *reply is the caller's to free with hs__wire_free. */
int hs__client_request(hs_client *c, Hs__Message *msg, Hs__Message **reply);
/* The same for a SubscribeReq: sub is linked into the client as the reply
 * is dispatched. */
int hs__client_request_sub(hs_client *c, Hs__Message *msg,
			   struct hs_subscription *sub, Hs__Message **reply);

/* The client starts on the socket transport (conn.c). */
void hs__client_use_socket(hs_client *c);
/* The transport's arm (see struct hs__transport in conn.c) and whether
 * something waits to be read, known without a syscall. */
bool hs__client_arm(hs_client *c);
bool hs__client_pending(hs_client *c);

/* Maps the channel of a ChannelAnnounce (its three fds are taken); from
 * then on the client talks through it. */
int hs__client_take_channel(hs_client *c, const Hs__Message *msg, int *fds, int nfds);

/* Sends a request whose reply lands in slot, without waiting for it.
 * lazy: it need not wake the daemon (read at its next wake-up). */
int hs__client_send_slot(hs_client *c, Hs__Message *msg, struct hs__reply_slot *slot,
			 bool lazy);
/* Unlinks a slot from the client's list (lock held). */
void hs__slot_unlink(hs_client *c, struct hs__reply_slot *slot);

/* A ping: once it returns 0, the reply to every request sent before it
 * has been read, except held-back emits' (post.c). */
int hs__client_sync(hs_client *c);

/* Sends a one-way note (release, credit). */
int hs__client_note(hs_client *c, Hs__Message *msg);
/* The same without ever taking lock (send_lock only): for CUDA's
 * host-function thread, which must not wait on a thread that may hold
 * lock across a CUDA call (the reader opening a slab). */
int hs__client_note_unlocked(hs_client *c, Hs__Message *msg);

/* With lock held: waits until done(c, arg) is true, taking the reader
 * role when nobody has it. timeout_ms < 0 waits forever. Returns 0,
 * HS_ETIMEDOUT or the reason the connection died. */
int hs__client_wait(hs_client *c, bool (*done)(hs_client *, void *), void *arg,
		    int timeout_ms);
/* A done() for hs__client_wait: the reply slot arg has its reply. */
bool hs__slot_done(hs_client *c, void *arg);

/* With lock held: the connection is unusable from now on; keeps the first
 * reason. */
void hs__client_fail(hs_client *c, int err);

/* A reply's status: 0 when its body is want, the daemon's code for an
 * ErrorReply, HS_EPROTO for anything else. */
int hs__reply_check(const Hs__Message *reply, Hs__Message__BodyCase want);

/* Gives n references back (release notes, 1024 ids each); unlocked as
 * hs__client_note_unlocked. 0 or the error that stopped it. */
int hs__client_release(hs_client *c, const uint64_t *ids, size_t n, bool unlocked);

/* Queues a reference to give back (lock held) / sends the queue. */
void hs__client_orphan(hs_client *c, uint64_t tensor_id);
void hs__client_flush_orphans(hs_client *c);

/* ---- post.c ---- */

/* Posts an EmitReq (m) that nobody waits on, after waiting while too many
 * are unanswered. 0 or the error that stopped it (nothing sent). */
int hs__post_emit(hs_client *c, Hs__Message *m);
void hs__spare_key_set(struct hs__spare_key *k, DLDevice device, DLDataType dtype,
		       int32_t ndim, const int64_t *shape, const int64_t *strides);
/* False when HSBROKER_SPARES=0 (read at connect). */
bool hs__spares_wanted(void);
/* The AllocReply (or ErrorReply) of a spare for k, or NULL when there is
 * none; *ask: whether a spare for k should be asked for now. */
Hs__Message *hs__spare_take(hs_client *c, const struct hs__spare_key *k, bool *ask);
/* Posts AllocReq m as the spare for k. */
void hs__spare_ask(hs_client *c, const struct hs__spare_key *k, Hs__Message *m);
/* Waits until the daemon answered every posted emit (at disconnect: a
 * held-back emit would otherwise be cancelled with the session). */
void hs__post_flush(hs_client *c);
/* Frees every posted request (at disconnect). */
void hs__post_free_all(hs_client *c);

/* ---- slab.c ---- */

/* Handles a SlabAnnounce (lock held); takes its fd from fds. */
int hs__slab_announce(hs_client *c, const Hs__SlabAnnounce *a, int *fds, int nfds);
struct hs__slab *hs__slab_find(hs_client *c, uint64_t id);
void hs__slab_unmap_all(hs_client *c);

/* ---- slab_cuda.c ---- */

/* Opens a device slab (lock held): 0 with s->base set, or the reason
 * (HS_ENOCUDA, HS_ENODEV, HS_EIPC), which is kept in s->map_err. */
int hs__slab_cuda_open(hs_client *c, struct hs__slab *s);
void hs__slab_cuda_close(struct hs__slab *s);

/* ---- slab_vmm.c ---- */

/* The same for a SLAB_CUDA_VMM slab (imported from its fd, which is then
 * closed), called by the two above; n: the GPUs this process sees. */
int hs__slab_vmm_open(struct hs__slab *s, int n);
void hs__slab_vmm_close(struct hs__slab *s);

/* ---- fence.c ---- */

/* Handles an EventAnnounce (lock held). */
int hs__event_announce(hs_client *c, const Hs__EventAnnounce *a);
struct hs__event *hs__event_find(hs_client *c, uint64_t id);
/* Destroys every imported event (at disconnect). */
void hs__event_destroy_all(hs_client *c);
/* Records t's ready fence on stream (emit): 0 or a negative hs code. */
int hs__fence_record(hs_tensor *t, void *stream);
/* Waits on the host for the work queued on stream (an emit whose fence
 * event cannot be opened here): 0 or HS_ECUDA. */
int hs__fence_sync(void *stream);
/* Sends t's ReleaseNote once the work queued on stream so far is done
 * (cudaLaunchHostFunc); the handle is the caller's to free. 0, or an
 * error when nothing could be queued (then release at once). */
int hs__release_after(hs_client *c, uint64_t id, void *stream);
/* Waits until every deferred release note has been sent. */
void hs__release_drain(hs_client *c);

/* ---- tensor.c ---- */

/* What a tensor handle is made of, from a daemon's TensorRef or a ring's
 * note (already checked for its extent); hs__tensor_make checks it
 * against the slabs and events this client was told of (lock held). */
struct hs__tensor_desc {
	uint64_t id, seq, slab_id, offset, nbytes, fence_event, byte_offset;
	DLDevice device;
	DLDataType dtype;
	int32_t ndim;
	const int64_t *shape;
	const int64_t *strides; /* NULL: compact */
	const char *topic;
	size_t topic_len;
};
int hs__tensor_make(hs_client *c, const struct hs__tensor_desc *d, hs_tensor **out);
/* Builds a tensor handle from an untrusted TensorRef (lock held).
 * HS_EPROTO for a ref that breaks the protocol, the slab's map_err for
 * one this process cannot map. */
int hs__tensor_from_ref(hs_client *c, const Hs__TensorRef *ref, hs_tensor **out);
/* Frees the handle only (lock held); sends nothing. */
void hs__tensor_free_locked(hs_tensor *t);

/* Links a new handle into the client (lock held). */
void hs__tensor_link(hs_client *c, hs_tensor *t);

/* ---- ring.c ---- */

/* HSBROKER_RINGS=1: ask for pair rings (read at connect). */
bool hs__rings_wanted(void);
/* A RingAnnounce (lock held): takes the fds it keeps (sets them to -1). */
int hs__ring_announce(hs_client *c, const Hs__RingAnnounce *a, int *fds, int nfds);
/* A RingClose (lock held). */
void hs__ring_closed(hs_client *c, uint64_t id);
/* Whether t can go through rings (memory of our uid, few dims). */
bool hs__ring_can_carry(const hs_client *c, const hs_tensor *t);
/* Emits t on topic through this client's rings: 0 with *seq and
 * *ref_moved (the reference went with the last note; else the caller
 * still holds it and releases it), 1 when it goes through the
 * daemon (a tensor rings cannot carry, or a topic that needs the relay:
 * then every later emit there does too), or an error. posted: no seq_out (a full BLOCK ring
 * takes a few more, as the daemon would hold them back). Takes ring_lock,
 * and lock inside. */
int hs__ring_emit(hs_client *c, const hs_tensor *t, const char *topic, bool fence_done,
		  bool posted, uint64_t *seq, bool *ref_moved);
/* Subscriber (lock held): whether sub's rings / any ring has notes. */
bool hs__ring_sub_pending(const hs_client *c, const struct hs_subscription *sub);
bool hs__ring_any_pending(const hs_client *c);
/* The reader, before it sleeps: arms every ring; false when one has
 * something already. */
bool hs__ring_arm_all(hs_client *c);
/* Takes sub's next ring tensor with a sequence number below below (0:
 * any): 1 with *out, 0 none, 2 when its slab or fence event is not known
 * yet (*wait set: read the channel, then call again with it still set). */
struct hs__ann_wait {
	uint64_t slab, event; /* the ids a note named before they were read */
	bool asked;           /* the channel was read once for them */
};
int hs__ring_sub_take(hs_client *c, struct hs_subscription *sub, uint64_t below,
		      struct hs__ann_wait *wait, hs_tensor **out);
/* sub ended (lock held): what its rings hold is given back. */
void hs__ring_sub_end(hs_client *c, struct hs_subscription *sub);
/* Frees dead subscriber rings (read out after they closed, broken, or
 * of an ended subscription) when no reader is arming them (lock). */
void hs__ring_reap(hs_client *c);
void hs__ring_free_all(hs_client *c);

/* ---- subscription.c ---- */

/* Handles a Deliver push (lock held). */
int hs__subscription_deliver(hs_client *c, const Hs__Deliver *d);
/* Links sub under the id of a SubscribeReply (lock held); false for an id
 * that is 0 or already taken. */
bool hs__subscription_link(hs_client *c, struct hs_subscription *sub,
			   const Hs__Message *reply);
void hs__subscription_free_queue(struct hs_subscription *sub);
void hs__subscription_free_all(hs_client *c);

#endif
