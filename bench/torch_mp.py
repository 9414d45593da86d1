"""torch.multiprocessing: CUDA tensors through a Queue, the alternative
users pick today, in the loop of the other methods.

    torch_mp.py --size BYTES [--iters N] [--warmup N]

The producer (this process) allocates a new uint8 CUDA tensor each
iteration from PyTorch's caching allocator, fills it (every byte) and puts
it in a torch.multiprocessing Queue; the consumer (a spawned process)
gets it, reads the first and last 64 bytes back to the host (which
synchronises), drops it and acks over a Pipe with its read time. The
producer keeps each tensor alive until its ack, as torch.multiprocessing
requires. Prints one JSON line (keys as the C programs); without torch or
CUDA it prints {"skipped": reason}.
"""
import argparse
import json
import subprocess
import sys
import time

from py_handoff import payload_byte, skip, summary


def consumer(q, conn, size, total):
    import torch
    torch.cuda.set_device(0)
    k = min(64, size)
    conn.send_bytes(b"r")
    for i in range(total):
        x = q.get()
        t0 = time.perf_counter_ns()
        v = torch.cat((x[:k], x[-k:])).cpu()
        ok = int(v[0]) == payload_byte(i) and int(v[-1]) == payload_byte(i)
        del x
        read_ns = time.perf_counter_ns() - t0
        conn.send_bytes(b"%d %d" % (read_ns, 1 if ok else 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=100)
    a = ap.parse_args()
    case = "torch-mp-cuda"
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return skip(case, a.size, "torch probe failed: %s" % e)
    if r.returncode == 3:
        return skip(case, a.size, "torch has no CUDA device here")
    if r.returncode != 0:
        last = (r.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return skip(case, a.size, "no torch: " + last)

    import torch
    import torch.multiprocessing as mp
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    mine, theirs = ctx.Pipe()
    total = a.warmup + a.iters
    p = ctx.Process(target=consumer, args=(q, theirs, a.size, total), daemon=True)
    p.start()
    torch.cuda.set_device(0)
    if mine.recv_bytes() != b"r":
        raise RuntimeError("consumer did not start")
    res = {k: [] for k in ("rt", "write", "read", "bk")}
    bad = 0
    for i in range(total):
        t0 = time.perf_counter_ns()
        x = torch.empty(a.size, dtype=torch.uint8, device="cuda")
        x.fill_(payload_byte(i))
        t1 = time.perf_counter_ns()
        q.put(x)
        read_ns, ok = map(int, mine.recv_bytes().split())
        del x
        t2 = time.perf_counter_ns()
        bad += not ok
        if i < a.warmup:
            continue
        rt, w = t2 - t0, t1 - t0
        res["rt"].append(rt)
        res["write"].append(w)
        res["read"].append(read_ns)
        res["bk"].append(max(0, rt - w - read_ns))
    p.join(timeout=60)
    out = {"case": case, "size": a.size}
    for k, v in res.items():
        out.update(summary(k, v))
    out["bad"] = bad
    print(json.dumps(out), flush=True)
    return 1 if bad or p.exitcode != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
