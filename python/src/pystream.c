/* One internal CUDA stream per client, made at its first use: the stream
 * __cuda_array_interface__ reports (v3 "stream"). It waits on a tensor's
 * ready fence when the interface is asked for, so a consumer that orders
 * its own stream after the reported one (as CuPy, Numba and PyTorch do
 * with v3) reads only after the producer's writes, with no host
 * synchronisation. The module imports and works with host tensors where
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

void hspy_client_stream_destroy(hspy_client *client)
{
	if (!client->stream)
		return;
	/* Work still queued on it completes; the handle goes now. */
	if (cudaStreamDestroy((cudaStream_t)client->stream) != cudaSuccess)
		cudaGetLastError();
	client->stream = NULL;
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

void hspy_client_stream_destroy(hspy_client *client)
{
	client->stream = NULL;
}

#endif
