"""CUDA Python Tx -> CuPy "apply gain" -> Rx, each in its own process.

    python3 examples/python/gain_pipeline.py [--daemon PATH] [--frames N]

Tx (cuda-core for the device and stream, cuda-bindings for the writes: no
kernel) fills broker frames float32 [480, 640] with the frame number k and
row k % 480 with -k, on its stream, and emits them with that stream. The
gain stage (CuPy) takes each frame without a copy (cupy.from_dlpack: its
stream waits on the frame's ready fence), multiplies it by GAIN into a new
broker tensor, emits that, and releases the input with its stream. Rx
(CuPy) checks every pixel of every frame. Nobody synchronises the host
with the GPU on the way. Uses $HSBROKER_SOCKET, or starts its own
hsbrokerd (--daemon, default build-gpu/daemon/hsbrokerd). Prints one
line; exit 0 on success, 1 on failure, 77 without a GPU or libraries.
"""
import struct
import sys
import time

import _pipeline

H, W = 480, 640
GAIN = 2.5
RAW, GAINED = "example/raw", "example/gained"


def tx(frames):
    try:
        try:
            from cuda.bindings import driver as cu
        except ImportError:
            from cuda import cuda as cu
        try:
            from cuda.core import Device
        except ImportError:
            from cuda.core.experimental import Device
    except ImportError as e:
        print("SKIP: cuda-python: %s" % e, flush=True)
        return _pipeline.SKIP
    dev = Device(0)
    dev.set_current()
    stream = dev.create_stream()
    sh = int(stream.handle)
    c = _pipeline.connect("gain-tx")
    _pipeline.ready()
    _pipeline.wait_subscribed(c, RAW)

    def ck(res, what):
        if int(res[0]) != 0:
            raise RuntimeError("%s: %s" % (what, res[0]))

    for k in range(1, frames + 1):
        t = c.alloc((H, W), "float32", device="cuda:0")
        fill = struct.unpack("<I", struct.pack("<f", float(k)))[0]
        neg = struct.unpack("<I", struct.pack("<f", float(-k)))[0]
        ck(cu.cuMemsetD32Async(cu.CUdeviceptr(t.data_ptr), fill, H * W, cu.CUstream(sh)),
           "cuMemsetD32Async")
        row = t.data_ptr + (k % H) * W * 4
        ck(cu.cuMemsetD32Async(cu.CUdeviceptr(row), neg, W, cu.CUstream(sh)), "cuMemsetD32Async")
        c.emit(RAW, t, stream=sh)         # records the ready fence on our stream
    stream.sync()                         # once, before our context goes away
    c.close()
    return 0


def gain(frames):
    try:
        import cupy as cp
    except ImportError as e:
        print("SKIP: cupy: %s" % e, flush=True)
        return _pipeline.SKIP
    cp.cuda.Device(0).use()
    s = cp.cuda.Stream(non_blocking=True)
    c = _pipeline.connect("gain-stage")
    sub = c.subscribe(RAW, depth=8)
    _pipeline.ready()
    _pipeline.wait_subscribed(c, GAINED)
    for _ in range(frames):
        t = sub.receive(timeout=60)
        out = c.alloc(t.shape, t.dtype, device=t.device)
        with s:
            x = cp.from_dlpack(t)         # no copy; s waits on t's ready fence
            y = cp.from_dlpack(out)
            cp.multiply(x, GAIN, out=y)
        del x, y
        t.release(stream=s.ptr)           # the note goes when s has read t
        c.emit(GAINED, out, stream=s.ptr)
    s.synchronize()
    c.close()
    return 0


def rx(frames):
    try:
        import cupy as cp
    except ImportError as e:
        print("SKIP: cupy: %s" % e, flush=True)
        return _pipeline.SKIP
    cp.cuda.Device(0).use()
    c = _pipeline.connect("gain-rx")
    sub = c.subscribe(GAINED, depth=8)
    _pipeline.ready()
    bad = zero_copy = 0
    t0 = None
    for _ in range(frames):
        t = sub.receive(timeout=60)
        t0 = t0 or time.monotonic()
        k = t.seq
        a = cp.asarray(t)                 # CUDA array interface v3, no copy
        zero_copy += a.data.ptr == t.data_ptr
        good = (int((a == GAIN * k).sum()) == (H - 1) * W and
                int((a[k % H] == -GAIN * k).sum()) == W)
        bad += not good
        del a
        t.release()                       # after the legacy default stream (CAI)
    ms = (time.monotonic() - t0) * 1000
    st = c.stats()
    c.close()
    print("RESULT gain_pipeline ok=%d frames=%d bad=%d zero_copy=%d gain=%g ms=%d "
          "slab_opens=%d" % (bad == 0 and zero_copy == frames, frames, bad, zero_copy, GAIN,
                             ms, st["slab_opens"]))
    return 0 if bad == 0 and zero_copy == frames else 1


def main():
    return _pipeline.main("gain_pipeline", __doc__, {"tx": tx, "gain": gain, "rx": rx},
                          ["rx", "gain", "tx"])


if __name__ == "__main__":
    sys.exit(main())
