/* Device tensors when UCX cannot touch device memory (Debian's UCX 1.13
 * has no CUDA transports): the block is copied through pinned host
 * buffers, kept and reused so that no cudaHostAlloc (milliseconds) sits on
 * the per-tensor path. Built without CUDA, every call fails with
 * HS_ENOCUDA and the bridge drops device tensors with a log line. */
#include <stdlib.h>

#include "hs-config.h"
#include "hsb.h"

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>

struct buf {
	struct buf *next;
	void *p;
	uint64_t size;
	bool busy;
};
static struct buf *bufs;

void *hsb_stage_get(uint64_t n)
{
	for (struct buf *b = bufs; b; b = b->next)
		if (!b->busy && b->size >= n) {
			b->busy = true;
			return b->p;
		}
	struct buf *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	if (cudaHostAlloc(&b->p, n ? n : 1, cudaHostAllocDefault) != cudaSuccess) {
		free(b);
		return NULL;
	}
	b->size = n;
	b->busy = true;
	b->next = bufs;
	bufs = b;
	return b->p;
}

void hsb_stage_put(void *p)
{
	for (struct buf *b = bufs; b; b = b->next)
		if (b->p == p)
			b->busy = false;
}

int hsb_stage_from_device(void *host, const void *dev, uint64_t n)
{
	return cudaMemcpy(host, dev, n, cudaMemcpyDeviceToHost) == cudaSuccess ? 0 : HS_ECUDA;
}

int hsb_stage_to_device(void *dev, const void *host, uint64_t n)
{
	return cudaMemcpy(dev, host, n, cudaMemcpyHostToDevice) == cudaSuccess ? 0 : HS_ECUDA;
}

void hsb_stage_free_all(void)
{
	while (bufs) {
		struct buf *b = bufs;
		bufs = b->next;
		cudaFreeHost(b->p);
		free(b);
	}
}
#else
void *hsb_stage_get(uint64_t n)
{
	return NULL;
}

void hsb_stage_put(void *p)
{
}

int hsb_stage_from_device(void *host, const void *dev, uint64_t n)
{
	return HS_ENOCUDA;
}

int hsb_stage_to_device(void *dev, const void *host, uint64_t n)
{
	return HS_ENOCUDA;
}

void hsb_stage_free_all(void)
{
}
#endif
