/* hsbroker.Tensor: one broker reference, seen through DLPack, the CUDA
 * array interface (device) or the array interface (host). */
#include "hspy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* PyUnicode_FromFormat and PyErr_Format have no %llx: ids are printed
 * through this. */
static void id_hex(const hspy_tensor *self, char buf[20])
{
	snprintf(buf, 20, "%llx", (unsigned long long)self->id);
}

static PyObject *closed_error(hspy_tensor *self)
{
	char id[20];
	id_hex(self, id);
	PyErr_Format(PyExc_ValueError,
		     "tensor %s was released or emitted; it can no longer be used", id);
	return NULL;
}

static const DLTensor *live_dl(hspy_tensor *self)
{
	if (!self->t || self->released) {
		closed_error(self);
		return NULL;
	}
	return hs_tensor_dltensor(self->t);
}

hspy_tensor *hspy_tensor_wrap(hspy_client *client, hs_tensor *t)
{
	hspy_tensor *self = PyObject_New(hspy_tensor, hspy.tensor_type);
	if (!self) {
		hs_tensor_release(t, HS_STREAM_DONE); /* never handed out */
		return NULL;
	}
	Py_INCREF(client);
	self->client = client;
	self->t = t;
	self->exports = 0;
	self->released = false;
	self->streams = NULL;
	self->nstreams = self->streams_cap = 0;
	self->id = hs_tensor_id(t);
	self->seq = hs_tensor_seq(t);
	self->prev = NULL;
	self->next = client->tensors;
	if (client->tensors)
		client->tensors->prev = self;
	client->tensors = self;
	client->live++;
	return self;
}

static bool on_gpu(hspy_tensor *self)
{
	return self->t && hs_tensor_dltensor(self->t)->device.device_type == kDLCUDA;
}

/* A stream as CUDA, DLPack and the CUDA array interface name it: 0 and 1
 * are the legacy default stream, 2 the calling thread's per-thread
 * default stream. Both are kept as NULL, the legacy default stream: a
 * host function there comes after the work queued before it on every
 * blocking stream of the device, per-thread default streams of every
 * thread included, so it stays right when the release runs on another
 * thread (a garbage collection, a consumer's deleter). */
static void *stream_key(void *stream)
{
	return (uintptr_t)stream <= 2 ? NULL : stream;
}

/* Remembers that the tensor's device memory was handed out on stream, for
 * its release fence (and an emit without a stream). 0 or -1 (MemoryError). */
static int remember_stream(hspy_tensor *self, void *stream)
{
	if (!on_gpu(self))
		return 0;
	stream = stream_key(stream);
	for (int i = 0; i < self->nstreams; i++)
		if (self->streams[i] == stream)
			return 0;
	if (self->nstreams == self->streams_cap) {
		int cap = self->streams_cap ? 2 * self->streams_cap : 2;
		void **n = realloc(self->streams, sizeof(void *) * (size_t)cap);
		if (!n) {
			PyErr_NoMemory();
			return -1;
		}
		self->streams = n;
		self->streams_cap = cap;
	}
	self->streams[self->nstreams++] = stream;
	return 0;
}

/* The one stream the tensor's fences go on: where every stream it was
 * handed out on has been joined (NULL, the legacy default stream, when
 * none was named). GIL held. On error the caller falls back to a host
 * wait (hspy_streams_sync). */
static int fence_stream(hspy_tensor *self, void **out)
{
	return hspy_join_streams(self->client, hs_tensor_dltensor(self->t)->device.device_id,
				 self->streams, self->nstreams, out);
}

/* Ends the broker reference once nothing can still read through it:
 * release() was asked and every DLPack capsule has been deleted. A device
 * tensor goes back after the work queued on every stream it was handed
 * out on or released with (docs/gpu.md, "What is safe"); done: the caller
 * said that work is complete (hsbroker.STREAM_DONE), so at once. */
