/* hs_tensor_copy_from: a strided copy into a broker tensor. Built from the
 * public accessors only, so it knows nothing of the client's insides. */
#include <stdbool.h>
#include <string.h>

#include "hsbroker/copy.h"
#include "copy-cuda.h"

/* Element offsets of every innermost run, walked like an odometer; the
 * innermost dimension is copied as one run where both sides are dense
 * along it. */
struct walker {
	int ndim;
	const int64_t *shape;
	int64_t idx[HS_MAX_NDIM];
};

static void compact_strides(int ndim, const int64_t *shape, int64_t *out)
{
	int64_t s = 1;
	for (int i = ndim - 1; i >= 0; i--) {
		out[i] = s;
		s *= shape[i];
	}
}

static void copy_host(uint8_t *dst, const int64_t *dst_st, const uint8_t *src,
		      const int64_t *src_st, int ndim, const int64_t *shape, size_t esize)
{
	if (ndim == 0) {
		memcpy(dst, src, esize);
		return;
	}
	int64_t inner = shape[ndim - 1];
	bool dense = dst_st[ndim - 1] == 1 && src_st[ndim - 1] == 1;
	int64_t idx[HS_MAX_NDIM] = { 0 };
	for (;;) {
		int64_t doff = 0, soff = 0;
		for (int i = 0; i < ndim - 1; i++) {
			doff += idx[i] * dst_st[i];
			soff += idx[i] * src_st[i];
		}
		if (dense) {
			memcpy(dst + doff * (int64_t)esize, src + soff * (int64_t)esize,
			       (size_t)inner * esize);
		} else {
			for (int64_t k = 0; k < inner; k++)
				memcpy(dst + (doff + k * dst_st[ndim - 1]) * (int64_t)esize,
				       src + (soff + k * src_st[ndim - 1]) * (int64_t)esize, esize);
		}
		int d = ndim - 2;
		while (d >= 0 && ++idx[d] == shape[d])
			idx[d--] = 0;
		if (d < 0)
			return;
	}
}

int hs_tensor_copy_from(hs_tensor *dst, const DLTensor *src, void *stream)
{
	if (!dst || !src || (!src->data && src->ndim > 0))
		return HS_EINVAL;
	const DLTensor *d = hs_tensor_dltensor(dst);
	if (d->ndim != src->ndim || d->dtype.code != src->dtype.code ||
	    d->dtype.bits != src->dtype.bits || d->dtype.lanes != src->dtype.lanes)
		return HS_EINVAL;
	for (int i = 0; i < d->ndim; i++)
		if (d->shape[i] != src->shape[i])
			return HS_EINVAL;
	for (int i = 0; i < d->ndim; i++)
		if (d->shape[i] == 0)
			return 0;

	int64_t dst_st[HS_MAX_NDIM], src_st[HS_MAX_NDIM];
	if (d->strides)
		memcpy(dst_st, d->strides, sizeof(int64_t) * (size_t)d->ndim);
	else
		compact_strides(d->ndim, d->shape, dst_st);
	if (src->strides)
		memcpy(src_st, src->strides, sizeof(int64_t) * (size_t)src->ndim);
	else
		compact_strides(src->ndim, src->shape, src_st);
	size_t esize = (size_t)d->dtype.bits / 8 * d->dtype.lanes;
	uint8_t *dp = (uint8_t *)d->data + d->byte_offset;
	const uint8_t *sp = (const uint8_t *)src->data + src->byte_offset;

	bool dst_host = d->device.device_type == kDLCPU;
	bool src_host = src->device.device_type == kDLCPU ||
			src->device.device_type == kDLCUDAHost;
	if (dst_host && src_host) {
		copy_host(dp, dst_st, sp, src_st, d->ndim, d->shape, esize);
		return 0;
	}
	if (d->device.device_type == kDLCUDA && src->device.device_type == kDLCUDA) {
		if (stream == HS_STREAM_DONE)
			return HS_EINVAL; /* a copy needs a stream to go on */
		return hs__copy_cuda(dp, dst_st, sp, src_st, d->ndim, d->shape, esize,
				     src->device.device_id, d->device.device_id, stream);
	}
	return HS_ENOTSUP;
}
