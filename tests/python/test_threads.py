"""One client shared by Python threads: producers and consumers on the same
connection, an event-loop thread on fileno()/dispatch(), posted and waited
emits, all three policies. Blocking calls release the GIL, so a thread
waiting in receive() must not stop the others; a hang fails the test at
its deadline instead of stalling the suite."""
import select
import threading
import time

import numpy as np
import pytest

COUNT = 400
DEADLINE_S = 120


def pattern(topic, seq, n):
    return (np.arange(n, dtype=np.uint32) * np.uint32(40503) + np.uint32(seq * 7 + topic))


def run_threads(hs, sock, threads, clients):
    conns = [hs.connect(sock, "pythreads-%d" % i) for i in range(clients)]
    policies = ["block", "drop-oldest", "drop-newest"]
    errors = []
    done = threading.Event()
    producers_left = [threads]
    lock = threading.Lock()
    received = [0] * threads
    last = [0] * threads

    subs = []
    for i in range(threads):
        c = conns[(clients - 1 - i % clients)]
        subs.append(c.subscribe("pyth/%d" % i, depth=8, policy=policies[i % 3]))
    loop_client = conns[0]
    loop_sub = loop_client.subscribe("pyth/0", depth=8, policy="drop-oldest")
    loop_last = [0]

    def check(i, t, prev, gapless):
        seq = t.seq
        if seq <= prev or seq > COUNT or (gapless and seq != prev + 1):
            errors.append("topic %d: seq %d after %d" % (i, seq, prev))
        a = np.asarray(t)
        n = 256 if seq % 2 else 96
        if a.shape != (n,) or not np.array_equal(a, pattern(i, seq, n)):
            errors.append("topic %d: seq %d has the wrong content" % (i, seq))
        del a
        t.release()
        return seq

    def producer(i):
        try:
            c = conns[i % clients]
            for k in range(1, COUNT + 1):
                n = 256 if k % 2 else 96
                t = c.alloc((n,), "uint32")
                np.asarray(t)[...] = pattern(i, k, n)
                if i % 2 and k % 3 == 0:
                    seq = c.emit("pyth/%d" % i, t, wait=True)
                    if seq != k:
                        errors.append("producer %d: emit %d got seq %d" % (i, k, seq))
                else:
                    c.emit("pyth/%d" % i, t)
        except Exception as e:  # reported by the test, not lost in a thread
            errors.append("producer %d: %r" % (i, e))
        finally:
            with lock:
                producers_left[0] -= 1

    def consumer(i):
        try:
            policy = policies[i % 3]
            prev = 0
            while prev < COUNT:
                try:
                    t = subs[i].receive(timeout=0.2)
                except hs.Timeout:
                    with lock:
                        if producers_left[0] == 0 and policy == "drop-newest":
                            break
                    continue
                prev = check(i, t, prev, policy == "block")
                received[i] += 1
            last[i] = prev
            if policy == "block" and received[i] != COUNT:
                errors.append("consumer %d: %d of %d" % (i, received[i], COUNT))
        except Exception as e:
            errors.append("consumer %d: %r" % (i, e))

    def event_loop():
        try:
            fd = loop_client.fileno()
            while loop_last[0] < COUNT and not done.is_set():
                r, _, _ = select.select([fd], [], [], 0.2)
                if not r:
                    continue
                loop_client.dispatch()
                while True:
                    try:
                        t = loop_sub.receive(timeout=0)
                    except hs.Timeout:
                        break
                    loop_last[0] = check(0, t, loop_last[0], False)
        except Exception as e:
            errors.append("event loop: %r" % (e,))

    workers = [threading.Thread(target=producer, args=(i,), daemon=True) for i in range(threads)]
    workers += [threading.Thread(target=consumer, args=(i,), daemon=True) for i in range(threads)]
    workers.append(threading.Thread(target=event_loop, daemon=True))
    for w in workers:
        w.start()
    end = time.monotonic() + DEADLINE_S
    for w in workers:
        w.join(max(0.0, end - time.monotonic()))
    stuck = [w.name for w in workers if w.is_alive()]
    done.set()
    assert not stuck, "threads hung: %s (errors: %s)" % (stuck, errors)
    assert not errors, errors
    # drop-oldest always delivers the newest tensor; the event loop's
    # subscription is drop-oldest, so it must see the last one.
    assert loop_last[0] == COUNT
    for i in range(threads):
        if policies[i % 3] == "drop-oldest":
            assert last[i] == COUNT
    for s in subs + [loop_sub]:
        s.close()
    for c in conns:
        assert c.stats()["emits_refused"] == 0
        c.close()


@pytest.mark.parametrize("threads", [1, 2, 4, 8])
@pytest.mark.parametrize("clients", [1, 3])
def test_threads_share_clients(broker, hs, threads, clients):
    run_threads(hs, broker.socket, threads, clients)


def test_own_topic_drop_oldest_while_settled(broker, hs):
    """A client subscribed drop-oldest to the topic it emits on, while
    another thread keeps the daemon settling (info()): with pair rings
    (HSBROKER_RINGS=1) the daemon once gave back a dropped tensor's
    reference before settling its note, took the producer's own reference
    for it, and ended the session for a note naming a tensor it no longer
    held (HS_EPROTO). Every tensor must be there, then every block back."""
    stop = threading.Event()
    errors = []

    def poke():
        with hs.connect(broker.socket, "poker") as p:
            while not stop.is_set():
                try:
                    p.info()
                except Exception as e:  # reported below
                    errors.append("poker: %r" % e)
                    return

    with hs.connect(broker.socket, "self") as c:
        sub = c.subscribe("self/t", depth=1, policy="drop-oldest")
        th = threading.Thread(target=poke)
        th.start()
        try:
            for k in range(1, 20001):
                t = c.alloc((16,), "uint32")
                np.asarray(t)[...] = k
                c.emit("self/t", t)
                if k % 100 == 0:
                    r = sub.receive(timeout=10)
                    assert r.seq <= k and int(np.asarray(r)[0]) == r.seq
                    r.release()
            c.ping()
        finally:
            stop.set()
            th.join()
        assert not errors, errors
        sub.close()
        del t, r, sub  # the client disconnects once nothing of it is alive
    with hs.connect(broker.socket, "check") as chk:
        deadline = time.monotonic() + 10
        while chk.info()["tensors"] and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [(x["owner_name"], x["refs"]) for x in chk.info()["tensors"]]
        assert left == [], left
