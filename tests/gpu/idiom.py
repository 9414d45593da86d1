"""The GPU hand-off in the idioms people write (issue 10): does a block
go back to the pool only after the reader's GPU work on it is done?

One producer process (PyTorch) allocates 4 MiB float32 device tensors,
writes k into the k-th one through torch.from_dlpack on its own stream and
emits it with that stream; after each emit it also takes every block it
can get, overwrites it with -1 and gives it back (an eager rewriter). The
pool is two 4 MiB blocks short of what the queue needs (one 16 MiB slab,
capped; consumers subscribe with depth 4, block policy), so a block
released too early is rewritten at once. One consumer process per
library reads each tensor the way a user of that library would: it
queues a slow kernel (a few ms) and then counts the elements that are
not k, lets the tensor go as the idiom says, and only then looks at the
count. A count other than 0 is a corrupted round: the block was
rewritten while the reader's kernels still ran.

Every case must see 0 corrupted rounds, except the control
(idiom-control-done: Tensor.release(stream=hsbroker.STREAM_DONE) while the
kernels still run), which must see some: it shows the test can see the
hazard. Prints one RESULT line per case; exit 0 when every case passed,
1 otherwise, 77 when there is no GPU or no PyTorch.

    python3 tests/gpu/idiom.py [--daemon build-gpu/daemon/hsbrokerd]
        [--rounds 120] [--cases idiom-torch-default,...]

Needs the built module on PYTHONPATH (build-gpu/python is added) and
starts its own hsbrokerd (its pool must be small).

Two GPUs (issue 18): --writer-gpu W --reader-gpu R puts the producer's
tensors on GPU W and makes GPU R the consumers' device. The PyTorch
consumer then reads the way a model on GPU R does: the slow kernel on R,
then a copy of the tensor from W to R (PyTorch orders a copy between
devices after both devices' current streams) and the count on R; only
the PyTorch cases run that way by default.
"""
import json
import os
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(HERE, "interop"))
import interop  # noqa: E402  (its daemon start and JSON lines)
N = 1 << 20                  # float32 elements: 4 MiB
SPIN_MS = 3.0                # the slow reader's kernel
SM_KHZ = 1980000             # H200/H100 top SM clock, for clock64 spins
DEPTH = 4
RECV_TIMEOUT = 30
WRITER_GPU = int(os.environ.get("IDIOM_WRITER_GPU", "0"))
READER_GPU = int(os.environ.get("IDIOM_READER_GPU", "0"))

# (case, library, what the consumer does); the library's process runs its
# cases in this order.
CASES = [
    ("idiom-torch-default", "torch",
     "torch.from_dlpack(t) on the default stream; t.release(stream="
     "torch.cuda.current_stream().cuda_stream), i.e. 0"),
    ("idiom-torch-with", "torch", "with t: + torch.from_dlpack(t) in a helper, default stream"),
    ("idiom-torch-side", "torch",
     "with t: + torch.from_dlpack(t) in a helper, inside "
     "torch.cuda.stream(torch.cuda.Stream())"),
    ("idiom-torch-side-release", "torch",
     "torch.from_dlpack(t) on a side stream; t.release(stream=side.cuda_stream)"),
    ("idiom-torch-gc", "torch",
     "torch.from_dlpack(t) on a side stream; never released: del t (garbage collection)"),
    ("idiom-control-done", "torch",
     "control: torch.from_dlpack(t), del the view, t.release(stream=hsbroker.STREAM_DONE) "
     "while the kernels run"),
    ("idiom-cupy-dlpack-default", "cupy", "with t: + cupy.from_dlpack(t), default stream"),
    ("idiom-cupy-cai-default", "cupy", "with t: + cupy.asarray(t) (CAI), default stream"),
    ("idiom-cupy-dlpack-stream", "cupy", "with t: + cupy.from_dlpack(t) inside cupy.cuda.Stream()"),
    ("idiom-cupy-cai-stream", "cupy", "with t: + cupy.asarray(t) (CAI) inside cupy.cuda.Stream()"),
    ("idiom-cupy-cai-nonblocking", "cupy",
     "cupy.asarray(t) (CAI) inside cupy.cuda.Stream(non_blocking=True); "
     "t.release(stream=s.ptr), as docs/gpu.md says"),
    ("idiom-numba", "numba", "with t: + numba.cuda.as_cuda_array(t) (CAI), default stream"),
    ("idiom-numba-stream", "numba", "with t: + numba.cuda.as_cuda_array(t) (CAI), cuda.stream()"),
    ("idiom-jax", "jax", "with t: + jax.dlpack.from_dlpack(t) in a helper"),
]
CONTROL = "idiom-control-done"


