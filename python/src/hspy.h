/* The hsbroker Python module (_hsbroker): CPython limited API (abi3,
 * 3.9+), so one build imports on every CPython from 3.9 on. */
#ifndef HSPY_H
#define HSPY_H

#define Py_LIMITED_API 0x03090000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdbool.h>

/* METH_FASTCALL entered the limited API in 3.10, but CPython has handled
 * the flag since 3.7 with this value and calling convention, so a 3.9
 * abi3 module may use it. */
#ifndef METH_FASTCALL
#define METH_FASTCALL 0x0080
#endif
typedef PyObject *(*hspy_fastcall_kw)(PyObject *, PyObject *const *, Py_ssize_t, PyObject *);
#define HSPY_FASTCALL_KW(fn) (PyCFunction)(void (*)(void))(hspy_fastcall_kw)(fn)

#include "hsbroker/hsbroker.h"

typedef struct hspy_state {
	PyObject *error;        /* hsbroker.Error */
	PyObject *timeout;      /* hsbroker.Timeout(Error, TimeoutError) */
	PyObject *closed;       /* hsbroker.Closed(Error): broker gone */
	PyTypeObject *client_type;
	PyTypeObject *tensor_type;
	PyTypeObject *sub_type;
	PyObject *stream_handle; /* hsbroker._stream_handle(obj) -> int */
	PyObject *emit_foreign;  /* hsbroker._emit_foreign(client, topic, obj, stream, wait) */
	/* Looked up once, at the first receive(as_="torch"/"numpy"). */
	PyObject *torch_from_capsule;  /* torch._C._from_dlpack */
	PyObject *torch_raw_stream;    /* torch._C._cuda_getCurrentRawStream */
	PyObject *numpy_asarray;
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

/* A str's UTF-8 (the str's own cached copy: valid while str lives).
 * 0, or -1 with TypeError/ValueError set. */
int hspy_cstr(PyObject *str, const char **s);

/* Parses the arguments of a METH_FASTCALL | METH_KEYWORDS method: out[i]
 * gets the value given for names[i] (n of them), positionally (the first
 * npos may come so) or by keyword, else keeps what the caller put there (its
 * default); the first nreq are required. 0, or -1 with TypeError set. */
int hspy_args(const char *fn, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
	      const char *const *names, int n, int npos, int nreq, PyObject **out);

/* A stream argument as CUDA names it (None: NULL; an int; or an object
 * with a handle: torch, CuPy, Numba streams). 0 or -1 with an exception. */
int hspy_stream_arg(PyObject *obj, void **out);

/* What receive(as_=...) and Tensor.view(as_) hand back for tensor self:
 * as_ "torch" (a torch.Tensor made from a DLPack capsule, on the calling
 * thread's current torch stream unless stream is given), "numpy" (an
 * ndarray through the array interface), or a callable given the capsule.
 * consume: the view owns the tensor's reference (it is released when the
 * view goes), and self may no longer be used. New reference or NULL. */
PyObject *hspy_tensor_view(hspy_tensor *self, PyObject *as, PyObject *stream, bool consume);

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
