"""hsbroker: hand tensors between processes through shared memory, no copy.

    import hsbroker, numpy as np
    with hsbroker.connect() as client:
        t = client.alloc((4, 256), "float32")        # broker memory
        np.asarray(t)[:] = 1.0                       # write in place
        client.emit("demo/frames", t)                # t moves to the topic

    with hsbroker.connect() as client:
        for t in client.subscribe("demo/frames"):    # one reference each
            with t:
                x = np.from_dlpack(t)                # or torch/cupy.from_dlpack
                ...

Tensors speak DLPack (``__dlpack__``/``__dlpack_device__``), the CUDA array
interface (GPU) and the array interface (host). ``emit`` takes any object
that speaks one of them: a broker tensor moves without a copy, anything
else is copied once into broker memory on its own device.

A GPU tensor remembers the streams it was handed out on (the stream given
to ``__dlpack__``; the legacy default stream for the CUDA array
interface). ``release()``, leaving ``with``, garbage collection and the
last DLPack capsule's deleter release it only after the GPU work queued on
those streams (and on the stream given to ``release``), with no host
synchronisation; ``STREAM_DONE`` releases at once. docs/gpu.md, "What is
safe", says which idioms that covers.
"""

from . import _hsbroker
from ._hsbroker import Closed, Error, Subscription, Tensor, Timeout

__all__ = [
    "Client", "Closed", "Error", "STREAM_DONE", "Subscription", "Tensor", "Timeout",
    "as_tensor", "connect", "default_socket_path", "strerror", "__version__",
]

#: The version of hsbroker this module was built from (libhsclient's).
__version__ = _hsbroker.__version__


def _error_str(self):
    # args are (message, code, name) for the errors hsbroker raises, and
    # whatever was given for one made by hand: str(e) is the message.
    return str(self.args[0]) if self.args else ""


Error.__str__ = _error_str

#: ``Tensor.release(stream=STREAM_DONE)``: "my GPU work on it is already
#: complete", release at once (HS_STREAM_DONE in C). Only after a host
#: synchronisation: another process may rewrite the block at once.
STREAM_DONE = -1

default_socket_path = _hsbroker.default_socket_path
strerror = _hsbroker.strerror

_KDLCPU, _KDLCUDA, _KDLCUDAHOST = 1, 2, 3


def _device_name(dev):
    kind, ident = dev
    if kind in (_KDLCPU, _KDLCUDAHOST):
        return "cpu"
    if kind == _KDLCUDA:
        return "cuda:%d" % ident
    raise BufferError("hsbroker carries host and CUDA tensors, not device type %d" % kind)


_TYPESTR = {
    "|b1": "bool", "|i1": "int8", "<i2": "int16", "<i4": "int32", "<i8": "int64",
    "|u1": "uint8", "<u2": "uint16", "<u4": "uint32", "<u8": "uint64",
    "<f2": "float16", "<f4": "float32", "<f8": "float64",
    "<c8": "complex64", "<c16": "complex128",
}


def _dtype_from_typestr(ts):
    key = ("|" + ts[1:]) if ts[1:] in ("b1", "i1", "u1") else ("<" + ts[1:])
    if ts[0] not in "<|=" or key not in _TYPESTR:
        raise TypeError("unsupported array-interface typestr %r" % ts)
    return _TYPESTR[key]


