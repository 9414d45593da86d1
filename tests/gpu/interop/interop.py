"""The GPU interop matrix across separate processes (issue 4).

Producers {torch, cupy, numba, cuda-python, jax} x consumers {the same
five}: one consumer process per library subscribes to its five topics
(ix/PRODUCER/CONSUMER), one producer process per library emits N tensors
on each. Every tensor is float32 [64, 256] holding `base` with row
k % 64 set to -base (base differs per cell and per tensor). A consumer
takes each tensor with its own library, without a copy where the library
allows, checks the values, and proves zero copy: the library object's
own data pointer equals the broker tensor's data_ptr, and (with
cuda-bindings) that pointer lies in a device allocation of the broker's
slab size that this process never allocated (it was opened through IPC).

Producers write into broker tensors in place (alloc, write on their
stream, emit with it), except: torch, cupy and numba emit every odd tensor
as an array of their own (not broker memory: one device-to-device copy
into a broker tensor, through DLPack for torch and cupy, through the CUDA
array interface for numba), and jax always does (JAX cannot write into
foreign memory).

Consumers let go in the idioms of docs/gpu.md, "What is safe": torch
`with t:` on its side stream (the release follows the stream it gave
__dlpack__), cupy `release()` after from_dlpack and `release(stream=)`
after asarray (CAI, on a non-blocking stream), numba and jax `with t:`.

Plus C <-> Python: hs-gpu-test role-producer (mixed sizes and dtypes,
4 KiB .. 256 MiB) -> the torch consumer, checking every byte; and the
torch producer -> hs-gpu-test role-consumer, writing the same plan.

    python3 tests/gpu/interop/interop.py [--daemon build-gpu/daemon/hsbrokerd]
        [--gpu-test build-gpu/tests/gpu/hs-gpu-test] [--count 10] [--md interop.md]

Uses $HSBROKER_SOCKET if set, else starts its own hsbrokerd. Needs the
built module on PYTHONPATH (default build-gpu/python is added). Writes
the table to stdout and to $OUT/interop.md (--md) when OUT is set. Exit 0: every
cell that ran passed; 1: a cell failed; 77: no GPU here.
"""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))
LIBS = ["torch", "cupy", "numba", "cuda-python", "jax"]
R, C = 64, 256
RECV_TIMEOUT = 20
DEADLINE_S = 110      # the whole matrix; what has not come by then fails


def base_of(pi, ci, k):
    return float(1000 * k + 10 * pi + ci + 1)


# ---------------------------------------------------------------- libraries

def door(obj):
    """Which protocol hsbroker's emit reads a foreign GPU array through."""
    if hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__"):
        return "copied via DLPack"
    return "copied via CAI"


class Lib:
    """One library's way to write a broker tensor and to read one."""
    name = ""
    copies_on_import = False

    def stream_int(self):
        raise NotImplementedError


