#!/usr/bin/python3
"""Runs every shell command shown in README.md, docs/*.md and
examples/*/README.md that can run without a GPU, against a private
hsbrokerd, and checks that each exits 0.

A command is a line of a code block (fenced, or indented by four spaces)
whose first word, after a "$ " prompt and VAR=value assignments, is one
of COMMANDS. Each is either run (the built programs first on PATH, the
daemon's socket in HSBROKER_SOCKET, a temporary working folder) or
matches a SKIP rule saying why it cannot run here; a command that is
neither fails the test, so a new command in the docs must be one or the
other. Synopsis lines (placeholders such as PATH or [--json]) are not
commands.

    doc-commands.py SOURCE_DIR BUILD_DIR"""
import glob
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

COMMANDS = {"hsctl", "hsbrokerd", "hs-example-producer", "hs-example-consumer", "pkg-config",
            "man", "systemctl", "systemd-sysusers", "systemd-tmpfiles", "python3", "export",
            "mkdir", "nvidia-cuda-mps-control", "echo", "meson", "ninja"}
SKIP = [
    (r"^\./scripts/demo\.sh", "the meson test 'demo' runs it"),
    (r"^\./scripts/test\.sh|^scripts/(sanitize|valgrind|fuzz|faults|load|tsan)\.sh",
     "CI (.ci/run) runs it"),
    (r"scripts/build-gpu\.sh|examples/python/|nvidia-cuda-mps|CUDA_MPS|/tmp/mps",
     "needs a GPU (tests/gpu, run on the GPU machine)"),
    (r"^systemctl |^systemd-sysusers|^systemd-tmpfiles",
     "needs systemd as init and root (the systemd suite covers the units)"),
]
PLACEHOLDER = re.compile(r"\[-|\b[A-Z]{2,}\b(?!=)")


def blocks(path):
    """(first line number, lines, fenced language or None) of each code
    block of a markdown file."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            lang = line.strip()[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].lstrip().startswith("```"):
                j += 1
            yield i + 2, [l.strip() for l in lines[i + 1:j]], lang
            i = j + 1
        elif line.startswith("    ") and (i == 0 or not lines[i - 1].strip()):
            j = i
            while j < len(lines) and (lines[j].startswith("    ") or not lines[j].strip()):
                j += 1
            yield i + 1, [l[4:].strip() for l in lines[i:j]], None
            i = j
        else:
            i += 1


def commands(path):
    """(line number, command) of every command of path's code blocks. In
    a block with "$ " prompts only prompted lines are commands (the rest
    is their output); a fenced block without prompts holds commands only
    when marked sh, shell, bash or console."""
    for first, lines, lang in blocks(path):
        prompted = any(l.startswith("$ ") for l in lines)
        if lang is not None and not prompted and lang not in ("sh", "shell", "bash", "console"):
            continue
        for k, text in enumerate(lines):
            if prompted:
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            text = re.sub(r"\s+#\s.*$", "", text).strip()
            words = text.split()
            i = 0
            while i < len(words) and re.match(r"^[A-Z_]+=", words[i]):
                i += 1
            if i == len(words):
                continue
            if words[i] in COMMANDS or re.match(r"^(\./)?scripts/", words[i]):
                yield first + k, text


def start_daemon(build, sock):
    d = subprocess.Popen([os.path.join(build, "daemon", "hsbrokerd"), "--socket", sock],
                         stderr=subprocess.DEVNULL)
    end = time.time() + 30
    while time.time() < end:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            s.connect(sock)
            return d
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    d.kill()
    sys.exit("doc-commands: hsbrokerd did not start")


def main():
    src, build = sys.argv[1], sys.argv[2]
    files = [os.path.join(src, "README.md")] + sorted(glob.glob(os.path.join(src, "docs", "*.md"))) \
        + sorted(glob.glob(os.path.join(src, "examples", "*", "README.md")))
    tmp = tempfile.mkdtemp(prefix="hs-doc-commands.")
    sock = os.path.join(tmp, "hsbroker.sock")
    env = dict(os.environ)
    env["PATH"] = ":".join([os.path.join(build, "daemon"), os.path.join(build, "tools"),
                            os.path.join(build, "examples", "c"), env.get("PATH", "")])
    env["HSBROKER_SOCKET"] = sock
    env["PKG_CONFIG_PATH"] = os.path.join(build, "meson-private")
    env["MANPATH"] = tmp  # man pages from the build (below)
    env["MANPAGER"] = env["PAGER"] = "cat"
    built_man = glob.glob(os.path.join(build, "docs", "man", "*.[0-9]"))
    for page in built_man:
        sec = page.rsplit(".", 1)[1]
        os.makedirs(os.path.join(tmp, "man" + sec), exist_ok=True)
        os.symlink(page, os.path.join(tmp, "man" + sec, os.path.basename(page)))
    daemon = start_daemon(build, sock)
    ran = skipped = failed = 0
    try:
        for path in files:
            rel = os.path.relpath(path, src)
            for n, cmd in commands(path):
                where = "%s:%d: %s" % (rel, n, cmd)
                if PLACEHOLDER.search(cmd):
                    continue  # a synopsis, not a command
                why = next((w for rx, w in SKIP if re.search(rx, cmd)), None)
                if why:
                    print("skip  %s  (%s)" % (where, why))
                    skipped += 1
                    continue
                if cmd.startswith("man ") and not built_man:
                    print("skip  %s  (scdoc missing: no man pages built)" % where)
                    skipped += 1
                    continue
                # The sample configuration stands in for the installed one.
                run = cmd.replace("/etc/hsbroker/hsbrokerd.conf",
                                  os.path.join(src, "systemd", "hsbrokerd.conf"))
                try:
                    p = subprocess.run(["bash", "-c", run], env=env, cwd=tmp, timeout=60,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                    rc, out = p.returncode, p.stdout
                except subprocess.TimeoutExpired:
                    rc, out = "timeout", ""
                if rc == 0:
                    print("ok    %s" % where)
                    ran += 1
                else:
                    print("FAIL  %s  (exit %s)\n%s" % (where, rc, out))
                    failed += 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        rc = daemon.wait(timeout=60)
        subprocess.run(["rm", "-rf", tmp])
    if rc != 0:
        print("FAIL  hsbrokerd exited %d" % rc)
        failed += 1
    print("doc-commands: %d ran, %d skipped (listed above, with why), %d failed" %
          (ran, skipped, failed))
    sys.exit(1 if failed or ran == 0 else 0)


main()
