"""Python over GPU tensors, on the GPU machine (tests/gpu/run.sh): a
producer process writes device tensors with PyTorch on its own stream and
emits them with that stream (no synchronisation); a consumer process reads
half of them through DLPack (torch.from_dlpack, which passes its stream to
__dlpack__) and half through __cuda_array_interface__ v3 (CuPy, which
orders itself after the reported stream). Prints one RESULT line; exit 0
passed, 1 failed, 77 skipped (no torch/cupy or no GPU).

    python3 tests/gpu/py_gpu.py          # needs HSBROKER_SOCKET and PYTHONPATH
"""
import os
import subprocess
import sys

N = 300
TOPIC = "py/gpu/%d" % os.getppid()
ROWS, COLS = 1024, 256


def producer(topic):
    import torch
    import hsbroker
    c = hsbroker.connect(name="py-producer")
    s = torch.cuda.Stream()
    for k in range(1, N + 1):
        t = c.alloc((ROWS, COLS), "float32", device="cuda:0")
        x = torch.from_dlpack(t)
        with torch.cuda.stream(s):
            x.fill_(float(k))
            x[k % ROWS].fill_(float(-k))
        del x
        c.emit(topic, t, stream=s.cuda_stream)
    s.synchronize()
    c.close()
    return 0


def consumer(topic):
    import cupy
    import torch
    import hsbroker
    c = hsbroker.connect(name="py-consumer")
    sub = c.subscribe(topic, depth=8)
    print("ready", flush=True)
    bad = 0
    for k in range(1, N + 1):
        t = sub.receive(timeout=60)
        if t.seq % 2:
            a = torch.from_dlpack(t)
            ok = (int((a == t.seq).sum().item()) == (ROWS - 1) * COLS and
                  int((a[t.seq % ROWS] == -t.seq).sum().item()) == COLS)
            del a
            t.release(stream=torch.cuda.current_stream().cuda_stream)
        else:
            a = cupy.asarray(t)
            ok = (int((a == t.seq).sum()) == (ROWS - 1) * COLS and
                  int((a[t.seq % ROWS] == -t.seq).sum()) == COLS)
            del a
            t.release()
        if not ok:
            bad += 1
            print("tensor %d: wrong contents" % t.seq, flush=True)
    st = c.stats()
    c.close()
    print("RESULT case=python ok=%d tensors=%d bad=%d slab_opens=%d event_opens=%d"
          % (bad == 0, N, bad, st["slab_opens"], st["event_opens"]), flush=True)
    return 1 if bad else 0


def main():
    if len(sys.argv) > 2:
        return {"producer": producer, "consumer": consumer}[sys.argv[1]](sys.argv[2])
    try:
        import cupy  # noqa: F401
        import torch
        if not torch.cuda.is_available():
            raise ImportError("no GPU")
    except ImportError as e:
        print("SKIP: %s" % e)
        return 77
    cons = subprocess.Popen([sys.executable, __file__, "consumer", TOPIC],
                            stdout=subprocess.PIPE, text=True)
    line = cons.stdout.readline()
    if line.strip() != "ready":
        print("consumer did not start: %r" % line)
        cons.kill()
        return 1
    prc = subprocess.call([sys.executable, __file__, "producer", TOPIC])
    out, _ = cons.communicate(timeout=300)
    sys.stdout.write(out)
    return 0 if prc == 0 and cons.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
