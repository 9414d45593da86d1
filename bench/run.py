#!/usr/bin/python3
"""The benchmarks of issue 6 in one run: starts its own hsbrokerd, runs
every case, and writes results.md (the table and the targets),
latency.png (latency vs size per method, log scale) and results.json
(every number) into --out.

    /usr/bin/python3 bench/run.py --build build-bench --out bench/results/host
    /usr/bin/python3 bench/run.py --quick ...      a smoke run (seconds)
    /usr/bin/python3 bench/run.py --gpu on --mps both ...   the GPU machine

Host rows always run. GPU rows (--gpu auto: when a GPU answers) run the
same programs with --device cuda, once without MPS and, with --mps both,
again under MPS (this script starts and stops the MPS control daemon, and
a second hsbrokerd so that the daemon is an MPS client too). A case that
cannot run here prints a skip, and the table says so.
"""
import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KiB, MiB = 1 << 10, 1 << 20
SIZES = [4 * KiB, 8 * MiB, 256 * MiB]

# (iters, warmup) per payload size: a full host run stays near two minutes
# on the 2-core CPU machine with 3 repeats; --quick divides by 20 (at least
# 5 iters).
ITERS = {4 * KiB: (20000, 2000), 8 * MiB: (2000, 200), 256 * MiB: (100, 10)}
COPY_ITERS = {4 * KiB: (20000, 2000), 8 * MiB: (1000, 100), 256 * MiB: (30, 5)}
PY_ITERS = {4 * KiB: (10000, 1000), 8 * MiB: (2000, 200), 256 * MiB: (100, 10)}
TORCH_MP_ITERS = {4 * KiB: (2000, 200), 8 * MiB: (1000, 100), 256 * MiB: (100, 10)}
FLOOR_ITERS = (20000, 2000)
PAIRED_FLOOR_ITERS = (3000, 300)
DESIGN_ITERS = (10000, 1000)
TP_ITERS = {1: (50000, 2000), 8: (10000, 1000)}

TARGETS_DOC = """\
Targets (issue 6; benchmark targets, not test assertions):
- host: the broker's share of a C -> C round trip (rt - write - read)
  <= 2x the bare UDS ping-pong, at every size
- host: Python -> Python <= 2x the floor (same measure)
- 256 MiB within 10% of 4 KiB (broker's share, p50)
- >= 50k host tensors/s 1 -> 1; >= 10k/s per subscriber at 1 -> 8
- <= 5 us of daemon CPU per tensor (1 -> 1)
- GPU: C -> C <= 1.5x the floor, Python <= 2x, >= 15x faster than
  torch.multiprocessing under MPS, >= 20k GPU tensors/s 1 -> 1"""


