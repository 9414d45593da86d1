/* Device slabs: one cudaMalloc each, exported once with
 * cudaIpcGetMemHandle; clients open the handle once (their mapping cache)
 * and sub-allocations travel as (slab, offset). Freed only at daemon exit:
 * freeing memory that another process still has open is undefined, and a
 * killed client's mappings go away on the driver's schedule, not ours.
 *
 * The handle is a bearer capability: it is sent only in SlabAnnounce to
 * a session that holds a tensor in the slab, and never logged. */
#include "cuda.h"

#include <string.h>

#include "hs-config.h"
#include "hsbroker/error.h"
#include "log.h"

#if HS_HAVE_CUDA
#include <stdlib.h>

#include <cuda_runtime_api.h>

struct cuda_slab {
	void *base;
	cudaIpcMemHandle_t handle;
};

static int device_count = 0; /* 0: not probed yet */

int hsd_cuda_device_count(void)
{
	if (device_count)
		return device_count;
	int n = 0;
	cudaError_t e = cudaGetDeviceCount(&n);
	if (e != cudaSuccess || n <= 0) {
		/* cudart_static with no driver: cudaErrorInsufficientDriver
		 * (35); a driver without a GPU: cudaErrorNoDevice (100).
		 * Both mean "no GPU here", not a failure of the daemon. */
		if (e != cudaSuccess)
			log_warn("cuda: no usable GPU (cudaGetDeviceCount: %s, error %d); "
				 "device tensors are refused with HS_ENODEV, host tensors work",
				 cudaGetErrorString(e), (int)e);
		else
			log_warn("cuda: no GPU found; device tensors are refused with HS_ENODEV");
		device_count = HS_ENODEV;
		return device_count;
	}
	if (n > HS_CUDA_MAX_DEVICES)
		n = HS_CUDA_MAX_DEVICES;
	int rt = 0, drv = 0;
	cudaRuntimeGetVersion(&rt);
	cudaDriverGetVersion(&drv);
	log_info("cuda: %d GPU(s), runtime %d.%d, driver %d.%d", n, rt / 1000, rt % 1000 / 10,
		 drv / 1000, drv % 1000 / 10);
	device_count = n;
	return n;
}

int hsd_cuda_use_device(int dev)
{
	int n = hsd_cuda_device_count();
	if (n < 0)
		return n;
	if (dev < 0 || dev >= n)
		return HS_ENODEV;
	cudaError_t e = cudaSetDevice(dev);
	if (e != cudaSuccess) {
		log_error("cuda: cudaSetDevice(%d): %s", dev, cudaGetErrorString(e));
		return HS_ECUDA;
	}
	return 0;
}

static int cuda_create(struct hsd_slab *s)
{
	int r = hsd_cuda_use_device(s->device.device_id);
	if (r < 0)
		return r;
	struct cuda_slab *cs = calloc(1, sizeof(*cs));
	if (!cs)
		return HS_ENOMEM;
	cudaError_t e = cudaMalloc(&cs->base, (size_t)s->size);
	if (e != cudaSuccess) {
		cudaGetLastError(); /* not sticky: clear it */
		log_warn("cuda:%d: cudaMalloc of %llu bytes: %s", s->device.device_id,
			 (unsigned long long)s->size, cudaGetErrorString(e));
		free(cs);
		return e == cudaErrorMemoryAllocation ? HS_ENOSPC : HS_ECUDA;
	}
	/* A slab is never handed over with bytes in it: cudaMalloc may
	 * return memory this process used before. */
	e = cudaMemset(cs->base, 0, (size_t)s->size);
	if (e == cudaSuccess)
		e = cudaDeviceSynchronize();
	if (e != cudaSuccess) {
		cudaGetLastError();
		log_error("cuda:%d: clearing a new slab: %s", s->device.device_id,
			  cudaGetErrorString(e));
		cudaFree(cs->base);
		free(cs);
		return HS_ECUDA;
	}
	if ((uintptr_t)cs->base % HS_CUDA_ALIGN) {
		log_error("cuda:%d: cudaMalloc returned a misaligned base", s->device.device_id);
		cudaFree(cs->base);
		free(cs);
		return HS_ECUDA;
	}
	e = cudaIpcGetMemHandle(&cs->handle, cs->base);
	if (e != cudaSuccess) {
		cudaGetLastError();
		/* MIG, WSL2, Tegra and some virtualised GPUs have no legacy
		 * IPC: every device tensor would be useless to other
		 * processes, so say so plainly. */
		log_error("cuda:%d: cudaIpcGetMemHandle: %s (error %d): CUDA IPC is unavailable "
			  "here (MIG, WSL2, Tegra?); device tensors are refused with HS_EIPC",
			  s->device.device_id, cudaGetErrorString(e), (int)e);
		cudaFree(cs->base);
		free(cs);
		return HS_EIPC;
	}
	s->priv = cs;
	return 0;
}

static void cuda_destroy(struct hsd_slab *s)
{
	struct cuda_slab *cs = s->priv;
	if (!cs)
		return;
	if (hsd_cuda_use_device(s->device.device_id) == 0) {
		cudaError_t e = cudaFree(cs->base);
		if (e != cudaSuccess)
			log_warn("cuda:%d: cudaFree: %s", s->device.device_id,
				 cudaGetErrorString(e));
	}
	free(cs);
	s->priv = NULL;
}

/* writable is not honoured: a legacy IPC handle opens read-write for
 * whoever holds it (docs/security.md). */
static int cuda_export(struct hsd_slab *s, Hs__SlabAnnounce *ann, bool writable, int *fd)
{
	(void)writable;
	struct cuda_slab *cs = s->priv;
	if (!cs)
		return HS_ENODEV;
	ann->kind = HS__SLAB_KIND__SLAB_CUDA_IPC;
	ann->ipc_handle.data = (uint8_t *)&cs->handle;
	ann->ipc_handle.len = sizeof(cs->handle);
	*fd = -1;
	return 0;
}

#else /* !HS_HAVE_CUDA */

int hsd_cuda_device_count(void)
{
	return HS_ENOCUDA;
}

int hsd_cuda_use_device(int dev)
{
	(void)dev;
	return HS_ENOCUDA;
}

static int cuda_create(struct hsd_slab *s)
{
	(void)s;
	return HS_ENOCUDA;
}

static void cuda_destroy(struct hsd_slab *s)
{
	(void)s;
}

static int cuda_export(struct hsd_slab *s, Hs__SlabAnnounce *ann, bool writable, int *fd)
{
	(void)s;
	(void)writable;
	(void)ann;
	*fd = -1;
	return HS_ENOCUDA;
}

#endif

const struct hsd_slab_ops hsd_slab_cuda_ops = {
	.kind = HS__SLAB_KIND__SLAB_CUDA_IPC,
	.name = "cuda-ipc",
	.create = cuda_create,
	.destroy = cuda_destroy,
	.export_announce = cuda_export,
};
