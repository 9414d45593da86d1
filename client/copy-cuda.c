/* Strided device copies as cudaMemcpy2DAsync calls: one per outer index,
 * each moving the two innermost dimensions; the GPU does the work on the
 * caller's stream and nothing touches the host. */
#include "hs-config.h"
#include "hsbroker/error.h"
#include "copy-cuda.h"

#include <stdbool.h>

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>

int hs__copy_cuda(uint8_t *dst, const int64_t *dst_st, const uint8_t *src,
		  const int64_t *src_st, int ndim, const int64_t *shape, size_t esize,
		  int src_dev, int dst_dev, void *stream)
{
	(void)src_dev;
	for (int i = 0; i < ndim; i++)
		if (dst_st[i] < 0 || src_st[i] < 0)
			return HS_ENOTSUP;
	int cur;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	if (cur != dst_dev && cudaSetDevice(dst_dev) != cudaSuccess) {
		cudaGetLastError();
		return HS_ENODEV;
	}

	/* Rows: the innermost dimension, dense (one run) or strided (one
	 * element per row of a pitched copy). */
	int64_t inner = ndim ? shape[ndim - 1] : 1;
	bool dense = ndim == 0 || (dst_st[ndim - 1] == 1 && src_st[ndim - 1] == 1);
	size_t width, height;
	size_t dpitch, spitch;
	int outer_dims;
	if (dense) {
		width = (size_t)inner * esize;
		height = ndim >= 2 ? (size_t)shape[ndim - 2] : 1;
		dpitch = ndim >= 2 ? (size_t)dst_st[ndim - 2] * esize : width;
		spitch = ndim >= 2 ? (size_t)src_st[ndim - 2] * esize : width;
		outer_dims = ndim >= 2 ? ndim - 2 : 0;
	} else {
		width = esize;
		height = (size_t)inner;
		dpitch = (size_t)dst_st[ndim - 1] * esize;
		spitch = (size_t)src_st[ndim - 1] * esize;
		outer_dims = ndim - 1;
	}
	if (height <= 1) {
		dpitch = spitch = width;
	}
	if (dpitch < width || spitch < width) {
		if (cur != dst_dev)
			cudaSetDevice(cur);
		return HS_ENOTSUP; /* overlapping rows: not a copyable view */
	}
	int64_t idx[32] = { 0 };
	int rc = 0;
	for (;;) {
		int64_t doff = 0, soff = 0;
		for (int i = 0; i < outer_dims; i++) {
			doff += idx[i] * dst_st[i];
			soff += idx[i] * src_st[i];
		}
		cudaError_t e = cudaMemcpy2DAsync(dst + doff * (int64_t)esize, dpitch,
						  src + soff * (int64_t)esize, spitch, width,
						  height, cudaMemcpyDefault,
						  (cudaStream_t)stream);
		if (e != cudaSuccess) {
			cudaGetLastError();
			rc = HS_ECUDA;
			break;
		}
		int d = outer_dims - 1;
		while (d >= 0 && ++idx[d] == shape[d])
			idx[d--] = 0;
		if (d < 0)
			break;
	}
	if (cur != dst_dev)
		cudaSetDevice(cur);
	return rc;
}

#else

int hs__copy_cuda(uint8_t *dst, const int64_t *dst_st, const uint8_t *src,
		  const int64_t *src_st, int ndim, const int64_t *shape, size_t esize,
		  int src_dev, int dst_dev, void *stream)
{
	return HS_ENOCUDA;
}

#endif
