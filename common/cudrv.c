/* Driver entry points at run time (cudrv.h). The version asked for is the
 * one whose signatures cudrv.h declares: the VMM calls have kept theirs
 * since CUDA 10.2, and 12.0 is the oldest driver this project supports. */
#include "cudrv.h"

#include <pthread.h>
#include <stddef.h>

#include <cuda_runtime_api.h>

#define CUDRV_VERSION 12000

static struct hs__cudrv drv;
static const struct hs__cudrv *loaded;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int fetch(const char *name, void **fn)
{
	enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
	cudaError_t e = cudaGetDriverEntryPointByVersion(name, fn, CUDRV_VERSION,
							 cudaEnableDefault, &q);
	if (e != cudaSuccess || q != cudaDriverEntryPointSuccess || !*fn) {
		cudaGetLastError(); /* not sticky: clear it */
		*fn = NULL;
		return -1;
	}
	return 0;
}

static void load(void)
{
	struct {
		const char *name;
		void **fn;
	} t[] = {
		{ "cuGetErrorString", (void **)&drv.get_error_string },
		{ "cuDeviceGetAttribute", (void **)&drv.device_get_attribute },
		{ "cuMemCreate", (void **)&drv.mem_create },
		{ "cuMemRelease", (void **)&drv.mem_release },
		{ "cuMemExportToShareableHandle", (void **)&drv.mem_export },
		{ "cuMemImportFromShareableHandle", (void **)&drv.mem_import },
		{ "cuMemGetAllocationPropertiesFromHandle", (void **)&drv.mem_get_props },
		{ "cuMemGetAllocationGranularity", (void **)&drv.mem_granularity },
		{ "cuMemAddressReserve", (void **)&drv.address_reserve },
		{ "cuMemAddressFree", (void **)&drv.address_free },
		{ "cuMemMap", (void **)&drv.mem_map },
		{ "cuMemUnmap", (void **)&drv.mem_unmap },
		{ "cuMemSetAccess", (void **)&drv.mem_set_access },
		{ "cuMemGetAccess", (void **)&drv.mem_get_access },
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (fetch(t[i].name, t[i].fn) < 0)
			return;
	loaded = &drv;
}

const struct hs__cudrv *hs__cudrv_get(void)
{
	pthread_once(&once, load);
	return loaded;
}

const char *hs__cudrv_error(CUresult e)
{
	const char *s = NULL;
	const struct hs__cudrv *d = hs__cudrv_get();
	if (d && d->get_error_string(e, &s) == CUDA_SUCCESS && s)
		return s;
	return "unknown CUDA driver error";
}
