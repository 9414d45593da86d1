/* One internal CUDA stream per client, made at its first use: the stream
 * __cuda_array_interface__ reports (v3 "stream"). It waits on a tensor's
 * ready fence when the interface is asked for, so a consumer that orders
 * its own stream after the reported one (as CuPy, Numba and PyTorch do
 * with v3) reads only after the producer's writes, with no host
 * synchronisation. A second one, with an event, joins the several
 * streams a tensor was handed out on into one, for its release fence or
 * an emit's ready fence. The module imports and works with host tensors where
 * there is no GPU: nothing here runs until a device tensor asks. */
#include "hspy.h"

#include "hs-config.h"

#if HS_HAVE_CUDA
#include <cuda_runtime_api.h>

void *hspy_client_stream(hspy_client *client, int device, int *err)
{
	if (client->stream)
		return client->stream;
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		*err = HS_ENODEV;
		return NULL;
	}
	if (device != cur && cudaSetDevice(device) != cudaSuccess) {
		cudaGetLastError();
		*err = HS_ENODEV;
		return NULL;
	}
	cudaStream_t s = NULL;
	cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
	if (device != cur)
		cudaSetDevice(cur);
	if (e != cudaSuccess) {
		cudaGetLastError();
		*err = HS_ECUDA;
		return NULL;
	}
	client->stream = s;
	return s;
}

/* _order_after(src, dst, device): dst waits, on the GPU, for the work
 * queued on src so far (a CUDA array interface v3 producer's "stream").
 * Handles as the interface gives them: 1 legacy default, 2 per-thread. */
PyObject *hspy_order_after(PyObject *self, PyObject *args)
{
	unsigned long long src, dst;
	int device;
	if (!PyArg_ParseTuple(args, "KKi", &src, &dst, &device))
		return NULL;
	int cur = 0;
	cudaError_t e = cudaGetDevice(&cur);
	if (e == cudaSuccess && cur != device)
		e = cudaSetDevice(device);
	cudaEvent_t ev = NULL;
	if (e == cudaSuccess)
		e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
	if (e == cudaSuccess)
		e = cudaEventRecord(ev, (cudaStream_t)(uintptr_t)src);
	if (e == cudaSuccess)
		e = cudaStreamWaitEvent((cudaStream_t)(uintptr_t)dst, ev, 0);
	/* Destroying a recorded event is fine: the wait already holds it. */
	if (ev)
		cudaEventDestroy(ev);
	if (cur != device)
		cudaSetDevice(cur);
	if (e != cudaSuccess) {
		PyErr_Format(PyExc_RuntimeError, "ordering after the producer's stream: %s",
			     cudaGetErrorString(e));
		cudaGetLastError();
		return NULL;
	}
	Py_RETURN_NONE;
}

int hspy_join_streams(hspy_client *client, int device, void *const *streams, int n,
		      void **out)
{
	if (n <= 1) {
		*out = n == 1 ? streams[0] : NULL;
		return 0;
	}
	int cur = 0;
	if (cudaGetDevice(&cur) != cudaSuccess) {
		cudaGetLastError();
		return HS_ENODEV;
	}
	cudaError_t e = cur != device ? cudaSetDevice(device) : cudaSuccess;
	if (e == cudaSuccess && !client->join_stream) {
		cudaStream_t js;
		e = cudaStreamCreateWithFlags(&js, cudaStreamNonBlocking);
		if (e == cudaSuccess)
			client->join_stream = js;
	}
	if (e == cudaSuccess && !client->join_event) {
		cudaEvent_t ev;
		e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
		if (e == cudaSuccess)
			client->join_event = ev;
	}
	/* One event serves every stream: a wait binds to the record made
	 * just before it, and the GIL keeps other joins out meanwhile. */
	for (int i = 0; e == cudaSuccess && i < n; i++) {
		e = cudaEventRecord((cudaEvent_t)client->join_event, (cudaStream_t)streams[i]);
		if (e == cudaSuccess)
			e = cudaStreamWaitEvent((cudaStream_t)client->join_stream,
						(cudaEvent_t)client->join_event, 0);
	}
	if (cur != device)
		cudaSetDevice(cur);
	if (e != cudaSuccess) {
		cudaGetLastError();
		return HS_ECUDA;
	}
	*out = client->join_stream;
	return 0;
}

void hspy_streams_sync(void *const *streams, int n)
{
	for (int i = 0; i < n; i++)
		if (cudaStreamSynchronize((cudaStream_t)streams[i]) != cudaSuccess)
			cudaGetLastError();
	if (n == 0 && cudaStreamSynchronize(NULL) != cudaSuccess)
		cudaGetLastError();
}

void hspy_client_stream_destroy(hspy_client *client)
{
	/* Work still queued on them completes; the handles go now. */
	if (client->stream && cudaStreamDestroy((cudaStream_t)client->stream) != cudaSuccess)
		cudaGetLastError();
	if (client->join_stream &&
	    cudaStreamDestroy((cudaStream_t)client->join_stream) != cudaSuccess)
		cudaGetLastError();
	if (client->join_event && cudaEventDestroy((cudaEvent_t)client->join_event) != cudaSuccess)
		cudaGetLastError();
	client->stream = client->join_stream = client->join_event = NULL;
}

#else

PyObject *hspy_order_after(PyObject *self, PyObject *args)
{
	return hspy_raise(HS_ENOCUDA, "ordering after a CUDA stream");
}

void *hspy_client_stream(hspy_client *client, int device, int *err)
{
	(void)client;
	(void)device;
	*err = HS_ENOCUDA;
	return NULL;
}

int hspy_join_streams(hspy_client *client, int device, void *const *streams, int n,
		      void **out)
{
	(void)client;
	(void)device;
	(void)streams;
	*out = NULL;
	return n > 1 ? HS_ENOCUDA : 0;
}

void hspy_streams_sync(void *const *streams, int n)
{
	(void)streams;
	(void)n;
}

void hspy_client_stream_destroy(hspy_client *client)
{
	client->stream = NULL;
}

#endif
