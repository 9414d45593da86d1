/* GPU ordering between processes, with no host synchronisation on the
 * per-tensor path (docs/gpu.md):
 *
 * - ready fence: each device tensor comes with one of the daemon's
 *   interprocess events. The writer records it on its stream when it
 *   emits; a reader makes its stream wait on it (hs_tensor_wait). Events
 *   are opened here once each (cudaIpcOpenEventHandle) and destroyed at
 *   disconnect.
 * - release fence: a reader that releases a device tensor gets its
 *   ReleaseNote sent from a host function queued behind its reading work
 *   on the stream it names (NULL: the legacy default stream, as in CUDA;
 *   only HS_STREAM_DONE releases at once), so the block goes back to the
 *   pool only once that work is done. The host function makes no CUDA
 *   call: it only takes the client's send path. */
#include "hs-config.h"
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

struct hs__event *hs__event_find(hs_client *c, uint64_t id)
{
	for (struct hs__event *e = c->events; e; e = e->next)
		if (e->id == id)
			return e;
	return NULL;
}

int hs__event_announce(hs_client *c, const Hs__EventAnnounce *a)
{
	if (a->event_id == 0 || !a->device || a->device->type != kDLCUDA ||
	    a->device->id < 0 || a->ipc_handle.len != 64)
		return HS_EPROTO;
	if (hs__event_find(c, a->event_id))
		return 0; /* ids are never reused within an epoch */
	struct hs__event *e = calloc(1, sizeof(*e));
	if (!e)
		return HS_ENOMEM;
	e->id = a->event_id;
	e->device = a->device->id;
	memcpy(e->ipc_handle, a->ipc_handle.data, sizeof(e->ipc_handle));
	e->next = c->events;
	c->events = e;
	return 0;
}

#if HS_HAVE_CUDA

/* Opens e at its first use (lock held): 0, or its sticky error. */
static int event_open(hs_client *c, struct hs__event *e)
{
	if (e->event)
		return 0;
	if (e->open_err)
		return e->open_err;
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
		cudaGetLastError();
		return e->open_err = HS_ENODEV;
	}
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		return e->open_err = HS_ECUDA;
	}
	int dev = e->device < n ? e->device : cur;
	if (dev != cur && cudaSetDevice(dev) != cudaSuccess) {
		cudaGetLastError();
		return e->open_err = HS_ENODEV;
	}
	cudaIpcEventHandle_t h;
	_Static_assert(sizeof(h) == sizeof(e->ipc_handle), "cudaIpcEventHandle_t is 64 bytes");
	memcpy(&h, e->ipc_handle, sizeof(h));
	cudaEvent_t ev;
	cudaError_t ce = cudaIpcOpenEventHandle(&ev, h);
	if (dev != cur)
		cudaSetDevice(cur);
	if (ce != cudaSuccess) {
		cudaGetLastError();
		if (hs__wire_debug_enabled())
			fprintf(stderr, "[hs client %d] cudaIpcOpenEventHandle (event %llu on cuda:%d): %s\n",
				(int)getpid(), (unsigned long long)e->id, e->device,
				cudaGetErrorString(ce));
		return e->open_err = HS_EIPC;
	}
	e->event = ev;
	c->stats.event_opens++;
	return 0;
}

/* The opened event of t, or an error. */
static int tensor_event(const hs_tensor *t, cudaEvent_t *out)
{
	hs_client *c = t->client;
	if (!c)
		return HS_EINVAL; /* its client was disconnected */
	pthread_mutex_lock(&c->lock);
	int err = event_open(c, t->fence);
	if (!err)
		*out = (cudaEvent_t)t->fence->event;
	pthread_mutex_unlock(&c->lock);
	return err;
}

/* The GPU a stream belongs to (the legacy and per-thread default streams:
 * the current device's). */
