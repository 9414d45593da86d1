"""The one abi3 build imports and works on every other CPython >= 3.9
found on the machine (pyenv's, python3.X on PATH): the limited API, and
METH_FASTCALL used from 3.9 on (hspy.h)."""
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from conftest import PYPATH

SCRIPT = textwrap.dedent("""
    import asyncio, inspect, sys, hsbroker
    topic = "abi3/%d.%d" % sys.version_info[:2]
    c = hsbroker.connect(name="abi3")
    s = c.subscribe(topic)
    t = c.alloc((2, 3), "uint8")
    assert c.emit(topic, t, None, True) == 1
    r = s.receive(timeout=5)
    assert r.shape == (2, 3) and r.dtype == "uint8"
    caps = []
    r.view(caps.append)
    del caps
    r.release()
    try:
        s.receive(0.01)
        raise AssertionError("no timeout")
    except hsbroker.Timeout as e:
        assert str(e) == "receive: timed out" and e.name == "HS_ETIMEDOUT"

    async def later():
        asyncio.get_running_loop().call_later(0.02, c.emit, topic, c.alloc(1, "uint8"))
        return await s.areceive(timeout=5)

    asyncio.run(later()).release()
    assert str(inspect.signature(hsbroker.Client.alloc)).startswith("(self, /, shape")
    print("ok", sys.version_info[:2])
""")


def interpreters():
    found = {}
    cands = glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3"))
    cands += [shutil.which("python3.%d" % m) for m in range(9, 16)]
    for exe in filter(None, cands):
        r = subprocess.run([exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                           capture_output=True, text=True)
        if r.returncode == 0:
            v = tuple(map(int, r.stdout.split(".")))
            if v >= (3, 9) and v != sys.version_info[:2]:
                found.setdefault(v, exe)
    return sorted(found.items())


def test_the_module_works_on_other_cpythons(broker):
    found = interpreters()
    if not found:
        pytest.skip("no other CPython >= 3.9 here")
    env = broker.env()
    env["PYTHONPATH"] = PYPATH  # (a sanitizer build keeps its LD_PRELOAD)
    for v, exe in found:
        r = subprocess.run([exe, "-c", SCRIPT], capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 0 and r.stdout.startswith("ok"), (v, r.stdout + r.stderr)
