/* hsbroker.Client (the C half; hsbroker/__init__.py adds the idioms). */
#include "hspy.h"

#include <string.h>

int hspy_tensor_take(hspy_tensor *self, bool has_stream, void *stream, hs_tensor **out,
		     void **stream_out);

static int client_ok(hspy_client *self)
{
	if (!self->c || self->closing) {
		PyErr_SetString(PyExc_ValueError, "the hsbroker client is closed");
		return -1;
	}
	return 0;
}

static void do_disconnect(hspy_client *self)
{
	hs_client *c = self->c;
	self->c = NULL;
	if (!c)
		return;
	Py_BEGIN_ALLOW_THREADS
	hs_client_disconnect(c);
	Py_END_ALLOW_THREADS
	hspy_client_stream_destroy(self);
}

void hspy_client_unref_live(hspy_client *client)
{
	if (--client->live == 0 && client->closing)
		do_disconnect(client);
}

static PyObject *client_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *kwlist[] = { "path", "name", NULL };
	const char *path = NULL, *name = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|zz", kwlist, &path, &name))
		return NULL;
	hs_client *c = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_client_connect(path, name, &c);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		char where[4200];
		char def[4096];
		if (!path && hs_default_socket_path(def, sizeof(def)) == 0)
			path = def;
		snprintf(where, sizeof(where), "cannot connect to %s", path ? path : "(default)");
		return hspy_raise(rc, where);
	}
	allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
	hspy_client *self = (hspy_client *)alloc(type, 0);
	if (!self) {
		hs_client_disconnect(c);
		return NULL;
	}
	self->c = c;
	self->closing = false;
	self->live = 0;
	self->tensors = NULL;
	self->stream = NULL;
	self->join_stream = NULL;
	self->join_event = NULL;
	return (PyObject *)self;
}

static void client_dealloc(PyObject *obj)
{
	hspy_client *self = (hspy_client *)obj;
	do_disconnect(self);
	PyTypeObject *tp = Py_TYPE(obj);
	freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);
	tp_free(obj);
	Py_DECREF(tp);
}

static PyObject *client_close(PyObject *obj, PyObject *noargs)
{
	hspy_client *self = (hspy_client *)obj;
	self->closing = true;
	if (self->live == 0)
		do_disconnect(self);
	Py_RETURN_NONE;
}

static int parse_shape(PyObject *obj, int64_t *out, int32_t *ndim, const char *what)
{
	if (PyLong_Check(obj)) {
		out[0] = PyLong_AsLongLong(obj);
		*ndim = 1;
		return PyErr_Occurred() ? -1 : 0;
	}
	PyObject *seq = PySequence_Tuple(obj);
	if (!seq) {
		PyErr_Format(PyExc_TypeError, "%s must be an int or a sequence of ints", what);
		return -1;
	}
	Py_ssize_t n = PyTuple_Size(seq);
	if (n > HS_MAX_NDIM) {
		Py_DECREF(seq);
		PyErr_Format(PyExc_ValueError, "%s has %zd dimensions; at most %d", what, n,
			     HS_MAX_NDIM);
		return -1;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		out[i] = PyLong_AsLongLong(PyTuple_GetItem(seq, i));
		if (PyErr_Occurred()) {
			Py_DECREF(seq);
			PyErr_Format(PyExc_TypeError, "%s must hold ints", what);
			return -1;
		}
	}
	*ndim = (int32_t)n;
	Py_DECREF(seq);
	return 0;
}