static int stream_device(void *stream, int *dev)
{
	if (cudaStreamGetDevice((cudaStream_t)stream, dev) == cudaSuccess)
		return 0;
	cudaGetLastError();
	if (cudaGetDevice(dev) != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	return 0;
}

/* A stream on the fence's GPU and two plain events, for a stream of
 * another GPU: an imported IPC event is used only with streams of its
 * own GPU (a cross-device cudaStreamWaitEvent on an imported event was
 * seen to crash the driver on an H100 pair), and plain events carry the
 * order across GPUs. */
struct hs__bridge {
	int fence_dev, stream_dev;
	cudaStream_t s;    /* on fence_dev */
	cudaEvent_t on_fence_dev, on_stream_dev;
	struct hs__bridge *next;
};

static int bridge_get(hs_client *c, int fence_dev, int stream_dev, struct hs__bridge **out)
{
	for (struct hs__bridge *b = c->bridges; b; b = b->next)
		if (b->fence_dev == fence_dev && b->stream_dev == stream_dev) {
			*out = b;
			return 0;
		}
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	struct hs__bridge *b = calloc(1, sizeof(*b));
	if (!b)
		return HS_ENOMEM;
	bool ok = cudaSetDevice(fence_dev) == cudaSuccess &&
		  cudaStreamCreateWithFlags(&b->s, cudaStreamNonBlocking) == cudaSuccess &&
		  cudaEventCreateWithFlags(&b->on_fence_dev, cudaEventDisableTiming) == cudaSuccess &&
		  cudaSetDevice(stream_dev) == cudaSuccess &&
		  cudaEventCreateWithFlags(&b->on_stream_dev, cudaEventDisableTiming) == cudaSuccess;
	cudaSetDevice(cur);
	if (!ok) {
		cudaGetLastError();
		free(b); /* what was made leaks until exit: a broken device */
		return HS_ECUDA;
	}
	b->fence_dev = fence_dev;
	b->stream_dev = stream_dev;
	b->next = c->bridges;
	c->bridges = b;
	*out = b;
	return 0;
}

/* Records (record: true) or waits on the IPC event ev of fence_dev from a
 * stream of another GPU, through the bridge; lock held, so the bridge's
 * events are not re-recorded between a record and its wait. */
static int bridged(hs_client *c, cudaEvent_t ev, int fence_dev, int stream_dev,
		   cudaStream_t stream, bool record)
{
	struct hs__bridge *b;
	int err = bridge_get(c, fence_dev, stream_dev, &b);
	if (err)
		return err;
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	cudaError_t e;
	if (record) {
		/* the user's stream -> bridge stream -> the IPC event */
		e = cudaSetDevice(stream_dev);
		if (!e)
			e = cudaEventRecord(b->on_stream_dev, stream);
		if (!e)
			e = cudaSetDevice(fence_dev);
		if (!e)
			e = cudaStreamWaitEvent(b->s, b->on_stream_dev, 0);
		if (!e)
			e = cudaEventRecord(ev, b->s);
	} else {
		/* the IPC event -> bridge stream -> the user's stream */
		e = cudaSetDevice(fence_dev);
		if (!e)
			e = cudaStreamWaitEvent(b->s, ev, 0);
		if (!e)
			e = cudaEventRecord(b->on_fence_dev, b->s);
		if (!e)
			e = cudaSetDevice(stream_dev);
		if (!e)
			e = cudaStreamWaitEvent(stream, b->on_fence_dev, 0);
	}
	cudaSetDevice(cur);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	return 0;
}

/* Records or waits on t's ready fence from stream. */
static int fence_op(const hs_tensor *t, void *stream, bool record)
{
	if (stream == HS_STREAM_DONE)
		return HS_EINVAL; /* no stream to order anything on */
	cudaEvent_t ev;
	int err = tensor_event(t, &ev);
	if (err)
		return err;
	int sdev;
	if ((err = stream_device(stream, &sdev)))
		return err;
	if (sdev != t->fence->device) {
		hs_client *c = t->client;
		pthread_mutex_lock(&c->lock);
		err = bridged(c, ev, t->fence->device, sdev, (cudaStream_t)stream, record);
		pthread_mutex_unlock(&c->lock);
		return err;
	}
	cudaError_t e = record ? cudaEventRecord(ev, (cudaStream_t)stream)
			       : cudaStreamWaitEvent((cudaStream_t)stream, ev, 0);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	return 0;
}

int hs__fence_record(hs_tensor *t, void *stream)
{
	return fence_op(t, stream, true);
}

int hs__fence_sync(void *stream)
{
	if (cudaStreamSynchronize((cudaStream_t)stream) != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	return 0;
}

HS_EXPORT int hs_tensor_wait(const hs_tensor *tensor, void *stream)
{
	if (!tensor)
		return HS_EINVAL;
	if (!tensor->fence)
		return 0; /* host tensor: the writer's stores are visible already */
	return fence_op(tensor, stream, false);
}

void hs__event_destroy_all(hs_client *c)
{
	/* No CUDA call unless something was made or opened: a process that
	 * never used a device tensor must not initialise CUDA here (it may
	 * fork afterwards, and a child of a CUDA process cannot use CUDA). */
	for (struct hs__bridge *b = c->bridges, *next; b; b = next) {
		next = b->next;
		cudaStreamDestroy(b->s);
		cudaEventDestroy(b->on_fence_dev);
		cudaEventDestroy(b->on_stream_dev);
		cudaGetLastError();
		free(b);
	}
	c->bridges = NULL;
	struct hs__event *e = c->events;
	while (e) {
		struct hs__event *next = e->next;
		/* Imported events are the importer's to destroy. */
		if (e->event && cudaEventDestroy((cudaEvent_t)e->event) != cudaSuccess)
			cudaGetLastError();
		free(e);
		e = next;
	}
	c->events = NULL;
}

struct deferred_release {
	hs_client *client;
	uint64_t id;
};

/* On CUDA's host-function thread, once the stream reached this point. No
 * CUDA call here, and never the client's lock: a thread holding it may be
 * inside a CUDA call (the reader opening a slab) that must not wait on
 * us. Only send_lock and pending_lock: neither is held across a CUDA call,
 * and whoever holds send_lock never waits for the client's lock (conn.c,
 * send_msg), so this never waits, even through another thread, on one
 * inside a CUDA call. */
static void CUDART_CB release_now(void *arg)
{
	struct deferred_release *d = arg;
	hs_client *c = d->client;
	uint64_t id = d->id;
	free(d);
	hs__client_release(c, &id, 1, true);
	pthread_mutex_lock(&c->pending_lock);
	c->pending_releases--;
	pthread_cond_broadcast(&c->pending_cond);
	pthread_mutex_unlock(&c->pending_lock);
}

int hs__release_after(hs_client *c, uint64_t id, void *stream)
{
	struct deferred_release *d = malloc(sizeof(*d));
	if (!d) {
		/* No host function then: wait for the reader's work here. */
		if (cudaStreamSynchronize((cudaStream_t)stream) != cudaSuccess)
			cudaGetLastError();
		return HS_ENOMEM;
	}
	d->client = c;
	d->id = id;
	pthread_mutex_lock(&c->pending_lock);
	c->pending_releases++;
	pthread_mutex_unlock(&c->pending_lock);
	if (cudaLaunchHostFunc((cudaStream_t)stream, release_now, d) != cudaSuccess) {
		cudaGetLastError();
		pthread_mutex_lock(&c->pending_lock);
		c->pending_releases--;
		pthread_mutex_unlock(&c->pending_lock);
		free(d);
		if (cudaStreamSynchronize((cudaStream_t)stream) != cudaSuccess)
			cudaGetLastError();
		return HS_ECUDA;
	}
	return 0;
}

#else /* !HS_HAVE_CUDA */

int hs__fence_record(hs_tensor *t, void *stream)
{
	(void)t;
	(void)stream;
	return HS_ENOCUDA;
}

int hs__fence_sync(void *stream)
{
	(void)stream;
	return HS_ENOCUDA;
}

HS_EXPORT int hs_tensor_wait(const hs_tensor *tensor, void *stream)
{
	if (!tensor)
		return HS_EINVAL;
	if (!tensor->fence)
		return 0;
	return stream == HS_STREAM_DONE ? HS_EINVAL : HS_ENOCUDA;
}

void hs__event_destroy_all(hs_client *c)
{
	struct hs__event *e = c->events;
	while (e) {
		struct hs__event *next = e->next;
		free(e);
		e = next;
	}
	c->events = NULL;
}

int hs__release_after(hs_client *c, uint64_t id, void *stream)
{
	(void)c;
	(void)id;
	(void)stream;
	return HS_ENOCUDA;
}

#endif

void hs__release_drain(hs_client *c)
{
	pthread_mutex_lock(&c->pending_lock);
	while (c->pending_releases)
		pthread_cond_wait(&c->pending_cond, &c->pending_lock);
	pthread_mutex_unlock(&c->pending_lock);
}
