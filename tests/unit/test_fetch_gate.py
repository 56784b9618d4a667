"""What a worker may fetch from each ingestion lane (workers/fetch_gate.py)."""

from __future__ import annotations

from workers.fetch_gate import fetch_allowance

LANES = ("documents", "documents-1", "documents-2")


def test_a_worker_holds_at_most_two_jobs_per_thread_across_lanes() -> None:
    # Four threads (8 held at most): the busy lane holds 6, another lane 1.
    outstanding = {"documents": 6, "documents-1": 1}
    assert fetch_allowance("documents", 8, outstanding, LANES, held=8) == 1
    assert fetch_allowance("documents-1", 7, outstanding, LANES, held=8) == 1
    full = {"documents": 7, "documents-1": 1}
    assert fetch_allowance("documents", 8, full, LANES, held=8) == 0
    assert fetch_allowance("documents-1", 7, full, LANES, held=8) == 0


def test_a_lane_holding_nothing_may_always_take_one_job() -> None:
    # However busy the worker, another organisation's job is fetched, and so served
    # before the busy lane's jobs fetched after it.
    outstanding = {"documents": 8}
    assert fetch_allowance("documents-2", 8, outstanding, LANES, held=8) == 1
    assert fetch_allowance("documents-2", 8, {"documents": 8, "documents-2": 1}, LANES, 8) == 0


def test_a_single_busy_lane_gets_the_whole_allowance() -> None:
    assert fetch_allowance("documents", 8, {}, LANES, held=8) == 8
    assert fetch_allowance("documents", 3, {"documents": 5}, LANES, held=8) == 3


def test_delay_queues_are_not_limited() -> None:
    # Retries waiting out their backoff are held in memory until due: never gated.
    assert fetch_allowance("documents.DQ", 4000, {"documents": 8}, LANES, held=8) == 4000
