"""Tx -> a PyTorch operator that multiplies by 2 -> Rx, each in its own process.

    python3 examples/python/torch_double.py [--daemon PATH] [--frames N]

Tx (PyTorch) writes broker tensors float32 [256, 1024] in place on its
stream (torch.from_dlpack over client.alloc: arange + k) and emits them
with that stream. The operator (PyTorch) takes each one without a copy
(torch.from_dlpack passes its stream, which waits on the ready fence),
writes 2 * x into a new broker tensor, emits it and releases the input
with its stream. Rx (PyTorch) checks every element. Uses
$HSBROKER_SOCKET, or starts its own hsbrokerd (--daemon, default
build-gpu/daemon/hsbrokerd). Prints one line; exit 0 on success, 1 on
failure, 77 without a GPU or PyTorch.
"""
import sys
import time

import _pipeline

SHAPE = (256, 1024)
IN, OUT = "example/x", "example/2x"


def _torch():
    try:
        import torch
    except ImportError as e:
        print("SKIP: torch: %s" % e, flush=True)
        return None
    if not torch.cuda.is_available():
        print("SKIP: torch sees no GPU", flush=True)
        return None
    torch.cuda.set_device(0)
    return torch


def expected(torch, k):
    return torch.arange(SHAPE[0] * SHAPE[1], dtype=torch.float32,
                        device="cuda:0").reshape(SHAPE) + k


def tx(frames):
    torch = _torch()
    if torch is None:
        return _pipeline.SKIP
    s = torch.cuda.Stream()
    c = _pipeline.connect("double-tx")
    _pipeline.ready()
    _pipeline.wait_subscribed(c, IN)
    for k in range(1, frames + 1):
        t = c.alloc(SHAPE, "float32", device="cuda:0")
        x = torch.from_dlpack(t)
        with torch.cuda.stream(s):
            torch.add(expected(torch, 0), k, out=x)
        del x
        c.emit(IN, t, stream=s.cuda_stream)
    s.synchronize()
    c.close()
    return 0


def double(frames):
    torch = _torch()
    if torch is None:
        return _pipeline.SKIP
    s = torch.cuda.Stream()
    c = _pipeline.connect("double-op")
    sub = c.subscribe(IN, depth=8)
    _pipeline.ready()
    _pipeline.wait_subscribed(c, OUT)
    for _ in range(frames):
        t = sub.receive(timeout=60)
        out = c.alloc(t.shape, t.dtype, device=t.device)
        with torch.cuda.stream(s):
            x = torch.from_dlpack(t)      # no copy; s waits on the ready fence
            torch.mul(x, 2, out=torch.from_dlpack(out))
        del x
        t.release(stream=s.cuda_stream)
        c.emit(OUT, out, stream=s.cuda_stream)
    s.synchronize()
    c.close()
    return 0


def rx(frames):
    torch = _torch()
    if torch is None:
        return _pipeline.SKIP
    c = _pipeline.connect("double-rx")
    sub = c.subscribe(OUT, depth=8)
    _pipeline.ready()
    bad = zero_copy = 0
    t0 = None
    for _ in range(frames):
        t = sub.receive(timeout=60)
        t0 = t0 or time.monotonic()
        a = torch.from_dlpack(t)
        zero_copy += a.data_ptr() == t.data_ptr
        bad += not bool(torch.equal(a, 2 * expected(torch, t.seq)))
        del a
        # 0 on the default stream: CUDA's legacy default stream, whose
        # host function comes after the checks queued above.
        t.release(stream=torch.cuda.current_stream().cuda_stream)
    ms = (time.monotonic() - t0) * 1000
    st = c.stats()
    c.close()
    ok = bad == 0 and zero_copy == frames
    print("RESULT torch_double ok=%d frames=%d bad=%d zero_copy=%d ms=%d slab_opens=%d"
          % (ok, frames, bad, zero_copy, ms, st["slab_opens"]))
    return 0 if ok else 1


def main():
    return _pipeline.main("torch_double", __doc__, {"tx": tx, "double": double, "rx": rx},
                          ["rx", "double", "tx"])


if __name__ == "__main__":
    sys.exit(main())
