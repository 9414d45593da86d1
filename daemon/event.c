/* The per-device pools of ready-fence events (see event.h). */
#include "event.h"

#include <stdlib.h>
#include <string.h>

#include "hs-config.h"
#include "hsbroker/error.h"
#include "cuda.h"
#include "log.h"

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

void hsd_event_pool_init(struct hsd_event_pool *p, int device, uint64_t *next_id)
{
	*p = (struct hsd_event_pool){ 0 };
	p->device = device;
	p->next_id = next_id;
}

void hsd_event_pool_fini(struct hsd_event_pool *p)
{
	struct hsd_fence_event *ev = p->all;
#if HS_HAVE_CUDA
	if (ev && hsd_cuda_use_device(p->device) < 0)
		log_warn("cuda:%d: cannot select the device to destroy its events", p->device);
#endif
	while (ev) {
		struct hsd_fence_event *next = ev->next;
#if HS_HAVE_CUDA
		cudaEventDestroy((cudaEvent_t)ev->event);
#endif
		free(ev);
		ev = next;
	}
	*p = (struct hsd_event_pool){ 0 };
}

static int create(struct hsd_event_pool *p, struct hsd_fence_event **out)
{
#if HS_HAVE_CUDA
	int r = hsd_cuda_use_device(p->device);
	if (r < 0)
		return r;
	struct hsd_fence_event *ev = calloc(1, sizeof(*ev));
	if (!ev)
		return HS_ENOMEM;
	cudaEvent_t e;
	cudaError_t ce = cudaEventCreateWithFlags(&e, cudaEventInterprocess | cudaEventDisableTiming);
	if (ce != cudaSuccess) {
		cudaGetLastError();
		log_error("cuda:%d: cudaEventCreateWithFlags(interprocess): %s", p->device,
			  cudaGetErrorString(ce));
		free(ev);
		return HS_ECUDA;
	}
	cudaIpcEventHandle_t h;
	_Static_assert(sizeof(h) == sizeof(ev->ipc_handle), "cudaIpcEventHandle_t is 64 bytes");
	ce = cudaIpcGetEventHandle(&h, e);
	if (ce != cudaSuccess) {
		cudaGetLastError();
		log_error("cuda:%d: cudaIpcGetEventHandle: %s (error %d): CUDA IPC is unavailable "
			  "here (MIG, WSL2, Tegra?)", p->device, cudaGetErrorString(ce), (int)ce);
		cudaEventDestroy(e);
		free(ev);
		return HS_EIPC;
	}
	memcpy(ev->ipc_handle, &h, sizeof(h));
	ev->event = e;
	ev->id = ++*p->next_id;
	ev->device = p->device;
	ev->pool = p;
	ev->next = p->all;
	p->all = ev;
	p->count++;
	log_debug("cuda:%d: fence event %llu created (%u now)", p->device,
		  (unsigned long long)ev->id, p->count);
	*out = ev;
	return 0;
#else
	(void)p;
	(void)out;
	return HS_ENOCUDA;
#endif
}

int hsd_event_pool_get(struct hsd_event_pool *p, struct hsd_fence_event **out)
{
	struct hsd_fence_event *ev = p->free;
	if (ev) {
		p->free = ev->next_free;
	} else {
		int r = create(p, &ev);
		if (r < 0)
			return r;
	}
	ev->next_free = NULL;
	ev->in_use = true;
	p->live++;
	*out = ev;
	return 0;
}

void hsd_event_put(struct hsd_fence_event *ev)
{
	if (!ev || !ev->in_use)
		return;
	struct hsd_event_pool *p = ev->pool;
	ev->in_use = false;
	ev->next_free = p->free;
	p->free = ev;
	p->live--;
}