static PyObject *client_alloc(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			      PyObject *kwnames)
{
	hspy_client *self = (hspy_client *)obj;
	static const char *const names[] = { "shape", "dtype", "device", "strides" };
	PyObject *a[4] = { NULL, NULL, NULL, Py_None };
	if (hspy_args("alloc", args, nargs, kwnames, names, 4, 4, 2, a) < 0)
		return NULL;
	PyObject *shape_obj = a[0], *dtype_obj = a[1], *dev_obj = a[2], *strides_obj = a[3];
	if (client_ok(self) < 0)
		return NULL;
	int64_t shape[HS_MAX_NDIM], strides[HS_MAX_NDIM];
	int32_t ndim, sdim = 0;
	DLDataType dtype;
	DLDevice dev = { kDLCPU, 0 };
	if (parse_shape(shape_obj, shape, &ndim, "shape") < 0 ||
	    hspy_dtype_parse(dtype_obj, &dtype) < 0 ||
	    (dev_obj && dev_obj != Py_None && hspy_device_parse(dev_obj, &dev) < 0))
		return NULL;
	for (int i = 0; i < ndim; i++)
		if (shape[i] < 0) {
			PyErr_Format(PyExc_ValueError, "shape[%d] is negative (%lld)", i,
				     (long long)shape[i]);
			return NULL;
		}
	if (strides_obj != Py_None) {
		if (parse_shape(strides_obj, strides, &sdim, "strides") < 0)
			return NULL;
		if (sdim != ndim) {
			PyErr_Format(PyExc_ValueError, "strides has %d entries, shape %d", sdim,
				     ndim);
			return NULL;
		}
	}
	hs_tensor *t = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_tensor_alloc(self->c, dev, dtype, ndim, shape,
			     strides_obj != Py_None ? strides : NULL, &t);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return hspy_raise(rc, "alloc");
	return (PyObject *)hspy_tensor_wrap(self, t);
}

/* emit(topic, obj, stream=None, wait=False). A broker Tensor's reference
 * moves to the topic here; anything else goes to hsbroker._emit_foreign
 * (a view of a live Tensor found by _find, or a copy), which comes back
 * with a Tensor. With wait, returns the sequence number once the daemon
 * accepted it; without, None as soon as the emit is sent (hs_tensor_emit
 * without seq_out). */
static PyObject *client_emit(PyObject *obj, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	hspy_client *self = (hspy_client *)obj;
	static const char *const names[] = { "topic", "obj", "stream", "wait" };
	PyObject *a[4] = { NULL, NULL, Py_None, Py_False };
	if (hspy_args("emit", args, nargs, kwnames, names, 4, 4, 2, a) < 0)
		return NULL;
	if (client_ok(self) < 0)
		return NULL;
	if (!PyObject_TypeCheck(a[1], hspy.tensor_type)) {
		if (!hspy.emit_foreign) {
			PyErr_SetString(PyExc_TypeError, "emit takes an hsbroker.Tensor");
			return NULL;
		}
		return PyObject_CallFunctionObjArgs(hspy.emit_foreign, obj, a[0], a[1], a[2],
						    a[3], NULL);
	}
	const char *topic;
	if (hspy_cstr(a[0], &topic) < 0)
		return NULL;
	int wait = PyObject_IsTrue(a[3]);
	if (wait < 0)
		return NULL;
	hspy_tensor *ten = (hspy_tensor *)a[1];
	if (ten->client != self) {
		PyErr_SetString(PyExc_ValueError, "the tensor belongs to another client");
		return NULL;
	}
	void *stream = NULL;
	if (hspy_stream_arg(a[2], &stream) < 0)
		return NULL;
	hs_tensor *t;
	if (hspy_tensor_take(ten, a[2] != Py_None, stream, &t, &stream) < 0)
		return NULL;
	uint64_t seq = 0;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_tensor_emit(t, topic, stream, wait ? &seq : NULL);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return hspy_raise(rc, topic);
	if (!wait)
		Py_RETURN_NONE;
	ten->seq = seq;
	return PyLong_FromUnsignedLongLong(seq);
}

/* _find(ptr, dtype, shape, strides_or_None, device): the live Tensor of
 * this client that is exactly that view, for zero-copy emit; else None. */