def _describe(obj, stream=None):
    """(ptr, shape, strides in elements or None, dtype, device, stream_hint,
    keepalive) of a foreign array, read from whichever protocol it speaks:
    DLPack first for GPU data, since it orders the producer's pending writes
    before our stream; else the (CUDA) array interface, whose v3 "stream"
    our stream is made to wait on, or the array interface."""
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        try:
            gpu = obj.__dlpack_device__()[0] == _KDLCUDA
        except Exception:
            gpu = False
        if gpu:
            cap = obj.__dlpack__(stream=stream if stream is not None else 1)
            return _hsbroker._import_dlpack(cap)
    cai = getattr(obj, "__cuda_array_interface__", None)
    ai = None if cai is not None else getattr(obj, "__array_interface__", None)
    iface = cai if cai is not None else ai
    if iface is not None:
        if iface.get("mask") is not None:
            raise TypeError("masked arrays cannot be emitted")
        dtype = _dtype_from_typestr(iface["typestr"])
        itemsize = int(iface["typestr"][2:])
        ptr = iface["data"][0] if iface.get("data") is not None else 0
        strides = iface.get("strides")
        if strides is not None:
            if any(s % itemsize for s in strides):
                raise ValueError("strides are not a multiple of the item size")
            strides = tuple(s // itemsize for s in strides)
        if cai is not None:
            dev = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (_KDLCUDA, 0)
            device = _device_name(dev)
            # v3: work queued on the producer's "stream" must come before
            # our copy; None means the data is ready already.
            src = cai.get("stream") if cai.get("version", 0) >= 3 else None
            if src is not None and src != stream:
                _hsbroker._order_after(int(src), int(stream or 0), int(dev[1]))
        else:
            device = "cpu"
        return ptr, tuple(iface["shape"]), strides, dtype, device, obj
    if hasattr(obj, "__dlpack__"):
        dev = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (_KDLCPU, 0)
        if dev[0] == _KDLCUDA:
            # The producer orders its pending writes before our stream (1:
            # the legacy default stream when the caller named none).
            cap = obj.__dlpack__(stream=stream if stream is not None else 1)
        else:
            cap = obj.__dlpack__()
        return _hsbroker._import_dlpack(cap)
    raise TypeError("%s speaks neither DLPack nor the (CUDA) array interface"
                    % type(obj).__name__)


def _stream_handle(stream):
    """A stream argument as an int handle: None, an int, or an object with
    .handle/.ptr/.cuda_stream (CuPy, CUDA Python, PyTorch, Numba)."""
    if stream is None or isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr", "handle"):
        h = getattr(stream, attr, None)
        if h is not None:
            return int(h)
    return int(stream)


def _emit_foreign(client, topic, obj, stream, wait):
    """Client.emit of anything but a broker Tensor (called by the C emit):
    an exact view of one of this client's live tensors moves without a
    copy; anything else is copied once into a new broker tensor."""
    s = _stream_handle(stream)
    ptr, shape, strides, dtype, device, _keep = _describe(obj, s)
    own = client._find(ptr, dtype, shape, strides, device)
    if own is not None:
        return client.emit(topic, own, s, wait)
    t = client.alloc(shape, dtype, device=device)
    try:
        t._copy_from(ptr, shape, strides, dtype, device, s)
    except BaseException:
        t.release()
        raise
    return client.emit(topic, t, s, wait)


_hsbroker._set_hooks(_stream_handle, _emit_foreign)


class Client(_hsbroker._Client):
    """A connection to hsbrokerd. Use hsbroker.connect()."""

    def __init__(self, path=None, name=None):
        # The connection is made by _Client.__new__; this is here for the
        # signature (inspect.signature(hsbroker.Client)).
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def as_tensor(self, obj, stream=None):
        """A new broker tensor holding a copy of obj (same dtype, shape and
        device; compact). Emit it, or keep writing into it."""
        if isinstance(obj, Tensor):
            desc = (obj.data_ptr, obj.shape, obj.strides, obj.dtype, obj.device, obj)
        else:
            desc = _describe(obj, _stream_handle(stream))
        # desc[5] keeps the source alive (an imported DLPack capsule) until
        # the copy is done.
        ptr, shape, strides, dtype, device, _keep = desc
        t = self.alloc(shape, dtype, device=device)
        try:
            t._copy_from(ptr, shape, strides, dtype, device, _stream_handle(stream))
        except BaseException:
            t.release()
            raise
        return t


def connect(path=None, name=None):
    """Connect to hsbrokerd (path: $HSBROKER_SOCKET, else
    $XDG_RUNTIME_DIR/hsbroker/hsbroker.sock, else /run/hsbroker/hsbroker.sock).
    Usable as a context manager; closing releases what the client holds."""
    return Client(path, name)


def as_tensor(client, obj, stream=None):
    """client.as_tensor(obj): copy obj into a new broker tensor."""
    return client.as_tensor(obj, stream)


# asyncio: Subscription.areceive() and ``async for`` (hsbroker/_aio.py).
from . import _aio  # noqa: E402

Subscription.areceive = _aio.areceive
Subscription.__aiter__ = _aio.aiter
Subscription.__anext__ = _aio.anext
