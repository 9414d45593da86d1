"""hsbroker for asyncio: the same client, with subscriptions whose
receive() is a coroutine.

    import hsbroker.aio
    async def main():
        with hsbroker.aio.connect(name="viewer") as c:
            async for t in c.subscribe("frames"):
                with t:
                    ...
            sub = c.subscribe("other")
            t = await sub.receive(timeout=1.0)

Every wait is the event loop's: the client's fd is watched with
loop.add_reader, never from a thread. connect() itself, alloc() and emit()
stay synchronous (they block only briefly: emit waits only when several
emits are unanswered, e.g. for a full BLOCK subscriber).
"""
from . import Client as _SyncClient


class Subscription:
    """A subscription whose receive() is awaited; ``async for`` works too."""

    __slots__ = ("sync",)

    def __init__(self, sync):
        #: The underlying hsbroker.Subscription (synchronous receive).
        self.sync = sync

    async def receive(self, timeout=None, as_=None, stream=None):
        """The next tensor (or its view with as_, see
        hsbroker.Subscription.receive); raises hsbroker.Timeout after
        timeout seconds (None: waits for ever). Cancelling it while it
        waits takes nothing from the subscription."""
        return await self.sync.areceive(timeout, as_, stream)

    def __aiter__(self):
        return self.sync.__aiter__()

    @property
    def topic(self):
        return self.sync.topic

    @property
    def dropped(self):
        return self.sync.dropped

    def close(self):
        self.sync.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.sync.close()
        return False


class Client(_SyncClient):
    """hsbroker.Client whose subscribe() gives hsbroker.aio.Subscription."""

    def subscribe(self, topic, depth=8, policy="block", block_timeout_ms=0):
        return Subscription(super().subscribe(topic, depth, policy, block_timeout_ms))


def connect(path=None, name=None):
    """hsbroker.connect() for asyncio code (connecting does not wait on
    anything but the daemon's accept)."""
    return Client(path, name)
