/* libhsclient: connect to hsbrokerd, allocate tensors in broker memory,
 * emit them on topics, subscribe, receive, release.
 *
 * Threads: every function may be called from any thread. One hs_tensor or
 * hs_subscription must not be used by two threads at once (as with a FILE
 * that you do not share); the client behind them may.
 *
 * Ownership: an hs_tensor is one reference to a broker tensor. It ends with
 * exactly one of hs_tensor_release, hs_tensor_emit (the reference moves to
 * the topic) or the deleter of the DLManagedTensor from hs_tensor_to_dlpack
 * (or hs_tensor_to_dlpack_stream).
 * Disconnecting releases every reference the client still holds, as does
 * the death of the process.
 *
 * Streams: every `void *stream` argument is a cudaStream_t with CUDA's own
 * meaning, in every call: NULL is the legacy default stream (the one
 * PyTorch, CuPy and Numba use unless told otherwise), cudaStreamLegacy
 * and cudaStreamPerThread work as in CUDA, any other value is a stream of
 * yours. Only hs_tensor_release and hs_tensor_to_dlpack_stream also take
 * HS_STREAM_DONE. For host tensors the stream is ignored (docs/gpu.md,
 * "What is safe"). */
#ifndef HSBROKER_CLIENT_H
#define HSBROKER_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "hsbroker/error.h"
#include "hsbroker/export.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HS_PROTOCOL_VERSION 1
#define HS_MAX_NDIM 32
#define HS_MAX_TOPIC 255

/* "My GPU work on this tensor is already complete": the stream argument
 * of hs_tensor_release and hs_tensor_to_dlpack_stream that releases at
 * once, with no fence. Say it only after a host synchronisation (or with
 * no GPU work queued at all): the block may be rewritten by another
 * process the moment the call returns. No CUDA stream has this value.
 * Since issue 10. */
#define HS_STREAM_DONE ((void *)(intptr_t)-1)

typedef struct hs_client hs_client;
typedef struct hs_tensor hs_tensor;
typedef struct hs_subscription hs_subscription;

/* What a subscriber's queue does when it is full. */
enum hs_policy {
	HS_POLICY_BLOCK = 0,       /* the producer's emit waits for room, up to
				    * the block timeout (hs_subscribe_opts) */
	HS_POLICY_DROP_OLDEST = 1, /* the oldest queued tensor is dropped */
	HS_POLICY_DROP_NEWEST = 2, /* the tensor being emitted is dropped */
};

/* The socket path a NULL path resolves to: $HSBROKER_SOCKET, else
 * $XDG_RUNTIME_DIR/hsbroker/hsbroker.sock, else /run/hsbroker/hsbroker.sock.
 * Writes at most size bytes (NUL included); returns 0 or HS_ENAMETOOLONG. */
HS_EXPORT int hs_default_socket_path(char *buf, size_t size);

/* Connects and performs the handshake. path may be NULL (see above); name
 * (may be NULL: the program name) is shown by hsctl. */
HS_EXPORT int hs_client_connect(const char *path, const char *name,
				hs_client **out);

/* Waits until the daemon accepted (or refused) every emit sent without
 * seq_out, as those emits would have waited (under a full HS_POLICY_BLOCK
 * subscriber, until it has room); then releases every reference, closes
 * every mapping and frees the client.
 * Tensors and subscriptions of this client must not be used afterwards
 * (their handles are freed too). A DLManagedTensor handed out earlier
 * keeps a callable deleter, but its data is no longer mapped. No other
 * thread may be inside a call on this client. */
HS_EXPORT void hs_client_disconnect(hs_client *client);

/* A file descriptor that becomes readable when hs_client_dispatch has
 * work: poll it from your own event loop. Owned by the client. After each
 * dispatch, drain your subscriptions with hs_subscription_receive(sub, 0,
 * &t). A delivery that another thread's blocking call read also makes it
 * readable, so nothing waits unseen in a subscription's buffer; it may
 * wake with nothing new (dispatch returns 0). */
HS_EXPORT int hs_client_get_fd(hs_client *client);

/* Reads and queues whatever the daemon sent, without blocking. Returns the
 * number of messages handled (>= 0; 0 also when another thread is reading
 * the socket at that moment, which then dispatches for everyone) or an
 * error (HS_EPIPE once the daemon is gone, HS_ESHUTDOWN after it said it
 * is stopping). */
HS_EXPORT int hs_client_dispatch(hs_client *client);

/* Round trip to the daemon; useful as a liveness check. */
HS_EXPORT int hs_client_ping(hs_client *client);