# ------------------------------------------------------------- producer

def is_nospace(e):
    return "ENOSPC" in repr(getattr(e, "args", ()))


def producer_main(rounds):
    import torch
    import hsbroker
    torch.cuda.set_device(WRITER_GPU)
    dev = "cuda:%d" % WRITER_GPU
    s = torch.cuda.Stream()
    c = hsbroker.connect(name="idiom-producer")
    interop.emit_line({"status": "ready"})

    def alloc(deadline):
        while True:
            try:
                return c.alloc((N,), "float32", device=dev)
            except hsbroker.Error as e:
                if not is_nospace(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.0001)

    def fill(t, v):
        with torch.cuda.stream(s):
            torch.from_dlpack(t).fill_(v)

    for line in sys.stdin:
        words = line.split()
        if not words or words[0] == "quit":
            break
        case = words[1]
        err = None
        rewrites = 0
        try:
            for k in range(1, rounds + 1):
                t = alloc(time.monotonic() + RECV_TIMEOUT)
                fill(t, float(k))
                c.emit("idiom/" + case, t, stream=s.cuda_stream)
                # The eager rewriter: every block it can get, at once.
                extra = []
                while len(extra) < 4:
                    try:
                        extra.append(c.alloc((N,), "float32", device=dev))
                    except hsbroker.Error as e:
                        if not is_nospace(e):
                            raise
                        break
                for x in extra:
                    fill(x, -1.0)
                    x.release(stream=s.cuda_stream)
                rewrites += len(extra)
        except Exception as e:
            err = "%s: %s" % (type(e).__name__, e)
        interop.emit_line({"produced": case, "error": err, "rewrites": rewrites})
    s.synchronize()
    c.close()
    return 0


# ------------------------------------------------------------- consumers
# Each idiom takes the received tensor and k and returns a function that
# gives the number of elements that were not k (it synchronises). The
# tensor must be let go, as the idiom does, before that function is called.

class TorchIdioms:
    def __init__(self):
        import torch
        import hsbroker
        self.torch, self.hs = torch, hsbroker
        torch.cuda.set_device(READER_GPU)
        torch.zeros(1, device="cuda:%d" % READER_GPU)
        self.side = torch.cuda.Stream()
        # cycles for SPIN_MS at the H200's top SM clock (a slower clock
        # only makes the reader slower)
        self.cycles = int(SPIN_MS * SM_KHZ)

    def read(self, a, k):
        self.torch.cuda._sleep(self.cycles)   # the slow kernel, then the read
        if a.device.index != READER_GPU:
            a = a.to("cuda:%d" % READER_GPU)  # a model on the other GPU
        return (a != k).sum()

    def helper(self, t, k):
        return self.read(self.torch.from_dlpack(t), k)

    def run(self, case, t, k):
        torch = self.torch
        if case == "idiom-torch-default":
            a = torch.from_dlpack(t)
            bad = self.read(a, k)
            t.release(stream=torch.cuda.current_stream().cuda_stream)
            del a
        elif case == "idiom-torch-with":
            with t:
                bad = self.helper(t, k)
        elif case == "idiom-torch-side":
            with torch.cuda.stream(self.side):
                with t:
                    bad = self.helper(t, k)
        elif case == "idiom-torch-side-release":
            with torch.cuda.stream(self.side):
                a = torch.from_dlpack(t)
                bad = self.read(a, k)
                del a
                t.release(stream=self.side.cuda_stream)
        elif case == "idiom-torch-gc":
            with torch.cuda.stream(self.side):
                bad = self.helper(t, k)
            del t
        elif case == CONTROL:
            a = torch.from_dlpack(t)
            bad = self.read(a, k)
            del a
            t.release(stream=self.hs.STREAM_DONE)
        else:
            raise KeyError(case)
        return lambda: int(bad.item())