class TorchLib(Lib):
    name = "torch"

    def __init__(self):
        import torch
        if not torch.cuda.is_available():
            raise ImportError("torch sees no GPU")
        self.torch = torch
        torch.cuda.set_device(0)
        torch.zeros(1, device="cuda:0")
        self.s = torch.cuda.Stream()

    def stream_int(self):
        return self.s.cuda_stream

    def produce(self, client, topic, base, row, k):
        torch = self.torch
        if k % 2 == 0:
            t = client.alloc((R, C), "float32", device="cuda:0")
            x = torch.from_dlpack(t)
            with torch.cuda.stream(self.s):
                x.fill_(base)
                x[row].fill_(-base)
            del x
            client.emit(topic, t, stream=self.s.cuda_stream)
            return "in-place"
        with torch.cuda.stream(self.s):
            x = torch.full((R, C), base, dtype=torch.float32, device="cuda:0")
            x[row] = -base
        # Not broker memory: emit copies it (device to device) on self.s.
        client.emit(topic, x, stream=self.s.cuda_stream)
        return door(x)

    def consume(self, t, base, row):
        torch = self.torch
        # The idiom of docs/gpu.md, "What is safe": `with t:` and no
        # stream named; the release comes after self.s, the stream
        # torch.from_dlpack gave __dlpack__.
        with torch.cuda.stream(self.s), t:
            a = torch.from_dlpack(t)          # __dlpack__(stream=self.s)
            ptr = a.data_ptr()
            ok = (int((a == base).sum().item()) == (R - 1) * C and
                  int((a[row] == -base).sum().item()) == C)
            del a
        return ok, ptr

    # C <-> Python: the byte plan of hs-gpu-test (gpu-test.c plan_for).
    def check_plan(self, t, p):
        torch = self.torch
        with torch.cuda.stream(self.s):
            a = torch.from_dlpack(t)
            ptr = a.data_ptr()
            meta = (tuple(a.shape) == p["shape"] and str(a.dtype) == "torch." + p["dtype"])
            u = a.view(torch.uint8).reshape(-1)[:p["bytes"]]
            off, ln = p["off"], p["len"]
            ok = (meta and bool((u[:off] == p["a"]).all().item()) and
                  bool((u[off:off + ln] == p["b"]).all().item()) and
                  bool((u[off + ln:] == p["a"]).all().item()))
        del a, u
        t.release(stream=self.s.cuda_stream)
        return ok, ptr

    def produce_plan(self, client, topic, p):
        torch = self.torch
        t = client.alloc(p["shape"], p["dtype"], device="cuda:0")
        x = torch.from_dlpack(t)
        with torch.cuda.stream(self.s):
            u = x.view(torch.uint8).reshape(-1)
            u.fill_(p["a"])
            u[p["off"]:p["off"] + p["len"]].fill_(p["b"])
        del x, u
        return client.emit(topic, t, stream=self.s.cuda_stream, wait=True)

    def finish(self):
        self.s.synchronize()


class CupyLib(Lib):
    name = "cupy"

    def __init__(self):
        import cupy
        self.cupy = cupy
        cupy.cuda.Device(0).use()
        self.s = cupy.cuda.Stream(non_blocking=True)

    def stream_int(self):
        return self.s.ptr

    def produce(self, client, topic, base, row, k):
        cp = self.cupy
        if k % 2:
            with self.s:
                x = cp.full((R, C), base, dtype=cp.float32)
                x[row] = -base
            # CuPy memory: emit copies it (DLPack door, on self.s); CuPy's
            # pool reuses it only in self.s order.
            client.emit(topic, x, stream=self.s.ptr)
            return door(x)
        t = client.alloc((R, C), "float32", device="cuda:0")
        with self.s:
            x = cp.from_dlpack(t)
            x.fill(base)
            x[row] = -base
        del x
        client.emit(topic, t, stream=self.s.ptr)
        return "in-place"

    def consume(self, t, base, row):
        cp = self.cupy
        with self.s:
            # Both doors: DLPack (stream passed) and CAI v3 (its stream).
            a = cp.from_dlpack(t) if row % 2 == 0 else cp.asarray(t)
            ptr = a.data.ptr
            ok = (int((a == base).sum()) == (R - 1) * C and int((a[row] == -base).sum()) == C)
        del a
        if row % 2 == 0:
            t.release()              # after self.s, named to __dlpack__
        else:
            # CAI cannot tell us a non-blocking stream: name it.
            t.release(stream=self.s.ptr)
        return ok, ptr

    def finish(self):
        self.s.synchronize()


def _numba_stream_int(s):
    h = s.handle
    v = getattr(h, "value", None)      # ctypes c_void_p (older numba)
    if v is not None:
        return v
    try:
        return int(h)                  # CUstream (NVIDIA bindings)
    except TypeError:
        return int(s)


