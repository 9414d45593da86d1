"""What both examples share: find or start a broker, start the stage
processes (each is this same script run with a role argument), wait until
every consumer has subscribed, and collect the result line.

Every role runs in its own process: CUDA is touched only in the children,
never in the parent (a child of a process that initialised CUDA cannot
use it)."""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SKIP = 77


def parse(doc):
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--daemon", help="start this hsbrokerd (default: use $HSBROKER_SOCKET, "
                    "else build-gpu/daemon/hsbrokerd)")
    ap.add_argument("--frames", type=int, default=100, help="frames to send (default 100)")
    ap.add_argument("role", nargs="*", help=argparse.SUPPRESS)
    return ap.parse_args()


def have_gpu():
    return os.path.exists("/dev/nvidia0")


def _start_daemon(path):
    sock = os.path.join(tempfile.mkdtemp(prefix="hs-example-"), "hs.sock")
    proc = subprocess.Popen([path, "--socket", sock], stdout=subprocess.DEVNULL,
                            stderr=open(sock + ".log", "w"))
    end = time.monotonic() + 10
    while not os.path.exists(sock):
        if proc.poll() is not None or time.monotonic() > end:
            raise SystemExit("hsbrokerd did not start (log: %s.log)" % sock)
        time.sleep(0.05)
    return proc, sock


def run(script, args, roles):
    """roles: [(role, starts_after_ready)], consumers first. Starts each
    role process, waits for its "ready" line, then the next; returns
    (exit code, the last role's last line)."""
    if not have_gpu():
        print("SKIP: no NVIDIA GPU here")
        return SKIP, None
    env = dict(os.environ)
    pyb = os.path.join(ROOT, "build-gpu", "python")
    if os.path.isdir(pyb):
        env["PYTHONPATH"] = pyb + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    daemon = None
    if args.daemon or not env.get("HSBROKER_SOCKET"):
        daemon, env["HSBROKER_SOCKET"] = _start_daemon(
            args.daemon or os.path.join(ROOT, "build-gpu", "daemon", "hsbrokerd"))
    procs = []
    try:
        for role in roles:
            p = subprocess.Popen([sys.executable, script, "--frames", str(args.frames), role],
                                 stdout=subprocess.PIPE, text=True, env=env)
            procs.append((role, p))
            line = p.stdout.readline().strip()
            if line.startswith("SKIP"):
                print("%s: %s" % (role, line))
                return SKIP, None
            if line != "ready":
                print("%s did not start: %r" % (role, line))
                return 1, None
        rc, last = 0, None
        for role, p in procs:
            out, _ = p.communicate(timeout=300)
            lines = out.strip().splitlines()
            if p.returncode != 0:
                rc = 1
                print("%s exited with %d: %s" % (role, p.returncode, " / ".join(lines[-3:])))
            if lines:
                last = lines[-1]
        return rc, last
    finally:
        for _, p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=10)


def connect(name):
    import hsbroker
    return hsbroker.connect(name=name)


def ready():
    print("ready", flush=True)


def wait_subscribed(client, topic, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for t in client.info()["topics"]:
            if t["name"] == topic and t["subscribers"]:
                return
        time.sleep(0.02)
    raise RuntimeError("nobody subscribed to " + topic)


def main(name, doc, roles, order):
    """An example's entry point: run one role (a child process), or start
    the whole pipeline (``order``: the roles, consumers first) and print
    NAME: PASS/FAIL with the receiver's result line."""
    args = parse(doc)
    if args.role:
        return roles[args.role[0]](args.frames)
    rc, line = run(sys.modules["__main__"].__file__, args, order)
    if rc == 0:
        print("%s: PASS (%s)" % (name, line))
    elif rc != SKIP:
        print("%s: FAIL (%s)" % (name, line))
    return rc
