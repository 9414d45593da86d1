#!/usr/bin/python3
"""Python -> Python against C -> C, side by side in one run (issue 13):
the binding's cost, and the targets that measure it.

    /usr/bin/python3 bench/py_vs_c.py --build build --out DIR              host
    python3 bench/py_vs_c.py --build build-gpu --out DIR --gpu on --mps both

Host (always): hs-bench-handoff and py_handoff.py (NumPy) at 4 KiB,
8 MiB and 256 MiB against one daemon, alternating C and Python per size.
GPU (--gpu on): per MPS mode, the same sizes for C -> C, Py -> Py with the
C program's GPU work (py_handoff.py --flavor raw), the hsbroker.torch views
(--flavor torchview), the idiomatic PyTorch consumer (--flavor torch) and
torch.multiprocessing, then bench/experiments/py_costs.py --device cuda.
It reuses bench/run.py's daemon, runner and hand-off measure (share: rt -
write - read on the host, rt - the write+read timed in one process on the
GPU). Writes results.md and results.json into --out.
"""
import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as R  # noqa: E402  (bench/run.py)

HOST_ITERS = {R.SIZES[0]: (10000, 1000), R.SIZES[1]: (2000, 200), R.SIZES[2]: (100, 10)}
GPU_ITERS = {R.SIZES[0]: (2000, 200), R.SIZES[1]: (1000, 100), R.SIZES[2]: (100, 10)}
TORCH_MP_ITERS = {R.SIZES[0]: (500, 50), R.SIZES[1]: (300, 30), R.SIZES[2]: (50, 5)}
TIMEOUT = 90  # s a case: the GPU run must stay inside one device-tool call
FLAVORS = (("raw", "hsbroker-py-cuda"), ("torchview", "hsbroker-py-torchview-cuda"),
           ("torch", "hsbroker-py-torch-cuda"))


class Budget:
    """Runs a case only while the time budget lasts, so the results are
    written even when the device call is short of time."""

    def __init__(self, run, seconds):
        self.run, self.end = run, time.monotonic() + seconds if seconds else None

    def __call__(self, label, cmd, env, timeout):
        if self.end is not None and time.monotonic() + 5 > self.end:
            self.run.failures.append("%s: not run, the time budget was spent" % label)
            print("== %s: not run (budget)" % label, flush=True)
            return None
        left = timeout if self.end is None else max(5, min(timeout, self.end - time.monotonic()))
        return self.run.run(label, cmd, env, timeout=int(left))


def suite(run, build, d, env, device, tag):
    b = lambda name: os.path.join(build, "bench", "hs-bench-" + name)
    py = [sys.executable, os.path.join(HERE, "py_handoff.py")]
    suffix = "" if device == "cpu" else (" (MPS)" if tag == "mps" else " (no MPS)")
    iters = HOST_ITERS if device == "cpu" else GPU_ITERS
    case = run.budget
    for size in R.SIZES:
        it, wu = run.scale(iters[size])
        common = ["--device", device, "--size", str(size), "--iters", str(it),
                  "--warmup", str(wu), "--socket", d.socket]
        case("hsbroker C->C %s%s" % (R.fmt_size(size), suffix), [b("handoff"), *common], env,
             TIMEOUT)
        if device == "cpu":
            case("hsbroker Py->Py %s%s" % (R.fmt_size(size), suffix), py + common, env, TIMEOUT)
            continue
        for flavor, _case in FLAVORS:
            case("hsbroker Py->Py %s %s%s" % (flavor, R.fmt_size(size), suffix),
                 py + common + ["--flavor", flavor], env, TIMEOUT)
        it, wu = run.scale(TORCH_MP_ITERS[size])
        case("torch.multiprocessing %s%s" % (R.fmt_size(size), suffix),
             [sys.executable, os.path.join(HERE, "torch_mp.py"), "--size", str(size),
              "--iters", str(it), "--warmup", str(wu)], env, TIMEOUT)
    if device == "cuda":
        case("py_costs%s" % suffix,
             [sys.executable, os.path.join(HERE, "experiments", "py_costs.py"),
              "--device", "cuda", "--iters", "1000" if not run.a.quick else "50",
              "--socket", d.socket], env, TIMEOUT)


def comparison(results):
    """Rows of (mode, size, C share, {case: share}, torch.mp rt, Py raw rt)
    and the targets."""
    rows, targets = [], []
    for mode, label in (("host", "host"), ("nomps", "GPU, no MPS"), ("mps", "GPU, MPS")):
        gpu = mode != "host"
        c_case = "hsbroker-c-cuda" if gpu else "hsbroker-c"
        py_cases = [c for _, c in FLAVORS] if gpu else ["hsbroker-py"]
        ratios, mp_ratios = [], []
        for size in R.SIZES:
            c = R.find(results, c_case, size, mode if gpu else None)
            if not c:
                continue
            shares = {}
            for pc in py_cases:
                p = R.find(results, pc, size, mode if gpu else None)
                if p:
                    shares[pc] = (R.share(p), p["rt_p50_us"])
            mp = R.find(results, "torch-mp-cuda", size, mode) if gpu else None
            rows.append((label, size, R.share(c), c["rt_p50_us"], shares,
                         mp["rt_p50_us"] if mp else None))
            main = shares.get(py_cases[0])
            if main:
                ratios.append((size, main[0] / R.share(c)))
                if mp:
                    mp_ratios.append((size, mp["rt_p50_us"] / main[1]))
        limit = 1.5 if gpu else 1.3
        if ratios:
            targets.append(("%s: Py → Py ≤ %.1f× C → C (hand-off p50, every size)" % (label, limit),
                            max(x for _, x in ratios) <= limit,
                            ", ".join("%s %.2f×" % (R.fmt_size(s), x) for s, x in ratios)))
        if mode == "mps" and mp_ratios:
            targets.append(("GPU, MPS: Py → Py ≥ 10× faster than torch.multiprocessing (rt p50)",
                            min(x for _, x in mp_ratios) >= 10,
                            ", ".join("%s %.1f×" % (R.fmt_size(s), x) for s, x in mp_ratios)))
    return rows, targets