class NumbaLib(Lib):
    name = "numba"

    def __init__(self):
        import numpy as np
        from numba import cuda
        if not cuda.is_available():
            raise ImportError("numba.cuda sees no GPU")
        self.np, self.cuda = np, cuda
        cuda.select_device(0)
        self.s = cuda.stream()
        self.keep = []

    def stream_int(self):
        return _numba_stream_int(self.s)

    def produce(self, client, topic, base, row, k):
        np = self.np
        if k % 2:
            h = np.full((R, C), base, np.float32)
            h[row] = -base
            d = self.cuda.to_device(h, stream=self.s)
            # Numba memory, seen through the CUDA array interface only:
            # emit copies it on self.s; kept until finish() since numba
            # frees without regard to streams.
            client.emit(topic, d, stream=self.stream_int())
            self.keep.append(d)
            return door(d)
        t = client.alloc((R, C), "float32", device="cuda:0")
        d = self.cuda.as_cuda_array(t)
        h = np.full((R, C), base, np.float32)
        h[row] = -base
        d.copy_to_device(h, stream=self.s)   # a write by numba, on its stream
        del d
        client.emit(topic, t, stream=self.stream_int())
        return "in-place"

    def consume(self, t, base, row):
        with t:                              # release: after the legacy default
            d = self.cuda.as_cuda_array(t)   # stream, which waits for self.s
            ptr = d.__cuda_array_interface__["data"][0]
            h = d.copy_to_host(stream=self.s)
            self.s.synchronize()
            ok = int((h == base).sum()) == (R - 1) * C and int((h[row] == -base).sum()) == C
            del d
        return ok, ptr

    def finish(self):
        self.s.synchronize()


def _cuda_bindings_driver():
    try:
        from cuda.bindings import driver
    except ImportError:
        from cuda import cuda as driver   # cuda-python < 12.6
    return driver


def _ck(res, what):
    err = res[0]
    if int(err) != 0:
        raise RuntimeError("%s: %s" % (what, err))
    return res[1] if len(res) == 2 else res[1:]


class CudaPythonLib(Lib):
    name = "cuda-python"

    def __init__(self):
        import numpy as np
        self.np = np
        self.cu = _cuda_bindings_driver()
        try:
            from cuda.core import Device
        except ImportError:
            from cuda.core.experimental import Device
        self.dev = Device(0)
        self.dev.set_current()
        self.s = self.dev.create_stream()
        self.smv = None
        try:
            from cuda.core.utils import StridedMemoryView
            self.smv = StridedMemoryView
        except ImportError:
            try:
                from cuda.core.experimental.utils import StridedMemoryView
                self.smv = StridedMemoryView
            except ImportError:
                pass

    def stream_int(self):
        return int(self.s.handle)

    def produce(self, client, topic, base, row, k):
        cu = self.cu
        t = client.alloc((R, C), "float32", device="cuda:0")
        bits = struct.unpack("<I", struct.pack("<f", base))[0]
        nbits = struct.unpack("<I", struct.pack("<f", -base))[0]
        s = cu.CUstream(self.stream_int())
        _ck(cu.cuMemsetD32Async(cu.CUdeviceptr(t.data_ptr), bits, R * C, s), "cuMemsetD32Async")
        _ck(cu.cuMemsetD32Async(cu.CUdeviceptr(t.data_ptr + row * C * 4), nbits, C, s),
            "cuMemsetD32Async")
        client.emit(topic, t, stream=self.stream_int())
        return "in-place"

    def consume(self, t, base, row):
        cu, np = self.cu, self.np
        sh = self.stream_int()
        v = None
        if self.smv is not None:
            # cuda.core's DLPack consumer: makes our stream wait on the fence.
            mk = getattr(self.smv, "from_dlpack", None)
            v = mk(t, stream_ptr=sh) if mk is not None else self.smv(t, stream_ptr=sh)
            ptr = int(v.ptr)
        else:
            t.__dlpack__(stream=sh)               # stream waits on the fence
            ptr = t.data_ptr
        h = np.empty((R, C), np.float32)
        s = cu.CUstream(sh)
        _ck(cu.cuMemcpyDtoHAsync(h.ctypes.data, cu.CUdeviceptr(ptr), R * C * 4, s),
            "cuMemcpyDtoHAsync")
        _ck(cu.cuStreamSynchronize(s), "cuStreamSynchronize")
        ok = int((h == base).sum()) == (R - 1) * C and int((h[row] == -base).sum()) == C
        del v
        t.release(stream=sh)
        return ok, ptr

    def finish(self):
        self.s.sync()


