"""``until_disconnect``: a streamed call runs in the request's own task, with one watcher task
that cancels it when the client goes away (and the cancellation accounted by the work)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine

import pytest

from gateway.proxy.streaming import until_disconnect


class Client:
    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}


async def test_work_that_ends_runs_in_this_task_with_one_watcher() -> None:
    client = Client()
    before = len(asyncio.all_tasks())
    ran_in: list[asyncio.Task[Any] | None] = []
    tasks: list[int] = []

    async def work() -> None:
        ran_in.append(asyncio.current_task())
        tasks.append(len(asyncio.all_tasks()))
        await asyncio.sleep(0)

    assert await until_disconnect(client.receive, work()) is False
    me = asyncio.current_task()
    assert me is not None and ran_in == [me] and tasks == [before + 1], "no task for the work itself"
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before, "the watcher is gone"
    assert me.cancelling() == 0


def accounted_work(seen: list[str]) -> Callable[[], Coroutine[Any, Any, None]]:
    """Work that waits long, and notes that it saw its cancellation (as the attempt loop accounts it)."""

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("accounted")
            raise

    return work

async def test_a_disconnect_cancels_the_work_and_is_taken_back() -> None:
    client, seen = Client(), []

    work = accounted_work(seen)

    asyncio.get_running_loop().call_later(0.01, client.gone.set)
    assert await until_disconnect(client.receive, work()) is True
    me = asyncio.current_task()
    assert seen == ["accounted"] and me is not None and me.cancelling() == 0
    await asyncio.sleep(0)  # this task goes on (the caller's sends, its own awaits) uncancelled


async def test_a_cancellation_from_the_server_propagates_after_the_work_saw_it() -> None:
    client, seen = Client(), []

    work = accounted_work(seen)

    task = asyncio.ensure_future(until_disconnect(client.receive, work()))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["accounted"]


async def test_the_server_and_the_client_at_once_still_propagate() -> None:
    client = Client()

    async def work() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(until_disconnect(client.receive, work()))
    await asyncio.sleep(0.01)
    client.gone.set()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_work_s_own_error_is_raised() -> None:
    async def work() -> None:
        await asyncio.sleep(0)
        raise ValueError("no deployment")

    with pytest.raises(ValueError):
        await until_disconnect(Client().receive, work())