static void maybe_release(hspy_tensor *self, bool done)
{
	if (!self->t || !self->released || self->exports > 0)
		return;
	void *stream = HS_STREAM_DONE;
	bool sync = false;
	if (!done && on_gpu(self) && fence_stream(self, &stream) < 0) {
		sync = true; /* no fence could be queued: wait here instead */
		stream = HS_STREAM_DONE;
	}
	hs_tensor *t = self->t;
	self->t = NULL;
	Py_BEGIN_ALLOW_THREADS
	if (sync)
		hspy_streams_sync(self->streams, self->nstreams);
	hs_tensor_release(t, stream);
	Py_END_ALLOW_THREADS
}

static void unlink_from_client(hspy_tensor *self)
{
	hspy_client *c = self->client;
	if (!c)
		return;
	if (self->prev)
		self->prev->next = self->next;
	else if (c->tensors == self)
		c->tensors = self->next;
	if (self->next)
		self->next->prev = self->prev;
	self->prev = self->next = NULL;
}

static void tensor_dealloc(PyObject *obj)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	self->released = true;
	maybe_release(self, false);
	unlink_from_client(self);
	free(self->streams);
	hspy_client *c = self->client;
	self->client = NULL;
	PyTypeObject *tp = Py_TYPE(obj);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
	tp_free(obj);
	Py_DECREF(tp);
	if (c) {
		hspy_client_unref_live(c);
		Py_DECREF(c);
	}
}

/* Called by hsbroker.Client.emit: the reference moves to the topic.
 * stream: the stream emit was given, or NULL when it was given none (its
 * Python None); *stream_out: where the ready fence goes. Without a
 * stream, a device tensor written through DLPack views records it after
 * the streams those views were made for (joined), else on the legacy
 * default stream. */
int hspy_tensor_take(hspy_tensor *self, bool has_stream, void *stream, hs_tensor **out,
		     void **stream_out);
int hspy_tensor_take(hspy_tensor *self, bool has_stream, void *stream, hs_tensor **out,
		     void **stream_out)
{
	if (!self->t || self->released) {
		closed_error(self);
		return -1;
	}
	*stream_out = stream;
	if (!has_stream && on_gpu(self)) {
		int rc = fence_stream(self, stream_out);
		if (rc < 0) {
			hspy_raise(rc, "cannot join the streams the tensor was written on");
			return -1;
		}
	}
	*out = self->t;
	self->t = NULL;
	self->released = true;
	return 0;
}

static PyObject *tensor_release(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			       PyObject *kwnames)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	static const char *const names[] = { "stream" };
	PyObject *stream_obj = Py_None;
	if (hspy_args("release", args, nargs, kwnames, names, 1, 1, 0, &stream_obj) < 0)
		return NULL;
	bool done = false;
	if (stream_obj != Py_None) {
		/* CUDA's handles (0: the legacy default stream), a stream
		 * object, or hsbroker.STREAM_DONE (-1): "my work on it is
		 * complete". */
		void *stream;
		if (hspy_stream_arg(stream_obj, &stream) < 0)
			return NULL;
		if (stream == HS_STREAM_DONE)
			done = true;
		else if (remember_stream(self, stream) < 0)
			return NULL;
	}
	self->released = true;
	maybe_release(self, done);
	Py_RETURN_NONE;
}

static PyObject *tensor_enter(PyObject *self, PyObject *noargs)
{
	Py_INCREF(self);
	return self;
}

static PyObject *tensor_exit(PyObject *obj, PyObject *args)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	self->released = true;
	maybe_release(self, false);
	Py_RETURN_FALSE;
}

/* ---- shape, strides, interfaces ---- */

static PyObject *int64_tuple(const int64_t *v, int n, int64_t scale)
{
	PyObject *t = PyTuple_New(n);
	if (!t)
		return NULL;
	for (int i = 0; i < n; i++) {
		PyObject *x = PyLong_FromLongLong(v[i] * scale);
		if (!x) {
			Py_DECREF(t);
			return NULL;
		}
		PyTuple_SetItem(t, i, x);
	}
	return t;
}

/* Strides in elements, computed for a compact tensor whose DLTensor
 * leaves them NULL. */
