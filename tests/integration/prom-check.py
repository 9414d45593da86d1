#!/usr/bin/python3
"""Checks `hsctl stats --prometheus` output against the Prometheus text
exposition format (0.0.4), twice: with the official parser
(prometheus_client, Debian's python3-prometheus-client) and with the
format's rules that parser lets pass: every family's HELP and TYPE come
once, before its samples, and its samples are together; names and labels
are well formed; values are numbers; counters are not negative.

    prom-check.py FILE [NAME{LABELS}=VALUE ...]

Each NAME{LABELS}=VALUE must be a sample of the file with that value
(">0" for any positive value). Exit 0 when all holds."""
import re
import sys

from prometheus_client.parser import text_string_to_metric_families

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{%s(?:,%s)*\})? (\S+)$" % (NAME, LABEL, LABEL))


def fail(msg):
    print("prom-check: " + msg)
    sys.exit(1)


def strict(text):
    if not text.endswith("\n"):
        fail("the output does not end with a newline")
    helped, typed, done = {}, {}, set()
    current = None
    samples = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            fail("line %d is empty" % n)
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            kind, rest = line[2:6], line[7:]
            name = rest.split(" ", 1)[0]
            if not re.fullmatch(NAME, name):
                fail("line %d: bad metric name %r" % (n, name))
            seen = helped if kind == "HELP" else typed
            if name in seen or name in done:
                fail("line %d: second %s for %s" % (n, kind, name))
            if kind == "TYPE":
                t = rest.split(" ", 1)[1] if " " in rest else ""
                if t not in ("counter", "gauge", "untyped"):
                    fail("line %d: type %r" % (n, t))
            seen[name] = rest
            if current and current != name:
                done.add(current)
            current = name
            continue
        if line.startswith("#"):
            fail("line %d: a comment that is neither HELP nor TYPE" % n)
        m = SAMPLE.match(line)
        if not m:
            fail("line %d is not a sample: %r" % (n, line))
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        if name != current:
            fail("line %d: sample of %s outside its family (HELP/TYPE first)" % (n, name))
        if name not in typed or name not in helped:
            fail("line %d: %s has no HELP or TYPE" % (n, name))
        try:
            v = float(value)
        except ValueError:
            fail("line %d: value %r" % (n, value))
        if typed[name].endswith(" counter") and v < 0:
            fail("line %d: negative counter" % n)
        if name + labels in samples:
            fail("line %d: %s%s twice" % (n, name, labels))
        samples[name + labels] = v
    return samples


def main():
    text = open(sys.argv[1]).read()
    samples = strict(text)
    parsed = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + ("{%s}" % ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
                            if s.labels else "")
            parsed[key] = s.value
    if len(parsed) != len(samples):
        fail("the parser read %d samples, the lines hold %d" % (len(parsed), len(samples)))
    for want in sys.argv[2:]:
        key, value = want.rsplit("=", 1)
        if key not in parsed:
            fail("no sample %s (have: %s)" % (key, ", ".join(sorted(parsed))))
        got = parsed[key]
        if value == ">0" and not got > 0 or value != ">0" and got != float(value):
            fail("%s is %s, expected %s" % (key, got, value))
    print("prom-check: %d samples, %d families, format good" % (len(samples), len(
        list(text_string_to_metric_families(text)))))


main()
