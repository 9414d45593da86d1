/* _hsbroker: module state, exceptions, dtype and device names. */
#include "hspy.h"

#include "hs-config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

hspy_state hspy;

PyObject *hspy_utf8(PyObject *str, const char **s)
{
	if (!PyUnicode_Check(str)) {
		PyErr_SetString(PyExc_TypeError, "expected a str");
		return NULL;
	}
	PyObject *b = PyUnicode_AsUTF8String(str);
	if (b)
		*s = PyBytes_AsString(b);
	return b;
}

int hspy_cstr(PyObject *str, const char **s)
{
	if (!PyUnicode_Check(str)) {
		PyErr_SetString(PyExc_TypeError, "expected a str");
		return -1;
	}
	/* "s" hands out the str's own cached UTF-8: no copy after the first. */
	return PyArg_Parse(str, "s", s) ? 0 : -1;
}

int hspy_args(const char *fn, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
	      const char *const *names, int n, int npos, int nreq, PyObject **out)
{
	if (nargs > npos) {
		PyErr_Format(PyExc_TypeError, "%s() takes at most %d positional argument%s "
			     "(%zd given)", fn, npos, npos == 1 ? "" : "s", nargs);
		return -1;
	}
	unsigned seen = 0;
	for (Py_ssize_t i = 0; i < nargs; i++) {
		out[i] = args[i];
		seen |= 1u << i;
	}
	Py_ssize_t nkw = kwnames ? PyTuple_Size(kwnames) : 0;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		PyObject *key = PyTuple_GetItem(kwnames, k);
		int j = 0;
		while (j < n && PyUnicode_CompareWithASCIIString(key, names[j]) != 0)
			j++;
		if (j == n) {
			PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument %R",
				     fn, key);
			return -1;
		}
		if (seen & (1u << j)) {
			PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
				     fn, names[j]);
			return -1;
		}
		seen |= 1u << j;
		out[j] = args[nargs + k];
	}
	for (int j = 0; j < nreq; j++)
		if (!(seen & (1u << j))) {
			PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fn,
				     names[j]);
			return -1;
		}
	return 0;
}

int hspy_stream_arg(PyObject *obj, void **out)
{
	if (obj == Py_None) {
		*out = NULL;
		return 0;
	}
	if (!PyLong_Check(obj)) {
		/* A stream object (torch, CuPy, Numba, CUDA Python): its handle,
		 * read by hsbroker._stream_handle. */
		if (!hspy.stream_handle) {
			PyErr_SetString(PyExc_TypeError, "stream must be an int handle");
			return -1;
		}
		PyObject *h = PyObject_CallFunctionObjArgs(hspy.stream_handle, obj, NULL);
		if (!h)
			return -1;
		int rc = hspy_stream_arg(h, out);
		Py_DECREF(h);
		return rc;
	}
	long long v = PyLong_AsLongLong(obj);
	if (v == -1 && PyErr_Occurred()) {
		PyErr_Clear();
		v = (long long)(uintptr_t)PyLong_AsVoidPtr(obj);
		if (PyErr_Occurred())
			return -1;
	}
	*out = (void *)(intptr_t)v;
	return 0;
}

