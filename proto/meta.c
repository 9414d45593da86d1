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

/* The extent in exact arithmetic, every step checked in uint64_t: a
 * producer picks shape, strides, dtype and byte_offset, and consumers
 * read where they say, so no intermediate may wrap at any width. The
 * highest and lowest element offsets are summed separately as
 * magnitudes (the positive and the negative spans), each with a flag for
 * "past 2^64", which settles the outcome without the exact value: a low
 * end past 2^64 elements is below any byte_offset, a high end past it is
 * beyond any block. tests/unit/test_meta.c checks this against a
 * wide-integer reference. */
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

	/* Every dimension is checked before any is used. */
	for (int32_t i = 0; i < ndim; i++)
		if (shape[i] < 0)
			return HS_ESHAPE;
	/* The element count and the bytes it spans fit int64, strides or
	 * not, as DLPack's int64 shapes and every reader's size arithmetic
	 * assume. The count is that of the non-zero dimensions, so that an
	 * empty tensor passes the same test: a reader multiplying its shape
	 * before it meets the zero must not overflow either. */
	bool empty = false;
	uint64_t count = 1, bytes;
	for (int32_t i = 0; i < ndim; i++) {
		if (shape[i] == 0) {
			empty = true;
			continue;
		}
		if (__builtin_mul_overflow(count, (uint64_t)shape[i], &count) ||
		    count > (uint64_t)INT64_MAX)
			return HS_EOVERFLOW;
	}
	if (__builtin_mul_overflow(count, esize, &bytes) || bytes > (uint64_t)INT64_MAX)
		return HS_EOVERFLOW;
	/* Empty: no element, whatever the strides. */
	if (empty) {
		*need = byte_offset;
		return 0;
	}

	/* Highest (hi) and lowest (-lo) element offsets, in elements. */
	uint64_t hi = 0, lo = 0;
	bool hi_past = false, lo_past = false;
	if (!strides) {
		hi = count - 1;
	} else {
		for (int32_t i = 0; i < ndim; i++) {
			uint64_t steps = (uint64_t)shape[i] - 1;
			int64_t st = strides[i];
			/* |INT64_MIN| is 2^63: fine in uint64_t. */
			uint64_t mag = st < 0 ? 0 - (uint64_t)st : (uint64_t)st;
			uint64_t span;
			bool past = __builtin_mul_overflow(steps, mag, &span);
			if (st < 0)
				lo_past |= past || __builtin_add_overflow(lo, span, &lo);
			else
				hi_past |= past || __builtin_add_overflow(hi, span, &hi);
		}
	}
	uint64_t lo_bytes;
	if (lo_past || __builtin_mul_overflow(lo, esize, &lo_bytes) || lo_bytes > byte_offset)
		return HS_ERANGE;
	uint64_t end;
	if (hi_past || __builtin_add_overflow(hi, 1, &end) ||
	    __builtin_mul_overflow(end, esize, &end) ||
	    __builtin_add_overflow(end, byte_offset, &end))
		return HS_EOVERFLOW;
	*need = end;
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
