"""hsbroker Python -> Python: the loop of hs-bench-handoff, in Python.

    py_handoff.py --size BYTES [--device cpu|cuda] [--flavor raw|torch|torchview]
                  [--iters N] [--warmup N] [--socket PATH]

Host (cpu): NumPy. The producer allocs a uint8 tensor, fills it
(ndarray.fill: every byte), emits (waiting for the sequence number, as
hs-bench-handoff does); the consumer receives, reads the same 64 cache
lines as the C programs (payload.h), releases and acks over a
SOCK_SEQPACKET socketpair with its read time.

cuda, three flavors:
- raw (case hsbroker-py-cuda): exactly the C program's GPU work, through
  the CUDA driver API (ctypes, libcuda.so.1), so the difference from C -> C
  is the binding's cost: the producer cuMemsetD8Async's the tensor on its
  non-blocking stream and emits with that stream; the consumer makes its
  stream wait on the ready fence (Tensor.wait), copies the first and last
  64 bytes into 128 bytes of pinned host memory on it, synchronises once
  and releases with its stream.
- torch (hsbroker-py-torch-cuda): the idiomatic PyTorch consumer:
  torch.from_dlpack on both sides, Tensor.fill_ on the producer's stream,
  torch.cat(...).cpu() to read back (a kernel, an allocation, a pageable
  copy), release with the consumer's stream.
- torchview (hsbroker-py-torchview-cuda): PyTorch through hsbroker.torch's
  views (no torch.from_dlpack, no current_stream() per tensor), reading
  back as the C program does: two 64-byte copies into pinned memory and
  one synchronisation.

The two processes are forked before either connects or touches CUDA.
Prints one JSON line with the same keys as the C programs, and a profile
of both processes per measured hand-off: CPU µs (user + system, every
thread: cpu_us_producer/consumer), voluntary context switches (the
process slept and was woken: wakeups_*) and involuntary ones
(preempted_*). A case that cannot run here (no torch, no GPU) prints
{"skipped": reason}.
"""
import argparse
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time

ACK = struct.Struct("<QQi4x")  # read_ns, seq, ok
USAGE = struct.Struct("<ddd")  # per measured hand-off: CPU s, voluntary, involuntary switches
LINES = 64
EXTRA = {}  # the producer's scalar keys (usage_keys), added to the output


def payload_byte(i):
    return 1 + i % 251


def pct(ns, p):
    if not ns:
        return 0.0
    s = sorted(ns)
    rank = max(1, min(len(s), int(p * len(s) + 0.999999)))
    return s[rank - 1] / 1000.0


def summary(name, ns):
    s = sorted(ns)
    return {
        name + "_n": len(s),
        name + "_p50_us": pct(s, 0.5), name + "_p90_us": pct(s, 0.9),
        name + "_p99_us": pct(s, 0.99), name + "_min_us": s[0] / 1000.0 if s else 0.0,
        name + "_max_us": s[-1] / 1000.0 if s else 0.0,
        name + "_mean_us": sum(s) / len(s) / 1000.0 if s else 0.0,
    }


def skip(case, size, why):
    print(json.dumps({"case": case, "size": size, "skipped": why}), flush=True)
    print("%s: skipped: %s" % (case, why), file=sys.stderr)
    return 0


