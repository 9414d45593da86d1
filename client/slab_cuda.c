/* Device slabs in the mapping cache: each opened once with
 * cudaIpcOpenMemHandle, at the first tensor that lives in it, and closed
 * at disconnect. A handle can be open only once per process, so this is
 * the only place that opens one. */
#include "hs-config.h"
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>

/* The GPUs this process sees: > 0, or HS_ENODEV (no driver, no GPU:
 * cudart_static says cudaErrorInsufficientDriver or cudaErrorNoDevice). */
static int device_count(void)
{
	static int count; /* 0: not asked yet; benign race (same answer) */
	int n = __atomic_load_n(&count, __ATOMIC_RELAXED);
	if (n)
		return n;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
		cudaGetLastError();
		n = HS_ENODEV;
	}
	__atomic_store_n(&count, n, __ATOMIC_RELAXED);
	return n;
}

int hs__slab_cuda_open(hs_client *c, struct hs__slab *s)
{
	int n = device_count();
	if (n < 0)
		return s->map_err = n;
	/* Opened on the calling thread's current device, with lazy peer
	 * access: a consumer working on another GPU of the host then reads
	 * the slab from its own GPU (cudaIpcMemLazyEnablePeerAccess). When
	 * that fails (no peer path between the two), on the slab's own GPU,
	 * if this process sees it (CUDA_VISIBLE_DEVICES may renumber). */
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		return s->map_err = HS_ECUDA;
	}
	cudaIpcMemHandle_t h;
	_Static_assert(sizeof(h) == sizeof(s->ipc_handle), "cudaIpcMemHandle_t is 64 bytes");
	memcpy(&h, s->ipc_handle, sizeof(h));
	void *p = NULL;
	cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
	int dev = s->device.device_id;
	if (e != cudaSuccess && dev != cur && dev < n) {
		cudaGetLastError();
		if (cudaSetDevice(dev) == cudaSuccess) {
			e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
			cudaSetDevice(cur);
		}
	}
	if (e != cudaSuccess) {
		cudaGetLastError();
		/* Another PID namespace, MIG, WSL2 or Tegra: legacy IPC does
		 * not work between these processes. */
		if (hs__wire_debug_enabled())
			fprintf(stderr, "[hs client %d] cudaIpcOpenMemHandle (slab %llu on cuda:%d): %s\n",
				(int)getpid(), (unsigned long long)s->id, s->device.device_id,
				cudaGetErrorString(e));
		return s->map_err = e == cudaErrorMemoryAllocation ? HS_ENOMEM : HS_EIPC;
	}
	s->base = p;
	c->stats.slab_opens++;
	c->stats.slabs_mapped++;
	return 0;
}

void hs__slab_cuda_close(struct hs__slab *s)
{
	if (!s->base)
		return;
	if (cudaIpcCloseMemHandle(s->base) != cudaSuccess)
		cudaGetLastError();
	s->base = NULL;
}

#else

int hs__slab_cuda_open(hs_client *c, struct hs__slab *s)
{
	(void)c;
	return s->map_err = HS_ENOCUDA;
}

void hs__slab_cuda_close(struct hs__slab *s)
{
	s->base = NULL;
}

#endif
