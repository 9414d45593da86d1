"""The binding's per-call cost, an older build against this one, in one
process with the calls interleaved (so both see the same load on a shared
machine). Host tensors only; needs a running hsbrokerd.

    python3 bench/experiments/py_before_after.py --old DIR [--socket PATH] [--iters N]

DIR holds the older package renamed hsbroker_old (a copy of an older
build/python/hsbroker, _hsbroker.abi3.so included); this build's package
comes from PYTHONPATH. Prints p50 µs per call for each.
"""
import argparse
import statistics
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--old", required=True)
    ap.add_argument("--socket")
    ap.add_argument("--iters", type=int, default=20000)
    a = ap.parse_args()
    sys.path.insert(0, a.old)
    import hsbroker
    import hsbroker_old
    pc = time.perf_counter_ns
    res = {}

    def timed(name, fn, *args):
        t0 = pc()
        r = fn(*args)
        res.setdefault(name, []).append(pc() - t0)
        return r

    sides = []
    for tag, mod in (("old", hsbroker_old), ("new", hsbroker)):
        c = mod.connect(a.socket, "py-before-after")
        sides.append((tag, c, c.subscribe("py-before-after/" + tag)))
    for _ in range(a.iters):
        for tag, c, sub in sides:
            x = timed(tag + " alloc", c.alloc, 4096, "uint8")
            timed(tag + " __dlpack__", x.__dlpack__)
            timed(tag + " shape", getattr, x, "shape")
            timed(tag + " emit", c.emit, sub.topic, x)
            r = timed(tag + " receive", sub.receive, 10)
            timed(tag + " release", r.release)
    for _tag, c, sub in sides:
        sub.close()
        c.close()
    p50 = {k: statistics.median(v[a.iters // 10:]) / 1000.0 for k, v in res.items()}
    for name in ("alloc", "emit", "receive", "release", "__dlpack__", "shape"):
        print("%-12s old %6.2f  new %6.2f" % (name, p50["old " + name], p50["new " + name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