PyObject *hspy_raise(int code, const char *what)
{
	PyObject *type = hspy.error;
	if (code == HS_ETIMEDOUT)
		type = hspy.timeout;
	else if (code == HS_ESHUTDOWN || code == HS_EPIPE || code == HS_ENOBROKER ||
		 code == HS_ECONNREFUSED)
		type = hspy.closed;
	/* str(e) is the message alone (Error.__str__, hsbroker/__init__.py);
	 * the code and its name are attributes. A plain Error's args stay
	 * (message, code, name), as they were; Timeout and Closed are OSErrors,
	 * whose constructor would read three args as errno, strerror and
	 * filename: they get the message alone, and errno/strerror are set
	 * from the code when it is an errno's. */
	bool os_error = type != hspy.error;
	PyObject *msg = what ? PyUnicode_FromFormat("%s: %s", what, hs_strerror(code))
			     : PyUnicode_FromString(hs_strerror(code));
	if (!msg)
		return NULL;
	PyObject *exc = os_error ? PyObject_CallFunctionObjArgs(type, msg, NULL)
				 : PyObject_CallFunction(type, "Ois", msg, code, hs_err_name(code));
	Py_DECREF(msg);
	if (!exc)
		return NULL;
	PyObject *c = PyLong_FromLong(code);
	PyObject *name = PyUnicode_FromString(hs_err_name(code));
	int rc = c && name ? PyObject_SetAttrString(exc, "code", c) : -1;
	if (rc == 0)
		rc = PyObject_SetAttrString(exc, "name", name);
	if (rc == 0 && os_error && code > -4000) {
		PyObject *en = PyLong_FromLong(-code);
		PyObject *es = PyUnicode_FromString(hs_strerror(code));
		rc = en && es ? PyObject_SetAttrString(exc, "errno", en) : -1;
		if (rc == 0)
			rc = PyObject_SetAttrString(exc, "strerror", es);
		Py_XDECREF(en);
		Py_XDECREF(es);
	}
	Py_XDECREF(c);
	Py_XDECREF(name);
	if (rc < 0) {
		Py_DECREF(exc);
		return NULL;
	}
	PyErr_SetObject(type, exc);
	Py_DECREF(exc);
	return NULL;
}

struct dtype_name {
	const char *name;
	const char *typestr;
	uint8_t code, bits;
};

static const struct dtype_name dtypes[] = {
	{ "bool", "|b1", 6, 8 },
	{ "int8", "|i1", kDLInt, 8 },
	{ "int16", "<i2", kDLInt, 16 },
	{ "int32", "<i4", kDLInt, 32 },
	{ "int64", "<i8", kDLInt, 64 },
	{ "uint8", "|u1", kDLUInt, 8 },
	{ "uint16", "<u2", kDLUInt, 16 },
	{ "uint32", "<u4", kDLUInt, 32 },
	{ "uint64", "<u8", kDLUInt, 64 },
	{ "float16", "<f2", kDLFloat, 16 },
	{ "float32", "<f4", kDLFloat, 32 },
	{ "float64", "<f8", kDLFloat, 64 },
	{ "bfloat16", NULL, kDLBfloat, 16 },
	{ "complex64", "<c8", kDLComplex, 64 },
	{ "complex128", "<c16", kDLComplex, 128 },
};
#define N_DTYPES (sizeof(dtypes) / sizeof(dtypes[0]))

const char *hspy_dtype_name(DLDataType t)
{
	for (size_t i = 0; i < N_DTYPES; i++)
		if (dtypes[i].code == t.code && dtypes[i].bits == t.bits && t.lanes == 1)
			return dtypes[i].name;
	return NULL;
}

const char *hspy_dtype_typestr(DLDataType t)
{
	for (size_t i = 0; i < N_DTYPES; i++)
		if (dtypes[i].code == t.code && dtypes[i].bits == t.bits && t.lanes == 1)
			return dtypes[i].typestr;
	return NULL;
}

/* The last non-str dtype object parsed (a numpy or torch dtype) and what it
 * parsed to: a loop that allocates with one dtype asks for its name once. */
static PyObject *last_dtype_obj;
static DLDataType last_dtype;

static int dtype_from_name(const char *s, DLDataType *out)
{
	if (strncmp(s, "torch.", 6) == 0)
		s += 6;
	static const char *const alias[][2] = { { "float", "float32" }, { "double", "float64" },
						{ "half", "float16" }, { "int", "int64" },
						{ "long", "int64" }, { "bool_", "bool" } };
	for (size_t i = 0; i < sizeof(alias) / sizeof(alias[0]); i++)
		if (strcmp(s, alias[i][0]) == 0)
			s = alias[i][1];
	for (size_t i = 0; i < N_DTYPES; i++)
		if (strcmp(dtypes[i].name, s) == 0) {
			*out = (DLDataType){ dtypes[i].code, dtypes[i].bits, 1 };
			return 0;
		}
	PyErr_Format(PyExc_ValueError,
		     "unsupported dtype '%s' (bool, int8..int64, uint8..uint64, "
		     "float16/32/64, bfloat16, complex64/128)", s);
	return -1;
}