def sample_index(n):
    """Byte offsets of the first 8 bytes of 64 lines spread over n bytes
    (payload.c's choice)."""
    lines = max(1, n // 64)
    step = lines // LINES if lines > LINES else 1
    return [l * 64 for l in range(0, lines, step)][:LINES]


# ---- host (NumPy) ----

def record(res, t, read_ns):
    """One iteration's times: t = (start, allocated, written, emitted,
    acked), in ns; the hand-off is the round trip less write and read."""
    t0, t1, t2, t3, t4 = t
    rt, w = t4 - t0, t2 - t1
    res["rt"].append(rt)
    res["alloc"].append(t1 - t0)
    res["write"].append(w)
    res["emit"].append(t3 - t2)
    res["read"].append(read_ns)
    res["bk"].append(max(0, rt - w - read_ns))


def usage():
    """CPU seconds (user + system, every thread) and context switches
    (voluntary: the process slept, i.e. a wake-up; involuntary) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime, r.ru_nvcsw, r.ru_nivcsw


def per_handoff(u0, a):
    return tuple((x1 - x0) / a.iters for x0, x1 in zip(u0, usage()))


def counted(fd, a):
    """The consumer's iterations; after the last it sends the producer
    its CPU time and context switches per measured hand-off."""
    for i in range(a.warmup):
        yield i
    u0 = usage()
    for i in range(a.warmup, a.warmup + a.iters):
        yield i
    fd.send(USAGE.pack(*per_handoff(u0, a)))


def usage_keys(fd, a, u0):
    """The profile keys of the output: this process's (the producer's)
    usage since u0 and the consumer's, per hand-off."""
    mine = per_handoff(u0, a)
    theirs = USAGE.unpack(fd.recv(USAGE.size))
    out = {}
    for who, (cpu, vol, invol) in (("producer", mine), ("consumer", theirs)):
        out["cpu_us_" + who] = round(cpu * 1e6, 2)
        out["wakeups_" + who] = round(vol, 3)
        out["preempted_" + who] = round(invol, 3)
    return out


def handoffs(fd, a, res, alloc, write, emit):
    """The producer's timed loop: alloc, write, emit, wait for the ack.
    Returns the count of tensors the consumer read wrong."""
    bad = 0
    u0 = usage()
    now, recv, unpack = time.perf_counter_ns, fd.recv, ACK.unpack
    for i in range(a.warmup + a.iters):
        t0 = now()
        t = alloc()
        t1 = now()
        write(t, i)
        t2 = now()
        emit(t)
        t3 = now()
        read_ns, _seq, ok = unpack(recv(ACK.size))
        t4 = now()
        bad += not ok
        if i >= a.warmup:
            record(res, (t0, t1, t2, t3, t4), read_ns)
        elif i == a.warmup - 1:
            u0 = usage()
    EXTRA.update(usage_keys(fd, a, u0))
    return bad


def host_consumer(fd, a):
    import numpy as np
    import hsbroker
    with hsbroker.connect(a.socket, "bench-py-consumer") as c:
        sub = c.subscribe(a.topic, depth=8)
        offs = sample_index(a.size)
        idx = np.array([o + k for o in offs for k in range(8) if o + k < a.size], dtype=np.intp)
        fd.send(b"r")
        # Bound once: the loop pays for the calls, not for finding them.
        receive, send, pack, now, asarray = sub.receive, fd.send, ACK.pack, \
            time.perf_counter_ns, np.asarray
        for _ in counted(fd, a):
            t = receive(30)
            t0 = now()
            x = asarray(t)
            seq = t.seq
            want = payload_byte(seq - 1)
            s = int(x[idx].sum())
            ok = x[0] == want and x[-1] == want and s >= 0
            del x
            read_ns = now() - t0
            t.release()
            send(pack(read_ns, seq, 1 if ok else 0))
        sub.close()
    return 0


def host_producer(fd, a):
    import numpy as np
    import hsbroker
    res = {k: [] for k in ("rt", "alloc", "write", "emit", "read", "bk")}
    with hsbroker.connect(a.socket, "bench-py-producer") as c:
        if fd.recv(1) != b"r":
            raise RuntimeError("consumer did not start")
        alloc, emit, asarray, topic, size = c.alloc, c.emit, np.asarray, a.topic, a.size

        def write(t, i):
            asarray(t).fill(payload_byte(i))

        # emit waits for the seq, as hs-bench-handoff does.
        bad = handoffs(fd, a, res, lambda: alloc(size, "uint8"), write,
                       lambda t: emit(topic, t, None, True))
    return res, bad


# ---- device (PyTorch) ----

