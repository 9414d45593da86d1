"""asyncio: ``async for`` over a subscription and ``await sub.receive()``,
waiting in the event loop on the client's fd (no thread), timeouts, and
cancellation that leaves nothing taken or held."""
import asyncio
import threading

import numpy as np
import pytest

from conftest import role


def run(coro, timeout=60):
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def watched(loop, client):
    """Whether the client's fd is in the loop's reader set."""
    return client.fileno() in loop._selector.get_map()


def test_async_for_across_processes_without_threads(broker, hs):
    count = 200

    async def main():
        with hs.connect(broker.socket, "aio-consumer") as c:
            sub = c.subscribe("aio/frames", depth=16)
            threads = threading.active_count()
            prod = role(broker, "producer", "aio/frames", count)
            n = 0
            async for t in sub:
                with t:
                    assert t.seq == n + 1 and t.shape == (3, 5, 7)
                    assert threading.active_count() == threads
                n += 1
                if n == count:
                    break
            out, err = await asyncio.get_running_loop().run_in_executor(
                None, prod.communicate)
            assert prod.returncode == 0, err
            assert not watched(asyncio.get_running_loop(), c)
            return n

    assert run(main()) == count


def test_await_receive_with_hsbroker_aio(broker):
    import hsbroker.aio

    async def main():
        with hsbroker.aio.connect(broker.socket, "aio") as c:
            sub = c.subscribe("aio/one")
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: c.emit("aio/one", np.arange(3.0)))
            t = await sub.receive(timeout=10)
            assert list(np.asarray(t)) == [0.0, 1.0, 2.0]
            t.release()
            a = None
            loop.call_later(0.02, lambda: c.emit("aio/one", np.ones(2)))
            a = await sub.receive(timeout=10, as_="numpy")
            assert list(a) == [1.0, 1.0]
            with pytest.raises(hsbroker.Timeout) as ei:
                await sub.receive(timeout=0.05)
            assert ei.value.name == "HS_ETIMEDOUT"
            assert not watched(loop, c)

    run(main())


def test_cancelled_receive_takes_nothing(broker, hs, monkeypatch):
    monkeypatch.setenv("HSBROKER_SPARES", "0")

    async def main():
        with hs.connect(broker.socket, "aio-cancel") as c:
            sub = c.subscribe("aio/cancel")
            loop = asyncio.get_running_loop()
            task = asyncio.ensure_future(sub.areceive())
            await asyncio.sleep(0.05)
            assert watched(loop, c)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not watched(loop, c)
            assert c.stats()["tensors_held"] == 0
            # Delivered while a receive waits, which is cancelled before
            # the loop sees the fd: the tensor stays for the next receive.
            task = asyncio.ensure_future(sub.areceive())
            await asyncio.sleep(0.05)
            c.emit("aio/cancel", np.full(4, 9, dtype=np.int32), wait=True)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            t = await sub.areceive(timeout=10)
            assert t.seq == 1 and list(np.asarray(t)) == [9] * 4
            t.release()
            # Cancelled in the middle of a wait_for timeout too.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(sub.areceive(), 0.05)
            assert not watched(loop, c)
            assert c.stats()["tensors_held"] == 0

    run(main())


def test_two_subscriptions_wait_on_one_client(broker, hs):
    async def main():
        with hs.connect(broker.socket, "aio-two") as c:
            a, b = c.subscribe("aio/a"), c.subscribe("aio/b")
            ta = asyncio.ensure_future(a.areceive(timeout=10))
            tb = asyncio.ensure_future(b.areceive(timeout=10))
            await asyncio.sleep(0.02)
            with hs.connect(broker.socket, "aio-prod") as p:
                p.emit("aio/b", np.array([2], dtype=np.int8), wait=True)
                p.emit("aio/a", np.array([1], dtype=np.int8), wait=True)
            x, y = await ta, await tb
            assert (int(np.asarray(x)[0]), int(np.asarray(y)[0])) == (1, 2)
            x.release()
            y.release()

    run(main())


def test_async_for_ends_when_the_broker_stops(broker, hs):
    async def main():
        c = hs.connect(broker.socket, "aio-stop")
        sub = c.subscribe("aio/stop")
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, broker.stop)
        got = [t async for t in sub]
        assert got == []
        sub.close()
        c.close()

    run(main())