int hspy_dtype_parse(PyObject *obj, DLDataType *out)
{
	const char *s;
	if (PyUnicode_Check(obj))
		return hspy_cstr(obj, &s) < 0 ? -1 : dtype_from_name(s, out);
	if (obj == last_dtype_obj) {
		*out = last_dtype;
		return 0;
	}
	/* numpy dtypes and scalar types have .name or __name__; torch dtypes
	 * print as "torch.float32". */
	PyObject *name = PyObject_GetAttrString(obj, "name");
	if (!name) {
		PyErr_Clear();
		name = PyObject_Str(obj);
	}
	if (!name)
		return -1;
	int rc = hspy_cstr(name, &s) < 0 ? -1 : dtype_from_name(s, out);
	Py_DECREF(name);
	if (rc == 0) {
		Py_INCREF(obj);
		PyObject *old = last_dtype_obj;
		last_dtype_obj = obj;
		last_dtype = *out;
		Py_XDECREF(old);
	}
	return rc;
}

int hspy_device_parse(PyObject *obj, DLDevice *out)
{
	if (PyTuple_Check(obj) && PyTuple_Size(obj) == 2) {
		long type = PyLong_AsLong(PyTuple_GetItem(obj, 0));
		long id = PyLong_AsLong(PyTuple_GetItem(obj, 1));
		if (PyErr_Occurred())
			return -1;
		*out = (DLDevice){ (DLDeviceType)type, (int)id };
		return 0;
	}
	const char *s;
	if (hspy_cstr(obj, &s) < 0)
		return -1;
	char *end;
	if (strcmp(s, "cpu") == 0) {
		*out = (DLDevice){ kDLCPU, 0 };
	} else if (strcmp(s, "cuda") == 0) {
		*out = (DLDevice){ kDLCUDA, 0 };
	} else if (strncmp(s, "cuda:", 5) == 0 && s[5] &&
		   (out->device_id = (int)strtol(s + 5, &end, 10), *end == 0) &&
		   out->device_id >= 0) {
		out->device_type = kDLCUDA;
	} else {
		PyErr_Format(PyExc_ValueError, "unknown device '%s' (\"cpu\", \"cuda\", \"cuda:N\")", s);
		return -1;
	}
	return 0;
}

int hspy_add_type(PyObject *module, PyType_Spec *spec, const char *name,
		  PyTypeObject **slot)
{
	*slot = (PyTypeObject *)PyType_FromSpec(spec);
	if (!*slot)
		return -1;
	Py_INCREF(*slot);
	return PyModule_AddObject(module, name, (PyObject *)*slot);
}

static PyObject *py_default_socket(PyObject *self, PyObject *noargs)
{
	char buf[4096];
	int rc = hs_default_socket_path(buf, sizeof(buf));
	if (rc < 0)
		return hspy_raise(rc, "default socket path");
	return PyUnicode_FromString(buf);
}

static PyObject *py_strerror(PyObject *self, PyObject *arg)
{
	long code = PyLong_AsLong(arg);
	if (code == -1 && PyErr_Occurred())
		return NULL;
	return PyUnicode_FromString(hs_strerror((int)code));
}

/* An imported DLManagedTensor, deleted when this capsule goes: keeps a
 * producer's memory alive while we copy out of it. */
static void imported_destructor(PyObject *cap)
{
	DLManagedTensor *m = PyCapsule_GetPointer(cap, "hsbroker.imported");
	if (m && m->deleter)
		m->deleter(m);
}

/* _import_dlpack(capsule) -> (ptr, shape, strides|None, dtype, device, owner):
 * consumes a "dltensor" capsule as the DLPack protocol says (rename to
 * "used_dltensor"; the deleter is ours to call, via owner). */
