"""Across uids (docs/security.md): a host tensor received from a process of
another uid is mapped read-only, and Python says so: __array_interface__
reports readonly, NumPy's array is not writeable, while the owner's own
tensors stay writable. And subscribe(block_timeout_ms=) bounds how long a
stalled blocking subscriber holds a producer. The reader drops to uid
65534, so these need root (skipped otherwise)."""
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from conftest import Broker

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a second uid")

OTHER_UID = 65534

READER = r"""
import os, sys
os.setgroups([]); os.setgid(%(uid)d); os.setuid(%(uid)d)
import numpy as np, hsbroker
with hsbroker.connect(name="py-other-uid") as c:
    sub = c.subscribe("py/trust", depth=4)
    print("subscribed", flush=True)
    with sub.receive(timeout=30) as t:
        assert t.__array_interface__["data"][1] is True, t.__array_interface__
        a = np.asarray(t)
        assert not a.flags.writeable
        assert np.array_equal(a, np.arange(64, dtype=np.float32))
        try:
            a[0] = 1
        except ValueError:
            pass
        else:
            sys.exit("wrote into another uid's tensor")
        del a
        c.emit("py/back", t)   # forwarding a read-only tensor is fine
print("ok", flush=True)
""" % {"uid": OTHER_UID}


@pytest.fixture
def open_broker():
    """A broker whose socket a process of another uid can reach."""
    d = tempfile.mkdtemp(prefix="hs-trust-")
    os.chmod(d, 0o755)
    b = Broker(pathlib.Path(d))
    yield b
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_another_uids_tensor_is_read_only(open_broker):
    import hsbroker
    reader = subprocess.Popen([sys.executable, "-c", READER], env=open_broker.env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "subscribed", reader.stderr.read()
        with hsbroker.connect(open_broker.socket, "py-owner") as c:
            back = c.subscribe("py/back", depth=4)
            t = c.alloc((64,), "float32")
            assert t.__array_interface__["data"][1] is False
            np.asarray(t)[...] = np.arange(64, dtype=np.float32)
            c.emit("py/trust", t, wait=True)
            with back.receive(timeout=30) as mine:
                # the owner's uid: writable, and what it wrote
                a = np.asarray(mine)
                assert a.flags.writeable
                assert np.array_equal(a, np.arange(64, dtype=np.float32))
                del a
        out, err = reader.communicate(timeout=30)
        assert reader.returncode == 0, err
        assert out.strip() == "ok"
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def test_block_timeout_unblocks_the_producer(broker, hs):
    with hs.connect(broker.socket, "py-stalled") as slow, \
            hs.connect(broker.socket, "py-producer") as prod:
        stalled = slow.subscribe("py/slow", depth=1, policy="block", block_timeout_ms=100)
        for i in range(6):
            t = prod.alloc((4,), "float32")
            assert prod.emit("py/slow", t, wait=True) == i + 1
        got = 0
        while True:
            try:
                with stalled.receive(timeout=0.5):
                    got += 1
            except hs.Timeout:
                break
        assert got >= 1 and got + stalled.dropped == 6