def report(results, a, gpu, cmdline, failures):
    rows, targets = comparison(results)
    name = {"hsbroker-py": "Py (NumPy)", "hsbroker-py-cuda": "Py (raw)",
            "hsbroker-py-torchview-cuda": "Py (hsbroker.torch)",
            "hsbroker-py-torch-cuda": "Py (torch idiomatic)"}
    md = ["# Python -> Python against C -> C", "",
          "- machine: %s" % R.machine(), "- GPU: %s" % ("yes" if gpu else "no"),
          "- date: %s UTC" % datetime.datetime.now(datetime.timezone.utc).strftime(
              "%Y-%m-%d %H:%M"),
          "- command: `%s`" % cmdline, "",
          "Hand-off p50 µs (bench/run.py's measure: host rt − write − read; GPU rt − the "
          "write + read timed in one process); in brackets the round trip p50 and, for "
          "Python, the ratio to C → C's hand-off.", "",
          "| where | size | C → C | Python rows | torch.multiprocessing rt |",
          "| --- | --- | ---: | --- | ---: |"]
    for label, size, cs, crt, shares, mp in rows:
        pys = "; ".join("%s %.1f (rt %.1f, %.2f×)" % (name.get(k, k), s, rt, s / cs)
                        for k, (s, rt) in shares.items())
        md.append("| %s | %s | %.1f (rt %.1f) | %s | %s |" % (
            label, R.fmt_size(size), cs, crt, pys, "%.1f" % mp if mp else "–"))
    md += ["", "| target | met | measured |", "| --- | --- | --- |"]
    for n, met, v in targets:
        md.append("| %s | %s | %s |" % (n, "met" if met else "**missed**", v))
    prof = [r for r in results if "cpu_us_producer" in r]
    if prof:
        md += ["", "Python rows, per measured hand-off (getrusage of each process): CPU µs "
               "(user + system, every thread), voluntary context switches (wake-ups), "
               "involuntary ones (preempted).", "",
               "| row | producer CPU µs | consumer CPU µs | wake-ups P / C | preempted P / C |",
               "| --- | ---: | ---: | --- | --- |"]
        for r in prof:
            md.append("| %s | %.1f | %.1f | %.2f / %.2f | %.2f / %.2f |" % (
                r["label"], r["cpu_us_producer"], r["cpu_us_consumer"], r["wakeups_producer"],
                r["wakeups_consumer"], r["preempted_producer"], r["preempted_consumer"]))
    costs = [r for r in results if r.get("case") == "py-costs-cuda"]
    for r in costs:
        md += ["", "py_costs %s: %s" % (r["label"], ", ".join(
            "%s %.1f" % (k[:-7], v) for k, v in r.items() if k.endswith("_p50_us")))]
    if failures:
        md += ["", "## Failures", ""] + ["- " + f.replace("\n", " ") for f in failures]
    md.append("")
    return "\n".join(md), targets


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.path.join(R.ROOT, "build"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "py-vs-c"))
    ap.add_argument("--gpu", choices=("on", "off"), default="off")
    ap.add_argument("--mps", choices=("off", "on", "both"), default="both")
    ap.add_argument("--host", choices=("on", "off"), default="on")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--iter-scale", type=float, default=1.0)
    ap.add_argument("--budget-s", type=float, default=0,
                    help="start no case after this many seconds (0: no limit)")
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    exe = os.path.join(build, "daemon", "hsbrokerd")
    os.makedirs(a.out, exist_ok=True)
    run = R.Runner(a)
    # The budget is shared out among the passes (host, no MPS, MPS), so a
    # slow first pass cannot starve the MPS rows.
    passes = (a.host == "on") + (a.gpu == "on") * (2 if a.mps == "both" else 1)
    share_s = a.budget_s / max(1, passes)
    tmp = tempfile.mkdtemp(prefix="hs-pyvc-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(build, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HS_DEBUG", None)
    gpu = a.gpu == "on"
    try:
        d = R.Daemon(exe, tmp, "plain", env, gpu)
        try:
            if a.host == "on":
                run.budget = Budget(run, share_s)
                suite(run, build, d, env, "cpu", "")
            if gpu and a.mps in ("off", "both"):
                run.budget = Budget(run, share_s)
                suite(run, build, d, env, "cuda", "nomps")
        finally:
            d.stop()
        if gpu and a.mps in ("on", "both"):
            with R.mps(tmp, env, run.failures) as menv:
                if menv:
                    d = R.Daemon(exe, tmp, "mps", menv, True)
                    try:
                        run.budget = Budget(run, share_s)
                        suite(run, build, d, menv, "cuda", "mps")
                    finally:
                        d.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cmdline = "python3 bench/py_vs_c.py " + " ".join(sys.argv[1:])
    md, targets = report(run.results, a, gpu, cmdline, run.failures)
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write(md)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"machine": R.machine(), "gpu": gpu, "command": cmdline,
                   "results": run.results, "failures": run.failures,
                   "targets": [{"target": n, "met": m, "measured": v} for n, m, v in targets]},
                  f, indent=1)
    print(md)
    return 1 if run.failures else 0


if __name__ == "__main__":
    sys.exit(main())
