/* Copying a foreign tensor into broker memory: what emitting an array that
 * does not already live in the broker costs (one copy, never through the
 * host for GPU data). */
#ifndef HSBROKER_COPY_H
#define HSBROKER_COPY_H

#include <dlpack/dlpack.h>

#include "hsbroker/client.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Copies src into dst element by element. dtype and shape must match
 * (HS_EINVAL), and the devices must be of one kind: host to host (now), or
 * CUDA to CUDA (cudaMemcpy*Async on stream, device to device; the caller
 * emits on the same stream). stream: a cudaStream_t, NULL the legacy
 * default stream (client.h); HS_STREAM_DONE is no stream to copy on
 * (HS_EINVAL). src->strides may be NULL (compact); src->data
 * + src->byte_offset is element 0. Returns 0 or a negative hs code
 * (HS_ENOTSUP for host <-> device). */
HS_EXPORT int hs_tensor_copy_from(hs_tensor *dst, const DLTensor *src, void *stream);

#ifdef __cplusplus
}
#endif
#endif