/* Counters of this client's mapping cache and traffic. */
typedef struct hs_client_stats {
	uint64_t slabs_mapped;  /* slabs currently mapped */
	uint64_t slab_opens;    /* mmap / cudaIpcOpenMemHandle calls ever made */
	uint64_t tensors_held;  /* live hs_tensor handles */
	uint64_t messages_sent;
	uint64_t messages_received;
	uint64_t epoch;         /* the daemon's epoch at connect */
	uint64_t event_opens;   /* cudaIpcOpenEventHandle calls ever made (ready
				 * fences: one per event, never per tensor) */
	uint64_t emits_refused; /* emits without seq_out the daemon refused */
	int32_t emit_last_error; /* the last such refusal's code, or 0 */
	uint64_t spare_hits;    /* allocations served by a spare, no round trip */
	uint32_t shared_channel; /* 1: messages go through shared memory */
} hs_client_stats;

HS_EXPORT int hs_client_get_stats(hs_client *client, hs_client_stats *out);

/* ---- tensors ---- */

/* Allocates a tensor in broker memory, writable by the caller. A shape
 * allocated again is served from a spare asked for ahead (no round trip
 * to the daemon; HSBROKER_SPARES=0 turns that off; docs/api.md).
 * device: {kDLCPU, 0} for host memory, {kDLCUDA, n} for GPU n.
 * strides: NULL for compact row-major, else ndim strides in elements
 * (may be negative or zero); the block covers every element they reach. */
HS_EXPORT int hs_tensor_alloc(hs_client *client, DLDevice device,
			      DLDataType dtype, int32_t ndim,
			      const int64_t *shape, const int64_t *strides,
			      hs_tensor **out);

/* The DLPack view: data is the base of the block, byte_offset added by
 * the consumer as DLPack says. Valid until the reference ends. */
HS_EXPORT const DLTensor *hs_tensor_dltensor(const hs_tensor *tensor);

/* data + byte_offset: the address of element 0. For a host tensor
 * allocated by a process of another uid (received from a topic, or
 * forwarded to you), this is read-only memory: reading is fine, a write
 * faults (SIGSEGV). hs_tensor_writable tells which. */
HS_EXPORT void *hs_tensor_data(const hs_tensor *tensor);

/* 1 when this process can write the tensor's memory: a tensor allocated
 * by a process of this process' uid, or a device tensor of a daemon that
 * exports legacy CUDA IPC handles (they map read-write; writing into a
 * device tensor you received is still not allowed, see docs/security.md).
 * 0 for a tensor of another uid, mapped read-only here: host memory, or
 * device memory of a daemon that exports VMM fds (--cuda-export vmm;
 * read-only where the driver grants CU_MEM_ACCESS_FLAGS_PROT_READ), and
 * for NULL. A read-only tensor may still be emitted again (forwarded) and
 * released like any other. */
HS_EXPORT int hs_tensor_writable(const hs_tensor *tensor);

/* Bytes of the block the tensor lives in. */
HS_EXPORT uint64_t hs_tensor_nbytes(const hs_tensor *tensor);

/* The whole mapping the tensor's block lies in (its slab, in this
 * process): *base and *size. For registering broker memory once with a
 * transport that wants it (RDMA, UCX's ucp_mem_map) instead of once per
 * tensor. The mapping stays valid until hs_client_disconnect, and other
 * tensors of the slab lie in it too; a device slab's base is a device
 * pointer. Returns 0, or HS_EINVAL for a NULL argument or a tensor whose
 * client is gone. */
HS_EXPORT int hs_tensor_slab_mapping(const hs_tensor *tensor, void **base, uint64_t *size);

HS_EXPORT uint64_t hs_tensor_id(const hs_tensor *tensor);

/* The topic's sequence number of an emitted tensor (first emit is 1);
 * 0 for a tensor that was never emitted. */
HS_EXPORT uint64_t hs_tensor_seq(const hs_tensor *tensor);

/* The topic a received tensor came from; "" for a fresh allocation. */
HS_EXPORT const char *hs_tensor_topic(const hs_tensor *tensor);

/* Emits the tensor on topic and ends this reference (also on error).
 * stream: the cudaStream_t the tensor was written on (NULL: the legacy
 * default stream); a device tensor's ready fence (an interprocess CUDA
 * event) is recorded there, with no host synchronisation, so readers
 * that call hs_tensor_wait are ordered after every write queued on it.
 * Forwarding a received tensor records the same fence on your stream.
 * With seq_out, it returns once the daemon accepted the emit (under
 * HS_POLICY_BLOCK subscribers, once every one of them has room) with the
 * topic's sequence number. Without seq_out (NULL) it returns as soon as
 * the emit is sent: at most 8 such emits may be unanswered before the
 * next one waits, a refusal by the daemon is counted in
 * hs_client_stats.emits_refused, and hs_client_disconnect waits for their
 * answers. Topic names: 1..255 bytes of [A-Za-z0-9_./:-]. For a device
 * tensor, HS_STREAM_DONE says its writes are complete (you synchronised):
 * nothing is recorded and readers are given no fence to wait on, which is
 * what readers that cannot open the daemon's fence events need (another
 * uid, another PID or IPC namespace: docs/gpu.md). The same happens by
 * itself when this process cannot open the event: emit then waits for
 * stream on the host first. */