static void dl_strides(const DLTensor *dl, int64_t *out)
{
	if (dl->strides) {
		memcpy(out, dl->strides, sizeof(int64_t) * (size_t)dl->ndim);
		return;
	}
	int64_t s = 1;
	for (int i = dl->ndim - 1; i >= 0; i--) {
		out[i] = s;
		s *= dl->shape[i];
	}
}

static PyObject *get_shape(PyObject *obj, void *c)
{
	const DLTensor *dl = live_dl((hspy_tensor *)obj);
	return dl ? int64_tuple(dl->shape, dl->ndim, 1) : NULL;
}

static PyObject *get_strides(PyObject *obj, void *c)
{
	const DLTensor *dl = live_dl((hspy_tensor *)obj);
	if (!dl)
		return NULL;
	int64_t st[HS_MAX_NDIM];
	dl_strides(dl, st);
	return int64_tuple(st, dl->ndim, 1);
}

static PyObject *get_dtype(PyObject *obj, void *c)
{
	const DLTensor *dl = live_dl((hspy_tensor *)obj);
	if (!dl)
		return NULL;
	const char *n = hspy_dtype_name(dl->dtype);
	if (n)
		return PyUnicode_FromString(n);
	return PyUnicode_FromFormat("dl(%d,%d,%d)", dl->dtype.code, dl->dtype.bits,
				    dl->dtype.lanes);
}

static PyObject *device_str(DLDevice d)
{
	if (d.device_type == kDLCPU)
		return PyUnicode_FromString("cpu");
	if (d.device_type == kDLCUDA)
		return PyUnicode_FromFormat("cuda:%d", d.device_id);
	return PyUnicode_FromFormat("dl(%d):%d", (int)d.device_type, d.device_id);
}

static PyObject *get_device(PyObject *obj, void *c)
{
	const DLTensor *dl = live_dl((hspy_tensor *)obj);
	return dl ? device_str(dl->device) : NULL;
}

static PyObject *get_data_ptr(PyObject *obj, void *c)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	if (!live_dl(self))
		return NULL;
	return PyLong_FromVoidPtr(hs_tensor_data(self->t));
}

static PyObject *get_nbytes(PyObject *obj, void *c)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	if (!live_dl(self))
		return NULL;
	return PyLong_FromUnsignedLongLong(hs_tensor_nbytes(self->t));
}

static PyObject *get_id(PyObject *obj, void *c)
{
	return PyLong_FromUnsignedLongLong(((hspy_tensor *)obj)->id);
}

static PyObject *get_seq(PyObject *obj, void *c)
{
	return PyLong_FromUnsignedLongLong(((hspy_tensor *)obj)->seq);
}

static PyObject *get_topic(PyObject *obj, void *c)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	if (!live_dl(self))
		return NULL;
	return PyUnicode_FromString(hs_tensor_topic(self->t));
}

static PyObject *get_released(PyObject *obj, void *c)
{
	return PyBool_FromLong(((hspy_tensor *)obj)->released);
}

/* The dict both array interfaces share: shape, typestr, data, strides in
 * bytes (None when compact), version. */
static PyObject *interface_dict(hspy_tensor *self, int version)
{
	const DLTensor *dl = live_dl(self);
	if (!dl)
		return NULL;
	const char *ts = hspy_dtype_typestr(dl->dtype);
	if (!ts) {
		PyErr_SetString(PyExc_TypeError,
				"this dtype has no array-interface typestr (bfloat16?): use DLPack");
		return NULL;
	}
	int64_t itemsize = dl->dtype.bits / 8 * dl->dtype.lanes;
	PyObject *strides;
	if (dl->strides) {
		strides = int64_tuple(dl->strides, dl->ndim, itemsize);
	} else {
		strides = Py_None;
		Py_INCREF(strides);
	}
	PyObject *shape = int64_tuple(dl->shape, dl->ndim, 1);
	PyObject *d = NULL;
	if (shape && strides)
		d = Py_BuildValue("{s:O,s:s,s:(NO),s:O,s:i}", "shape", shape, "typestr", ts,
				  "data", PyLong_FromVoidPtr(hs_tensor_data(self->t)),
				  hs_tensor_writable(self->t) ? Py_False : Py_True,
				  "strides", strides, "version", version);
	Py_XDECREF(shape);
	Py_XDECREF(strides);
	return d;
}

