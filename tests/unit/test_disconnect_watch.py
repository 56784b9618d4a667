"""unless_disconnected: a plain POST's operation is cancelled when its client hangs up,
and only then; any other cancellation of the request still goes through."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message

from infrastructure.http.graphql_view import unless_disconnected


class Client:
    """The request's ``receive`` once the body is read: nothing until a hang-up."""

    def __init__(self) -> None:
        self._messages: asyncio.Queue[Message] = asyncio.Queue()

    async def receive(self) -> Message:
        return await self._messages.get()

    def hang_up(self) -> None:
        self._messages.put_nowait({"type": "http.disconnect"})


class Operation:
    """Runs until released; records whether it was cancelled (and cleaned up)."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cleaned_up = False

    async def run(self) -> str:
        self.started.set()
        try:
            await self.release.wait()
        finally:
            self.cleaned_up = not self.release.is_set()
        return "answer"


async def test_an_operation_that_completes_returns_its_result() -> None:
    client, operation = Client(), Operation()
    operation.release.set()
    assert await unless_disconnected(operation.run(), client.receive) == "answer"
    assert not operation.cleaned_up


async def test_a_hang_up_cancels_the_operation_and_nothing_else() -> None:
    client, operation = Client(), Operation()

    async def request() -> str | None:
        result = await unless_disconnected(operation.run(), client.receive)
        # The request's task goes on normally: it is not left half cancelled.
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0
        await asyncio.sleep(0)
        return result

    task = asyncio.create_task(request())
    await operation.started.wait()
    client.hang_up()
    assert await task is None
    assert operation.cleaned_up


async def test_a_hang_up_as_the_operation_ends_is_no_cancellation() -> None:
    """The operation finishes in the same loop turn as the disconnect arrives: its
    result stands and the task carries on (the watcher never got to run)."""
    client, operation = Client(), Operation()

    async def request() -> str | None:
        result = await unless_disconnected(operation.run(), client.receive)
        await asyncio.sleep(0.01)  # a cancellation left pending would land here
        return result

    task = asyncio.create_task(request())
    await operation.started.wait()
    operation.release.set()
    client.hang_up()
    assert await task == "answer"


async def test_a_server_cancelling_the_request_is_not_swallowed() -> None:
    client, operation = Client(), Operation()
    task = asyncio.create_task(unless_disconnected(operation.run(), client.receive))
    await operation.started.wait()
    client.hang_up()
    task.cancel()  # as a server shutting down does, in the same turn as the hang-up
    with pytest.raises(asyncio.CancelledError):
        await task
    assert operation.cleaned_up
