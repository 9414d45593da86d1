"""Where the Python hand-off's time goes on the GPU (bench/NOTES.md): each
step of bench/py_handoff.py's loop timed alone, in one process, next to
PyTorch importing one of its own tensors through DLPack. Needs a running
hsbrokerd ($HSBROKER_SOCKET), torch with CUDA, and the module on
PYTHONPATH. Prints one JSON line of p50s in microseconds.

    python3 bench/experiments/py_costs.py [--iters N]
"""
import json
import statistics
import sys
import time


def main():
    iters = int(sys.argv[2]) if len(sys.argv) == 3 and sys.argv[1] == "--iters" else 2000
    import torch
    import hsbroker
    torch.cuda.set_device(0)
    s = torch.cuda.Stream()
    out = {"case": "py-costs", "iters": iters}
    with hsbroker.connect(name="py-costs") as c, torch.cuda.stream(s):
        sub = c.subscribe("py-costs", depth=4)
        own = torch.empty(4096, dtype=torch.uint8, device="cuda:0")
        steps = {k: [] for k in ("alloc", "from_dlpack_ours", "from_dlpack_torch",
                                 "dlpack_call", "current_stream", "fill", "emit",
                                 "receive", "from_dlpack_received", "release")}

        def timed(name, fn):
            t0 = time.perf_counter_ns()
            r = fn()
            steps[name].append(time.perf_counter_ns() - t0)
            return r

        for _ in range(iters):
            t = timed("alloc", lambda: c.alloc((4096,), "uint8", device="cuda:0"))
            timed("current_stream", torch.cuda.current_stream)
            cap = timed("dlpack_call", lambda: t.__dlpack__(stream=s.cuda_stream))
            del cap
            x = timed("from_dlpack_ours", lambda: torch.from_dlpack(t))
            timed("from_dlpack_torch", lambda: torch.from_dlpack(own))
            timed("fill", lambda: x.fill_(7))
            del x
            timed("emit", lambda: c.emit("py-costs", t, stream=s.cuda_stream))
            r = timed("receive", lambda: sub.receive(timeout=10))
            y = timed("from_dlpack_received", lambda: torch.from_dlpack(r))
            del y
            timed("release", lambda: r.release(stream=s.cuda_stream))
        s.synchronize()
    for k, v in steps.items():
        out[k + "_p50_us"] = round(statistics.median(v[iters // 10:]) / 1000.0, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