static PyObject *client_find(PyObject *obj, PyObject *args)
{
	hspy_client *self = (hspy_client *)obj;
	PyObject *ptr_obj, *dtype_obj, *shape_obj, *strides_obj, *dev_obj;
	if (!PyArg_ParseTuple(args, "OOOOO", &ptr_obj, &dtype_obj, &shape_obj, &strides_obj,
			      &dev_obj))
		return NULL;
	void *ptr = PyLong_AsVoidPtr(ptr_obj);
	DLDataType dt;
	DLDevice dev;
	int64_t shape[HS_MAX_NDIM], strides[HS_MAX_NDIM];
	int32_t ndim, sdim = -1;
	if (PyErr_Occurred() || hspy_dtype_parse(dtype_obj, &dt) < 0 ||
	    hspy_device_parse(dev_obj, &dev) < 0 ||
	    parse_shape(shape_obj, shape, &ndim, "shape") < 0 ||
	    (strides_obj != Py_None && parse_shape(strides_obj, strides, &sdim, "strides") < 0))
		return NULL;
	for (hspy_tensor *t = self->tensors; t; t = t->next) {
		if (!t->t || t->released || hs_tensor_data(t->t) != ptr)
			continue;
		const DLTensor *dl = hs_tensor_dltensor(t->t);
		if (dl->ndim != ndim || dl->dtype.code != dt.code || dl->dtype.bits != dt.bits ||
		    dl->device.device_type != dev.device_type ||
		    dl->device.device_id != dev.device_id ||
		    memcmp(dl->shape, shape, sizeof(int64_t) * (size_t)ndim) != 0)
			continue;
		/* Strides must match, compact being spelled either way. */
		int64_t want[HS_MAX_NDIM], have[HS_MAX_NDIM];
		int64_t s = 1;
		for (int i = ndim - 1; i >= 0; i--) {
			want[i] = sdim >= 0 ? strides[i] : s;
			have[i] = dl->strides ? dl->strides[i] : s;
			s *= shape[i];
		}
		bool same = true;
		for (int i = 0; i < ndim; i++)
			if (shape[i] > 1 && want[i] != have[i])
				same = false;
		if (same) {
			Py_INCREF(t);
			return (PyObject *)t;
		}
	}
	Py_RETURN_NONE;
}

static PyObject *client_subscribe(PyObject *obj, PyObject *args, PyObject *kw);

static PyObject *client_ping(PyObject *obj, PyObject *noargs)
{
	hspy_client *self = (hspy_client *)obj;
	if (client_ok(self) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_client_ping(self->c);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return hspy_raise(rc, "ping");
	Py_RETURN_NONE;
}

static PyObject *client_fileno(PyObject *obj, PyObject *noargs)
{
	hspy_client *self = (hspy_client *)obj;
	if (client_ok(self) < 0)
		return NULL;
	return PyLong_FromLong(hs_client_get_fd(self->c));
}

static PyObject *client_dispatch(PyObject *obj, PyObject *noargs)
{
	hspy_client *self = (hspy_client *)obj;
	if (client_ok(self) < 0)
		return NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_client_dispatch(self->c);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return hspy_raise(rc, "dispatch");
	return PyLong_FromLong(rc);
}

static PyObject *client_stats(PyObject *obj, PyObject *noargs)
{
	hspy_client *self = (hspy_client *)obj;
	if (client_ok(self) < 0)
		return NULL;
	hs_client_stats st;
	int rc = hs_client_get_stats(self->c, &st);
	if (rc < 0)
		return hspy_raise(rc, "stats");
	return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:i,s:K,s:O}", "slabs_mapped",
			     (unsigned long long)st.slabs_mapped, "slab_opens",
			     (unsigned long long)st.slab_opens, "tensors_held",
			     (unsigned long long)st.tensors_held, "messages_sent",
			     (unsigned long long)st.messages_sent, "messages_received",
			     (unsigned long long)st.messages_received, "epoch",
			     (unsigned long long)st.epoch, "event_opens",
			     (unsigned long long)st.event_opens, "emits_refused",
			     (unsigned long long)st.emits_refused, "emit_last_error",
			     (int)st.emit_last_error, "spare_hits",
			     (unsigned long long)st.spare_hits, "shared_channel",
			     st.shared_channel ? Py_True : Py_False);
}

static PyObject *device_tuple(DLDevice d)
{
	if (d.device_type == kDLCPU)
		return PyUnicode_FromString("cpu");
	return PyUnicode_FromFormat("cuda:%d", d.device_id);
}

static const char *policy_name(enum hs_policy p)
{
	return p == HS_POLICY_DROP_OLDEST ? "drop-oldest"
	       : p == HS_POLICY_DROP_NEWEST ? "drop-newest" : "block";
}

