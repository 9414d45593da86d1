/* Device tensors when UCX cannot touch device memory (Debian's UCX 1.13
 * has no CUDA transports): the block is copied through pinned host
 * buffers, kept and reused so that no cudaHostAlloc (milliseconds) sits on
 * the per-tensor path. Copies run on the bridge's own stream, in order,
 * and never block the loop: a host function queued after each copy marks
 * it done and writes an eventfd the loop polls, so the copy of one tensor
 * overlaps the network transfer of the one before. Built without CUDA,
 * every call fails with HS_ENOCUDA and the bridge drops device tensors
 * with a log line.
 *
 * Not yet run on a GPU (the CI machine has none). */
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

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
static cudaStream_t stream;
static int wake_fd = -1;

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

static int ready(void)
{
	if (wake_fd < 0 && (wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
		return HS_EIO;
	if (!stream && cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess)
		return HS_ECUDA;
	return 0;
}

int hsb_stage_fd(void)
{
	return wake_fd;
}

void *hsb_stage_stream(void)
{
	return ready() < 0 ? NULL : stream;
}

/* Runs on a CUDA thread once the copy before it is done: no CUDA call
 * here, only the flag and the kick. */
static void CUDART_CB copied(void *arg)
{
	atomic_store_explicit((atomic_bool *)arg, true, memory_order_release);
	uint64_t one = 1;
	(void)!write(wake_fd, &one, sizeof(one));
}

int hsb_stage_copy(void *dst, const void *src, uint64_t n, bool to_device, atomic_bool *done)
{
	int err = ready();
	if (err < 0)
		return err;
	atomic_store(done, false);
	if (cudaMemcpyAsync(dst, src, n, to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToHost,
			    stream) != cudaSuccess ||
	    cudaLaunchHostFunc(stream, copied, done) != cudaSuccess)
		return HS_ECUDA;
	return 0;
}

void hsb_stage_drain(void)
{
	uint64_t v;
	if (wake_fd >= 0)
		(void)!read(wake_fd, &v, sizeof(v));
}

void hsb_stage_free_all(void)
{
	if (stream) { /* no host function may still point at our items */
		cudaStreamSynchronize(stream);
		cudaStreamDestroy(stream);
		stream = NULL;
	}
	while (bufs) {
		struct buf *b = bufs;
		bufs = b->next;
		cudaFreeHost(b->p);
		free(b);
	}
	if (wake_fd >= 0)
		close(wake_fd);
	wake_fd = -1;
}
#else
void *hsb_stage_get(uint64_t n)
{
	return NULL;
}

void hsb_stage_put(void *p)
{
}

int hsb_stage_fd(void)
{
	return -1;
}

void *hsb_stage_stream(void)
{
	return NULL;
}

int hsb_stage_copy(void *dst, const void *src, uint64_t n, bool to_device, atomic_bool *done)
{
	return HS_ENOCUDA;
}

void hsb_stage_drain(void)
{
}

void hsb_stage_free_all(void)
{
}
#endif
