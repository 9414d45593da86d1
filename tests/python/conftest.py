"""Fixtures: a real hsbrokerd on a private socket, and the built module.

HSBROKERD names the daemon binary and HSBROKER_PYTHONPATH the folder that
holds the built hsbroker package; both default to ./build."""
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("HSBROKER_BUILD", os.path.join(ROOT, "build"))
PYPATH = os.environ.get("HSBROKER_PYTHONPATH", os.path.join(BUILD, "python"))
DAEMON = os.environ.get("HSBROKERD", os.path.join(BUILD, "daemon", "hsbrokerd"))
if PYPATH not in sys.path:
    sys.path.insert(0, PYPATH)


def _wait_for_socket(path, proc, deadline_s=10.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("hsbrokerd exited with %s before listening" % proc.returncode)
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise RuntimeError("hsbrokerd did not listen on %s within %.0f s" % (path, deadline_s))


class Broker:
    def __init__(self, tmp_path, *args):
        self.socket = str(tmp_path / "hs.sock")
        self.log = open(tmp_path / "hsbrokerd.log", "w+")
        self.proc = subprocess.Popen([DAEMON, "--socket", self.socket, *args],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        _wait_for_socket(self.socket, self.proc)

    def env(self):
        e = dict(os.environ)
        e["HSBROKER_SOCKET"] = self.socket
        e["PYTHONPATH"] = PYPATH + os.pathsep + e.get("PYTHONPATH", "")
        return e

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("hsbrokerd ignored SIGTERM")
            assert rc == 0, "hsbrokerd exited with %d" % rc
        self.log.seek(0)
        return self.log.read()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path)
    yield b
    b.stop()


@pytest.fixture
def hs(broker):
    import hsbroker
    return hsbroker


@pytest.fixture
def client(broker, hs):
    with hs.connect(broker.socket, "pytest") as c:
        yield c


@pytest.fixture
def exact_client(broker, hs, monkeypatch):
    """A client that asks for no spare tensors (HSBROKER_SPARES=0), for
    tests that count every tensor the broker holds."""
    monkeypatch.setenv("HSBROKER_SPARES", "0")
    with hs.connect(broker.socket, "pytest") as c:
        yield c


ROLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "roles.py")


def role(broker, *args, **kw):
    """Starts tests/python/roles.py in its own interpreter."""
    return subprocess.Popen([sys.executable, ROLES, *map(str, args)], env=broker.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
