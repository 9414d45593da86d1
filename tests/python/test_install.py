"""`pip install --no-build-isolation .` into a fresh venv, offline: the
package builds with meson-python from pyproject.toml, installs into the
venv's interpreter (not the build tree's), and works against a daemon."""
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

SCRIPT = textwrap.dedent("""
    import sys, hsbroker, numpy as np, importlib.metadata as md
    assert hsbroker.__file__.startswith(sys.prefix), hsbroker.__file__
    assert md.version("hsbroker") == hsbroker.__version__
    with hsbroker.connect(name="venv") as c:
        sub = c.subscribe("venv/t")
        c.emit("venv/t", np.arange(5, dtype=np.int32), wait=True)
        with sub.receive(timeout=10) as t:
            assert list(np.asarray(t)) == [0, 1, 2, 3, 4]
    print("ok", hsbroker.__version__)
""")


def test_pip_install_into_a_fresh_venv(broker, tmp_path):
    try:
        import mesonpy  # noqa: F401
    except ImportError:
        pytest.skip("no meson-python (apt-get install python3-mesonpy)")
    venv = tmp_path / "venv"
    r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("no venv/ensurepip here (apt-get install python3-venv): " + r.stderr[-300:])
    py = str(venv / "bin" / "python")
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    # Neither the build tree's module nor sanitizer runtimes preloaded by
    # scripts/sanitize.sh: pip builds and the venv loads a plain module.
    for k in ("PYTHONPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env.pop(k, None)
    r = subprocess.run([py, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        ROOT], capture_output=True, text=True, env=env, cwd=str(tmp_path),
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    env = broker.env()
    for k in ("PYTHONPATH", "LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        env.pop(k, None)
    r = subprocess.run([py, "-c", SCRIPT], capture_output=True, text=True, env=env,
                       cwd=str(tmp_path), timeout=120)
    assert r.returncode == 0 and r.stdout.startswith("ok "), r.stdout + r.stderr
