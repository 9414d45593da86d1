"""hsbroker Python -> Python: the loop of hs-bench-handoff, in Python.

    py_handoff.py --size BYTES [--device cpu|cuda] [--iters N] [--warmup N]
                  [--socket PATH]

Host (cpu): NumPy. The producer allocs a uint8 tensor, fills it
(ndarray.fill: every byte), emits; the consumer receives, reads the same
64 cache lines as the C programs (payload.h), releases and acks over a
SOCK_SEQPACKET socketpair with its read time. cuda: PyTorch tensors
through DLPack (torch.from_dlpack, which makes torch's stream wait on
the ready fence), Tensor.fill_ on the producer's stream and emit with
that stream; the consumer reads the first and last 64 bytes back to the
host (which synchronises) and releases with its stream.

The two processes are forked before either connects or touches CUDA.
Prints one JSON line with the same keys as the C programs; a case that
cannot run here (no torch, no GPU) prints {"skipped": reason}.
"""
import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import time

ACK = struct.Struct("<QQi4x")  # read_ns, seq, ok
LINES = 64


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


def host_consumer(fd, a):
    import numpy as np
    import hsbroker
    with hsbroker.connect(a.socket, "bench-py-consumer") as c:
        sub = c.subscribe(a.topic, depth=8)
        offs = sample_index(a.size)
        idx = np.array([o + k for o in offs for k in range(8) if o + k < a.size], dtype=np.intp)
        fd.send(b"r")
        for _ in range(a.warmup + a.iters):
            t = sub.receive(timeout=30)
            t0 = time.perf_counter_ns()
            x = np.asarray(t)
            it = t.seq - 1
            s = int(x[idx].sum())
            ok = int(x[0]) == payload_byte(it) and int(x[-1]) == payload_byte(it)
            del x
            read_ns = time.perf_counter_ns() - t0
            seq = t.seq
            t.release()
            fd.send(ACK.pack(read_ns, seq, 1 if ok and s >= 0 else 0))
        sub.close()
    return 0


def host_producer(fd, a):
    import numpy as np
    import hsbroker
    res = {k: [] for k in ("rt", "alloc", "write", "emit", "read", "bk")}
    bad = 0
    with hsbroker.connect(a.socket, "bench-py-producer") as c:
        if fd.recv(1) != b"r":
            raise RuntimeError("consumer did not start")
        for i in range(a.warmup + a.iters):
            t0 = time.perf_counter_ns()
            t = c.alloc((a.size,), "uint8")
            t1 = time.perf_counter_ns()
            x = np.asarray(t)
            x.fill(payload_byte(i))
            del x
            t2 = time.perf_counter_ns()
            c.emit(a.topic, t)
            t3 = time.perf_counter_ns()
            read_ns, _seq, ok = ACK.unpack(fd.recv(ACK.size))
            t4 = time.perf_counter_ns()
            bad += not ok
            if i >= a.warmup:
                record(res, (t0, t1, t2, t3, t4), read_ns)
    return res, bad


# ---- device (PyTorch) ----

def cuda_consumer(fd, a):
    import torch
    import hsbroker
    torch.cuda.set_device(0)
    stream = torch.cuda.Stream()
    with hsbroker.connect(a.socket, "bench-py-consumer") as c, torch.cuda.stream(stream):
        sub = c.subscribe(a.topic, depth=8)
        k = min(64, a.size)
        fd.send(b"r")
        for _ in range(a.warmup + a.iters):
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--socket")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    a = ap.parse_args()
    a.topic = "bench/py/%d" % os.getpid()
    cuda = a.device == "cuda"
    case = "hsbroker-py-torch-cuda" if cuda else "hsbroker-py"
    if cuda:
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
            rc = (cuda_consumer if cuda else host_consumer)(cs, a)
        except BaseException as e:  # report, then leave without cleanup handlers
            print("py_handoff consumer: %r" % (e,), file=sys.stderr)
        finally:
            sys.stderr.flush()
            os._exit(rc)
    cs.close()
    try:
        res, bad = (cuda_producer if cuda else host_producer)(ps, a)
    finally:
        ps.close()
        _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        print("py_handoff: consumer failed (%d)" % status, file=sys.stderr)
        return 1
    out = {"case": case, "size": a.size}
    for k, v in res.items():
        out.update(summary(k, v))
    out["bad"] = bad
    print(json.dumps(out), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
