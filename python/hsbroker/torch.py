"""PyTorch helpers: broker tensors as torch.Tensor views, made in C.

    import hsbroker.torch as hst
    x = hst.receive(sub)            # a torch.Tensor; released when x goes
    t = client.alloc(n, "float32", device="cuda:0")
    y = hst.view(t)                 # write through y, then client.emit(topic, t)

torch.from_dlpack(t) costs a __dlpack_device__ call, a
torch.cuda.current_stream() (a Python Stream object) and the DLPack
handshake on every tensor. These ask torch for the calling thread's current
stream as a raw handle, make that stream wait on the producer's ready fence
and import the capsule with torch's C importer, all from one C call. The
stream semantics are those of torch.from_dlpack: the tensor is released,
once its view is deleted, after the GPU work queued on the stream it was
read on (docs/gpu.md, "What is safe"); pass stream= to name another.
"""
import torch as _torch  # noqa: F401  (fails early where there is no torch)


def receive(sub, timeout=None, stream=None):
    """sub.receive(timeout, as_="torch", stream=stream): the next tensor as
    a torch.Tensor that owns the broker reference."""
    return sub.receive(timeout, "torch", stream)


def view(tensor, stream=None):
    """tensor.view("torch", stream): a torch.Tensor over the broker tensor,
    which stays yours to emit or release."""
    return tensor.view("torch", stream)