/* Appends item to list and drops the caller's reference; -1 on error. */
static int append(PyObject *list, PyObject *item)
{
	if (!item)
		return -1;
	int rc = PyList_Append(list, item);
	Py_DECREF(item);
	return rc;
}

static PyObject *info_to_dict(const hs_info *in)
{
	PyObject *tensors = PyList_New(0), *topics = PyList_New(0), *clients = PyList_New(0),
		 *pools = PyList_New(0);
	if (!tensors || !topics || !clients || !pools)
		goto fail;
	for (size_t i = 0; i < in->n_tensors; i++) {
		const hs_tensor_info *t = &in->tensors[i];
		const char *dn = hspy_dtype_name(t->dtype);
		PyObject *shape = PyTuple_New(t->ndim);
		if (!shape)
			goto fail;
		for (int k = 0; k < t->ndim; k++)
			PyTuple_SetItem(shape, k, PyLong_FromLongLong(t->shape[k]));
		if (append(tensors, Py_BuildValue(
				   "{s:K,s:s,s:K,s:s,s:N,s:N,s:K,s:I,s:i,s:s,s:K}", "id",
				   (unsigned long long)t->id, "topic", t->topic, "seq",
				   (unsigned long long)t->seq, "dtype", dn ? dn : "?", "shape",
				   shape, "device", device_tuple(t->device), "nbytes",
				   (unsigned long long)t->nbytes, "refs", t->refs, "owner_pid",
				   t->owner_pid, "owner_name", t->owner_name, "age_us",
				   (unsigned long long)t->age_us)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < in->n_topics; i++) {
		const hs_topic_info *t = &in->topics[i];
		PyObject *subs = PyList_New(0);
		if (!subs)
			goto fail;
		for (uint32_t k = 0; k < t->n_subscribers; k++) {
			const hs_subscriber_info *s = &t->subscribers[k];
			if (append(subs, Py_BuildValue("{s:K,s:i,s:s,s:I,s:s,s:I,s:K,s:K}",
						       "subscription",
						       (unsigned long long)s->subscription,
						       "pid", s->pid, "name", s->name, "depth",
						       s->depth, "policy", policy_name(s->policy),
						       "queued", s->queued, "delivered",
						       (unsigned long long)s->delivered, "dropped",
						       (unsigned long long)s->dropped)) < 0) {
				Py_DECREF(subs);
				goto fail;
			}
		}
		if (append(topics, Py_BuildValue("{s:s,s:K,s:K,s:I,s:N}", "name", t->name,
						 "emitted", (unsigned long long)t->emitted,
						 "dropped", (unsigned long long)t->dropped,
						 "blocked_emits", t->blocked_emits, "subscribers",
						 subs)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < in->n_clients; i++) {
		const hs_client_info *c = &in->clients[i];
		if (append(clients, Py_BuildValue("{s:K,s:i,s:I,s:I,s:s,s:I,s:K,s:I,s:I,s:s,s:K}",
						  "session", (unsigned long long)c->session_id,
						  "pid", c->pid, "uid", c->uid, "gid", c->gid,
						  "name", c->name, "tensors_held", c->tensors_held,
						  "bytes_held", (unsigned long long)c->bytes_held,
						  "subscriptions", c->subscriptions, "slabs_mapped",
						  c->slabs_mapped, "transport",
						  c->shared_channel ? "shm" : "socket", "age_us",
						  (unsigned long long)c->age_us)) < 0)
			goto fail;
	}
	for (size_t i = 0; i < in->n_pools; i++) {
		const hs_pool_info *p = &in->pools[i];
		if (append(pools, Py_BuildValue("{s:N,s:K,s:I,s:K,s:K,s:K,s:K,s:K,s:I,s:s}", "device",
						device_tuple(p->device), "slab_size",
						(unsigned long long)p->slab_size, "slabs", p->slabs,
						"total", (unsigned long long)p->total, "used",
						(unsigned long long)p->used, "free",
						(unsigned long long)p->free, "largest_free",
						(unsigned long long)p->largest_free, "cap",
						(unsigned long long)p->cap, "tensors",
						p->tensors, "slab_kind", p->slab_kind)) < 0)
			goto fail;
	}
	return Py_BuildValue("{s:K,s:K,s:s,s:N,s:N,s:N,s:N}", "epoch",
			     (unsigned long long)in->epoch, "uptime_us",
			     (unsigned long long)in->uptime_us, "version", in->daemon_version,
			     "tensors", tensors, "topics", topics, "clients", clients, "pools",
			     pools);
fail:
	Py_XDECREF(tensors);
	Py_XDECREF(topics);
	Py_XDECREF(clients);
	Py_XDECREF(pools);
	return NULL;
}

static PyObject *client_info(PyObject *obj, PyObject *args)
{
	hspy_client *self = (hspy_client *)obj;
	int what = HS_INFO_ALL;
	if (!PyArg_ParseTuple(args, "|i", &what))
		return NULL;
	if (client_ok(self) < 0)
		return NULL;
	hs_info *in = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_client_get_info(self->c, (enum hs_info_what)what, &in);
	Py_END_ALLOW_THREADS
	if (rc < 0)
		return hspy_raise(rc, "info");
	PyObject *d = info_to_dict(in);
	hs_info_free(in);
	return d;
}

static PyObject *get_closed(PyObject *obj, void *c)
{
	hspy_client *self = (hspy_client *)obj;
	return PyBool_FromLong(!self->c || self->closing);
}

static PyMethodDef client_methods[] = {
	{ "close", client_close, METH_NOARGS,
	  "close($self, /)\n--\n\n"
	  "Disconnect (at once, or when the last tensor/subscription of this client goes)." },
	{ "alloc", HSPY_FASTCALL_KW(client_alloc), METH_FASTCALL | METH_KEYWORDS,
	  "alloc($self, /, shape, dtype, device='cpu', strides=None)\n--\n\n"
	  "A new tensor in broker memory (uninitialised): shape an int or a sequence, "
	  "dtype a name ('float32'), a NumPy or a torch dtype, device 'cpu', 'cuda' "
	  "or 'cuda:N', strides in elements." },
	{ "emit", HSPY_FASTCALL_KW(client_emit), METH_FASTCALL | METH_KEYWORDS,
	  "emit($self, /, topic, obj, stream=None, wait=False)\n--\n\n"
	  "Emit obj on topic.\n\n"
	  "A broker Tensor (or an exact view of one, e.g. from torch.from_dlpack) "
	  "moves to the topic without a copy and must not be used afterwards. Any "
	  "other array is copied once into a new broker tensor on its device "
	  "(device to device for GPU data), on stream when given.\n\n"
	  "A GPU tensor's ready fence goes on stream; with none, after the streams "
	  "the tensor was handed out on (the views it was written through), else on "
	  "the legacy default stream.\n\n"
	  "Returns None as soon as the emit is sent: the daemon's answer is not "
	  "waited for (a refusal is counted in stats()), and only when several "
	  "emits are unanswered does the next one wait, e.g. for a full BLOCK "
	  "subscriber. With wait=True it returns the topic's sequence number once "
	  "the daemon accepted the emit, and raises its refusal." },
	{ "_find", client_find, METH_VARARGS, NULL },
	{ "subscribe", (PyCFunction)(void (*)(void))client_subscribe,
	  METH_VARARGS | METH_KEYWORDS,
	  "subscribe($self, /, topic, depth=8, policy='block', block_timeout_ms=0)\n--\n\n"
	  "A Subscription to topic: iterate it (also with async for), or call "
	  "receive(). policy: 'block', 'drop-oldest' or 'drop-newest'." },
	{ "ping", client_ping, METH_NOARGS, "ping($self, /)\n--\n\nRound trip to the daemon." },
	{ "fileno", client_fileno, METH_NOARGS,
	  "fileno($self, /)\n--\n\nA pollable fd; call dispatch() when readable." },
	{ "dispatch", client_dispatch, METH_NOARGS,
	  "dispatch($self, /)\n--\n\n"
	  "Handle what the daemon sent, without blocking; the number of messages." },
	{ "stats", client_stats, METH_NOARGS,
	  "stats($self, /)\n--\n\nThis client's counters (mapping cache, messages)." },
	{ "info", client_info, METH_VARARGS,
	  "info($self, what=0, /)\n--\n\nA snapshot of what the broker holds, as a dict." },
	{ NULL, NULL, 0, NULL },
};

static PyGetSetDef client_getset[] = {
	{ "closed", get_closed, NULL, "True once close() was called", NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static PyType_Slot client_slots[] = {
	{ Py_tp_new, client_new },
	{ Py_tp_dealloc, client_dealloc },
	{ Py_tp_methods, client_methods },
	{ Py_tp_getset, client_getset },
	{ Py_tp_doc, "_Client(path=None, name=None)\n--\n\nA connection to hsbrokerd." },
	{ 0, NULL },
};

static PyType_Spec client_spec = {
	.name = "hsbroker._Client",
	.basicsize = sizeof(hspy_client),
	.flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.slots = client_slots,
};

int hspy_client_type_init(PyObject *module)
{
	return hspy_add_type(module, &client_spec, "_Client", &hspy.client_type);
}

/* ---- subscriptions ---- */

static PyObject *client_subscribe(PyObject *obj, PyObject *args, PyObject *kw)
{
	hspy_client *self = (hspy_client *)obj;
	static char *kwlist[] = { "topic", "depth", "policy", "block_timeout_ms", NULL };
	PyObject *topic;
	unsigned int depth = 8, block_timeout_ms = 0;
	PyObject *policy_obj = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "U|IOI", kwlist, &topic, &depth, &policy_obj,
					 &block_timeout_ms))
		return NULL;
	if (client_ok(self) < 0)
		return NULL;
	hs_subscribe_opts o = { .depth = depth, .policy = HS_POLICY_BLOCK,
				.block_timeout_ms = block_timeout_ms };
	if (depth < 1) {
		PyErr_SetString(PyExc_ValueError, "depth must be at least 1");
		return NULL;
	}
	if (policy_obj && policy_obj != Py_None) {
		const char *p;
		PyObject *b = PyLong_Check(policy_obj) ? NULL : hspy_utf8(policy_obj, &p);
		if (PyLong_Check(policy_obj)) {
			long v = PyLong_AsLong(policy_obj);
			if (v < 0 || v > 2) {
				PyErr_SetString(PyExc_ValueError, "policy must be 0, 1 or 2");
				return NULL;
			}
			o.policy = (enum hs_policy)v;
		} else if (!b) {
			return NULL;
		} else {
			if (strcmp(p, "block") == 0)
				o.policy = HS_POLICY_BLOCK;
			else if (strcmp(p, "drop-oldest") == 0 || strcmp(p, "drop_oldest") == 0)
				o.policy = HS_POLICY_DROP_OLDEST;
			else if (strcmp(p, "drop-newest") == 0 || strcmp(p, "drop_newest") == 0)
				o.policy = HS_POLICY_DROP_NEWEST;
			else {
				PyErr_Format(PyExc_ValueError,
					     "unknown policy '%s' (block, drop-oldest, drop-newest)", p);
				Py_DECREF(b);
				return NULL;
			}
			Py_DECREF(b);
		}
	}
	const char *name;
	PyObject *tb = hspy_utf8(topic, &name);
	if (!tb)
		return NULL;
	hs_subscription *s = NULL;
	int rc;
	Py_BEGIN_ALLOW_THREADS
	rc = hs_subscribe(self->c, name, &o, &s);
	Py_END_ALLOW_THREADS
	if (rc < 0) {
		PyObject *r = hspy_raise(rc, name);
		Py_DECREF(tb);
		return r;
	}
	Py_DECREF(tb);
	hspy_sub *sub = PyObject_New(hspy_sub, hspy.sub_type);
	if (!sub) {
		hs_subscription_close(s);
		return NULL;
	}
	Py_INCREF(self);
	sub->client = self;
	sub->s = s;
	Py_INCREF(topic);
	sub->topic = topic;
	self->live++;
	return (PyObject *)sub;
}
