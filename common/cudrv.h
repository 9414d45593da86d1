/* The CUDA driver calls hsbroker needs (VMM: cuMemCreate and friends),
 * fetched at run time through the runtime's cudaGetDriverEntryPoint-
 * ByVersion. Nothing links libcuda: a binary built with CUDA still starts
 * where no driver is, and these calls then answer "not available".
 * Compiled into the daemon, the client library and the GPU tests; only
 * in builds with CUDA (HS_HAVE_CUDA). Thread-safe: loaded once. */
#ifndef HS_COMMON_CUDRV_H
#define HS_COMMON_CUDRV_H

#include <cuda.h>

struct hs__cudrv {
	CUresult (*get_error_string)(CUresult e, const char **s);
	/* dev: the ordinal, as the runtime numbers devices in this process */
	CUresult (*device_get_attribute)(int *v, CUdevice_attribute attr, CUdevice dev);
	CUresult (*mem_create)(CUmemGenericAllocationHandle *h, size_t size,
			       const CUmemAllocationProp *prop, unsigned long long flags);
	CUresult (*mem_release)(CUmemGenericAllocationHandle h);
	CUresult (*mem_export)(void *shareable, CUmemGenericAllocationHandle h,
			       CUmemAllocationHandleType type, unsigned long long flags);
	CUresult (*mem_import)(CUmemGenericAllocationHandle *h, void *os_handle,
			       CUmemAllocationHandleType type);
	CUresult (*mem_get_props)(CUmemAllocationProp *prop, CUmemGenericAllocationHandle h);
	CUresult (*mem_granularity)(size_t *g, const CUmemAllocationProp *prop,
				    CUmemAllocationGranularity_flags option);
	CUresult (*address_reserve)(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr,
				    unsigned long long flags);
	CUresult (*address_free)(CUdeviceptr p, size_t size);
	CUresult (*mem_map)(CUdeviceptr p, size_t size, size_t offset,
			    CUmemGenericAllocationHandle h, unsigned long long flags);
	CUresult (*mem_unmap)(CUdeviceptr p, size_t size);
	CUresult (*mem_set_access)(CUdeviceptr p, size_t size, const CUmemAccessDesc *desc,
				   size_t count);
	CUresult (*mem_get_access)(unsigned long long *flags, const CUmemLocation *loc,
				   CUdeviceptr p);
};

/* The driver's VMM calls, or NULL when one of them cannot be had (no
 * driver, a driver too old): loaded at the first call, then cached. */
const struct hs__cudrv *hs__cudrv_get(void);

/* A driver error, described for logs and messages. */
const char *hs__cudrv_error(CUresult e);

#endif
