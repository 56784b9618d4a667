"""A half-open trial's permit is leased: a permit never reported cannot wedge the breaker.

The gemini answerer leases each trial for the longest its call can take; a task
cancelled before it could report (or any other lost permit) used to hold the
breaker half-open, refusing every call, until the process restarted.
"""

from __future__ import annotations

import logging

import pytest

from infrastructure.answers.circuit_breaker import DEFAULT_TRIAL_LEASE_SECONDS, CircuitBreaker
from tests.unit.test_circuit_breaker import FakeClock, fail, make, state_of


def half_open(name: str, clock: FakeClock) -> CircuitBreaker:
    breaker = make(name, clock, threshold=1, reset=10.0)
    fail(breaker)
    clock.advance(10.0)
    assert state_of(breaker) == "half_open"
    return breaker


def test_a_trial_never_reported_is_presumed_lost_after_its_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    breaker = half_open("t-lease", clock)
    lost = breaker.allow(lease_seconds=30.0)
    assert lost is not None

    clock.advance(29.9)
    assert breaker.allow(lease_seconds=30.0) is None  # the trial may still be running
    clock.advance(0.1)
    with caplog.at_level(logging.WARNING):
        trial = breaker.allow(lease_seconds=30.0)

    assert trial is not None
    expired = [
        record.msg["name"]
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "llm.breaker_trial_expired"
    ]
    assert expired == ["t-lease"]
    lost.release()  # reported at last: the new trial keeps its place
    assert breaker.allow() is None
    trial.success()
    assert state_of(breaker) == "closed"


def test_a_trial_without_a_lease_of_its_own_gets_the_default() -> None:
    clock = FakeClock()
    breaker = half_open("t-lease-default", clock)
    assert breaker.allow() is not None

    clock.advance(DEFAULT_TRIAL_LEASE_SECONDS - 1.0)
    assert breaker.allow() is None
    clock.advance(1.0)
    assert breaker.allow() is not None


def test_a_lease_only_bounds_the_trial_while_half_open() -> None:
    clock = FakeClock()
    breaker = make("t-lease-closed", clock, threshold=1, reset=10.0)
    early = breaker.allow(lease_seconds=1.0)  # closed: no lease to run out
    assert early is not None
    clock.advance(100.0)
    assert breaker.allow(lease_seconds=1.0) is not None
    early.success()
    assert state_of(breaker) == "closed"
