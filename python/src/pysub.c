/* hsbroker.Subscription: receive() and iteration over a topic. */
#include "hspy.h"

#include <math.h>

static int sub_ok(hspy_sub *self)
{
	if (!self->s) {
		PyErr_SetString(PyExc_ValueError, "the subscription is closed");
		return -1;
	}
	if (!self->client->c) {
		PyErr_SetString(PyExc_ValueError, "the hsbroker client is closed");
		return -1;
	}
	return 0;
}

static void sub_close_now(hspy_sub *self)
{
	hs_subscription *s = self->s;
	self->s = NULL;
	if (!s)
		return;
	Py_BEGIN_ALLOW_THREADS
	hs_subscription_close(s);
	Py_END_ALLOW_THREADS
	hspy_client_unref_live(self->client);
}

static void sub_dealloc(PyObject *obj)
{
	hspy_sub *self = (hspy_sub *)obj;
	hspy_client *c = self->client;
	sub_close_now(self);
	Py_XDECREF(self->topic);
	PyTypeObject *tp = Py_TYPE(obj);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
	tp_free(obj);
	Py_DECREF(tp);
	Py_XDECREF(c);
}

/* What receive hands back: the Tensor, or with as_ its ready-to-use view
 * (which then owns the reference). Steals t. */
static PyObject *hand_out(hspy_sub *self, hs_tensor *t, PyObject *as, PyObject *stream)
{
	hspy_tensor *ten = hspy_tensor_wrap(self->client, t);
	if (!ten || !as || as == Py_None)
		return (PyObject *)ten;
	PyObject *view = hspy_tensor_view(ten, as, stream, true);
	Py_DECREF(ten); /* without a view: released here, nothing held */
	return view;
}

/* Waits in slices so Ctrl-C reaches a Python program blocked here.
 * timeout < 0: for ever. */
static PyObject *receive(hspy_sub *self, double timeout, bool iterating, PyObject *as,
			 PyObject *stream)
{
	if (sub_ok(self) < 0)
		return NULL;
	const int slice_ms = 100;
	double left_ms = timeout < 0 ? INFINITY : timeout * 1000.0;
	for (;;) {
		int wait = left_ms > slice_ms ? slice_ms : (int)left_ms;
		hs_tensor *t = NULL;
		int rc;
		Py_BEGIN_ALLOW_THREADS
		rc = hs_subscription_receive(self->s, wait, &t);
		Py_END_ALLOW_THREADS
		if (rc == 0)
			return hand_out(self, t, as, stream);
		if (rc != HS_ETIMEDOUT) {
			if (iterating && rc == HS_ESHUTDOWN) {
				PyErr_SetNone(PyExc_StopIteration);
				return NULL;
			}
			return hspy_raise(rc, "receive");
		}
		if (PyErr_CheckSignals() < 0)
			return NULL;
		left_ms -= wait;
		if (left_ms <= 0)
			return hspy_raise(HS_ETIMEDOUT, "receive");
	}
}

static PyObject *sub_receive(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = { "timeout", "as_", "stream" };
	PyObject *a[3] = { Py_None, Py_None, Py_None };
	if (hspy_args("receive", args, nargs, kwnames, names, 3, 3, 0, a) < 0)
		return NULL;
	double timeout = -1;
	if (a[0] != Py_None) {
		timeout = PyFloat_AsDouble(a[0]);
		if (timeout == -1 && PyErr_Occurred())
			return NULL;
		if (timeout < 0) {
			PyErr_SetString(PyExc_ValueError, "timeout must be >= 0 or None");
			return NULL;
		}
	}
	return receive((hspy_sub *)obj, timeout, false, a[1], a[2]);
}

/* _poll(as_=None, stream=None): a tensor already here, or None; never
 * waits (the asyncio receive's step: hsbroker/_aio.py). */
static PyObject *sub_poll(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			  PyObject *kwnames)
{
	hspy_sub *self = (hspy_sub *)obj;
	static const char *const names[] = { "as_", "stream" };
	PyObject *a[2] = { Py_None, Py_None };
	if (hspy_args("_poll", args, nargs, kwnames, names, 2, 2, 0, a) < 0)
		return NULL;
	if (sub_ok(self) < 0)
		return NULL;
	hs_tensor *t = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_subscription_receive(self->s, 0, &t);
	Py_END_ALLOW_THREADS
	if (rc == 0)
		return hand_out(self, t, a[0], a[1]);
	if (rc == HS_ETIMEDOUT)
		Py_RETURN_NONE;
	return hspy_raise(rc, "receive");
}