class JaxLib(Lib):
    name = "jax"

    def __init__(self):
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        import jax.numpy as jnp
        import numpy as np
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            raise ImportError("jax sees no GPU (platforms: %s)"
                              % sorted({d.platform for d in jax.devices()}))
        self.jax, self.jnp, self.np = jax, jnp, np
        self.dev = gpus[0]
        jnp.zeros(1, device=self.dev).block_until_ready()

    def stream_int(self):
        return None

    def produce(self, client, topic, base, row, k):
        jnp = self.jnp
        x = jnp.full((R, C), base, dtype=jnp.float32, device=self.dev).at[row].set(-base)
        client.emit(topic, x)            # JAX memory: one D2D copy into the broker
        return door(x)

    def consume(self, t, base, row):
        import jax.dlpack
        with t:
            a = jax.dlpack.from_dlpack(t)
            try:
                ptr = a.unsafe_buffer_pointer()
            except Exception:
                ptr = a.addressable_data(0).unsafe_buffer_pointer()
            h = self.np.asarray(a)
            ok = int((h == base).sum()) == (R - 1) * C and int((h[row] == -base).sum()) == C
            del a
        return ok, ptr

    def finish(self):
        pass


LIBCLASS = {"torch": TorchLib, "cupy": CupyLib, "numba": NumbaLib,
            "cuda-python": CudaPythonLib, "jax": JaxLib}


# ----------------------------------------------------- hs-gpu-test's plan

M64 = (1 << 64) - 1
MiB = 1 << 20
PLAN_DTYPES = [("float32", 4), ("float16", 2), ("bfloat16", 2), ("int8", 1), ("uint8", 1),
               ("int32", 4), ("int64", 8), ("float64", 8)]


