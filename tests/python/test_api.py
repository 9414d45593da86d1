"""The Python API's surface: exception text and attributes, reprs,
signatures, version, the ready-to-use views of receive(as_=...) and
Tensor.view, Tensor.wait, emit's argument handling."""
import errno
import gc
import inspect

import numpy as np
import pytest


def test_exception_text_code_and_name(hs, tmp_path):
    path = str(tmp_path / "nothing.sock")
    with pytest.raises(hs.Closed) as ei:
        hs.connect(path)
    e = ei.value
    assert str(e) == ("cannot connect to %s: no broker socket at that path: "
                      "is hsbrokerd running?" % path)
    assert e.code == -4011 and e.name == "HS_ENOBROKER"
    assert e.args == (str(e),)  # an OSError: args hold the message alone
    assert isinstance(e, hs.Error) and isinstance(e, ConnectionError)
    assert hs.strerror(e.code) in str(e)


def test_refusal_and_timeout_text(client, hs):
    with pytest.raises(hs.Error) as ei:
        client.emit("bad topic\n", client.alloc(4, "uint8"), wait=True)
    assert str(ei.value).endswith(": invalid topic name")
    assert ei.value.name == "HS_ETOPIC" and ei.value.code == -4006
    assert ei.value.args == (str(ei.value), -4006, "HS_ETOPIC")
    sub = client.subscribe("api/timeout")
    with pytest.raises(hs.Timeout) as ei:
        sub.receive(timeout=0.01)
    assert str(ei.value) == "receive: timed out"
    assert ei.value.name == "HS_ETIMEDOUT" and isinstance(ei.value, TimeoutError)
    assert ei.value.errno == errno.ETIMEDOUT and ei.value.strerror == "timed out"


def test_exception_classes_are_documented_and_constructible(hs):
    for cls in (hs.Error, hs.Timeout, hs.Closed):
        assert cls.__doc__ and len(cls.__doc__) > 40, cls
        e = cls("mine")
        assert str(e) == "mine" and e.code is None and e.name is None
    assert issubclass(hs.Timeout, hs.Error) and issubclass(hs.Closed, hs.Error)


def test_tensor_repr_has_the_id_in_hex(client):
    t = client.alloc((2, 3), "float32")
    r = repr(t)
    assert "%llx" not in r
    assert r == "<hsbroker.Tensor %x seq=0 shape=(2, 3) dtype=float32 device=cpu>" % t.id
    t.release()
    assert repr(t) == "<hsbroker.Tensor %x released>" % t.id
    with pytest.raises(ValueError, match="tensor %x was released" % t.id):
        t.shape


def test_signatures_and_version(hs):
    sig = lambda f: str(inspect.signature(f))
    assert sig(hs.connect) == "(path=None, name=None)"
    assert sig(hs.Client) == "(path=None, name=None)"
    assert sig(hs.Client.alloc) == "(self, /, shape, dtype, device='cpu', strides=None)"
    assert sig(hs.Client.emit) == "(self, /, topic, obj, stream=None, wait=False)"
    assert sig(hs.Client.subscribe) == \
        "(self, /, topic, depth=8, policy='block', block_timeout_ms=0)"
    assert sig(hs.Subscription.receive) == "(self, /, timeout=None, as_=None, stream=None)"
    assert sig(hs.Tensor.release) == "(self, /, stream=None)"
    assert sig(hs.Tensor.view) == "(self, /, as_, stream=None)"
    assert "max_version" in sig(hs.Tensor.__dlpack__)
    v = hs.__version__
    assert isinstance(v, str) and v.count(".") >= 2 and v[0].isdigit()


def test_bad_arguments_are_named(client):
    with pytest.raises(TypeError, match=r"alloc\(\) missing required argument 'dtype'"):
        client.alloc(4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        client.alloc(4, "uint8", colour=1)
    with pytest.raises(TypeError, match="multiple values for argument 'shape'"):
        client.alloc(4, "uint8", shape=3)
    with pytest.raises(TypeError, match="at most 4 positional"):
        client.emit("a", 1, None, False, 5)
    sub = client.subscribe("api/args")
    with pytest.raises(ValueError, match="as_ must be"):
        client.emit("api/args", client.alloc(4, "uint8"))
        sub.receive(timeout=5, as_=42)
    # The tensor the bad as_ was for was released, not kept.
    assert client.stats()["tensors_held"] <= 1


def test_receive_as_numpy_owns_the_reference(exact_client):
    c = exact_client
    sub = c.subscribe("api/np")
    t = c.alloc((3, 4), "int16")
    np.asarray(t)[...] = np.arange(12, dtype=np.int16).reshape(3, 4)
    c.emit("api/np", t, wait=True)
    a = sub.receive(timeout=5, as_="numpy")
    assert isinstance(a, np.ndarray) and a.shape == (3, 4)
    assert np.array_equal(a, np.arange(12).reshape(3, 4))
    assert c.stats()["tensors_held"] == 1
    del a
    gc.collect()
    assert c.stats()["tensors_held"] == 0


def test_receive_as_callable_gets_a_capsule_and_the_view_holds_it(exact_client):
    c = exact_client
    sub = c.subscribe("api/cap")
    c.emit("api/cap", np.arange(8, dtype=np.float32), wait=True)
    got = []
    view = sub.receive(timeout=5, as_=lambda cap: got.append(cap) or "view")
    assert view == "view" and type(got[0]).__name__ == "PyCapsule"
    assert c.stats()["tensors_held"] == 1  # the capsule keeps it
    got.clear()
    gc.collect()
    assert c.stats()["tensors_held"] == 0


def test_view_keeps_the_tensor_usable(exact_client):
    c = exact_client
    t = c.alloc(6, "uint8")
    a = t.view("numpy")
    a[:] = 7
    caps = []
    t.view(caps.append)
    assert not t.released
    t.wait()  # host tensors: nothing to order; a no-op, not an error
    sub = c.subscribe("api/view")
    del a
    c.emit("api/view", t, wait=True)
    caps.clear()
    r = sub.receive(timeout=5)
    assert list(np.asarray(r)) == [7] * 6
    r.release()



def test_torch_views(exact_client):
    torch = pytest.importorskip("torch")
    import hsbroker.torch as hst
    c = exact_client
    sub = c.subscribe("api/torch")
    t = c.alloc(5, "float32")
    y = hst.view(t)
    y.copy_(torch.arange(5, dtype=torch.float32))
    del y
    c.emit("api/torch", t, wait=True)
    x = hst.receive(sub, timeout=5)
    assert isinstance(x, torch.Tensor) and x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert c.stats()["tensors_held"] == 1
    del x
    gc.collect()
    assert c.stats()["tensors_held"] == 0


def test_emit_of_a_foreign_array_and_a_view(exact_client):
    c = exact_client
    sub = c.subscribe("api/foreign")
    assert c.emit("api/foreign", np.ones(3), wait=True) >= 1
    t = c.alloc(4, "int32")
    v = np.asarray(t)
    v[:] = 5
    c.emit("api/foreign", v)  # the exact view: moves without a copy
    assert t.released
    a, b = sub.receive(timeout=5), sub.receive(timeout=5)
    assert list(np.asarray(a)) == [1.0] * 3 and list(np.asarray(b)) == [5] * 4
    a.release()
    b.release()
