/* Device slabs exported as file descriptors ([pool.cuda] export = vmm):
 * one cuMemCreate allocation each, its size a multiple of the device's
 * allocation granularity, exported once as a POSIX fd
 * (cuMemExportToShareableHandle) and passed with SCM_RIGHTS beside the
 * SlabAnnounce, like a host memfd. Unlike a legacy IPC handle the fd is
 * no bearer token (only a process given it can use it), it works across
 * PID namespaces, and an importer's mapping keeps the memory alive when
 * this process releases its handle or dies. A reader of another uid is
 * told to map it read-only (SlabAnnounce.readonly): the fd itself cannot
 * be narrowed, so that is the client library's doing (docs/security.md).
 *
 * Driver calls come through common/cudrv.c (never libcuda at link time). */
#include "cuda.h"

#include "hs-config.h"
#include "hsbroker/error.h"
#include "log.h"

#if HS_HAVE_CUDA
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "cudrv.h"

struct vmm_slab {
	CUmemGenericAllocationHandle handle;
};

/* Devices already told about (a refusal is logged once per device). */
static bool told_unsupported[HS_CUDA_MAX_DEVICES];

static int vmm_driver(int dev, const struct hs__cudrv **out)
{
	int r = hsd_cuda_use_device(dev);
	if (r < 0)
		return r;
	const struct hs__cudrv *d = hs__cudrv_get();
	int vmm = 0, posix = 0;
	if (d) {
		d->device_get_attribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED,
					dev);
		d->device_get_attribute(&posix,
					CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED,
					dev);
	}
	if (!d || !vmm || !posix) {
		if (!told_unsupported[dev])
			log_error("cuda:%d: [pool.cuda] export = vmm, but %s; device tensors are "
				  "refused with HS_EIPC (export = ipc may work here)", dev,
				  !d ? "the driver's VMM calls cannot be had (driver older than 12.0?)"
				     : !vmm ? "the GPU has no virtual memory management"
					    : "the GPU cannot export memory as a POSIX fd");
		told_unsupported[dev] = true;
		return HS_EIPC;
	}
	*out = d;
	return 0;
}

static void vmm_props(int dev, CUmemAllocationProp *prop)
{
	memset(prop, 0, sizeof(*prop));
	prop->type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop->requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	prop->location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop->location.id = dev;
}

static int vmm_round(DLDevice device, uint64_t *size)
{
	const struct hs__cudrv *d;
	int r = vmm_driver(device.device_id, &d);
	if (r < 0)
		return r;
	CUmemAllocationProp prop;
	vmm_props(device.device_id, &prop);
	size_t g = 0;
	CUresult e = d->mem_granularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	if (e != CUDA_SUCCESS || !g) {
		log_error("cuda:%d: cuMemGetAllocationGranularity: %s", device.device_id,
			  hs__cudrv_error(e));
		return HS_ECUDA;
	}
	if (*size > UINT64_MAX - (g - 1))
		return HS_ENOSPC;
	*size = (*size + g - 1) / g * g;
	return 0;
}

/* A slab is never handed over with bytes in it: the allocation may hold
 * what this process (or another) had there before. Mapped here only for
 * the clearing, then unmapped: the daemon never reads a tensor. */
static int vmm_clear(const struct hs__cudrv *d, struct hsd_slab *s, CUmemGenericAllocationHandle h)
{
	int dev = s->device.device_id;
	CUdeviceptr p = 0;
	CUresult e = d->address_reserve(&p, (size_t)s->size, 0, 0, 0);
	if (e != CUDA_SUCCESS) {
		log_error("cuda:%d: cuMemAddressReserve: %s", dev, hs__cudrv_error(e));
		return HS_ECUDA;
	}
	int r = HS_ECUDA;
	e = d->mem_map(p, (size_t)s->size, 0, h, 0);
	if (e == CUDA_SUCCESS) {
		CUmemAccessDesc a = { .location = { CU_MEM_LOCATION_TYPE_DEVICE, dev },
				      .flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE };
		e = d->mem_set_access(p, (size_t)s->size, &a, 1);
		if (e == CUDA_SUCCESS) {
			cudaError_t ce = cudaMemset((void *)(uintptr_t)p, 0, (size_t)s->size);
			if (ce == cudaSuccess)
				ce = cudaDeviceSynchronize();
			if (ce == cudaSuccess)
				r = 0;
			else {
				cudaGetLastError();
				log_error("cuda:%d: clearing a new slab: %s", dev,
					  cudaGetErrorString(ce));
			}
		} else {
			log_error("cuda:%d: cuMemSetAccess: %s", dev, hs__cudrv_error(e));
		}
		d->mem_unmap(p, (size_t)s->size);
	} else {
		log_error("cuda:%d: cuMemMap: %s", dev, hs__cudrv_error(e));
	}
	d->address_free(p, (size_t)s->size);
	return r;
}

