"""The subscribers' inbox: order, overflow, waiting, one consumer, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.cache.inbox import Inbox


async def test_items_come_out_in_order_and_the_oldest_makes_room() -> None:
    inbox: Inbox[int] = Inbox(3)
    for item in range(5):
        inbox.put(item)
    assert len(inbox) == 3
    assert [await inbox.get() for _ in range(3)] == [2, 3, 4]
    assert len(inbox) == 0


async def test_a_waiting_consumer_wakes_on_put() -> None:
    inbox: Inbox[str] = Inbox(2)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put("first")
    inbox.put("second")
    assert await asyncio.wait_for(waiting, 1) == "first"
    assert await inbox.get() == "second"


async def test_a_second_consumer_is_refused() -> None:
    inbox: Inbox[int] = Inbox(1)
    first = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="single consumer"):
        await inbox.get()
    inbox.put(1)
    assert await first == 1


async def test_a_cancelled_get_leaves_the_inbox_usable() -> None:
    inbox: Inbox[int] = Inbox(4)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    inbox.put(7)
    assert await asyncio.wait_for(inbox.get(), 1) == 7


def test_an_inbox_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Inbox[int](0)