static PyObject *get_array_interface(PyObject *obj, void *c)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	const DLTensor *dl = live_dl(self);
	if (!dl)
		return NULL;
	if (dl->device.device_type != kDLCPU) {
		PyErr_SetString(PyExc_AttributeError,
				"__array_interface__ is for host tensors; this one is on a GPU "
				"(use __cuda_array_interface__ or DLPack)");
		return NULL;
	}
	return interface_dict(self, 3);
}

/* Makes stream wait until the producer's writes are done (a no-op for
 * host tensors). */
int hspy_tensor_wait(hspy_tensor *self, void *stream);
int hspy_tensor_wait(hspy_tensor *self, void *stream)
{
	if (!self->t)
		return 0; /* released or emitted: live_dl has said so already */
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_tensor_wait(self->t, stream);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		hspy_raise(rc, "cannot order the stream after the tensor's ready fence");
		return -1;
	}
	return 0;
}

static PyObject *get_cuda_array_interface(PyObject *obj, void *c)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	const DLTensor *dl = live_dl(self);
	if (!dl)
		return NULL;
	if (dl->device.device_type != kDLCUDA) {
		PyErr_SetString(PyExc_AttributeError,
				"__cuda_array_interface__ is for GPU tensors; this one is in host "
				"memory (use __array_interface__ or DLPack)");
		return NULL;
	}
	/* v3 "stream": our client's stream, made to wait on the ready fence
	 * now; the consumer orders its own stream after it. */
	int err = 0;
	void *stream = hspy_client_stream(self->client, dl->device.device_id, &err);
	if (!stream)
		return hspy_raise(err, "no CUDA stream for __cuda_array_interface__");
	if (hspy_tensor_wait(self, stream) < 0)
		return NULL;
	/* The consumer's own stream is not told: CuPy and Numba work on the
	 * legacy default stream or on streams created blocking unless asked
	 * otherwise, and the legacy default stream's release fence comes
	 * after the work queued on all of those. A non-blocking stream must
	 * be named to release() (docs/gpu.md, "What is safe"). */
	if (remember_stream(self, NULL) < 0)
		return NULL;
	PyObject *d = interface_dict(self, 3);
	PyObject *sv = d ? PyLong_FromVoidPtr(stream) : NULL;
	if (d && (!sv || PyDict_SetItemString(d, "stream", sv) < 0)) {
		Py_XDECREF(sv);
		Py_DECREF(d);
		return NULL;
	}
	Py_XDECREF(sv);
	return d;
}

/* ---- DLPack ---- */

typedef struct export_ctx {
	DLManagedTensor m;
	hspy_tensor *owner;
	int64_t shape[HS_MAX_NDIM];
	int64_t strides[HS_MAX_NDIM];
	struct export_ctx *next_free;
} export_ctx;

/* Deleted exports kept for the next (under the GIL): a hand-off loop
 * makes and deletes one a tensor, and need not go to malloc for it. */
static export_ctx *free_ctx;
static int n_free_ctx;

static void export_deleter(DLManagedTensor *m)
{
	export_ctx *x = (export_ctx *)m->manager_ctx;
	PyGILState_STATE g = PyGILState_Ensure();
	hspy_tensor *self = x->owner;
	self->exports--;
	maybe_release(self, false);
	Py_DECREF(self);
	if (n_free_ctx < 8) {
		x->next_free = free_ctx;
		free_ctx = x;
		n_free_ctx++;
	} else {
		free(x);
	}
	PyGILState_Release(g);
}

static void capsule_destructor(PyObject *cap)
{
	/* A consumer renames the capsule to "used_dltensor" and owns it;
	 * an unconsumed one is ours to delete. */
	if (!PyCapsule_IsValid(cap, "dltensor"))
		return;
	DLManagedTensor *m = PyCapsule_GetPointer(cap, "dltensor");
	if (m && m->deleter)
		m->deleter(m);
}