static int vmm_create(struct hsd_slab *s)
{
	int dev = s->device.device_id;
	const struct hs__cudrv *d;
	int r = vmm_driver(dev, &d);
	if (r < 0)
		return r;
	struct vmm_slab *vs = calloc(1, sizeof(*vs));
	if (!vs)
		return HS_ENOMEM;
	CUmemAllocationProp prop;
	vmm_props(dev, &prop);
	CUresult e = d->mem_create(&vs->handle, (size_t)s->size, &prop, 0);
	if (e != CUDA_SUCCESS) {
		log_warn("cuda:%d: cuMemCreate of %llu bytes: %s", dev, (unsigned long long)s->size,
			 hs__cudrv_error(e));
		free(vs);
		return e == CUDA_ERROR_OUT_OF_MEMORY ? HS_ENOSPC : HS_ECUDA;
	}
	r = vmm_clear(d, s, vs->handle);
	int fd = -1;
	if (!r) {
		e = d->mem_export(&fd, vs->handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
		if (e != CUDA_SUCCESS || fd < 0) {
			log_error("cuda:%d: cuMemExportToShareableHandle: %s", dev,
				  hs__cudrv_error(e));
			r = HS_EIPC;
		} else if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
			log_warn("cuda:%d: FD_CLOEXEC on a slab's fd: %s", dev, strerror(errno));
		}
	}
	if (r) {
		d->mem_release(vs->handle);
		free(vs);
		return r;
	}
	s->fd = fd;
	s->priv = vs;
	return 0;
}

/* The memory goes when the last mapping does: clients that still map the
 * slab keep it, so unlike legacy IPC this is safe at any time. */
static void vmm_destroy(struct hsd_slab *s)
{
	struct vmm_slab *vs = s->priv;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	if (!vs)
		return;
	const struct hs__cudrv *d = hs__cudrv_get();
	if (d && hsd_cuda_use_device(s->device.device_id) == 0) {
		CUresult e = d->mem_release(vs->handle);
		if (e != CUDA_SUCCESS)
			log_warn("cuda:%d: cuMemRelease: %s", s->device.device_id,
				 hs__cudrv_error(e));
	}
	free(vs);
	s->priv = NULL;
}

static int vmm_export(struct hsd_slab *s, Hs__SlabAnnounce *ann, bool writable, int *fd)
{
	if (!s->priv || s->fd < 0)
		return HS_ENODEV;
	ann->kind = HS__SLAB_KIND__SLAB_CUDA_VMM;
	ann->fd_index = 0;
	ann->readonly = !writable;
	*fd = s->fd;
	return 0;
}

#else /* !HS_HAVE_CUDA */

static int vmm_round(DLDevice device, uint64_t *size)
{
	(void)device;
	(void)size;
	return HS_ENOCUDA;
}

static int vmm_create(struct hsd_slab *s)
{
	(void)s;
	return HS_ENOCUDA;
}

static void vmm_destroy(struct hsd_slab *s)
{
	(void)s;
}

static int vmm_export(struct hsd_slab *s, Hs__SlabAnnounce *ann, bool writable, int *fd)
{
	(void)s;
	(void)ann;
	(void)writable;
	*fd = -1;
	return HS_ENOCUDA;
}

#endif

const struct hsd_slab_ops hsd_slab_cuda_vmm_ops = {
	.kind = HS__SLAB_KIND__SLAB_CUDA_VMM,
	.name = "cuda-vmm",
	.round_size = vmm_round,
	.create = vmm_create,
	.destroy = vmm_destroy,
	.export_announce = vmm_export,
};
