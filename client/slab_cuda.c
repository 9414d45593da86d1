/* Device slabs in the mapping cache: each opened with cudaIpcOpenMemHandle
 * at the first tensor that lives in it, and closed at disconnect. CUDA
 * imports a handle once per process, not per client: several clients of
 * one process (threads with a client each) share the import, counted
 * below, and this is the only place that opens or closes one. VMM slabs
 * (slab_vmm.c) come through here too and keep their own table. */
#include "hs-config.h"
#include "internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The handles this process imported, with the clients using each. Two
 * clients opening one handle at once, or one after the other, would
 * otherwise get an error for the second open (seen with three clients in
 * one process on the H200). imports_lock is a leaf: held across the
 * CUDA open, never while taking another lock. */
struct import {
	uint8_t handle[64];
	void *p;
	unsigned refs;
	struct import *next;
};
static pthread_mutex_t imports_lock = PTHREAD_MUTEX_INITIALIZER;
static struct import *imports;

static struct import *import_find(const uint8_t *handle)
{
	for (struct import *i = imports; i; i = i->next)
		if (memcmp(i->handle, handle, sizeof(i->handle)) == 0)
			return i;
	return NULL;
}

static int slab_import(struct hs__slab *s, int n);

int hs__slab_cuda_open(hs_client *c, struct hs__slab *s)
{
	int n = device_count();
	if (n < 0)
		return s->map_err = n;
	if (s->kind == HS__SLAB_KIND__SLAB_CUDA_VMM) {
		int err = hs__slab_vmm_open(s, n);
		if (err)
			return err;
		c->stats.slab_opens++;
		c->stats.slabs_mapped++;
		return 0;
	}
	pthread_mutex_lock(&imports_lock);
	struct import *i = import_find(s->ipc_handle);
	int err = 0;
	if (i) {
		i->refs++;
		s->base = i->p;
	} else {
		err = slab_import(s, n);
	}
	pthread_mutex_unlock(&imports_lock);
	if (err)
		return err;
	c->stats.slab_opens++;
	c->stats.slabs_mapped++;
	return 0;
}

/* The first open of s's handle in this process (imports_lock held). */
static int slab_import(struct hs__slab *s, int n)
{
	struct import *imp = calloc(1, sizeof(*imp));
	if (!imp)
		return s->map_err = HS_ENOMEM;
	/* Opened on the calling thread's current device, with lazy peer
	 * access: a consumer working on another GPU of the host then reads
	 * the slab from its own GPU (cudaIpcMemLazyEnablePeerAccess). When
	 * that fails (no peer path between the two), on the slab's own GPU,
	 * if this process sees it (CUDA_VISIBLE_DEVICES may renumber). */
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		free(imp);
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
		free(imp);
		return s->map_err = e == cudaErrorMemoryAllocation ? HS_ENOMEM : HS_EIPC;
	}
	memcpy(imp->handle, s->ipc_handle, sizeof(imp->handle));
	imp->p = p;
	imp->refs = 1;
	imp->next = imports;
	imports = imp;
	s->base = p;
	return 0;
}

void hs__slab_cuda_close(struct hs__slab *s)
{
	if (!s->base)
		return;
	if (s->kind == HS__SLAB_KIND__SLAB_CUDA_VMM) {
		hs__slab_vmm_close(s);
		return;
	}
	pthread_mutex_lock(&imports_lock);
	struct import **pp = &imports;
	while (*pp && memcmp((*pp)->handle, s->ipc_handle, sizeof((*pp)->handle)) != 0)
		pp = &(*pp)->next;
	struct import *i = *pp;
	if (i && --i->refs == 0) {
		*pp = i->next;
		if (cudaIpcCloseMemHandle(i->p) != cudaSuccess)
			cudaGetLastError();
		free(i);
	}
	pthread_mutex_unlock(&imports_lock);
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
