/* VMM device slabs in the mapping cache ([pool.cuda] export = vmm in the
 * daemon): the slab comes as a POSIX fd beside its SlabAnnounce, kept
 * until the first tensor in it, then imported
 * (cuMemImportFromShareableHandle), mapped into reserved address space
 * and made accessible to the slab's GPU and to every GPU of this process
 * that can reach it as a peer. Read-only (CU_MEM_ACCESS_FLAGS_PROT_READ)
 * for a slab of another uid where the driver allows it, else read-write
 * with the slab still marked read-only (hs_tensor_writable says 0).
 *
 * Like legacy imports (slab_cuda.c), one import per slab per process,
 * shared by the clients of this process that see the slab and unmapped
 * when the last one lets go. The key is (epoch, slab id): ids are unique
 * within a daemon's epoch, and epochs are random per daemon start. The
 * mapping holds the memory, so tensors stay readable after the daemon
 * dies, until this process disconnects (docs/gpu.md). */
#include "hs-config.h"
#include "internal.h"

#include <stdio.h>
#include <unistd.h>

#if HS_HAVE_CUDA
#include <pthread.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "cudrv.h"

/* Most GPUs of this process given access to one slab. */
#define HS_MAX_VMM_DEVICES 64

struct vmm_import {
	uint64_t epoch, id;
	CUdeviceptr p;
	size_t size;       /* mapped and reserved, a multiple of the granularity */
	unsigned refs;
	struct vmm_import *next;
};
/* A leaf lock, held across the driver calls of an import. */
static pthread_mutex_t vmm_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vmm_import *vmm_imports;

static struct vmm_import **vmm_find(uint64_t epoch, uint64_t id)
{
	struct vmm_import **pp = &vmm_imports;
	while (*pp && ((*pp)->epoch != epoch || (*pp)->id != id))
		pp = &(*pp)->next;
	return pp;
}

static void vmm_debug(const struct hs__slab *s, const char *what, CUresult e)
{
	if (hs__wire_debug_enabled())
		fprintf(stderr, "[hs client %d] %s (VMM slab %llu on cuda:%d): %s\n", (int)getpid(),
			what, (unsigned long long)s->id, s->device.device_id, hs__cudrv_error(e));
}

/* Grants every GPU of this process that can reach the memory (on local
 * GPU dev) the access prot; 0 or the driver's error. */
static CUresult vmm_grant(const struct hs__cudrv *d, CUdeviceptr p, size_t size, int dev, int n,
			  CUmemAccess_flags prot)
{
	CUmemAccessDesc desc[HS_MAX_VMM_DEVICES];
	size_t k = 0;
	for (int i = 0; i < n && k < HS_MAX_VMM_DEVICES; i++) {
		int peer = i == dev;
		if (!peer && cudaDeviceCanAccessPeer(&peer, i, dev) != cudaSuccess) {
			cudaGetLastError();
			peer = 0;
		}
		if (peer)
			desc[k++] = (CUmemAccessDesc){ .location = { CU_MEM_LOCATION_TYPE_DEVICE, i },
						       .flags = prot };
	}
	return d->mem_set_access(p, size, desc, k);
}