class Driver:
    """The few CUDA driver calls the raw flavor makes (ctypes): the primary
    context of device 0 (the one the CUDA runtime in hsbroker uses), a
    non-blocking stream and 128 pinned bytes."""

    def __init__(self):
        import ctypes
        c = ctypes
        self.lib = lib = c.CDLL("libcuda.so.1")
        dev, ctx, s, host = c.c_int(), c.c_void_p(), c.c_void_p(), c.c_void_p()
        for call in (lambda: lib.cuInit(0), lambda: lib.cuDeviceGet(c.byref(dev), 0),
                     lambda: lib.cuDevicePrimaryCtxRetain(c.byref(ctx), dev),
                     lambda: lib.cuCtxSetCurrent(ctx),
                     lambda: lib.cuStreamCreate(c.byref(s), 1),  # CU_STREAM_NON_BLOCKING
                     lambda: lib.cuMemAllocHost_v2(c.byref(host), 128)):
            rc = call()
            if rc:
                raise RuntimeError("CUDA driver call failed: %d" % rc)
        self.stream = s.value
        self.host = (c.c_uint8 * 128).from_address(host.value)
        self.host_ptr = host.value
        self.memset = lib.cuMemsetD8Async
        self.memset.argtypes = [c.c_uint64, c.c_ubyte, c.c_size_t, c.c_void_p]
        self.d2h = lib.cuMemcpyDtoHAsync_v2
        self.d2h.argtypes = [c.c_void_p, c.c_uint64, c.c_size_t, c.c_void_p]
        self.sync = lib.cuStreamSynchronize
        self.sync.argtypes = [c.c_void_p]

    def read(self, ptr, n):
        """The first and last 64 bytes of n at ptr, on the stream; one sync."""
        k = min(64, n)
        s = self.stream
        if self.d2h(self.host_ptr, ptr, k, s) or self.d2h(self.host_ptr + 64, ptr + n - k, k, s) \
                or self.sync(s):
            raise RuntimeError("CUDA copy failed")
        return self.host[0], self.host[64 + k - 1]


def raw_consumer(fd, a):
    import hsbroker
    g = Driver()
    with hsbroker.connect(a.socket, "bench-py-consumer") as c:
        sub = c.subscribe(a.topic, depth=8)
        fd.send(b"r")
        s, send, pack = g.stream, fd.send, ACK.pack
        for _ in counted(fd, a):
            t = sub.receive(30)
            t0 = time.perf_counter_ns()
            seq = t.seq
            t.wait(s)
            first, last = g.read(t.data_ptr, a.size)
            want = payload_byte(seq - 1)
            read_ns = time.perf_counter_ns() - t0
            t.release(s)
            send(pack(read_ns, seq, 1 if first == want and last == want else 0))
        sub.close()
    return 0


def raw_producer(fd, a):
    import hsbroker
    g = Driver()
    res = {k: [] for k in ("rt", "alloc", "write", "emit", "read", "bk", "local")}
    s = g.stream
    with hsbroker.connect(a.socket, "bench-py-producer") as c:
        if fd.recv(1) != b"r":
            raise RuntimeError("consumer did not start")
        # The write and read alone, in this process (see handoff.c).
        t = c.alloc((a.size,), "uint8", device="cuda:0")
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter_ns()
            g.memset(t.data_ptr, payload_byte(i), a.size, s)
            g.read(t.data_ptr, a.size)
            if i >= a.warmup:
                res["local"].append(time.perf_counter_ns() - t0)
        t.release(s)
        alloc, emit, topic, size, memset = c.alloc, c.emit, a.topic, a.size, g.memset
        bad = handoffs(fd, a, res, lambda: alloc(size, "uint8", "cuda:0"),
                       lambda t, i: memset(t.data_ptr, payload_byte(i), size, s),
                       lambda t: emit(topic, t, s, True))
    return res, bad


