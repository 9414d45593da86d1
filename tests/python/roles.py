"""Producer and consumer processes for the Python tests. Subscribers print
"subscribed" once their subscription exists, so a test can start the
producer after it (only tensors emitted later are delivered).

    roles.py producer TOPIC COUNT [DTYPE]      emits COUNT tensors, value = f(seq)
    roles.py consumer TOPIC COUNT [DTYPE]      checks every value, prints "ok N"
    roles.py holder TOPIC                      receives and holds, prints "holding N"
"""
import sys

import numpy as np

import hsbroker

SHAPE = (3, 5, 7)


def pattern(seq, dtype):
    a = (np.arange(np.prod(SHAPE)).reshape(SHAPE) + seq * 7) % 100
    if dtype == "bool":
        return (a % 2).astype(bool)
    return a.astype(dtype)


def producer(topic, count, dtype="float32"):
    with hsbroker.connect(name="py-producer") as c:
        for i in range(count):
            t = c.alloc(SHAPE, dtype)
            np.asarray(t)[...] = pattern(i + 1, dtype)
            seq = c.emit(topic, t, wait=True)
            assert seq == i + 1, (seq, i)
    print("sent %d" % count, flush=True)


def consumer(topic, count, dtype="float32"):
    with hsbroker.connect(name="py-consumer") as c:
        sub = c.subscribe(topic, depth=16)
        print("subscribed", flush=True)
        for i in range(count):
            with sub.receive(timeout=30) as t:
                assert t.seq == i + 1, (t.seq, i + 1)
                assert t.dtype == dtype and t.shape == SHAPE
                a = np.from_dlpack(t) if dtype != "bool" else np.asarray(t)
                if not np.array_equal(a, pattern(t.seq, dtype)):
                    print("mismatch at seq %d" % t.seq, flush=True)
                    sys.exit(1)
                del a
    print("ok %d" % count, flush=True)


def holder(topic):
    c = hsbroker.connect(name="py-holder")
    sub = c.subscribe(topic, depth=64)
    print("subscribed", flush=True)
    held = []
    while True:
        held.append(sub.receive(timeout=30))
        print("holding %d" % len(held), flush=True)


if __name__ == "__main__":
    role, topic = sys.argv[1], sys.argv[2]
    rest = sys.argv[3:]
    if role == "producer":
        producer(topic, int(rest[0]), *rest[1:])
    elif role == "consumer":
        consumer(topic, int(rest[0]), *rest[1:])
    elif role == "holder":
        holder(topic)
    else:
        sys.exit("unknown role %s" % role)
