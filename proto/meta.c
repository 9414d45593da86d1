/* DLPack metadata checks. Both sides run them: the client to fail early
 * with a precise code, the daemon because nothing from a peer is trusted. */
#include <string.h>

#include "hsbroker/error.h"
#include "wire.h"

#ifndef kDLBool_
#define kDLBool_ 6 /* DLPack >= 0.8; the 0.6 header lacks it */
#endif

uint64_t hs__dtype_size(DLDataType t)
{
	unsigned bits = t.bits;
	bool ok;
	switch (t.code) {
	case kDLInt:
	case kDLUInt:
		ok = bits == 8 || bits == 16 || bits == 32 || bits == 64;
		break;
	case kDLFloat:
		ok = bits == 16 || bits == 32 || bits == 64;
		break;
	case kDLBfloat:
		ok = bits == 16;
		break;
	case kDLComplex:
		ok = bits == 64 || bits == 128;
		break;
	case kDLBool_:
		ok = bits == 8;
		break;
	default:
		ok = false;
	}
	if (!ok || t.lanes < 1 || t.lanes > 64)
		return 0;
	return (uint64_t)bits / 8 * t.lanes;
}

static bool device_ok(DLDevice d)
{
	return (d.device_type == kDLCPU && d.device_id == 0) ||
	       (d.device_type == kDLCUDA && d.device_id >= 0 && d.device_id < 1024);
}

int hs__meta_extent(DLDevice device, DLDataType dtype, int32_t ndim,
		    const int64_t *shape, const int64_t *strides,
		    uint64_t byte_offset, uint64_t *need)
{
	if (!device_ok(device))
		return HS_EINVAL;
	uint64_t esize = hs__dtype_size(dtype);
	if (esize == 0)
		return HS_EDTYPE;
	if (ndim < 0 || ndim > HS__MAX_NDIM)
		return HS_ENDIM;
	if (ndim > 0 && !shape)
		return HS_EINVAL;

	/* Element count first: any zero dimension means an empty tensor,
	 * whose strides do not matter. */
	uint64_t count = 1;
	bool empty = false;
	for (int32_t i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return HS_ESHAPE;
		if (shape[i] == 0)
			empty = true;
		else if (__builtin_mul_overflow(count, (uint64_t)shape[i], &count))
			return HS_EOVERFLOW;
	}
	if (empty) {
		*need = byte_offset;
		return 0;
	}

	/* Highest and lowest element offsets reached, in elements. */
	__int128 hi = 0, lo = 0;
	if (!strides) {
		hi = (__int128)count - 1;
	} else {
		for (int32_t i = 0; i < ndim; i++) {
			__int128 span = (__int128)(shape[i] - 1) * strides[i];
			if (span > 0)
				hi += span;
			else
				lo += span;
		}
	}
	__int128 lo_bytes = (__int128)byte_offset + lo * (__int128)esize;
	if (lo_bytes < 0)
		return HS_ERANGE;
	__int128 end = (__int128)byte_offset + (hi + 1) * (__int128)esize;
	if (end > (__int128)UINT64_MAX)
		return HS_EOVERFLOW;
	*need = (uint64_t)end;
	return 0;
}

int hs__meta_extent_pb(const Hs__Meta *m, uint64_t *need)
{
	if (!m || !m->device || !m->dtype)
		return HS_EINVAL;
	if (m->n_shape > HS__MAX_NDIM)
		return HS_ENDIM;
	if (m->n_strides != 0 && m->n_strides != m->n_shape)
		return HS_EINVAL;
	if (m->dtype->bits > 255 || m->dtype->code > 255 || m->dtype->lanes > 65535)
		return HS_EDTYPE;
	DLDevice dev = { .device_type = (DLDeviceType)m->device->type,
			 .device_id = m->device->id };
	DLDataType dt = { .code = (uint8_t)m->dtype->code,
			  .bits = (uint8_t)m->dtype->bits,
			  .lanes = (uint16_t)m->dtype->lanes };
	return hs__meta_extent(dev, dt, (int32_t)m->n_shape, m->shape,
			       m->n_strides ? m->strides : NULL, m->byte_offset, need);
}

int hs__topic_check(const char *topic)
{
	if (!topic || !*topic)
		return HS_ETOPIC;
	size_t n = strnlen(topic, HS__MAX_TOPIC + 1);
	if (n > HS__MAX_TOPIC)
		return HS_ENAMETOOLONG;
	for (size_t i = 0; i < n; i++) {
		char c = topic[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' ||
			  c == '/' || c == ':' || c == '-';
		if (!ok)
			return HS_ETOPIC;
	}
	return 0;
}
