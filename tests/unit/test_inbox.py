"""The light queue for idle connections: order, bounds, waiting consumers, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from infrastructure.inbox import Inbox


async def test_items_come_out_in_order_and_the_oldest_makes_room() -> None:
    inbox: Inbox[int] = Inbox(3)
    for item in range(5):
        inbox.put_nowait(item)
    assert len(inbox) == 3
    assert [await inbox.get() for _ in range(3)] == [2, 3, 4]
    assert inbox.empty()


async def test_an_unbounded_inbox_keeps_everything() -> None:
    inbox: Inbox[int] = Inbox()
    for item in range(1_000):
        inbox.put_nowait(item)
    assert [await inbox.get() for _ in range(1_000)] == list(range(1_000))


async def test_a_waiting_consumer_wakes_on_put() -> None:
    inbox: Inbox[str] = Inbox(2)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait("first")
    inbox.put_nowait("second")
    assert await asyncio.wait_for(waiting, 1) == "first"
    assert await inbox.get() == "second"


async def test_consumers_are_served_in_the_order_they_waited() -> None:
    inbox: Inbox[int] = Inbox()
    first = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    second = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(1)
    inbox.put_nowait(2)
    assert list(await asyncio.wait_for(asyncio.gather(first, second), 1)) == [1, 2]


async def test_a_cancelled_get_leaves_the_inbox_usable() -> None:
    inbox: Inbox[int] = Inbox(4)
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    inbox.put_nowait(7)
    assert await asyncio.wait_for(inbox.get(), 1) == 7


async def test_a_consumer_cancelled_after_its_wake_up_passes_the_item_on() -> None:
    inbox: Inbox[int] = Inbox()
    woken = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    other = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_nowait(5)  # wakes the first consumer...
    woken.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await woken
    assert await asyncio.wait_for(other, 1) == 5


def test_a_bounded_inbox_holds_at_least_one_item() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Inbox[int](0)