/* The first import of s in this process (vmm_lock held): 0 with *out. */
static int vmm_import(const struct hs__cudrv *d, struct hs__slab *s, int n,
		      struct vmm_import **out)
{
	/* The driver calls below want a current context: the runtime's
	 * primary one of the calling thread's device, as for legacy IPC. */
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess || cudaSetDevice(cur) != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	CUmemGenericAllocationHandle h;
	CUresult e = d->mem_import(&h, (void *)(uintptr_t)s->vmm_fd,
				   CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	if (e != CUDA_SUCCESS) {
		vmm_debug(s, "cuMemImportFromShareableHandle", e);
		return HS_EIPC;
	}
	/* Where the memory is, in this process's numbering of its GPUs
	 * (CUDA_VISIBLE_DEVICES may differ from the daemon's), and the size
	 * to map: the announced one, rounded as the daemon made it. */
	CUmemAllocationProp prop = { 0 };
	size_t g = 0;
	e = d->mem_get_props(&prop, h);
	if (e == CUDA_SUCCESS)
		e = d->mem_granularity(&g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	int dev = prop.location.id;
	if (e != CUDA_SUCCESS || !g || prop.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    dev < 0 || dev >= n || s->size > SIZE_MAX - (g - 1)) {
		vmm_debug(s, "properties of an imported allocation", e);
		d->mem_release(h);
		return HS_EIPC;
	}
	size_t size = ((size_t)s->size + g - 1) / g * g;
	CUdeviceptr p = 0;
	e = d->address_reserve(&p, size, 0, 0, 0);
	if (e != CUDA_SUCCESS) {
		vmm_debug(s, "cuMemAddressReserve", e);
		d->mem_release(h);
		return e == CUDA_ERROR_OUT_OF_MEMORY ? HS_ENOMEM : HS_EIPC;
	}
	/* A larger size than the allocation (a peer that lied) fails here. */
	e = d->mem_map(p, size, 0, h, 0);
	/* The mapping holds the memory from now on. */
	d->mem_release(h);
	if (e != CUDA_SUCCESS) {
		vmm_debug(s, "cuMemMap", e);
		d->address_free(p, size);
		return HS_EIPC;
	}
	e = CUDA_ERROR_NOT_SUPPORTED;
	if (s->readonly) {
		e = vmm_grant(d, p, size, dev, n, CU_MEM_ACCESS_FLAGS_PROT_READ);
		if (e != CUDA_SUCCESS)
			vmm_debug(s, "read-only access refused, mapping read-write", e);
	}
	if (e != CUDA_SUCCESS)
		e = vmm_grant(d, p, size, dev, n, CU_MEM_ACCESS_FLAGS_PROT_READWRITE);
	if (e != CUDA_SUCCESS) {
		vmm_debug(s, "cuMemSetAccess", e);
		d->mem_unmap(p, size);
		d->address_free(p, size);
		return HS_EIPC;
	}
	struct vmm_import *imp = calloc(1, sizeof(*imp));
	if (!imp) {
		d->mem_unmap(p, size);
		d->address_free(p, size);
		return HS_ENOMEM;
	}
	*imp = (struct vmm_import){ .epoch = s->epoch, .id = s->id, .p = p, .size = size,
				    .refs = 0, .next = vmm_imports };
	vmm_imports = imp;
	*out = imp;
	return 0;
}

int hs__slab_vmm_open(struct hs__slab *s, int n)
{
	const struct hs__cudrv *d = hs__cudrv_get();
	if (!d)
		return s->map_err = HS_ENODEV;
	if (s->vmm_fd < 0)
		return s->map_err = HS_EPROTO;
	pthread_mutex_lock(&vmm_lock);
	struct vmm_import *imp = *vmm_find(s->epoch, s->id);
	int err = imp ? 0 : vmm_import(d, s, n, &imp);
	if (!err) {
		imp->refs++;
		s->base = (void *)(uintptr_t)imp->p;
	}
	pthread_mutex_unlock(&vmm_lock);
	/* Imported (or another client of this process had it): the fd has
	 * no further use. A failure is sticky, so it goes too. */
	close(s->vmm_fd);
	s->vmm_fd = -1;
	if (err)
		return s->map_err = err;
	return 0;
}

void hs__slab_vmm_close(struct hs__slab *s)
{
	pthread_mutex_lock(&vmm_lock);
	struct vmm_import **pp = vmm_find(s->epoch, s->id);
	struct vmm_import *i = *pp;
	if (i && --i->refs == 0) {
		*pp = i->next;
		const struct hs__cudrv *d = hs__cudrv_get();
		if (d) {
			d->mem_unmap(i->p, i->size);
			d->address_free(i->p, i->size);
		}
		free(i);
	}
	pthread_mutex_unlock(&vmm_lock);
	s->base = NULL;
}

#else

int hs__slab_vmm_open(struct hs__slab *s, int n)
{
	(void)n;
	return s->map_err = HS_ENOCUDA;
}

void hs__slab_vmm_close(struct hs__slab *s)
{
	s->base = NULL;
}

#endif
