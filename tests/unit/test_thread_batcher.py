"""Concurrent callers' texts share encoder calls on the batcher's own thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from infrastructure.embeddings.thread_batcher import ThreadBatcher, Vectors


class Encoder:
    """Records each call; the first one waits until the test lets it go."""

    def __init__(self, hold_first: bool = True) -> None:
        self.calls: list[list[str]] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, texts: list[str]) -> Vectors:
        self.threads.add(threading.current_thread().name)
        self.calls.append(list(texts))
        self.started.set()
        self.release.wait(timeout=10)
        if "bad" in texts:
            raise ValueError("cannot encode 'bad'")
        return [[float(len(text)), float(index)] for index, text in enumerate(texts)]


async def _until(condition: threading.Event) -> None:
    assert await asyncio.to_thread(condition.wait, 10)


async def _busy(
    encoder: Encoder, max_texts: int = 32
) -> tuple[ThreadBatcher, asyncio.Task[Vectors]]:
    """A batcher whose thread is inside its first call (["a"]), held by ``encoder``."""
    batcher = ThreadBatcher(encoder, max_texts=max_texts, name="test-batcher")
    first = asyncio.create_task(batcher.encode(["a"]))
    await _until(encoder.started)
    return batcher, first


async def test_callers_waiting_meanwhile_share_the_next_call() -> None:
    encoder = Encoder()
    batcher, first = await _busy(encoder)
    waiting = [asyncio.create_task(batcher.encode(["bb" * n, "c"])) for n in range(1, 4)]
    await asyncio.sleep(0.05)  # all three queued while the first call runs
    encoder.release.set()
    assert await first == [[1.0, 0.0]]
    results = await asyncio.gather(*waiting)
    assert encoder.calls == [["a"], ["bb", "c", "bbbb", "c", "bbbbbb", "c"]]
    # Each caller gets its own texts' vectors, in its order.
    assert results == [
        [[2.0, 0.0], [1.0, 1.0]],
        [[4.0, 2.0], [1.0, 3.0]],
        [[6.0, 4.0], [1.0, 5.0]],
    ]
    assert encoder.threads == {"test-batcher"}
    assert await batcher.encode([]) == []


async def test_a_batch_is_cut_at_max_texts() -> None:
    encoder = Encoder()
    batcher, first = await _busy(encoder, max_texts=3)
    waiting = [asyncio.create_task(batcher.encode([str(n)])) for n in range(5)]
    await asyncio.sleep(0.05)
    encoder.release.set()
    await asyncio.gather(first, *waiting)
    assert encoder.calls == [["a"], ["0", "1", "2"], ["3", "4"]]


async def test_one_bad_text_fails_only_its_caller() -> None:
    encoder = Encoder()
    batcher, first = await _busy(encoder)
    good = asyncio.create_task(batcher.encode(["good"]))
    bad = asyncio.create_task(batcher.encode(["bad"]))
    await asyncio.sleep(0.05)
    encoder.release.set()
    await first
    assert await good == [[4.0, 0.0]]
    with pytest.raises(ValueError, match="cannot encode"):
        await bad
    assert encoder.calls[1:] == [["good", "bad"], ["good"], ["bad"]]


async def test_a_caller_that_left_is_not_encoded() -> None:
    encoder = Encoder()
    batcher, first = await _busy(encoder)
    gone = asyncio.create_task(batcher.encode(["gone"]))
    stays = asyncio.create_task(batcher.encode(["stays"]))
    await asyncio.sleep(0.05)
    gone.cancel()
    await asyncio.sleep(0.01)
    encoder.release.set()
    await first
    assert await stays == [[5.0, 0.0]]
    assert encoder.calls == [["a"], ["stays"]]


async def test_the_thread_ends_when_idle_and_starts_again() -> None:
    encoder = Encoder(hold_first=False)
    batcher = ThreadBatcher(encoder, max_texts=32, name="idle-batcher", idle_seconds=0.05)
    assert await batcher.encode(["one"]) == [[3.0, 0.0]]
    deadline = time.monotonic() + 5
    while any(t.name == "idle-batcher" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "the idle thread did not end"
        await asyncio.sleep(0.02)
    assert await batcher.encode(["three"]) == [[5.0, 0.0]]
    assert encoder.calls == [["one"], ["three"]]


class Stop(BaseException):
    """Not an encoding error: something that takes the thread down."""


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_thread_that_goes_down_fails_its_batch_and_is_replaced() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> Vectors:
        calls.append(texts)
        if texts == ["stop"]:
            raise Stop
        return [[1.0] for _ in texts]

    batcher = ThreadBatcher(encode, max_texts=32, name="stopping-batcher", idle_seconds=0.05)
    with pytest.raises(RuntimeError, match="the embedding thread stopped"):
        await batcher.encode(["stop"])
    # Asked at once: the failed thread may not have ended yet, and must not strand this.
    assert await batcher.encode(["next"]) == [[1.0]]
    assert calls == [["stop"], ["next"]]
    deadline = time.monotonic() + 5
    while any(t.name == "stopping-batcher" for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a batcher thread did not end"
        await asyncio.sleep(0.02)