/* A "dltensor" capsule of self, which stays alive until the capsule's
 * tensor is deleted. A device tensor is read on stream (a CUDA handle;
 * 0, 1 and 2 as CUDA names them): with sync, stream waits on the ready
 * fence first, on the GPU; either way the release comes after it. */
static PyObject *export_capsule(hspy_tensor *self, const DLTensor *dl, bool sync, void *stream)
{
	if (dl->device.device_type == kDLCUDA) {
		if (sync && hspy_tensor_wait(self, stream) < 0)
			return NULL;
		if (remember_stream(self, stream) < 0)
			return NULL;
	}
	export_ctx *x = free_ctx;
	if (x) {
		free_ctx = x->next_free;
		n_free_ctx--;
		memset(x, 0, sizeof(*x));
	} else if (!(x = calloc(1, sizeof(*x)))) {
		return PyErr_NoMemory();
	}
	x->m.dl_tensor = *dl;
	memcpy(x->shape, dl->shape, sizeof(int64_t) * (size_t)dl->ndim);
	x->m.dl_tensor.shape = x->shape;
	if (dl->strides) {
		memcpy(x->strides, dl->strides, sizeof(int64_t) * (size_t)dl->ndim);
		x->m.dl_tensor.strides = x->strides;
	}
	x->m.manager_ctx = x;
	x->m.deleter = export_deleter;
	x->owner = self;
	Py_INCREF(self);
	self->exports++;
	PyObject *cap = PyCapsule_New(&x->m, "dltensor", capsule_destructor);
	if (!cap) {
		export_deleter(&x->m);
		return NULL;
	}
	return cap;
}

static PyObject *tensor_dlpack(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			       PyObject *kwnames)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	static const char *const names[] = { "stream", "max_version", "dl_device", "copy" };
	PyObject *a[4] = { Py_None, Py_None, Py_None, Py_None };
	if (hspy_args("__dlpack__", args, nargs, kwnames, names, 4, 0, 0, a) < 0)
		return NULL;
	PyObject *stream = a[0], *dl_device = a[2], *copy = a[3];
	const DLTensor *dl = live_dl(self);
	if (!dl)
		return NULL;
	if (copy != Py_None && PyObject_IsTrue(copy)) {
		PyErr_SetString(PyExc_BufferError,
				"hsbroker tensors are exported without copying (copy=True is not "
				"supported; use hsbroker.as_tensor to copy)");
		return NULL;
	}
	if (dl_device != Py_None) {
		DLDevice want;
		if (hspy_device_parse(dl_device, &want) < 0)
			return NULL;
		if (want.device_type != dl->device.device_type ||
		    want.device_id != dl->device.device_id) {
			PyErr_SetString(PyExc_BufferError,
					"dl_device differs from the tensor's device; hsbroker "
					"does not copy across devices");
			return NULL;
		}
	}
	void *sptr = NULL;
	long long s = 1;
	if (dl->device.device_type == kDLCPU) {
		if (stream != Py_None) {
			PyErr_SetString(PyExc_BufferError,
					"stream must be None for a host tensor");
			return NULL;
		}
	} else {
		/* Array API: None and 1 mean the legacy default stream, 2 the
		 * per-thread default, -1 "no synchronisation", else a handle.
		 * The consumer reads on that stream: it waits on the ready
		 * fence now, and the release comes after it (-1 names no
		 * stream: the legacy default stream then, as for the CUDA
		 * array interface). */
		if (stream != Py_None) {
			s = PyLong_AsLongLong(stream);
			if (s == -1 && PyErr_Occurred())
				return NULL;
		}
		if (s == 0) {
			PyErr_SetString(PyExc_ValueError,
					"stream=0 is ambiguous for CUDA; pass 1 (legacy default) "
					"or 2 (per-thread default)");
			return NULL;
		}
		sptr = s == 1 || s == -1 ? NULL : (void *)(intptr_t)s;
	}
	/* DLPack 0.6 header: legacy capsules only, whatever max_version. */
	return export_capsule(self, dl, s != -1, sptr);
}