def torchview_consumer(fd, a):
    import torch
    import hsbroker
    import hsbroker.torch as hst
    torch.cuda.set_device(0)
    stream = torch.cuda.Stream()
    host = torch.empty(128, dtype=torch.uint8, pin_memory=True)
    k = min(64, a.size)
    with hsbroker.connect(a.socket, "bench-py-consumer") as c, torch.cuda.stream(stream):
        sub = c.subscribe(a.topic, depth=8)
        fd.send(b"r")
        for i in counted(fd, a):
            x = hst.receive(sub, 30)  # on the current stream: ours
            t0 = time.perf_counter_ns()
            host[:k].copy_(x[:k], non_blocking=True)
            host[64:64 + k].copy_(x[-k:], non_blocking=True)
            stream.synchronize()
            want = payload_byte(i)  # in order: iteration i is seq i + 1
            ok = int(host[0]) == want and int(host[64 + k - 1]) == want
            read_ns = time.perf_counter_ns() - t0
            del x  # released after the copies queued on our stream
            fd.send(ACK.pack(read_ns, i + 1, 1 if ok else 0))
        sub.close()
    return 0


def torchview_producer(fd, a):
    import torch
    import hsbroker
    import hsbroker.torch as hst
    torch.cuda.set_device(0)
    stream = torch.cuda.Stream()
    host = torch.empty(128, dtype=torch.uint8, pin_memory=True)
    res = {k: [] for k in ("rt", "alloc", "write", "emit", "read", "bk", "local")}
    k = min(64, a.size)
    with hsbroker.connect(a.socket, "bench-py-producer") as c, torch.cuda.stream(stream):
        if fd.recv(1) != b"r":
            raise RuntimeError("consumer did not start")
        t = c.alloc((a.size,), "uint8", device="cuda:0")
        x = hst.view(t)
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter_ns()
            x.fill_(payload_byte(i))
            host[:k].copy_(x[:k], non_blocking=True)
            host[64:64 + k].copy_(x[-k:], non_blocking=True)
            stream.synchronize()
            if i >= a.warmup:
                res["local"].append(time.perf_counter_ns() - t0)
        del x
        t.release()
        alloc, emit, view, topic, size = c.alloc, c.emit, hst.view, a.topic, a.size

        def write(t, i):
            view(t).fill_(payload_byte(i))

        # The ready fence goes after the stream the view was made on.
        bad = handoffs(fd, a, res, lambda: alloc(size, "uint8", "cuda:0"), write,
                       lambda t: emit(topic, t, None, True))
    return res, bad


def cuda_consumer(fd, a):
    import torch
    import hsbroker
    torch.cuda.set_device(0)
    stream = torch.cuda.Stream()
    with hsbroker.connect(a.socket, "bench-py-consumer") as c, torch.cuda.stream(stream):
        sub = c.subscribe(a.topic, depth=8)
        k = min(64, a.size)
        fd.send(b"r")
        for _ in counted(fd, a):
            t = sub.receive(timeout=30)
            t0 = time.perf_counter_ns()
            x = torch.from_dlpack(t)  # our stream waits on the ready fence
            v = torch.cat((x[:k], x[-k:])).cpu()  # synchronises
            it = t.seq - 1
            ok = int(v[0]) == payload_byte(it) and int(v[-1]) == payload_byte(it)
            del x
            read_ns = time.perf_counter_ns() - t0
            seq = t.seq
            t.release(stream=stream.cuda_stream)
            fd.send(ACK.pack(read_ns, seq, 1 if ok else 0))
        sub.close()
    return 0


