"""asyncio for hsbroker: a receive that waits on the client's fd in the
event loop (loop.add_reader), never in a thread.

One watch per (client, event loop): while at least one receive waits, the
client's fd (Client.fileno()) is in the loop's reader set; when it is
readable the watch calls Client.dispatch() and wakes every waiter, and
each takes its tensor itself, synchronously, with Subscription._poll().
Nothing is taken on a waiter's behalf, so a receive cancelled while it
waits leaves every tensor where it was (in the subscription's buffer, for
the next receive)."""
import asyncio

from . import _hsbroker

_WATCHES = "_hsbroker_aio_watches"


class _Watch:
    __slots__ = ("client", "loop", "fd", "waiters", "reading")

    def __init__(self, client, loop):
        self.client, self.loop = client, loop
        # Asking for the fd is what makes the client wake it (docs/api.md).
        self.fd = client.fileno()
        self.waiters = set()
        self.reading = False

    def wait(self):
        fut = self.loop.create_future()
        self.waiters.add(fut)
        if not self.reading:
            self.loop.add_reader(self.fd, self._readable)
            self.reading = True
        return fut

    def done(self, fut):
        self.waiters.discard(fut)
        if not self.waiters and self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False

    def _readable(self):
        err = None
        try:
            self.client.dispatch()
        except Exception as e:  # the broker is gone: tell every waiter
            err = e
        waiters, self.waiters = self.waiters, set()
        for f in waiters:
            if not f.done():
                if err is None:
                    f.set_result(None)
                else:
                    f.set_exception(err)
        if self.reading:
            self.loop.remove_reader(self.fd)
            self.reading = False


def _watch(client, loop):
    d = client.__dict__.setdefault(_WATCHES, {})
    w = d.get(loop)
    if w is None:
        # Loops closed since (each asyncio.run makes one) are let go.
        for old in [k for k in d if k.is_closed()]:
            del d[old]
        w = d[loop] = _Watch(client, loop)
    return w


def _expire(fut):
    if not fut.done():
        fut.set_result(None)


async def areceive(self, timeout=None, as_=None, stream=None):
    """areceive(timeout=None, as_=None, stream=None): receive() for
    asyncio. Waits in the running loop (no thread) up to timeout seconds
    (None: for ever), then raises hsbroker.Timeout. Cancelling it while it
    waits takes nothing: the next receive gets the tensor."""
    t = self._poll(as_, stream)
    if t is not None:
        return t
    loop = asyncio.get_running_loop()
    w = _watch(self.client, loop)
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        fut = w.wait()
        try:
            # Once more with the fd watched: a delivery that came before
            # the watch began is taken here, not waited for.
            t = self._poll(as_, stream)
            if t is not None:
                return t
            if deadline is not None and loop.time() >= deadline:
                _hsbroker._raise(_hsbroker._ETIMEDOUT, "receive")
            timer = None if deadline is None else loop.call_at(deadline, _expire, fut)
            try:
                await fut
            finally:
                if timer is not None:
                    timer.cancel()
        finally:
            w.done(fut)


def aiter(self):
    return self


async def anext(self):
    """The next tensor for ``async for``; the iteration ends when the
    broker shuts down, as the synchronous one does."""
    try:
        return await areceive(self)
    except _hsbroker.Closed as e:
        if e.code == _hsbroker._ESHUTDOWN:
            raise StopAsyncIteration from None
        raise
