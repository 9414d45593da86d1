/* Introspection: what the broker holds, for hsctl and for monitoring.
 * One call lists everything asked for, however many items there are (a
 * listing larger than one message is fetched in pages, since 0.1: every
 * item appears at most once, each as it was when its page was made, so
 * items that change during the call may be seen before or after the
 * change); free it with hs_info_free. */
#ifndef HSBROKER_INFO_H
#define HSBROKER_INFO_H

#include <stddef.h>
#include <stdint.h>

#include <dlpack/dlpack.h>

#include "hsbroker/client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hs_tensor_info {
	uint64_t id;
	char topic[HS_MAX_TOPIC + 1]; /* "" until emitted */
	DLDevice device;
	DLDataType dtype;
	int32_t ndim;
	int64_t shape[HS_MAX_NDIM];
	uint64_t nbytes;     /* the block's length */
	uint32_t refs;
	int32_t owner_pid;   /* the session that allocated it */
	char owner_name[64];
	uint64_t age_us;
	uint64_t seq;
	uint64_t slab_id;
	uint64_t offset;
	/* Strides in elements as the tensor was allocated with them; 0 when
	 * it is compact row-major (no strides given). Since 0.1. */
	int32_t nstrides;
	int64_t strides[HS_MAX_NDIM];
} hs_tensor_info;

typedef struct hs_subscriber_info {
	uint64_t subscription;
	uint64_t session_id;
	int32_t pid;
	char name[64];
	uint32_t depth;
	enum hs_policy policy;
	uint32_t queued;
	uint64_t delivered;
	uint64_t dropped;
} hs_subscriber_info;

typedef struct hs_topic_info {
	char name[HS_MAX_TOPIC + 1];
	uint64_t emitted;
	uint64_t dropped;
	uint32_t blocked_emits;
	uint32_t n_subscribers;
	hs_subscriber_info *subscribers; /* n_subscribers of them */
	uint64_t bytes_emitted;  /* bytes of every tensor emitted on it (since 0.1) */
} hs_topic_info;

typedef struct hs_client_info {
	uint64_t session_id;
	int32_t pid;
	uint32_t uid;
	uint32_t gid;
	char name[64];
	uint32_t tensors_held;
	uint64_t bytes_held;
	uint32_t subscriptions;
	uint32_t slabs_mapped;
	uint64_t age_us;
	uint32_t shared_channel; /* 1: through the shared-memory channel, 0: the socket */
} hs_client_info;

typedef struct hs_pool_info {
	DLDevice device;
	uint64_t slab_size;
	uint32_t slabs;
	uint64_t total;
	uint64_t used;
	uint64_t free;
	uint64_t largest_free;
	uint64_t cap;        /* 0: no cap */
	uint32_t tensors;
	/* How its slabs reach clients (since 0.1): "host-memfd", "cuda-ipc"
	 * (legacy CUDA IPC handles) or "cuda-vmm" (VMM allocations passed as
	 * fds); empty from a daemon that does not say. */
	char slab_kind[16];
} hs_pool_info;

typedef struct hs_info {
	uint64_t epoch;
	uint64_t uptime_us;
	char daemon_version[32];
	size_t n_tensors;
	hs_tensor_info *tensors;
	size_t n_topics;
	hs_topic_info *topics;
	size_t n_clients;
	hs_client_info *clients;
	size_t n_pools;
	hs_pool_info *pools;
	int32_t daemon_pid;      /* the daemon process (since 0.1) */
	uint64_t daemon_cpu_us;  /* CPU time it has used, user + system */
} hs_info;

enum hs_info_what {
	HS_INFO_ALL = 0,
	HS_INFO_TENSORS = 1,
	HS_INFO_TOPICS = 2,
	HS_INFO_CLIENTS = 3,
	HS_INFO_POOLS = 4,
};

/* Takes a snapshot; the lists not asked for are empty. */
HS_EXPORT int hs_client_get_info(hs_client *client, enum hs_info_what what,
				 hs_info **out);
HS_EXPORT void hs_info_free(hs_info *info);

#ifdef __cplusplus
}
#endif
#endif