def fmt_size(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", KiB)):
        if n >= div and n % div == 0:
            return "%d %s" % (n // div, unit)
    return "%d B" % n


def wait_for_socket(path, proc, deadline_s=15.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("hsbrokerd exited with %s before listening" % proc.returncode)
        if os.path.exists(path):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                s.connect(path)
                return
            except OSError:
                pass
            finally:
                s.close()
        time.sleep(0.02)
    raise RuntimeError("hsbrokerd did not listen on %s" % path)


class Daemon:
    """Our own hsbrokerd on a private socket."""

    def __init__(self, exe, tmp, tag, env, cuda, extra=()):
        self.socket = os.path.join(tmp, "hs-%s.sock" % tag)
        self.logpath = os.path.join(tmp, "hsbrokerd-%s.log" % tag)
        self.log = open(self.logpath, "w+")
        self.cmd = [exe, "--socket", self.socket, "--slab-size", "1G", "--log-level", "warn",
                    *extra]
        if cuda:
            self.cmd += ["--cuda-slab-size", "1G"]
        self.proc = subprocess.Popen(self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_for_socket(self.socket, self.proc)
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.seek(0)
        return self.log.read()


class Runner:
    def __init__(self, args):
        self.a = args
        self.results = []
        self.failures = []
        self.commands = []

    def scale(self, iw):
        it, wu = iw
        if self.a.quick:
            return max(5, it // 20), max(2, wu // 20)
        return max(1, int(it * self.a.iter_scale)), wu

    def paired_floor(self, build, device, size=None, env=None):
        """A short floor run right before a case: this machine is shared
        and its load moves, so each ratio compares two numbers taken under
        the same load. On the GPU the floor writes the case's size (a big
        write is still running when the reader starts waiting on it)."""
        exe = os.path.join(build, "bench", "hs-bench-floor")
        it, wu = self.scale(PAIRED_FLOOR_ITERS)
        sz = ["--size", str(size)] if device == "cuda" and size else []
        try:
            p = subprocess.run([exe, "--device", device, *sz, "--iters", str(it),
                                "--warmup", str(wu)],
                               capture_output=True, text=True, env=env, timeout=300)
            r = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
        except (subprocess.TimeoutExpired, IndexError, ValueError):
            return None
        if "rt_p50_us" not in r:
            return None
        if "local_p50_us" in r:
            return r["rt_p50_us"] - r["local_p50_us"]
        return r["rt_p50_us"]

    def run(self, label, cmd, env, timeout=600, floor=None, variant=None):
        """Runs one case --repeat times and keeps the run with the median
        p50 (the median rate for throughput), whole, so its percentiles
        belong together; every repeat's p50 is kept beside it. variant
        renames the case (a comparison row, not a target's)."""
        runs = []
        for k in range(self.a.repeat):
            r = self.run_once(label, cmd, env, timeout, floor, k)
            if r is None:
                return None
            if variant:
                c = r["case"]
                r["case"] = (c[:-5] + "-" + variant + "-cuda" if c.endswith("-cuda")
                             else c + "-" + variant)
            runs.append(r)
            if "skipped" in r:
                break
        key = (lambda r: r.get("rt_p50_us", 0)) if "rt_p50_us" in runs[0] else \
              (lambda r: r.get("sub_rate_min", 0))
        runs.sort(key=key)
        best = runs[len(runs) // 2]
        if len(runs) > 1:
            best["repeats"] = [round(key(r), 3) for r in runs]
            if "paired_floor_p50_us" in best:
                best["repeats_floor_p50_us"] = [round(r.get("paired_floor_p50_us", 0), 3)
                                                for r in runs]
        self.results.append(best)
        return best

    def run_once(self, label, cmd, env, timeout, floor, k):
        """One run of one program; its last stdout line is its JSON.
        floor: (build, device) to measure a paired floor first."""
        fl = self.paired_floor(*floor, env=env) if floor else None
        shown = " ".join(cmd)
        if k == 0:
            self.commands.append(shown)
            print("== %s: %s" % (label, shown), flush=True)
        t0 = time.monotonic()
        load0 = os.getloadavg()[0]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.failures.append("%s: timed out after %d s" % (label, timeout))
            print("   timed out", flush=True)
            return None
        lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
        if p.returncode != 0 or not lines:
            msg = "%s: exit %d: %s" % (label, p.returncode, p.stderr.strip()[-800:])
            self.failures.append(msg)
            print("   FAILED " + msg, flush=True)
            return None
        r = json.loads(lines[-1])
        r["label"] = label
        r["command"] = shown
        r["wall_s"] = round(time.monotonic() - t0, 2)
        r["loadavg_before"] = load0
        if fl is not None:
            r["paired_floor_p50_us"] = fl
        r["loadavg_after"] = os.getloadavg()[0]
        if "skipped" in r:
            print("   skipped: %s" % r["skipped"], flush=True)
        elif "rt_p50_us" in r:
            print("   rt p50 %.1f us  p99 %.1f  min %.1f%s" % (
                r["rt_p50_us"], r["rt_p99_us"], r["rt_min_us"],
                ("  (broker share p50 %.1f)" % r["bk_p50_us"]) if "bk_p50_us" in r else ""),
                flush=True)
        else:
            print("   %.0f tensors/s per subscriber (min), daemon %.2f us CPU/tensor" % (
                r.get("sub_rate_min", 0), r.get("daemon_cpu_ns_per_tensor", -1) / 1000.0),
                flush=True)
        return r


def gpu_present(build):
    """hs-bench-floor --device cuda skips with a message when no GPU
    answers; ask it (it probes in a child process)."""
    exe = os.path.join(build, "bench", "hs-bench-floor")
    p = subprocess.run([exe, "--device", "cuda", "--iters", "1", "--warmup", "0"],
                       capture_output=True, text=True, timeout=120)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode == 0 and lines:
        r = json.loads(lines[-1])
        return "skipped" not in r, r.get("skipped", "")
    return False, p.stderr.strip()


def run_relay(R, build, d, env, device, suffix):
    """The daemon relay (HSBROKER_RINGS=0 in the clients: what a pair of two
    uids, or a client that opts out, gets) beside the default pair rings,
    in the same run against the same daemon. Variant 'relay' of each case;
    on the GPU only 4 KiB and 1 -> 1, to fit the device's minutes."""
    b = lambda name: os.path.join(build, "bench", "hs-bench-" + name)
    renv = dict(env, HSBROKER_RINGS="0")
    dev = ["--device", device]
    for size in (SIZES if device == "cpu" else [4 * KiB]):
        it, wu = R.scale(ITERS[size])
        R.run("hsbroker C->C %s, relay%s" % (fmt_size(size), suffix),
              [b("handoff"), *dev, "--size", str(size), "--iters", str(it),
               "--warmup", str(wu), "--socket", d.socket], renv,
              floor=(build, device, size), variant="relay")
    if device == "cpu":
        it, wu = R.scale(PY_ITERS[4 * KiB])
        R.run("hsbroker Py->Py 4 KiB, relay",
              [sys.executable, os.path.join(HERE, "py_handoff.py"), "--size", str(4 * KiB),
               "--iters", str(it), "--warmup", str(wu), "--socket", d.socket], renv,
              floor=(build, "cpu"), variant="relay")
    for subs in ((1, 8) if device == "cpu" else (1,)):
        it, wu = R.scale(TP_ITERS[subs])
        R.run("throughput 1->%d 4 KiB, relay%s" % (subs, suffix),
              [b("throughput"), *dev, "--size", "4096", "--subscribers", str(subs),
               "--iters", str(it), "--warmup", str(wu), "--socket", d.socket,
               "--daemon-pid", str(d.pid)], renv, variant="relay")


def run_suite(R, build, d, env, device, tag):
    """One pass over every case on one device ('cpu' or 'cuda')."""
    a = R.a
    b = lambda name: os.path.join(build, "bench", "hs-bench-" + name)
    py = [sys.executable]
    suffix = "" if device == "cpu" else (" (MPS)" if tag == "mps" else " (no MPS)")
    dev = ["--device", device]

    it, wu = R.scale(FLOOR_ITERS)
    R.run("floor" + suffix, [b("floor"), *dev, "--iters", str(it), "--warmup", str(wu)], env)
    if device == "cpu":
        # Floors of candidate designs, no broker code (bench/NOTES.md).
        for mode in ("relay", "lean", "rpc", "futex", "spin"):
            it, wu = R.scale(DESIGN_ITERS)
            R.run("design %s" % mode, [b("design"), "--mode", mode, "--iters", str(it),
                                       "--warmup", str(wu)], env, floor=(build, device))
    for size in SIZES:
        it, wu = R.scale(ITERS[size])
        ctl = ["--control", "1"] if device == "cpu" and size > 4 * KiB else []
        R.run("hsbroker C->C %s%s" % (fmt_size(size), suffix),
              [b("handoff"), *dev, "--size", str(size), "--iters", str(it),
               "--warmup", str(wu), "--socket", d.socket, *ctl], env,
              floor=(build, device, size))
    if device == "cuda":
        # The same with the next allocation made ahead and the release
        # after the ack: what is left is emit, receive and the fences,
        # the floor's part (to tell where the big rows' excess over
        # their floor comes from).
        for size in SIZES:
            it, wu = R.scale(ITERS[size])
            R.run("hsbroker C->C %s, alloc ahead, release after the ack%s"
                  % (fmt_size(size), suffix),
                  [b("handoff"), *dev, "--size", str(size), "--iters", str(it),
                   "--warmup", str(wu), "--socket", d.socket, "--alloc-ahead", "1",
                   "--late-release", "1"], env,
                  floor=(build, device, size), variant="lean")
    # Control for the big rows (hs-bench-handoff --control 1, interleaved
    # in the same run): after each hand-off, one of a 4 KiB tensor whose
    # producer idles as long as the big write took. And the floor with the
    # echo side idle that long. See bench/NOTES.md.
    # The same hand-off over the socket (one datagram per message), and
    # with a daemon that polls its channels 50 us before sleeping.
    it, wu = R.scale(ITERS[4 * KiB])
    R.run("hsbroker C->C 4 KiB, socket%s" % suffix,
          [b("handoff"), *dev, "--size", str(4 * KiB), "--iters", str(it),
           "--warmup", str(wu), "--socket", d.socket], dict(env, HSBROKER_CHANNEL="0"),
          floor=(build, device, 4 * KiB), variant="socket")
    exe = os.path.join(build, "daemon", "hsbrokerd")
    ds = Daemon(exe, os.path.dirname(d.socket), tag + "spin", env, device == "cuda",
                extra=["--spin-us", "50"])
    try:
        R.run("hsbroker C->C 4 KiB, daemon --spin-us 50%s" % suffix,
              [b("handoff"), *dev, "--size", str(4 * KiB), "--iters", str(it),
               "--warmup", str(wu), "--socket", ds.socket], env,
              floor=(build, device, 4 * KiB), variant="spin")
        R.run("hsbroker C->C 4 KiB, daemon --spin-us 50, HSBROKER_SPIN_US=50%s" % suffix,
              [b("handoff"), *dev, "--size", str(4 * KiB), "--iters", str(it),
               "--warmup", str(wu), "--socket", ds.socket], dict(env, HSBROKER_SPIN_US="50"),
              floor=(build, device, 4 * KiB), variant="spinboth")
        it, wu = R.scale(TP_ITERS[1])
        R.run("throughput 1->1 4 KiB, daemon --spin-us 50%s" % suffix,
              [b("throughput"), *dev, "--size", "4096", "--subscribers", "1",
               "--iters", str(it), "--warmup", str(wu), "--socket", ds.socket,
               "--daemon-pid", str(ds.pid)], env, variant="spin")
    finally:
        ds.stop()
    run_relay(R, build, d, env, device, suffix)
    big = find(R.results, "hsbroker-c", 256 * MiB) if device == "cpu" else None
    if big and big.get("write_p50_us", 0) > 1000:
        spin = int(big["write_p50_us"])
        it, wu = R.scale(ITERS[256 * MiB])
        R.run("floor, idle %d us (control)" % spin,
              [b("floor"), *dev, "--spin-us", str(spin), "--iters", str(it), "--warmup", str(wu)],
              env)
    # GPU: the C program's work from Python (raw: the binding's cost), and
    # the idiomatic PyTorch consumer (py_handoff.py's docstring).
    for size in SIZES:
        it, wu = R.scale(PY_ITERS[size])
        for flavor in ([None] if device == "cpu" else ["raw", "torch"]):
            R.run("hsbroker Py->Py %s%s%s" % ("raw " if flavor == "raw" else "", fmt_size(size),
                                              suffix),
                  py + [os.path.join(HERE, "py_handoff.py"), *dev, "--size", str(size),
                        "--iters", str(it), "--warmup", str(wu), "--socket", d.socket,
                        *(["--flavor", flavor] if flavor else [])], env,
                  floor=(build, device, size))
    for size in SIZES:
        it, wu = R.scale(COPY_ITERS[size])
        R.run("copy through %s %s%s" % ("socket" if device == "cpu" else "host", fmt_size(size),
                                         suffix),
              [b("copy"), *dev, "--size", str(size), "--iters", str(it), "--warmup", str(wu)], env,
              floor=(build, device, size))
    if device == "cuda":
        for size in SIZES:
            it, wu = R.scale(TORCH_MP_ITERS[size])
            R.run("torch.multiprocessing %s%s" % (fmt_size(size), suffix),
                  py + [os.path.join(HERE, "torch_mp.py"), "--size", str(size),
                        "--iters", str(it), "--warmup", str(wu)], env,
                  floor=(build, device, size))
    for subs in (1, 8):
        it, wu = R.scale(TP_ITERS[subs])
        R.run("throughput 1->%d 4 KiB%s" % (subs, suffix),
              [b("throughput"), *dev, "--size", "4096", "--subscribers", str(subs),
               "--iters", str(it), "--warmup", str(wu), "--socket", d.socket,
               "--daemon-pid", str(d.pid)], env)


# ---- the report ----

METHODS = [  # (case, label in the table, key of the measure compared with the floor)
    ("floor", "floor: UDS ping-pong, 64 B", "rt"),
    ("design-relay", "design floor: P → daemon → C, C → P (bare sockets)", "rt"),
    ("design-lean", "design floor: one-way emit, one release note, ack (bare sockets)", "rt"),
    ("design-rpc", "design floor: today's 7 datagrams a tensor (bare sockets)", "rt"),
    ("design-futex", "design floor: shared-memory word + futex", "rt"),
    ("design-spin", "design floor: shared-memory word, busy spin", "rt"),
    ("hsbroker-c", "hsbroker C -> C", "bk"),
    ("hsbroker-c-socket", "hsbroker C -> C over the socket (HSBROKER_CHANNEL=0)", "bk"),
    ("hsbroker-c-spin", "hsbroker C -> C, daemon --spin-us 50", "bk"),
    ("hsbroker-c-spinboth", "hsbroker C -> C, daemon --spin-us 50 and HSBROKER_SPIN_US=50", "bk"),
    ("hsbroker-c-relay", "hsbroker C -> C, daemon relay (HSBROKER_RINGS=0)", "bk"),
    ("hsbroker-py", "hsbroker Py -> Py (NumPy)", "bk"),
    ("hsbroker-py-relay", "hsbroker Py -> Py (NumPy), daemon relay (HSBROKER_RINGS=0)", "bk"),
    ("copy", "copy through a socket", "bk"),
    ("floor-cuda", "floor: UDS + IPC event + read", "gpu"),
    ("hsbroker-c-cuda", "hsbroker C -> C, CUDA", "gpu"),
    ("hsbroker-c-socket-cuda", "hsbroker C -> C, CUDA, over the socket (HSBROKER_CHANNEL=0)",
     "gpu"),
    ("hsbroker-c-relay-cuda", "hsbroker C -> C, CUDA, daemon relay (HSBROKER_RINGS=0)", "gpu"),
    ("hsbroker-c-lean-cuda",
     "hsbroker C -> C, CUDA, next alloc ahead, release after the ack", "gpu"),
    ("hsbroker-c-spin-cuda", "hsbroker C -> C, CUDA, daemon --spin-us 50", "gpu"),
    ("hsbroker-c-spinboth-cuda",
     "hsbroker C -> C, CUDA, daemon --spin-us 50 and HSBROKER_SPIN_US=50", "gpu"),
    ("hsbroker-py-cuda", "hsbroker Py -> Py, CUDA, the C program's work (driver API)", "gpu"),
    ("hsbroker-py-torchview-cuda", "hsbroker Py -> Py, hsbroker.torch views", "gpu"),
    ("hsbroker-py-torch-cuda", "hsbroker Py -> Py, torch CUDA", "gpu"),
    ("copy-cuda", "copy: D2H + socket + H2D", "rt"),
    ("torch-mp-cuda", "torch.multiprocessing Queue", "rt"),
]


def mps_of(r):
    return "mps" if r["label"].endswith("(MPS)") else "nomps"


def share(r):
    """The hand-off's own cost, p50 us: host rows subtract the write and the
    read measured in the same iteration (rt - write - read, per iteration);
    GPU rows subtract the same work timed in one process ("local" p50)."""
    if r["case"] in ("floor",):
        return r["rt_p50_us"]
    if "local_p50_us" in r:
        return r["rt_p50_us"] - r["local_p50_us"]
    if r["case"].endswith("cuda"):
        return r["rt_p50_us"]
    return r.get("bk_p50_us", r["rt_p50_us"])


def is_control(r):
    return r.get("label", "").endswith("(control)")


def find(results, case, size=None, mps=None):
    for r in results:
        if is_control(r):
            continue
        if r["case"] == case and "skipped" not in r and (size is None or r["size"] == size) \
                and (mps is None or mps_of(r) == mps or not case.endswith("cuda")):
            return r
    return None


def floor_for(results, r):
    """The floor a row is compared with: the one measured right before it
    (paired), else the run's floor row."""
    if "paired_floor_p50_us" in r:
        return r["paired_floor_p50_us"]
    gpu = r["case"].endswith("cuda")
    floor = find(results, "floor-cuda" if gpu else "floor", mps=mps_of(r))
    return share(floor) if floor else None


def table(results):
    rows = ["| method | size | p50 µs | p99 µs | min µs | write p50 µs | read p50 µs "
            "| hand-off p50 µs | floor p50 µs | × floor |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        if "rt_p50_us" not in r and "skipped" not in r:
            continue
        label = next((m[1] for m in METHODS if m[0] == r["case"]), r["case"])
        if r["label"].endswith("(control)"):
            label = r["label"]
        elif r["label"].endswith(")"):
            label += " " + r["label"][r["label"].rindex("("):]
        if "skipped" in r:
            rows.append("| %s | %s | skipped: %s | | | | | | | |" % (label, fmt_size(r["size"]),
                                                                  r["skipped"]))
            continue
        fl = floor_for(results, r)
        sh = share(r)
        w = r.get("write_p50_us")
        rd = r.get("read_p50_us")
        if "local_p50_us" in r:
            w, rd = r["local_p50_us"], None  # write + read together, timed apart
        rows.append("| %s | %s | %.1f | %.1f | %.1f | %s | %s | %.1f | %s | %s |" % (
            label, fmt_size(r["size"]), r["rt_p50_us"], r["rt_p99_us"], r["rt_min_us"],
            "%.1f" % w if w is not None else "–", "%.1f" % rd if rd is not None else "–",
            sh, "%.1f" % fl if fl else "–", "%.2f" % (sh / fl) if fl else "–"))
        if "ctl_p50_us" in r:
            c = r["ctl_p50_us"]
            rows.append("| ↳ control: 4 KiB, producer idle as long as that write, same run | 4 KiB "
                        "| | %.1f (p99) | %.1f (min) | | | %.1f | %s | %s |" % (
                            r["ctl_p99_us"], r["ctl_min_us"], c, "%.1f" % fl if fl else "–",
                            "%.2f" % (c / fl) if fl else "–"))
    return "\n".join(rows)


def tp_table(results):
    rows = ["| method | tensors/s producer | tensors/s per subscriber (min / mean) "
            "| daemon CPU µs per tensor | per delivery |",
            "| --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        if not r["case"].startswith("throughput"):
            continue
        if "skipped" in r:
            rows.append("| %s | skipped: %s | | | |" % (r["label"], r["skipped"]))
            continue
        rows.append("| %s | %.0f | %.0f / %.0f | %.2f | %.2f |" % (
            r["label"], r["producer_rate"], r["sub_rate_min"], r["sub_rate_mean"],
            r["daemon_cpu_ns_per_tensor"] / 1000.0, r["daemon_cpu_ns_per_delivery"] / 1000.0))
    return "\n".join(rows)


def targets(results):
    """[(target, met: True/False/None (not measured), measured)]"""
    out = []

    def ratio_rows(case, floor_case, limit, name, mps=None):
        fl = find(results, floor_case, mps=mps)
        rows = [r for r in results if r["case"] == case and "skipped" not in r
                and not is_control(r) and (mps is None or mps_of(r) == mps)]
        if not fl or not rows:
            out.append((name, None, "not measured here"))
            return
        ratios = [(r["size"], share(r) / (floor_for(results, r) or share(fl))) for r in rows]
        worst = max(x for _, x in ratios)
        out.append((name, worst <= limit, ", ".join("%s %.2f×" % (fmt_size(s), x)
                                                    for s, x in ratios)))

    ratio_rows("hsbroker-c", "floor", 2.0, "host C → C ≤ 2× bare UDS ping-pong (every size)")
    ratio_rows("hsbroker-py", "floor", 2.0, "host Py → Py ≤ 2× the floor (every size)")
    for case, name in (("hsbroker-c", "C"), ("hsbroker-py", "Py")):
        small = find(results, case, 4 * KiB)
        big = find(results, case, 256 * MiB)
        if small and big:
            x = share(big) / share(small)
            out.append(("host %s: 256 MiB within 10%% of 4 KiB" % name, x <= 1.10,
                        "%.1f µs vs %.1f µs: %.2f×" % (share(big), share(small), x)))
        else:
            out.append(("host %s: 256 MiB within 10%% of 4 KiB" % name, None, "not measured"))
    big = find(results, "hsbroker-c", 256 * MiB)
    fctl = next((r for r in results if is_control(r) and r["case"] == "floor"), None)
    if big and "ctl_p50_us" in big:
        x = share(big) / big["ctl_p50_us"]
        out.append(("(control) host C: 256 MiB vs 4 KiB at equal producer idle, same run",
                    None, "%.1f µs vs %.1f µs: %.2f×%s" % (
                        share(big), big["ctl_p50_us"], x,
                        "; the floor with that idle: %.1f µs" % fctl["rt_p50_us"] if fctl else "")))
    tp1 = next((r for r in results if r["case"] == "throughput" and "skipped" not in r
                and r["subscribers"] == 1), None)
    tp8 = next((r for r in results if r["case"] == "throughput" and "skipped" not in r
                and r["subscribers"] == 8), None)
    if tp1:
        out.append(("≥ 50k host tensors/s 1 → 1", tp1["sub_rate_min"] >= 50000,
                    "%.0f/s (%.2f× the target)" % (tp1["sub_rate_min"], tp1["sub_rate_min"] / 50000)))
        cpu = tp1["daemon_cpu_ns_per_tensor"] / 1000.0
        out.append(("≤ 3 µs daemon CPU per tensor (1 → 1, issue 15)", 0 <= cpu <= 3.0,
                    "%.2f µs (%.1f× the target)" % (cpu, cpu / 3.0)))
    if tp8:
        out.append(("≥ 10k host tensors/s per subscriber at 1 → 8", tp8["sub_rate_min"] >= 10000,
                    "%.0f/s min, %.0f/s mean (%.2f× the target)" % (
                        tp8["sub_rate_min"], tp8["sub_rate_mean"], tp8["sub_rate_min"] / 10000)))
        cpu8 = tp8["daemon_cpu_ns_per_tensor"] / 1000.0
        out.append(("(1 → 8: daemon CPU per tensor, for reference)", None,
                    "%.2f µs a tensor, %.2f µs a delivery" % (
                        cpu8, tp8["daemon_cpu_ns_per_delivery"] / 1000.0)))
    # Issue 15: the default (pair rings) against the UDS ping-pong.
    rc = find(results, "hsbroker-c", 4 * KiB)
    fl = floor_for(results, rc) if rc else None
    if fl:
        out.append(("host C → C 4 KiB ≤ 1.2× the UDS ping-pong (issue 15)",
                    share(rc) / fl <= 1.2, "%.1f µs vs %.1f µs: %.2f×" % (
                        share(rc), fl, share(rc) / fl)))
    for mps in ("nomps", "mps"):
        tag = " (MPS)" if mps == "mps" else " (no MPS)"
        if not any(r["case"].endswith("cuda") and "skipped" not in r and mps_of(r) == mps
                   for r in results):
            continue
        lim = 1.2 if mps == "mps" else 1.05
        ratio_rows("hsbroker-c-cuda", "floor-cuda", lim,
                   "GPU C → C ≤ %.2f× the floor, default settings (issue 15)%s" % (lim, tag), mps)
        ratio_rows("hsbroker-py-torch-cuda", "floor-cuda", 2.0,
                   "GPU Py → Py ≤ 2× the floor" + tag, mps)
        xs = [(size, share(p) / share(c)) for size in SIZES
              for c in [find(results, "hsbroker-c-cuda", size, mps)]
              for p in [find(results, "hsbroker-py-cuda", size, mps)] if c and p]
        if xs:
            out.append(("GPU Py → Py (raw) ≤ 1.5× C → C, hand-off (issue 13)" + tag,
                        max(x for _, x in xs) <= 1.5,
                        ", ".join("%s %.2f×" % (fmt_size(s), x) for s, x in xs)))
        if mps == "mps":
            xs = []
            for size in SIZES:
                mp = find(results, "torch-mp-cuda", size, "mps")
                hb = find(results, "hsbroker-py-torch-cuda", size, "mps")
                if mp and hb:
                    xs.append((size, mp["rt_p50_us"] / hb["rt_p50_us"]))
            if xs:
                out.append(("≥ 15× faster than torch.multiprocessing under MPS (Py → Py, rt)",
                            min(x for _, x in xs) >= 15,
                            ", ".join("%s %.1f×" % (fmt_size(s), x) for s, x in xs)))
        tpg = next((r for r in results if r["case"] == "throughput-cuda" and "skipped" not in r
                    and r["subscribers"] == 1 and mps_of(r) == mps), None)
        if tpg:
            out.append(("≥ 20k GPU tensors/s 1 → 1" + tag, tpg["sub_rate_min"] >= 20000,
                        "%.0f/s" % tpg["sub_rate_min"]))
    return out


def plot(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no matplotlib: no plot (apt-get install python3-matplotlib)", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=90)
    series = {}
    for r in results:
        if "rt_p50_us" not in r or r["case"].startswith(("floor", "design")) or is_control(r):
            continue
        label = next((m[1] for m in METHODS if m[0] == r["case"]), r["case"])
        if r["label"].endswith(")"):
            label += " " + r["label"][r["label"].rindex("("):]
        series.setdefault(label, []).append((r["size"], r["rt_p50_us"], share(r)))
    for label, pts in series.items():
        pts.sort()
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                        label=label + ": round trip")
        ax.plot([p[0] for p in pts], [max(p[2], 0.01) for p in pts], marker="x",
                linestyle="--", color=line.get_color(), alpha=0.7,
                label=label + ": hand-off only")
    for r in results:
        if r["case"].startswith("floor") and "rt_p50_us" in r and not is_control(r):
            ax.axhline(r["rt_p50_us"], color="grey", linestyle=":", linewidth=1)
            ax.text(SIZES[0], r["rt_p50_us"] * 1.08, r["label"] + " %.1f µs" % r["rt_p50_us"],
                    fontsize=7, color="grey")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(SIZES)
    ax.set_xticklabels([fmt_size(s) for s in SIZES])
    ax.set_xlabel("tensor size")
    ax.set_ylabel("p50 µs (log)")
    ax.set_title("hand-off latency vs size (p50; hand-off only = minus write and read)",
                 fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            mem = "%.0f GiB" % (int(f.readline().split()[1]) / (1 << 20))
    except (OSError, ValueError, IndexError):
        pass
    return "%s, %d cores, %s RAM, Linux %s, %s" % (cpu, os.cpu_count(), mem, platform.release(),
                                                   platform.platform(terse=True))


@contextlib.contextmanager
def mps(tmp, env, failures):
    """MPS for the rows run inside (nvidia-cuda-mps-control -d, then quit):
    yields its environment, or None, noted in failures, where the control
    program is missing. Shared with py_vs_c.py."""
    ctl = shutil.which("nvidia-cuda-mps-control")
    if not ctl:
        failures.append("MPS rows: nvidia-cuda-mps-control not found")
        yield None
        return
    menv = dict(env, CUDA_MPS_PIPE_DIRECTORY=os.path.join(tmp, "mps"),
                CUDA_MPS_LOG_DIRECTORY=os.path.join(tmp, "mpslog"))
    os.makedirs(menv["CUDA_MPS_PIPE_DIRECTORY"], exist_ok=True)
    os.makedirs(menv["CUDA_MPS_LOG_DIRECTORY"], exist_ok=True)
    subprocess.run([ctl, "-d"], env=menv, check=True)
    try:
        yield menv
    finally:
        subprocess.run([ctl], input="quit\n", text=True, env=menv)


def main():
    ap = argparse.ArgumentParser(description="hsbroker benchmarks (issue 6)")
    ap.add_argument("--build", default=os.path.join(ROOT, "build-bench"),
                    help="meson build folder (default build-bench)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest"))
    ap.add_argument("--quick", action="store_true", help="a smoke run: few iterations")
    ap.add_argument("--repeat", type=int, default=None,
                    help="runs of each case, the median kept (default 3; 1 with --quick)")
    ap.add_argument("--iter-scale", type=float, default=1.0,
                    help="multiply every iteration count (not with --quick)")
    ap.add_argument("--gpu", choices=("auto", "on", "off"), default="auto")
    ap.add_argument("--mps", choices=("off", "on", "both"), default="both",
                    help="GPU rows without MPS, under MPS, or both (default)")
    ap.add_argument("--only", choices=("all", "host", "gpu"), default="all")
    a = ap.parse_args()
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    a.repeat = max(1, a.repeat)
    build = os.path.abspath(a.build)
    exe = os.path.join(build, "daemon", "hsbrokerd")
    for need in (exe, os.path.join(build, "bench", "hs-bench-handoff")):
        if not os.path.exists(need):
            sys.exit("run.py: %s is missing: ninja -C %s" % (need, a.build))
    os.makedirs(a.out, exist_ok=True)
    R = Runner(a)
    started = datetime.datetime.now(datetime.timezone.utc)
    tmp = tempfile.mkdtemp(prefix="hsbench-")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.join(build, "python") + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("HS_DEBUG", None)

    gpu, why = (False, "--gpu off") if a.gpu == "off" else gpu_present(build)
    if a.gpu == "on" and not gpu:
        sys.exit("run.py: --gpu on but no GPU: %s" % why)
    print("GPU: %s" % ("yes" if gpu else "no (%s)" % why), flush=True)
    logs = []
    try:
        d = Daemon(exe, tmp, "plain", env, gpu)
        try:
            if a.only in ("all", "host"):
                run_suite(R, build, d, env, "cpu", "")
            if gpu and a.only in ("all", "gpu") and a.mps in ("off", "both"):
                run_suite(R, build, d, env, "cuda", "nomps")
        finally:
            logs.append(d.stop())
        if gpu and a.only in ("all", "gpu") and a.mps in ("on", "both"):
            with mps(tmp, env, R.failures) as menv:
                if menv:
                    d = Daemon(exe, tmp, "mps", menv, True)  # an MPS client too
                    try:
                        run_suite(R, build, d, menv, "cuda", "mps")
                    finally:
                        logs.append(d.stop())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    res = R.results
    tg = targets(res)
    cmdline = "/usr/bin/python3 bench/run.py " + " ".join(sys.argv[1:])
    md = ["# hsbroker benchmarks", "",
          "- machine: %s" % machine(),
          "- GPU: %s" % ("yes" if gpu else "none (%s)" % why),
          "- date: %s UTC" % started.strftime("%Y-%m-%d %H:%M"),
          "- command: `%s`%s" % (cmdline, " (quick smoke run)" if a.quick else ""),
          "- load average (1 min) after the run: %.2f" % os.getloadavg()[0],
          "", "## Round trip per tensor", "",
          "p50/p99/min of the whole round trip (producer: alloc or buffer, write every byte, "
          "hand off; consumer: read 64 cache lines, release, ack on a side socket). "
          "*hand-off* = round trip − write − read, per iteration (host); GPU rows subtract "
          "the write + read timed in one process (*write* column). *× floor* compares "
          "hand-off p50 with the p50 of a floor run measured right before that row (the "
          "machine is shared; its load moves); on the GPU that floor writes the row's size "
          "and reads the same 128 bytes back (hs-bench-floor --size). Each row is the median of %d runs by p50 "
          "(results.json keeps every run's p50)." % a.repeat, "",
          table(res), "", "## Throughput (4 KiB tensors, depth 64, block policy)", "",
          tp_table(res), "", "## Targets", "",
          "| target | met | measured |", "| --- | --- | --- |"]
    for name, met, val in tg:
        md.append("| %s | %s | %s |" % (name, "—" if met is None else ("met" if met else "**missed**"),
                                        val))
    if R.failures:
        md += ["", "## Failures", ""] + ["- " + f.replace("\n", " ") for f in R.failures]
    md.append("")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump({"machine": machine(), "gpu": gpu, "date": started.isoformat(),
                   "command": cmdline, "quick": a.quick, "results": res,
                   "targets": [{"target": n, "met": m, "measured": v} for n, m, v in tg],
                   "failures": R.failures, "commands": R.commands}, f, indent=1)
    plotted = plot(res, os.path.join(a.out, "latency.png"))
    print("\n".join(md))
    print("wrote %s/results.md, results.json%s" % (a.out, ", latency.png" if plotted else ""))
    for lg in logs:
        if "error" in lg.lower():
            print("hsbrokerd log:\n" + lg[-2000:], file=sys.stderr)
    return 1 if R.failures else 0


if __name__ == "__main__":
    sys.exit(main())
