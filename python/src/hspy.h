/* The hsbroker Python module (_hsbroker): CPython limited API (abi3,
 * 3.9+), so one build imports on every CPython from 3.9 on. */
#ifndef HSPY_H
#define HSPY_H

#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>

#include "hsbroker/hsbroker.h"

typedef struct hspy_state {
	PyObject *error;        /* hsbroker.Error */
	PyObject *timeout;      /* hsbroker.Timeout(Error, TimeoutError) */
	PyObject *closed;       /* hsbroker.Closed(Error): broker gone */
	PyTypeObject *client_type;
	PyTypeObject *tensor_type;
	PyTypeObject *sub_type;
} hspy_state;

extern hspy_state hspy;

/* A connection. Tensors and subscriptions hold a reference to it, so the
 * slabs stay mapped while anything can still point into them; close()
 * disconnects at once when nothing is alive, else when the last goes. */
typedef struct hspy_client {
	PyObject_HEAD
	hs_client *c;
	bool closing;   /* close() asked: no new work */
	long live;      /* tensors + subscriptions alive */
	struct hspy_tensor *tensors; /* live tensor objects, for zero-copy emit */
	void *stream;   /* cudaStream_t for __cuda_array_interface__, or NULL */
	void *join_stream; /* where several streams are joined (pystream.c) */
	void *join_event;  /* cudaEvent_t for that, reused under the GIL */
} hspy_client;

typedef struct hspy_tensor {
	PyObject_HEAD
	hspy_client *client;
	hs_tensor *t;   /* NULL once released or emitted */
	long exports;   /* DLPack capsules not yet deleted */
	bool released;  /* release() asked; done when exports reach 0 */
	/* The streams a device tensor was handed out on (__dlpack__,
	 * __cuda_array_interface__) or released with: its release and an emit
	 * without a stream come after the work queued on them. NULL is the
	 * legacy default stream. */
	void **streams;
	int nstreams, streams_cap;
	/* Cached because they outlive t for error messages and repr. */
	uint64_t id, seq;
	struct hspy_tensor *prev, *next; /* client->tensors */
} hspy_tensor;

typedef struct hspy_sub {
	PyObject_HEAD
	hspy_client *client;
	hs_subscription *s;
	PyObject *topic;
} hspy_sub;

/* A str's UTF-8 bytes in a bytes object (limited API 3.9 lacks
 * PyUnicode_AsUTF8AndSize); NULL with an exception set. */
PyObject *hspy_utf8(PyObject *str, const char **s);

/* _hsbroker._order_after(src, dst, device) (pystream.c). */
PyObject *hspy_order_after(PyObject *self, PyObject *args);

/* Raises the exception for an hs error code; returns NULL. */
PyObject *hspy_raise(int code, const char *what);

/* Parses "float32", "uint8", ... (what numpy's dtype.name and torch's str
 * without "torch." give). Returns 0 or -1 with ValueError set. */
int hspy_dtype_parse(PyObject *obj, DLDataType *out);
/* The name of a dtype ("float32"), or NULL for one with no name. */
const char *hspy_dtype_name(DLDataType t);
/* The array-interface typestr ("<f4"), or NULL (bfloat16 has none). */
const char *hspy_dtype_typestr(DLDataType t);

/* "cpu" / "cuda:1" / (2, 1) → DLDevice; 0 or -1 with ValueError set. */
int hspy_device_parse(PyObject *obj, DLDevice *out);

/* The client's internal CUDA stream (pystream.c), created on device at
 * its first use: NULL with *err (HS_ENOCUDA, HS_ENODEV, HS_ECUDA). */
void *hspy_client_stream(hspy_client *client, int device, int *err);
/* At disconnect. */
void hspy_client_stream_destroy(hspy_client *client);
/* One stream that reaches, on the GPU, the work queued so far on every
 * one of streams[0..n) (no host synchronisation): NULL (the legacy
 * default stream) for n == 0, the stream itself for n == 1, else the
 * client's join stream on device, made to wait on each. GIL held. 0 or
 * HS_ENOCUDA / HS_ENODEV / HS_ECUDA. */
int hspy_join_streams(hspy_client *client, int device, void *const *streams, int n,
		      void **out);
/* Waits on the host for the work queued on each stream: the fallback when
 * no join could be queued. Call without the GIL. */
void hspy_streams_sync(void *const *streams, int n);

hspy_tensor *hspy_tensor_wrap(hspy_client *client, hs_tensor *t);
void hspy_client_unref_live(hspy_client *client);

/* Makes a type from spec, keeps it in *slot and adds it to module as name. */
int hspy_add_type(PyObject *module, PyType_Spec *spec, const char *name,
		  PyTypeObject **slot);

int hspy_tensor_type_init(PyObject *module);
int hspy_client_type_init(PyObject *module);
int hspy_sub_type_init(PyObject *module);

#endif
