/* Device-to-device strided copy behind hs_tensor_copy_from. */
#ifndef HS_CLIENT_COPY_CUDA_H
#define HS_CLIENT_COPY_CUDA_H

#include <stddef.h>
#include <stdint.h>

int hs__copy_cuda(uint8_t *dst, const int64_t *dst_st, const uint8_t *src,
		  const int64_t *src_st, int ndim, const int64_t *shape, size_t esize,
		  int src_dev, int dst_dev, void *stream);

#endif