def cuda_producer(fd, a):
    import torch
    import hsbroker
    torch.cuda.set_device(0)
    stream = torch.cuda.Stream()
    res = {k: [] for k in ("rt", "alloc", "write", "emit", "read", "bk", "local")}
    bad = 0
    k = min(64, a.size)
    with hsbroker.connect(a.socket, "bench-py-producer") as c, torch.cuda.stream(stream):
        if fd.recv(1) != b"r":
            raise RuntimeError("consumer did not start")
        # The write and read alone, in this process (see handoff.c).
        t = c.alloc((a.size,), "uint8", device="cuda:0")
        x = torch.from_dlpack(t)
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter_ns()
            x.fill_(payload_byte(i))
            v = torch.cat((x[:k], x[-k:])).cpu()
            if i >= a.warmup:
                res["local"].append(time.perf_counter_ns() - t0)
        del x, v
        t.release(stream=stream.cuda_stream)
        u0 = usage()
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter_ns()
            t = c.alloc((a.size,), "uint8", device="cuda:0")
            t1 = time.perf_counter_ns()
            x = torch.from_dlpack(t)
            x.fill_(payload_byte(i))
            del x
            t2 = time.perf_counter_ns()
            c.emit(a.topic, t, stream=stream)
            t3 = time.perf_counter_ns()
            read_ns, _seq, ok = ACK.unpack(fd.recv(ACK.size))
            t4 = time.perf_counter_ns()
            bad += not ok
            if i >= a.warmup:
                record(res, (t0, t1, t2, t3, t4), read_ns)
            elif i == a.warmup - 1:
                u0 = usage()
        EXTRA.update(usage_keys(fd, a, u0))
    return res, bad


def torch_cuda_available():
    """Asked in a child interpreter: this one must not touch CUDA before
    it forks."""
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "torch probe failed: %s" % e
    if r.returncode == 0:
        return None
    if r.returncode == 3:
        return "torch has no CUDA device here"
    return "no torch: " + (r.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]


def driver_available():
    """Whether a CUDA device answers the driver API, asked in a child
    interpreter (this one must not touch CUDA before it forks)."""
    code = ("import ctypes, sys; l = ctypes.CDLL('libcuda.so.1'); n = ctypes.c_int(); "
            "sys.exit(0 if l.cuInit(0) == 0 and l.cuDeviceGetCount(ctypes.byref(n)) == 0 "
            "and n.value > 0 else 3)")
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "CUDA probe failed: %s" % e
    if r.returncode == 0:
        return None
    return "no CUDA driver or device here" if r.returncode == 3 else \
        "no libcuda.so.1: " + (r.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]


ROLES = {"raw": (raw_consumer, raw_producer), "torch": (cuda_consumer, cuda_producer),
         "torchview": (torchview_consumer, torchview_producer)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--socket")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--flavor", choices=("raw", "torch", "torchview"), default="torch",
                    help="cuda: driver API (raw), idiomatic PyTorch, hsbroker.torch views")
    a = ap.parse_args()
    a.topic = "bench/py/%d" % os.getpid()
    cuda = a.device == "cuda"
    case = {"raw": "hsbroker-py-cuda", "torch": "hsbroker-py-torch-cuda",
            "torchview": "hsbroker-py-torchview-cuda"}[a.flavor] if cuda else "hsbroker-py"
    if cuda and a.flavor == "raw":
        why = driver_available()
        if why:
            return skip(case, a.size, why)
    elif cuda:
        why = torch_cuda_available()
        if why:
            return skip(case, a.size, why)
    else:
        try:
            import numpy  # noqa: F401
        except ImportError:
            return skip(case, a.size, "no numpy")

    ps, cs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        ps.close()
        rc = 1
        try:
            rc = (ROLES[a.flavor][0] if cuda else host_consumer)(cs, a)
        except BaseException as e:  # report, then leave without cleanup handlers
            print("py_handoff consumer: %r" % (e,), file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(rc)
    cs.close()
    try:
        res, bad = (ROLES[a.flavor][1] if cuda else host_producer)(ps, a)
    finally:
        ps.close()
        _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        print("py_handoff: consumer failed (%d)" % status, file=sys.stderr)
        return 1
    out = {"case": case, "size": a.size}
    for k, v in res.items():
        out.update(summary(k, v))
    out.update(EXTRA)
    out["bad"] = bad
    print(json.dumps(out), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