static PyObject *py_import_dlpack(PyObject *self, PyObject *cap)
{
	DLManagedTensor *m = PyCapsule_GetPointer(cap, "dltensor");
	if (!m)
		return NULL;
	const DLTensor *dl = &m->dl_tensor;
	if (dl->ndim < 0 || dl->ndim > HS_MAX_NDIM) {
		PyErr_Format(PyExc_ValueError, "DLPack tensor has %d dimensions; at most %d",
			     dl->ndim, HS_MAX_NDIM);
		return NULL;
	}
	const char *dn = hspy_dtype_name(dl->dtype);
	if (!dn) {
		PyErr_Format(PyExc_TypeError, "unsupported DLPack dtype (code %d, %d bits, %d lanes)",
			     dl->dtype.code, dl->dtype.bits, dl->dtype.lanes);
		return NULL;
	}
	const char *dev;
	char devbuf[32];
	if (dl->device.device_type == kDLCPU || dl->device.device_type == kDLCUDAHost) {
		dev = "cpu";
	} else if (dl->device.device_type == kDLCUDA) {
		snprintf(devbuf, sizeof(devbuf), "cuda:%d", dl->device.device_id);
		dev = devbuf;
	} else {
		PyErr_Format(PyExc_BufferError, "hsbroker carries host and CUDA tensors, not "
			     "DLPack device type %d", (int)dl->device.device_type);
		return NULL;
	}
	PyObject *shape = PyTuple_New(dl->ndim);
	PyObject *strides = dl->strides ? PyTuple_New(dl->ndim) : (Py_INCREF(Py_None), Py_None);
	if (!shape || !strides) {
		Py_XDECREF(shape);
		Py_XDECREF(strides);
		return NULL;
	}
	for (int i = 0; i < dl->ndim; i++) {
		PyTuple_SetItem(shape, i, PyLong_FromLongLong(dl->shape[i]));
		if (dl->strides)
			PyTuple_SetItem(strides, i, PyLong_FromLongLong(dl->strides[i]));
	}
	if (PyCapsule_SetName(cap, "used_dltensor") < 0) {
		Py_DECREF(shape);
		Py_DECREF(strides);
		return NULL;
	}
	PyObject *owner = PyCapsule_New(m, "hsbroker.imported", imported_destructor);
	if (!owner) {
		m->deleter(m);
		Py_DECREF(shape);
		Py_DECREF(strides);
		return NULL;
	}
	return Py_BuildValue("(NNNssN)", PyLong_FromVoidPtr((char *)dl->data + dl->byte_offset),
			     shape, strides, dn, dev, owner);
}

/* _set_hooks(stream_handle, emit_foreign): the pure-Python halves the C
 * calls reach (hsbroker/__init__.py): a stream object's handle, and the
 * emit of an object that is not a broker Tensor (a copy, or a view of
 * one found by _find). */
static PyObject *py_set_hooks(PyObject *self, PyObject *args)
{
	PyObject *sh, *ef;
	if (!PyArg_ParseTuple(args, "OO", &sh, &ef))
		return NULL;
	Py_INCREF(sh);
	Py_INCREF(ef);
	Py_XDECREF(hspy.stream_handle);
	Py_XDECREF(hspy.emit_foreign);
	hspy.stream_handle = sh;
	hspy.emit_foreign = ef;
	Py_RETURN_NONE;
}

/* _raise(code, what): raises the exception the C calls raise for code. */
static PyObject *py_raise(PyObject *self, PyObject *args)
{
	int code;
	const char *what;
	if (!PyArg_ParseTuple(args, "is", &code, &what))
		return NULL;
	return hspy_raise(code, what);
}

static PyMethodDef module_methods[] = {
	{ "_raise", py_raise, METH_VARARGS, NULL },
	{ "_import_dlpack", py_import_dlpack, METH_O, NULL },
	{ "_order_after", hspy_order_after, METH_VARARGS, NULL },
	{ "_set_hooks", py_set_hooks, METH_VARARGS, NULL },
	{ "default_socket_path", py_default_socket, METH_NOARGS,
	  "default_socket_path()\n--\n\n"
	  "The socket path hsbroker.connect() uses when none is given." },
	{ "strerror", py_strerror, METH_O,
	  "strerror(code, /)\n--\n\nThe text of an hs error code." },
	{ NULL, NULL, 0, NULL },
};