CUPY_SPIN = r'''
extern "C" __global__ void spin(const float *x, float *sink, long long cycles)
{
    long long t0 = clock64();
    while (clock64() - t0 < cycles) { }
    sink[0] = x[0];
}
'''


class CupyIdioms:
    def __init__(self):
        import cupy
        self.cp = cupy
        cupy.cuda.Device(READER_GPU).use()
        self.spin = cupy.RawKernel(CUPY_SPIN, "spin")
        self.sink = cupy.zeros(1, cupy.float32)
        self.cycles = int(SPIN_MS * SM_KHZ)
        self.blocking = cupy.cuda.Stream()
        self.nonblocking = cupy.cuda.Stream(non_blocking=True)

    def read(self, a, k):
        cp = self.cp
        if a.device.id != READER_GPU:
            # A model on another GPU: copy() makes the copy on the
            # current device, on its current stream.
            with cp.cuda.Device(READER_GPU):
                a = a.copy()
        self.spin((1,), (1,), (a, self.sink, cp.int64(self.cycles)))
        return cp.count_nonzero(a != k)

    def run(self, case, t, k):
        cp = self.cp
        take = cp.from_dlpack if "dlpack" in case else cp.asarray
        if case.endswith("-default"):
            with t:
                bad = self.read(take(t), k)
            return lambda: int(bad)
        if case.endswith("-stream"):
            s = self.blocking
            with s:
                with t:
                    bad = self.read(take(t), k)
        elif case == "idiom-cupy-cai-nonblocking":
            s = self.nonblocking
            with s:
                a = cp.asarray(t)
                bad = self.read(a, k)
                del a
                t.release(stream=s.ptr)
        else:
            raise KeyError(case)
        return lambda: (s.synchronize(), int(bad))[1]