def _mix(x):
    x = (x + 0x9e3779b97f4a7c15) & M64
    x = ((x ^ (x >> 30)) * 0xbf58476d1ce4e5b9) & M64
    x = ((x ^ (x >> 27)) * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def plan_for(k):
    """gpu-test.c plan_for(k, 0): the k-th tensor of a role topic."""
    r = _mix((k * 7919 + 1) & M64)
    if k == 1:
        pages = 256 * MiB // 4096
    elif k == 2:
        pages = 1
    elif r % 1000 < 10:
        pages = 16384 + _mix(r) % (49152 + 1)
    elif r % 1000 < 100:
        pages = 256 + _mix(r) % (8192 - 256 + 1)
    else:
        pages = 1 + _mix(r) % 256
    nbytes = pages * 4096
    dtype, esize = PLAN_DTYPES[_mix((r + 3) & M64) % len(PLAN_DTYPES)]
    a = (k * 131 + 17) & 0xFF
    off = (nbytes // 3) & ~255
    ln = nbytes // 4 + 1
    if off + ln > nbytes:
        ln = nbytes - off
    return {"bytes": nbytes, "dtype": dtype, "shape": (nbytes // esize // 64, 64),
            "a": a, "b": a ^ 0x5A, "off": off, "len": ln}


# ------------------------------------------------------------ processes

def slab_evidence(cu, ptr):
    """(range start, range size) of the device allocation holding ptr."""
    if cu is None:
        return None
    try:
        A = cu.CUpointer_attribute
        start = _ck(cu.cuPointerGetAttribute(A.CU_POINTER_ATTRIBUTE_RANGE_START_ADDR,
                                             cu.CUdeviceptr(ptr)), "range start")
        size = _ck(cu.cuPointerGetAttribute(A.CU_POINTER_ATTRIBUTE_RANGE_SIZE,
                                            cu.CUdeviceptr(ptr)), "range size")
        return int(start), int(size)
    except Exception as e:  # evidence only; the pointer equality is the test
        return "n/a: %s" % e


def emit_line(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def consumer_main(name, count, with_c):
    import hsbroker
    try:
        lib = LIBCLASS[name]()
    except Exception as e:
        emit_line({"status": "skip", "reason": "%s: %s" % (type(e).__name__, e)})
        return 0
    try:
        cu = _cuda_bindings_driver()
    except Exception:
        cu = None
    client = hsbroker.connect(name="ix-consumer-" + name)
    producers = list(LIBS) + (["C"] if with_c else [])
    subs = {p: client.subscribe("ix/%s/%s" % (p, name), depth=count + 4) for p in producers}
    emit_line({"status": "ready"})
    line = sys.stdin.readline().split()
    expect = line[1].split(",") if len(line) > 1 and line[1] != "-" else []
    ci = LIBS.index(name)
    for p in producers:
        if p not in expect:
            continue
        res = {"producer": p, "consumer": name, "n": 0, "ok": 0, "ptr_eq": 0,
               "errors": []}
        t0 = time.monotonic()
        ev = None
        for k in range(1, count + 1):
            try:
                t = subs[p].receive(timeout=RECV_TIMEOUT)
            except Exception as e:
                res["errors"].append("receive %d: %s: %s" % (k, type(e).__name__, e))
                break
            res["n"] += 1
            try:
                dp = t.data_ptr
                if p == "C":
                    ok, ptr = lib.check_plan(t, plan_for(t.seq))
                else:
                    kk = t.seq
                    ok, ptr = lib.consume(t, base_of(LIBS.index(p), ci, kk), kk % R)
                if ev is None:
                    ev = slab_evidence(cu, dp)
                    res["data_ptr"] = hex(dp)
                    res["lib_ptr"] = hex(ptr)
                    res["range"] = ev if not isinstance(ev, tuple) else \
                        [hex(ev[0]), ev[1]]
                    res["in_range"] = isinstance(ev, tuple) and ev[0] <= ptr < ev[0] + ev[1]
                res["ok"] += bool(ok)
                res["ptr_eq"] += ptr == dp
                if not ok:
                    res["errors"].append("tensor %d: wrong values" % kk if p != "C"
                                         else "tensor %d: wrong bytes" % t.seq)
            except Exception as e:
                res["errors"].append("tensor %d: %s: %s" % (k, type(e).__name__, e))
        res["ms"] = int((time.monotonic() - t0) * 1000)
        res["errors"] = res["errors"][:3]
        emit_line(res)
    st = client.stats()
    emit_line({"stats": name, "slab_opens": st["slab_opens"], "event_opens": st["event_opens"]})
    try:
        lib.finish()
    except Exception:
        pass
    client.close()
    return 0


def producer_main(name, count, consumers, with_c):
    import hsbroker
    try:
        lib = LIBCLASS[name]()
    except Exception as e:
        emit_line({"status": "skip", "reason": "%s: %s" % (type(e).__name__, e)})
        return 0
    client = hsbroker.connect(name="ix-producer-" + name)
    emit_line({"status": "ready"})
    sys.stdin.readline()          # "go"
    pi = LIBS.index(name)
    for cons in consumers:
        ci = LIBS.index(cons)
        modes = {}
        err = None
        for k in range(1, count + 1):
            try:
                m = lib.produce(client, "ix/%s/%s" % (name, cons), base_of(pi, ci, k), k % R, k)
                modes[m] = modes.get(m, 0) + 1
            except Exception as e:
                err = "tensor %d: %s: %s" % (k, type(e).__name__, e)
                break
        emit_line({"produced": name, "consumer": cons, "modes": modes, "error": err})
    if with_c:
        topic = "ix/%s/C" % name
        err = None
        try:
            end = time.monotonic() + 60
            while time.monotonic() < end:
                tops = {t["name"]: len(t["subscribers"]) for t in client.info()["topics"]}
                if tops.get(topic, 0) > 0:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("no C consumer subscribed to " + topic)
            for k in range(1, count + 1):
                seq = lib.produce_plan(client, topic, plan_for(k))
                if seq != k:
                    raise RuntimeError("emit %d got seq %d" % (k, seq))
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, e)
        emit_line({"produced": name, "consumer": "C", "modes": {"in-place": count}, "error": err})
    lib.finish()
    client.close()
    return 0


# ------------------------------------------------------------------ main

def have_gpu():
    for d in ("/dev/nvidia0", "/dev/nvidiactl"):
        if os.path.exists(d):
            return True
    return False


def start_daemon(path, options=("--cuda-slab-size", "64M"), prefix="hs-ix-"):
    """hsbrokerd with options on a socket of its own (also idiom.py's), and
    those of HS_TEST_DAEMON_ARGS (tests/gpu/run.sh: --cuda-export)."""
    sock = os.path.join(tempfile.mkdtemp(prefix=prefix), "hs.sock")
    log = open(sock + ".log", "w")
    more = os.environ.get("HS_TEST_DAEMON_ARGS", "").split()
    proc = subprocess.Popen([path, "--socket", sock, *options, *more],
                            stdout=log, stderr=subprocess.STDOUT)
    end = time.monotonic() + 10
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError("hsbrokerd did not start (see %s.log)" % sock)
        time.sleep(0.05)
    return proc, sock


def parse_args(argv):
    a = {"daemon": os.path.join(ROOT, "build-gpu", "daemon", "hsbrokerd"),
         "gpu-test": os.path.join(ROOT, "build-gpu", "tests", "gpu", "hs-gpu-test"),
         "count": 10, "md": "interop.md"}
    i = 0
    while i < len(argv):
        key = argv[i].lstrip("-")
        if key not in a or i + 1 >= len(argv):
            sys.exit("usage: interop.py [--daemon PATH] [--gpu-test PATH] [--count N] "
                     "[--md NAME]")
        a[key] = int(argv[i + 1]) if key == "count" else argv[i + 1]
        i += 2
    return a


def cell_text(r, prod_skip, cons_skip, count):
    for side, why in (("producer", prod_skip), ("consumer", cons_skip)):
        if why:
            return "%s (%s: %s)" % ("FAIL" if "died at start" in why else "skip", side, why)
    if r is None:
        return "FAIL (no result)"
    good = r["ok"] == count and not r["errors"] and r.get("produce_error") is None
    if not good:
        why = (r["errors"] or [r.get("produce_error") or "%d/%d ok" % (r["ok"], count)])[0]
        return "FAIL (%s)" % why
    if r["ptr_eq"] == r["n"]:
        zc = "zero-copy"
    elif r["consumer"] == "jax" and r["ptr_eq"] == 0:
        zc = "copy by JAX"
    else:
        zc = "zero-copy %d/%d" % (r["ptr_eq"], r["n"])
    return "pass, %s" % zc


def main(argv):
    if len(argv) >= 2 and argv[0] in ("consume", "produce"):
        role, name = argv[0], argv[1]
        count = int(argv[2])
        with_c = argv[3] == "1"
        if role == "consume":
            return consumer_main(name, count, with_c)
        return producer_main(name, count, argv[4].split(",") if argv[4] != "-" else [],
                             with_c)

    if not have_gpu():
        print("SKIP: no NVIDIA GPU here (/dev/nvidia0 missing)")
        return 77
    a = parse_args(argv)
    count = a["count"]
    env = dict(os.environ)
    pyb = os.path.join(ROOT, "build-gpu", "python")
    env["PYTHONPATH"] = pyb + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    dproc = None
    if not env.get("HSBROKER_SOCKET"):
        dproc, env["HSBROKER_SOCKET"] = start_daemon(a["daemon"])
    t_start = time.monotonic()
    gt = a["gpu-test"]
    have_c = os.access(gt, os.X_OK)
    me = os.path.abspath(__file__)
    procs = []

    def spawn(args):
        p = subprocess.Popen([sys.executable, me] + args, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
        procs.append(p)
        return p

    def first_status(p, who):
        line = p.stdout.readline()
        try:
            return json.loads(line)
        except ValueError:
            return {"status": "dead", "reason": "%s died at start: %r" % (who, line[:200])}

    rc = 0
    croles_out = {}
    cprocs, pprocs, cskip, pskip = {}, {}, {}, {}
    croles = []
    results, produced, stats = {}, {}, {}
    try:
        for n in LIBS:
            cprocs[n] = spawn(["consume", n, str(count), "1" if n == "torch" else "0"])
        for n in LIBS:
            st = first_status(cprocs[n], "consumer " + n)
            if st.get("status") != "ready":
                cskip[n] = st.get("reason", "?")
        live_c = [n for n in LIBS if n not in cskip]
        c_to_py = have_c and "torch" in live_c
        py_to_c = have_c and "torch" not in cskip
        for n in LIBS:
            pprocs[n] = spawn(["produce", n, str(count), "1" if (n == "torch" and py_to_c) else "0",
                               ",".join(live_c) or "-"])
        for n in LIBS:
            st = first_status(pprocs[n], "producer " + n)
            if st.get("status") != "ready":
                pskip[n] = st.get("reason", "?")
        live_p = [n for n in LIBS if n not in pskip]
        py_to_c = py_to_c and "torch" in live_p
        # The C roles: a consumer of the torch producer, a producer for the
        # torch consumer (it waits for the subscription itself).
        if py_to_c:
            croles.append(("py->C", subprocess.Popen(
                [gt, "role-consumer", "--topic", "ix/torch/C", "--count", str(count)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)))
        for n in live_c:
            expect = list(live_p) + (["C"] if (n == "torch" and c_to_py) else [])
            cprocs[n].stdin.write("expect %s\n" % (",".join(expect) or "-"))
            cprocs[n].stdin.flush()
        for n in live_p:
            pprocs[n].stdin.write("go\n")
            pprocs[n].stdin.flush()
        if c_to_py:
            croles.append(("C->py", subprocess.Popen(
                [gt, "role-producer", "--topic", "ix/C/torch", "--count", str(count)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)))
        deadline = t_start + DEADLINE_S
        for n, p in list(pprocs.items()) + list(cprocs.items()):
            try:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                print("[%s] killed at the %d s deadline" % (n, DEADLINE_S))
            for line in out.splitlines():
                try:
                    d = json.loads(line)
                except ValueError:
                    print("[%s] %s" % (n, line))
                    continue
                if "produced" in d:
                    produced[(d["produced"], d["consumer"])] = d
                elif "producer" in d:
                    results[(d["producer"], d["consumer"])] = d
                elif "stats" in d:
                    stats[d["stats"]] = d
        for tag, p in croles:
            try:
                out, _ = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                out, _ = p.communicate()
                out += "\n(killed at the deadline)"
            croles_out[tag] = (p.returncode, out)
    finally:
        for p in procs + [p for _, p in croles]:
            if p.poll() is None:
                p.kill()
                p.wait()
        if dproc is not None:
            dproc.send_signal(signal.SIGTERM)
            try:
                dproc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                dproc.kill()
    elapsed = time.monotonic() - t_start

    for (p, c), d in produced.items():
        if (p, c) in results:
            results[(p, c)]["produce_error"] = d["error"]
            results[(p, c)]["modes"] = d["modes"]

    md = ["# hsbroker GPU interop matrix (separate processes)", "",
          "%s, %d tensors per cell (float32 [64, 256]), %.1f s; rows: producer, columns: consumer."
          % (time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()), count, elapsed), "",
          "| producer \\ consumer | " + " | ".join(LIBS) + " |",
          "|---|" + "---|" * len(LIBS)]
    npass = nfail = nskip = 0
    for p in LIBS:
        row = []
        for c in LIBS:
            txt = cell_text(results.get((p, c)), pskip.get(p), cskip.get(c), count)
            npass += txt.startswith("pass")
            nfail += txt.startswith("FAIL")
            nskip += txt.startswith("skip")
            row.append(txt)
        md.append("| **%s** | %s |" % (p, " | ".join(row)))
    md += ["", "C <-> Python (hs-gpu-test roles: mixed sizes 4 KiB .. 256 MiB, eight dtypes, "
           "every byte checked):", ""]
    if not have_c:
        md.append("- skip: %s not built" % gt)
        nskip += 2
    else:
        r = results.get(("C", "torch"))
        rc_out = croles_out.get("C->py")
        if r is None:
            txt = "skip (torch consumer: %s)" % cskip.get("torch") if "torch" in cskip else \
                "FAIL (no result)"
        else:
            txt = cell_text(r, None, None, count)
            if rc_out and rc_out[0] != 0:
                txt = "FAIL (C producer exit %d: %s)" % (rc_out[0], rc_out[1][-200:])
        md.append("- C producer (hs-gpu-test role-producer) -> torch consumer: " + txt)
        npass += txt.startswith("pass")
        nfail += txt.startswith("FAIL")
        nskip += txt.startswith("skip")
        rc_out = croles_out.get("py->C")
        pd = produced.get(("torch", "C"))
        if rc_out is None:
            txt = "skip (torch: %s)" % (pskip.get("torch") or cskip.get("torch"))
        elif rc_out[0] == 0 and pd and not pd["error"]:
            last = [l for l in rc_out[1].splitlines() if "checked" in l]
            txt = "pass (C consumer checked every byte: %s)" % (last[-1].strip() if last else "exit 0")
        else:
            txt = "FAIL (C consumer exit %d, producer error %s: %s)" % (
                rc_out[0], pd and pd["error"], rc_out[1].strip()[-300:].replace("\n", " / "))
        md.append("- torch producer -> C consumer (hs-gpu-test role-consumer): " + txt)
        npass += txt.startswith("pass")
        nfail += txt.startswith("FAIL")
        nskip += txt.startswith("skip")
    md += ["", "Zero-copy evidence per cell: the consumer library's own pointer (torch "
           "`data_ptr()`, cupy `data.ptr`, numba CAI `data[0]`, cuda.core "
           "`StridedMemoryView.ptr`, jax `unsafe_buffer_pointer()`) against the broker "
           "tensor's `data_ptr`, and the device allocation holding it "
           "(`cuPointerGetAttribute` RANGE_START/RANGE_SIZE: a broker slab opened through IPC). "
           "Producer modes: in-place = written into a broker tensor; copied = a library "
           "array outside broker memory, copied once device to device by `emit`.", "",
           "| cell | lib ptr == data_ptr | first data_ptr | lib ptr | allocation (start, size) | "
           "in it | producer modes | ms |", "|---|---|---|---|---|---|---|---|"]
    for (p, c), r in sorted(results.items(), key=lambda kv: ((LIBS + ["C"]).index(kv[0][0]),
                                                             LIBS.index(kv[0][1]))):
        md.append("| %s -> %s | %d/%d | %s | %s | %s | %s | %s | %s |" % (
            p, c, r["ptr_eq"], r["n"], r.get("data_ptr"), r.get("lib_ptr"), r.get("range"),
            r.get("in_range"), r.get("modes", "C plan"), r.get("ms")))
    md.append("")
    md.append("Mapping cache per consumer process: " + ", ".join(
        "%s slab_opens=%d event_opens=%d" % (n, s["slab_opens"], s["event_opens"])
        for n, s in sorted(stats.items())))
    for tag, (code, out) in sorted(croles_out.items()):
        md.append("")
        md.append("%s C role exit %d: %s" % (tag, code, out.strip()[-400:].replace("\n", " / ")))
    md += ["", "RESULT case=interop ok=%d pass=%d fail=%d skip=%d seconds=%.1f"
           % (nfail == 0 and npass > 0, npass, nfail, nskip, elapsed)]
    text = "\n".join(md) + "\n"
    sys.stdout.write(text)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], a["md"]), "w") as f:
            f.write(text)
    if nfail:
        rc = 1
    elif npass == 0:
        rc = 77
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