static PyObject *tensor_dlpack_device(PyObject *obj, PyObject *noargs)
{
	const DLTensor *dl = live_dl((hspy_tensor *)obj);
	if (!dl)
		return NULL;
	return Py_BuildValue("(ii)", (int)dl->device.device_type, dl->device.device_id);
}

/* ---- ready-to-use views ---- */

static int load_torch(void)
{
	if (hspy.torch_from_capsule)
		return 0;
	PyObject *c = PyImport_ImportModule("torch._C");
	if (!c)
		return -1;
	PyObject *f = PyObject_GetAttrString(c, "_from_dlpack");
	if (f) {
		/* Absent from a torch built without CUDA: its tensors are all
		 * on the host then. */
		hspy.torch_raw_stream = PyObject_GetAttrString(c, "_cuda_getCurrentRawStream");
		if (!hspy.torch_raw_stream)
			PyErr_Clear();
		hspy.torch_from_capsule = f;
	}
	Py_DECREF(c);
	return f ? 0 : -1;
}

static int load_numpy(void)
{
	if (hspy.numpy_asarray)
		return 0;
	PyObject *np = PyImport_ImportModule("numpy");
	if (!np)
		return -1;
	hspy.numpy_asarray = PyObject_GetAttrString(np, "asarray");
	Py_DECREF(np);
	return hspy.numpy_asarray ? 0 : -1;
}

PyObject *hspy_tensor_view(hspy_tensor *self, PyObject *as, PyObject *stream_obj, bool consume)
{
	const DLTensor *dl = live_dl(self);
	if (!dl)
		return NULL;
	bool gpu = dl->device.device_type == kDLCUDA, torch = false;
	PyObject *importer;
	if (PyUnicode_Check(as) && PyUnicode_CompareWithASCIIString(as, "torch") == 0) {
		if (load_torch() < 0)
			return NULL;
		importer = hspy.torch_from_capsule;
		torch = true;
	} else if (PyUnicode_Check(as) && PyUnicode_CompareWithASCIIString(as, "numpy") == 0) {
		if (gpu) {
			PyErr_SetString(PyExc_TypeError,
					"as_='numpy' is for host tensors; this one is on a GPU");
			return NULL;
		}
		if (load_numpy() < 0)
			return NULL;
		/* The array's base holds the Tensor: when the array goes, the
		 * tensor is garbage-collected, so released. */
		return PyObject_CallFunctionObjArgs(hspy.numpy_asarray, (PyObject *)self, NULL);
	} else if (PyCallable_Check(as)) {
		importer = as;
	} else {
		PyErr_SetString(PyExc_ValueError,
				"as_ must be 'torch', 'numpy' or a callable that takes a DLPack "
				"capsule");
		return NULL;
	}
	void *stream = NULL;
	if (gpu && stream_obj != Py_None) {
		if (hspy_stream_arg(stream_obj, &stream) < 0)
			return NULL;
		if (stream == HS_STREAM_DONE) {
			PyErr_SetString(PyExc_ValueError, "STREAM_DONE names no stream to read on");
			return NULL;
		}
	} else if (gpu && torch && hspy.torch_raw_stream) {
		/* The calling thread's current torch stream, as a handle: one
		 * C call, not torch.cuda.current_stream()'s Stream object. */
		PyObject *h = PyObject_CallFunction(hspy.torch_raw_stream, "i",
						    dl->device.device_id);
		if (!h)
			return NULL;
		stream = PyLong_AsVoidPtr(h);
		Py_DECREF(h);
		if (PyErr_Occurred())
			return NULL;
	}
	PyObject *cap = export_capsule(self, dl, true, stream);
	if (!cap)
		return NULL;
	if (consume)
		self->released = true; /* done when the view's capsule is deleted */
	PyObject *view = PyObject_CallFunctionObjArgs(importer, cap, NULL);
	Py_DECREF(cap);
	return view;
}

static PyObject *tensor_view(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = { "as_", "stream" };
	PyObject *a[2] = { NULL, Py_None };
	if (hspy_args("view", args, nargs, kwnames, names, 2, 2, 1, a) < 0)
		return NULL;
	return hspy_tensor_view((hspy_tensor *)obj, a[0], a[1], false);
}