class NumbaIdioms:
    def __init__(self):
        import numpy as np
        # Numba 0.68 compiles kernels through np.row_stack, which NumPy
        # 2.5 no longer has (seen on the H200 machine): the alias it was.
        if not hasattr(np, "row_stack"):
            np.row_stack = np.vstack
        from numba import cuda
        if not cuda.is_available():
            raise ImportError("numba.cuda sees no GPU")
        self.np, self.cuda = np, cuda
        # Numba works in one context per device: where the tensors live.
        cuda.select_device(WRITER_GPU)

        @cuda.jit
        def spin(x, sink, us):
            for _ in range(us):
                cuda.nanosleep(1000)
            sink[0] = x[0]

        @cuda.jit
        def count_bad(x, k, out):
            i = cuda.grid(1)
            if i < x.size and x[i] != k:
                cuda.atomic.add(out, 0, 1)

        self.spin, self.count_bad = spin, count_bad
        self.stream = cuda.stream()
        self.zero = np.zeros(1, np.int32)
        # Compile both now: a Numba that cannot is a skip with its reason.
        x = cuda.to_device(np.ones(256, np.float32))
        cnt = cuda.to_device(self.zero)
        spin[1, 1](x, x, 1)
        count_bad[1, 256](x, 1.0, cnt)
        if int(cnt.copy_to_host()[0]) != 0:
            raise RuntimeError("numba count kernel is wrong")

    def run(self, case, t, k):
        cuda = self.cuda
        s = self.stream if case == "idiom-numba-stream" else 0
        cnt = cuda.to_device(self.zero, stream=s)
        sink = cuda.to_device(self.np.zeros(1, self.np.float32), stream=s)
        with t:
            d = cuda.as_cuda_array(t)
            self.spin[1, 1, s](d, sink, int(SPIN_MS * 1000))
            self.count_bad[(N + 255) // 256, 256, s](d, float(k), cnt)
            del d

        def count():
            h = cnt.copy_to_host(stream=s)
            if s != 0:
                s.synchronize()
            return int(h[0])
        return count


class JaxIdioms:
    def __init__(self):
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        import jax
        import jax.dlpack
        import jax.numpy as jnp
        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            raise ImportError("jax sees no GPU")
        self.jax, self.jnp = jax, jnp
        self.dev = gpus[READER_GPU] if READER_GPU < len(gpus) else gpus[0]
        hi = jax.lax.Precision.HIGHEST

        def count(x, k):
            # A slow reader: a chain of full-precision matmuls on the
            # tensor, then the read that depends on it.
            z = x.reshape(1024, 1024)
            for _ in range(60):
                z = jnp.tanh(jnp.matmul(z, z, precision=hi) * 1e-3)
            return jnp.sum((x + 0.0 * z[0, 0]) != k)

        self.count = jax.jit(count)
        self.count(jnp.zeros(N, jnp.float32, device=self.dev), 1.0).block_until_ready()

    def helper(self, t, k):
        x = self.jax.dlpack.from_dlpack(t)
        if WRITER_GPU != READER_GPU:
            x = self.jax.device_put(x, self.dev)  # the model's GPU
        return self.count(x, float(k))

    def run(self, case, t, k):
        with t:
            bad = self.helper(t, k)
        return lambda: int(bad)


IDIOMS = {"torch": TorchIdioms, "cupy": CupyIdioms, "numba": NumbaIdioms, "jax": JaxIdioms}


def consumer_main(lib, rounds, cases):
    import hsbroker
    try:
        idioms = IDIOMS[lib]()
    except Exception as e:
        interop.emit_line({"status": "skip", "reason": "%s: %s" % (type(e).__name__, e)})
        return 0
    c = hsbroker.connect(name="idiom-" + lib)
    subs = {case: c.subscribe("idiom/" + case, depth=DEPTH) for case in cases}
    interop.emit_line({"status": "ready"})
    for case in cases:
        res = {"case": case, "rounds": 0, "corrupted": 0, "errors": []}
        t0 = time.monotonic()
        for _ in range(rounds):
            try:
                t = subs[case].receive(timeout=RECV_TIMEOUT)
                k = t.seq
                count = idioms.run(case, t, float(k))
                del t
                bad = count()
            except Exception as e:
                where = traceback.extract_tb(e.__traceback__)[-1]
                res["errors"].append("%s: %s (%s:%d)" % (type(e).__name__, e,
                                                         os.path.basename(where.filename),
                                                         where.lineno))
                if isinstance(e, hsbroker.Timeout) or len(res["errors"]) > 3:
                    break
                continue
            res["rounds"] += 1
            res["corrupted"] += bad != 0
        res["ms"] = int((time.monotonic() - t0) * 1000)
        res["errors"] = res["errors"][:3]
        # What a failed case left queued goes back, so the next case's
        # producer gets blocks.
        subs[case].close()
        interop.emit_line(res)
    c.close()
    return 0


# ----------------------------------------------------------------- main

def start_daemon(path):
    # One 16 MiB slab, capped: four 4 MiB blocks, fewer than the queue
    # (depth 4) plus the reader plus the writer want.
    return interop.start_daemon(path, ("--cuda-slab-size", "16M", "--cuda-cap", "16M"),
                                "hs-idiom-")


def first_line(p):
    line = p.stdout.readline()
    try:
        return json.loads(line)
    except ValueError:
        return {"status": "dead", "reason": "died at start: %r" % line[-300:]}


def main(argv):
    if len(argv) >= 2 and argv[0] == "produce":
        return producer_main(int(argv[1]))
    if len(argv) >= 3 and argv[0] == "consume":
        return consumer_main(argv[1], int(argv[2]), argv[3].split(","))
    opts = {"daemon": os.path.join(ROOT, "build-gpu", "daemon", "hsbrokerd"),
            "rounds": "120", "writer-gpu": "0", "reader-gpu": "0"}
    for i in range(0, len(argv) - 1, 2):
        opts[argv[i].lstrip("-")] = argv[i + 1]
    cross = opts["writer-gpu"] != opts["reader-gpu"]
    if "cases" not in opts:
        opts["cases"] = ",".join(c for c, lib, _ in CASES)
    global WRITER_GPU, READER_GPU
    WRITER_GPU, READER_GPU = int(opts["writer-gpu"]), int(opts["reader-gpu"])
    os.environ["IDIOM_WRITER_GPU"] = str(WRITER_GPU)
    os.environ["IDIOM_READER_GPU"] = str(READER_GPU)
    rounds = int(opts["rounds"])
    want = opts["cases"].split(",")
    if not os.path.exists("/dev/nvidia0"):
        print("SKIP: no NVIDIA GPU here")
        return 77
    if cross and not os.path.exists("/dev/nvidia%d" % max(int(opts["writer-gpu"]),
                                                           int(opts["reader-gpu"]))):
        print("SKIP: the writer and the reader GPU need two GPUs")
        return 77
    env = dict(os.environ)
    pyb = os.path.join(ROOT, "build-gpu", "python")
    env["PYTHONPATH"] = pyb + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    dproc, env["HSBROKER_SOCKET"] = start_daemon(opts["daemon"])
    me = os.path.abspath(__file__)

    def spawn(args):
        return subprocess.Popen([sys.executable, me] + args, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)

    results, produced = {}, {}
    t_start = time.monotonic()
    prod = spawn(["produce", str(rounds)])
    try:
        st = first_line(prod)
        if st.get("status") != "ready":
            print("SKIP: the PyTorch producer did not start: %s" % st.get("reason"))
            return 77
        for lib in IDIOMS:
            cases = [c for c, l, _ in CASES if l == lib and c in want]
            if not cases:
                continue
            cons = spawn(["consume", lib, str(rounds), ",".join(cases)])
            st = first_line(cons)
            if st.get("status") != "ready":
                for case in cases:
                    results[case] = {"case": case, "skip": st.get("reason", "?")}
                cons.kill()
                cons.wait()
                continue
            for case in cases:
                prod.stdin.write("go %s\n" % case)
                prod.stdin.flush()
            for case in cases:
                line = prod.stdout.readline()
                try:
                    d = json.loads(line)
                    produced[d["produced"]] = d
                except ValueError:
                    print("[producer] %s" % line.rstrip())
            try:
                out, _ = cons.communicate(timeout=60 + rounds * len(cases) * 0.05)
            except subprocess.TimeoutExpired:
                cons.kill()
                out, _ = cons.communicate()
                print("[%s] killed: past its deadline" % lib)
            for line in out.splitlines():
                try:
                    d = json.loads(line)
                    results[d["case"]] = d
                except (ValueError, KeyError):
                    print("[%s] %s" % (lib, line))
        prod.stdin.write("quit\n")
        prod.stdin.flush()
        prod.wait(timeout=30)
    finally:
        for p in (prod,):
            if p.poll() is None:
                p.kill()
        dproc.send_signal(signal.SIGTERM)
        try:
            dproc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            dproc.kill()

    failed = 0
    for case, lib, what in CASES:
        if case not in want:
            continue
        r = results.get(case)
        p = produced.get(case, {})
        if r is None or "skip" in r:
            failed += 1
            print("RESULT case=%s ok=0 rounds=0 corrupted_rounds=- (%s) # %s"
                  % (case, "not run: " + (r or {}).get("skip", "no result"), what))
            continue
        if case == CONTROL:
            ok = r["corrupted"] > 0 and r["rounds"] == rounds
        else:
            ok = r["corrupted"] == 0 and r["rounds"] == rounds and not r["errors"]
        ok = ok and not p.get("error")
        failed += not ok
        extra = ""
        if r["errors"] or p.get("error"):
            extra = " errors=%s producer_error=%s" % (r["errors"], p.get("error"))
        gpus = " writer_gpu=%d reader_gpu=%d" % (WRITER_GPU, READER_GPU) if cross else ""
        print("RESULT case=%s ok=%d rounds=%d corrupted_rounds=%d rewrites=%s ms=%d%s%s # %s"
              % (case, ok, r["rounds"], r["corrupted"], p.get("rewrites"), r["ms"], gpus, extra,
                 what + (" (must see corruption)" if case == CONTROL else "")))
    print("idiom: %d cases, %d failed, %.1f s" % (len(want), failed, time.monotonic() - t_start))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