static PyObject *sub_iternext(PyObject *obj)
{
	return receive((hspy_sub *)obj, -1, true, NULL, NULL);
}

static PyObject *sub_iter(PyObject *obj)
{
	Py_INCREF(obj);
	return obj;
}

static PyObject *sub_close(PyObject *obj, PyObject *noargs)
{
	sub_close_now((hspy_sub *)obj);
	Py_RETURN_NONE;
}

static PyObject *sub_enter(PyObject *obj, PyObject *noargs)
{
	Py_INCREF(obj);
	return obj;
}

static PyObject *sub_exit(PyObject *obj, PyObject *args)
{
	sub_close_now((hspy_sub *)obj);
	Py_RETURN_FALSE;
}

static PyObject *get_dropped(PyObject *obj, void *c)
{
	hspy_sub *self = (hspy_sub *)obj;
	if (sub_ok(self) < 0)
		return NULL;
	return PyLong_FromUnsignedLongLong(hs_subscription_dropped(self->s));
}

static PyObject *get_topic(PyObject *obj, void *c)
{
	hspy_sub *self = (hspy_sub *)obj;
	Py_INCREF(self->topic);
	return self->topic;
}

static PyObject *get_client(PyObject *obj, void *c)
{
	hspy_sub *self = (hspy_sub *)obj;
	Py_INCREF(self->client);
	return (PyObject *)self->client;
}

static PyObject *sub_new(PyTypeObject *t, PyObject *a, PyObject *k)
{
	PyErr_SetString(PyExc_TypeError, "hsbroker.Subscription is made by Client.subscribe");
	return NULL;
}

static PyMethodDef sub_methods[] = {
	{ "receive", HSPY_FASTCALL_KW(sub_receive), METH_FASTCALL | METH_KEYWORDS,
	  "receive($self, /, timeout=None, as_=None, stream=None)\n--\n\n"
	  "The next tensor (waiting up to timeout seconds; None: for ever), or "
	  "raises hsbroker.Timeout. With as_ ('torch', 'numpy' or a callable given "
	  "a DLPack capsule), its ready-to-use view instead (Tensor.view), which "
	  "owns the reference: the tensor is released once the view is deleted, "
	  "after the GPU work queued on stream (else the current torch stream)." },
	{ "_poll", HSPY_FASTCALL_KW(sub_poll), METH_FASTCALL | METH_KEYWORDS, NULL },
	{ "close", sub_close, METH_NOARGS,
	  "close($self, /)\n--\n\nUnsubscribe; received tensors stay valid." },
	{ "__enter__", sub_enter, METH_NOARGS, NULL },
	{ "__exit__", sub_exit, METH_VARARGS, NULL },
	{ NULL, NULL, 0, NULL },
};

static PyGetSetDef sub_getset[] = {
	{ "dropped", get_dropped, NULL, "tensors lost to the drop policy so far", NULL },
	{ "topic", get_topic, NULL, "the topic's name", NULL },
	{ "client", get_client, NULL, "the Client it belongs to", NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot sub_slots[] = {
	{ Py_tp_new, sub_new },
	{ Py_tp_dealloc, sub_dealloc },
	{ Py_tp_methods, sub_methods },
	{ Py_tp_getset, sub_getset },
	{ Py_tp_iter, sub_iter },
	{ Py_tp_iternext, sub_iternext },
	{ Py_tp_doc, "A subscription to a topic; iterate it or call receive()." },
	{ 0, NULL },
};

static PyType_Spec sub_spec = {
	.name = "hsbroker.Subscription",
	.basicsize = sizeof(hspy_sub),
	.flags = Py_TPFLAGS_DEFAULT,
	.slots = sub_slots,
};

int hspy_sub_type_init(PyObject *module)
{
	return hspy_add_type(module, &sub_spec, "Subscription", &hspy.sub_type);
}