HS_EXPORT int hs_tensor_emit(hs_tensor *tensor, const char *topic,
			     void *stream, uint64_t *seq_out);

/* Ends the reference. stream: the cudaStream_t the caller read (or wrote)
 * the tensor on; NULL is the legacy default stream, as everywhere in this
 * API. For a device tensor the release is sent from a host function
 * queued on that stream (cudaLaunchHostFunc), so the block is not handed
 * to another writer until the work queued there so far is done, and the
 * caller never blocks. NULL's host function also waits for the work
 * queued before it on every blocking stream of the current device (CUDA's
 * legacy default stream semantics), but not for non-blocking streams
 * (cudaStreamNonBlocking, PyTorch's side streams): pass those by name.
 * HS_STREAM_DONE releases at once; say it only when that work is already
 * complete. hs_client_disconnect waits for pending releases. Host tensors
 * release at once whatever the stream. */
HS_EXPORT void hs_tensor_release(hs_tensor *tensor, void *stream);

/* Makes stream (a cudaStream_t; NULL: the legacy default stream) wait
 * until the writer's work on a device tensor is done (its ready fence),
 * without blocking the host. Call it before reading a received device
 * tensor on stream. A no-op returning 0 for host tensors. Returns 0,
 * HS_EINVAL (also for HS_STREAM_DONE on a device tensor), HS_ENOCUDA,
 * HS_ENODEV, HS_EIPC or HS_ECUDA. */
HS_EXPORT int hs_tensor_wait(const hs_tensor *tensor, void *stream);

/* Converts to a DLManagedTensor for a reader on stream (a cudaStream_t;
 * NULL: the legacy default stream): stream is made to wait on the ready
 * fence now, as hs_tensor_wait does, and the deleter releases the
 * reference as hs_tensor_release(tensor, stream) would, i.e. after the
 * work queued on stream by the time the deleter runs. Give the stream the
 * consumer reads on (the DLPack consumer's stream). HS_STREAM_DONE: no
 * wait, and the deleter releases at once. On success the hs_tensor handle
 * is consumed (do not release it); on error it stays yours. Returns 0,
 * HS_EINVAL, or hs_tensor_wait's errors. Since issue 10. */
HS_EXPORT int hs_tensor_to_dlpack_stream(hs_tensor *tensor, void *stream,
					 DLManagedTensor **out);

/* hs_tensor_to_dlpack_stream(tensor, NULL, out): the reader's stream is
 * the legacy default stream. */
HS_EXPORT int hs_tensor_to_dlpack(hs_tensor *tensor, DLManagedTensor **out);

/* ---- subscriptions ---- */

typedef struct hs_subscribe_opts {
	uint32_t depth;        /* queue length in the daemon; 0 means 8 */
	enum hs_policy policy; /* what happens when the queue is full */
	/* HS_POLICY_BLOCK: the longest this subscription may hold a
	 * producer back while its queue is full. Past it, it is dropped from
	 * that emit and from later ones (each counted in
	 * hs_subscription_dropped) until it takes a tensor again. 0: the
	 * daemon's default ([subscribe] block_timeout_ms: none unless
	 * configured), which is also the most it grants. A subscriber of
	 * another uid than the producer is bounded by the daemon's
	 * block_timeout_other_uid_ms (5000 ms) whatever it asks. */
	uint32_t block_timeout_ms;
} hs_subscribe_opts;

/* opts may be NULL: depth 8, HS_POLICY_BLOCK, the daemon's block timeout.
 * Only tensors emitted after the subscription exists are delivered. */
HS_EXPORT int hs_subscribe(hs_client *client, const char *topic,
			   const hs_subscribe_opts *opts,
			   hs_subscription **out);

/* Waits up to timeout_ms (-1: forever, 0: poll) for the next tensor.
 * Returns 0 with *out set, HS_ETIMEDOUT, or HS_ESHUTDOWN / HS_EPIPE when
 * the daemon is gone. */
HS_EXPORT int hs_subscription_receive(hs_subscription *sub, int timeout_ms,
				      hs_tensor **out);

/* Tensors this subscription lost to its drop policy so far. */
HS_EXPORT uint64_t hs_subscription_dropped(const hs_subscription *sub);

/* Unsubscribes; tensors queued for it are released, received ones stay
 * valid. */
HS_EXPORT void hs_subscription_close(hs_subscription *sub);

#ifdef __cplusplus
}
#endif
#endif
