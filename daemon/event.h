/* Ready fences: interprocess CUDA events the daemon creates and exports
 * once (cudaEventInterprocess | cudaEventDisableTiming,
 * cudaIpcGetEventHandle), one per live device tensor. The writer records
 * its tensor's event on its stream when it emits; readers make their
 * streams wait on it. An event goes back to its device's free list only
 * when its tensor dies, so it is never re-recorded while a reader of the
 * previous tensor might not yet have waited on it (cudaStreamWaitEvent
 * waits on the most recent record at the time of the call).
 *
 * Events are created lazily, never destroyed before daemon exit, and
 * their ids are unique within one epoch (shared counter), so a client can
 * key its cache on the id. */
#ifndef HS_DAEMON_EVENT_H
#define HS_DAEMON_EVENT_H

#include <stdbool.h>
#include <stdint.h>

struct hsd_event_pool;

struct hsd_fence_event {
	uint64_t id;
	int device;
	void *event;              /* cudaEvent_t */
	uint8_t ipc_handle[64];   /* cudaIpcEventHandle_t: a capability, never logged */
	bool in_use;
	struct hsd_event_pool *pool;
	struct hsd_fence_event *next; /* all events of the pool */
	struct hsd_fence_event *next_free;
};

struct hsd_event_pool {
	int device;
	uint64_t *next_id;        /* shared by all pools */
	struct hsd_fence_event *all;
	struct hsd_fence_event *free;
	uint32_t count;           /* created */
	uint32_t live;            /* given to tensors */
};

void hsd_event_pool_init(struct hsd_event_pool *p, int device, uint64_t *next_id);
/* Destroys every event: only at daemon exit. */
void hsd_event_pool_fini(struct hsd_event_pool *p);

/* A free event (creating and exporting one when none is free): 0 with
 * *out, HS_ENOMEM, HS_EIPC (no legacy IPC here), HS_ECUDA, HS_ENOCUDA. */
int hsd_event_pool_get(struct hsd_event_pool *p, struct hsd_fence_event **out);
/* Its tensor is gone: back to the free list. No CUDA call. */
void hsd_event_put(struct hsd_fence_event *ev);

#endif