static struct PyModuleDef module_def = {
	PyModuleDef_HEAD_INIT,
	.m_name = "_hsbroker",
	.m_doc = "Low-level bindings to libhsclient; use the hsbroker package.",
	.m_size = -1,
	.m_methods = module_methods,
};

/* An exception class of the module: doc, bases, and the class attributes
 * code and name (None until an instance raised by the module sets them). */
static PyObject *new_error(const char *name, const char *doc, PyObject *base1, PyObject *base2)
{
	PyObject *bases = base2 ? PyTuple_Pack(2, base1, base2) : PyTuple_Pack(1, base1);
	PyObject *dict = bases ? Py_BuildValue("{s:O,s:O}", "code", Py_None, "name", Py_None)
			       : NULL;
	PyObject *e = dict ? PyErr_NewExceptionWithDoc(name, doc, bases, dict) : NULL;
	Py_XDECREF(bases);
	Py_XDECREF(dict);
	return e;
}

PyMODINIT_FUNC PyInit__hsbroker(void);
PyMODINIT_FUNC PyInit__hsbroker(void)
{
	PyObject *m = PyModule_Create(&module_def);
	if (!m)
		return NULL;
	hspy.error = new_error(
		"hsbroker.Error",
		"An error from hsbrokerd or libhsclient. str(e) is the message, with "
		"what was being done (a path, a topic); e.code is the negative hs "
		"error code (hsbroker.strerror(e.code) its text) and e.name its "
		"symbolic name, e.g. 'HS_ENOSPC'.", PyExc_Exception, NULL);
	hspy.timeout = hspy.error ? new_error(
		"hsbroker.Timeout",
		"Nothing arrived in time (HS_ETIMEDOUT): Subscription.receive with a "
		"timeout. Also a TimeoutError.", hspy.error, PyExc_TimeoutError) : NULL;
	hspy.closed = hspy.error ? new_error(
		"hsbroker.Closed",
		"The broker is gone or going (HS_ENOBROKER, HS_ECONNREFUSED, HS_EPIPE, "
		"HS_ESHUTDOWN): the connection cannot be used again. Also a "
		"ConnectionError.", hspy.error, PyExc_ConnectionError) : NULL;
	if (!hspy.timeout || !hspy.closed)
		goto fail;
	Py_INCREF(hspy.error);
	Py_INCREF(hspy.timeout);
	Py_INCREF(hspy.closed);
	if (PyModule_AddObject(m, "Error", hspy.error) < 0 ||
	    PyModule_AddObject(m, "Timeout", hspy.timeout) < 0 ||
	    PyModule_AddObject(m, "Closed", hspy.closed) < 0)
		goto fail;
	if (hspy_client_type_init(m) < 0 || hspy_tensor_type_init(m) < 0 ||
	    hspy_sub_type_init(m) < 0)
		goto fail;
	if (PyModule_AddIntConstant(m, "POLICY_BLOCK", HS_POLICY_BLOCK) < 0 ||
	    PyModule_AddIntConstant(m, "POLICY_DROP_OLDEST", HS_POLICY_DROP_OLDEST) < 0 ||
	    PyModule_AddIntConstant(m, "POLICY_DROP_NEWEST", HS_POLICY_DROP_NEWEST) < 0 ||
	    PyModule_AddIntConstant(m, "PROTOCOL_VERSION", HS_PROTOCOL_VERSION) < 0 ||
	    PyModule_AddStringConstant(m, "__version__", HS_VERSION) < 0 ||
	    PyModule_AddIntConstant(m, "_ETIMEDOUT", HS_ETIMEDOUT) < 0 ||
	    PyModule_AddIntConstant(m, "_ESHUTDOWN", HS_ESHUTDOWN) < 0)
		goto fail;
	return m;
fail:
	Py_DECREF(m);
	return NULL;
}