static PyObject *tensor_wait(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	static const char *const names[] = { "stream" };
	PyObject *stream_obj = Py_None;
	if (hspy_args("wait", args, nargs, kwnames, names, 1, 1, 0, &stream_obj) < 0)
		return NULL;
	const DLTensor *dl = live_dl(self);
	if (!dl)
		return NULL;
	void *stream;
	if (hspy_stream_arg(stream_obj, &stream) < 0)
		return NULL;
	if (dl->device.device_type != kDLCUDA)
		Py_RETURN_NONE;
	if (stream == HS_STREAM_DONE) {
		PyErr_SetString(PyExc_ValueError, "STREAM_DONE names no stream to wait on");
		return NULL;
	}
	if (hspy_tensor_wait(self, stream) < 0 || remember_stream(self, stream) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *tensor_repr(PyObject *obj)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	char id[20];
	id_hex(self, id);
	if (!self->t || self->released)
		return PyUnicode_FromFormat("<hsbroker.Tensor %s released>", id);
	PyObject *shape = get_shape(obj, NULL), *dtype = get_dtype(obj, NULL),
		 *dev = get_device(obj, NULL);
	PyObject *r = NULL;
	if (shape && dtype && dev)
		r = PyUnicode_FromFormat("<hsbroker.Tensor %s seq=%llu shape=%R dtype=%U device=%U>",
					 id, (unsigned long long)self->seq, shape, dtype, dev);
	Py_XDECREF(shape);
	Py_XDECREF(dtype);
	Py_XDECREF(dev);
	return r;
}

/* _copy_from(ptr, shape, strides_in_elements_or_None, dtype, device, stream):
 * copies a foreign tensor with the same dtype and shape into this one
 * (host to host, or device to device on stream). */
static PyObject *tensor_copy_from(PyObject *obj, PyObject *args)
{
	hspy_tensor *self = (hspy_tensor *)obj;
	PyObject *ptr_obj, *shape_obj, *strides_obj, *dtype_obj, *dev_obj, *stream_obj;
	if (!PyArg_ParseTuple(args, "OOOOOO", &ptr_obj, &shape_obj, &strides_obj, &dtype_obj,
			      &dev_obj, &stream_obj))
		return NULL;
	if (!live_dl(self))
		return NULL;
	DLTensor src = { 0 };
	int64_t shape[HS_MAX_NDIM], strides[HS_MAX_NDIM];
	src.data = PyLong_AsVoidPtr(ptr_obj);
	if (PyErr_Occurred())
		return NULL;
	if (hspy_dtype_parse(dtype_obj, &src.dtype) < 0 ||
	    hspy_device_parse(dev_obj, &src.device) < 0)
		return NULL;
	Py_ssize_t n = PySequence_Size(shape_obj);
	if (n < 0 || n > HS_MAX_NDIM) {
		PyErr_SetString(PyExc_ValueError, "bad shape");
		return NULL;
	}
	src.ndim = (int)n;
	for (Py_ssize_t i = 0; i < n; i++) {
		PyObject *v = PySequence_GetItem(shape_obj, i);
		shape[i] = v ? PyLong_AsLongLong(v) : -1;
		Py_XDECREF(v);
		if (strides_obj != Py_None) {
			v = PySequence_GetItem(strides_obj, i);
			strides[i] = v ? PyLong_AsLongLong(v) : 0;
			Py_XDECREF(v);
		}
		if (PyErr_Occurred())
			return NULL;
	}
	src.shape = shape;
	src.strides = strides_obj == Py_None ? NULL : strides;
	void *stream = NULL;
	if (stream_obj != Py_None) {
		stream = PyLong_AsVoidPtr(stream_obj);
		if (PyErr_Occurred())
			return NULL;
	}
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_tensor_copy_from(self->t, &src, stream);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return hspy_raise(rc, "copy into broker tensor");
	Py_RETURN_NONE;
}

static PyMethodDef tensor_methods[] = {
	{ "release", HSPY_FASTCALL_KW(tensor_release), METH_FASTCALL | METH_KEYWORDS,
	  "release($self, /, stream=None)\n--\n\n"
	  "End this reference once the GPU work queued on stream (a CUDA handle, "
	  "0: the legacy default stream, or a stream object) and on every stream "
	  "the tensor was handed out on is done; hsbroker.STREAM_DONE: at once. "
	  "DLPack exports keep it until deleted." },
	{ "view", HSPY_FASTCALL_KW(tensor_view), METH_FASTCALL | METH_KEYWORDS,
	  "view($self, /, as_, stream=None)\n--\n\n"
	  "A ready-to-use view without a copy: as_='torch' (a torch.Tensor, read "
	  "on stream, else on the calling thread's current torch stream), 'numpy' "
	  "(host tensors), or a callable given a DLPack capsule. The tensor "
	  "remembers the stream for its release and stays usable (emit it, or "
	  "release it)." },
	{ "wait", HSPY_FASTCALL_KW(tensor_wait), METH_FASTCALL | METH_KEYWORDS,
	  "wait($self, /, stream=None)\n--\n\n"
	  "Make stream (a CUDA handle or stream object; None: the legacy default "
	  "stream) wait, on the GPU, for the producer's writes, and remember it for "
	  "the release: for reading data_ptr with your own kernels or copies. A "
	  "no-op for host tensors." },
	{ "__dlpack__", HSPY_FASTCALL_KW(tensor_dlpack), METH_FASTCALL | METH_KEYWORDS,
	  "__dlpack__($self, /, *, stream=None, max_version=None, dl_device=None, copy=None)\n"
	  "--\n\nDLPack export without copying." },
	{ "__dlpack_device__", tensor_dlpack_device, METH_NOARGS,
	  "__dlpack_device__($self, /)\n--\n\n(device_type, device_id)" },
	{ "__enter__", tensor_enter, METH_NOARGS, NULL },
	{ "__exit__", tensor_exit, METH_VARARGS, NULL },
	{ "_copy_from", tensor_copy_from, METH_VARARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyGetSetDef tensor_getset[] = {
	{ "shape", get_shape, NULL, "shape (tuple)", NULL },
	{ "strides", get_strides, NULL, "strides in elements (tuple)", NULL },
	{ "dtype", get_dtype, NULL, "dtype name, e.g. 'float32'", NULL },
	{ "device", get_device, NULL, "'cpu' or 'cuda:N'", NULL },
	{ "data_ptr", get_data_ptr, NULL, "address of element 0", NULL },
	{ "nbytes", get_nbytes, NULL, "bytes of the block", NULL },
	{ "id", get_id, NULL, "broker tensor id", NULL },
	{ "seq", get_seq, NULL, "topic sequence number (0: never emitted)", NULL },
	{ "topic", get_topic, NULL, "topic it came from ('' for a fresh alloc)", NULL },
	{ "released", get_released, NULL, "True once released or emitted", NULL },
	{ "__array_interface__", get_array_interface, NULL, NULL, NULL },
	{ "__cuda_array_interface__", get_cuda_array_interface, NULL, NULL, NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyObject *tensor_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
	PyErr_SetString(PyExc_TypeError,
			"hsbroker.Tensor is made by Client.alloc or Subscription.receive");
	return NULL;
}

static PyType_Slot tensor_slots[] = {
	{ Py_tp_new, tensor_new },
	{ Py_tp_dealloc, tensor_dealloc },
	{ Py_tp_methods, tensor_methods },
	{ Py_tp_getset, tensor_getset },
	{ Py_tp_repr, tensor_repr },
	{ Py_tp_doc, "A tensor in broker memory (one reference). Made by Client.alloc "
		     "or Subscription.receive, never directly." },
	{ 0, NULL },
};

static PyType_Spec tensor_spec = {
	.name = "hsbroker.Tensor",
	.basicsize = sizeof(hspy_tensor),
	.flags = Py_TPFLAGS_DEFAULT,
	.slots = tensor_slots,
};

int hspy_tensor_type_init(PyObject *module)
{
	return hspy_add_type(module, &tensor_spec, "Tensor", &hspy.tensor_type);
}
