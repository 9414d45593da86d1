"""Where the Python hand-off's time goes (bench/NOTES.md): each step of
bench/py_handoff.py's loop timed alone, in one process, one call at a time.

    python3 bench/experiments/py_costs.py [--device cpu|cuda] [--iters N]
                                          [--socket PATH]

Needs a running hsbrokerd (--socket, else $HSBROKER_SOCKET) and the module
on PYTHONPATH. --device cpu (default) needs nothing else: the binding's
own calls (alloc, emit, receive, release, __dlpack__, repr of a refusal),
which is how its per-call cost is compared before and after a change.
--device cuda needs torch with CUDA and adds PyTorch's steps: importing a
broker tensor through torch.from_dlpack next to importing one of its own,
torch.cuda.current_stream(), fill_, and the ready-to-use receive
(hsbroker.torch). Prints one JSON line of p50s in microseconds; steps the
module does not have (an older build) are left out.
"""
import argparse
import json
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--iters", type=int, default=2000)
    ap.add_argument("--socket")
    a = ap.parse_args()
    import hsbroker
    cuda = a.device == "cuda"
    dev = "cuda:0" if cuda else "cpu"
    steps = {}
    out = {"case": "py-costs-" + a.device, "iters": a.iters,
           "version": getattr(hsbroker, "__version__", "?")}
    pc = time.perf_counter_ns

    def timed(name, fn, *args, **kw):
        t0 = pc()
        r = fn(*args, **kw)
        steps.setdefault(name, []).append(pc() - t0)
        return r

    hst = None
    if cuda:
        import torch
        try:
            import hsbroker.torch as hst  # the ready-to-use views (newer builds)
        except ImportError:
            pass
        torch.cuda.set_device(0)
        s = torch.cuda.Stream()
        sh = s.cuda_stream
        own = torch.empty(4096, dtype=torch.uint8, device="cuda:0")
        ctx = torch.cuda.stream(s)
        ctx.__enter__()
    else:
        sh = None
    with hsbroker.connect(a.socket, "py-costs") as c:
        sub = c.subscribe("py-costs", depth=4)
        for _ in range(a.iters):
            t = timed("alloc", c.alloc, (4096,), "uint8", device=dev)
            if cuda:
                timed("current_stream", torch.cuda.current_stream)
                cap = timed("dlpack_call", t.__dlpack__, stream=sh)
                del cap
                x = timed("from_dlpack_ours", torch.from_dlpack, t)
                timed("from_dlpack_torch", torch.from_dlpack, own)
                timed("fill", x.fill_, 7)
                del x
            else:
                cap = timed("dlpack_call", t.__dlpack__)
                del cap
            timed("emit", c.emit, "py-costs", t, stream=sh)
            r = timed("receive", sub.receive, timeout=10)
            if cuda:
                y = timed("from_dlpack_received", torch.from_dlpack, r)
                del y
            timed("release", r.release, stream=sh)
            t = c.alloc((4096,), "uint8", device=dev)
            timed("emit_wait", c.emit, "py-costs", t, stream=sh, wait=True)
            r = sub.receive(timeout=10)
            timed("repr", repr, r)
            timed("shape", getattr, r, "shape")
            r.release(stream=sh)
            if cuda and hst is not None:
                t = c.alloc((4096,), "uint8", device=dev)
                y = timed("view_torch", hst.view, t)
                del y
                c.emit("py-costs", t)
                y = timed("receive_torch", hst.receive, sub, 10)
                del y
        if cuda:
            s.synchronize()
            ctx.__exit__(None, None, None)
    for k, v in steps.items():
        out[k + "_p50_us"] = round(statistics.median(v[a.iters // 10:]) / 1000.0, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
