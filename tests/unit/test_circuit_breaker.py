"""The LLM circuit breaker's states, driven by a fake clock."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import REGISTRY

from infrastructure.answers.circuit_breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def state_of(breaker: CircuitBreaker) -> str:
    """The state read afresh (mypy would keep the narrowing of ``.state`` across calls)."""
    return breaker.state


def make(name: str, clock: FakeClock, threshold: int = 3, reset: float = 10.0) -> CircuitBreaker:
    return CircuitBreaker(name, failure_threshold=threshold, reset_seconds=reset, clock=clock)


def fail(breaker: CircuitBreaker) -> None:
    """A call let through now fails."""
    permit = breaker.allow()
    assert permit is not None
    permit.failure()


def gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value("foundry_llm_breaker_state", {"name": name})


def transitions(name: str, to: str) -> float:
    value = REGISTRY.get_sample_value(
        "foundry_llm_breaker_transitions_total", {"name": name, "to": to}
    )
    return value or 0.0


def test_it_opens_after_the_threshold_of_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = make("t-open", clock)
    assert state_of(breaker) == "closed"
    assert gauge("t-open") == 0

    fail(breaker)
    fail(breaker)
    assert state_of(breaker) == "closed"
    assert breaker.allow()

    fail(breaker)
    assert state_of(breaker) == "open"
    assert not breaker.allow()
    assert gauge("t-open") == 2
    assert transitions("t-open", "open") == 1


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = make("t-reset", FakeClock())
    fail(breaker)
    fail(breaker)
    permit = breaker.allow()
    assert permit is not None
    permit.success()
    fail(breaker)
    fail(breaker)
    assert state_of(breaker) == "closed"
    fail(breaker)
    assert state_of(breaker) == "open"


def test_it_half_opens_after_the_reset_time_and_lets_one_trial_through() -> None:
    clock = FakeClock()
    breaker = make("t-half", clock, threshold=1, reset=10.0)
    fail(breaker)

    clock.advance(9.9)
    assert state_of(breaker) == "open"
    assert not breaker.allow()

    clock.advance(0.1)
    assert state_of(breaker) == "half_open"
    assert gauge("t-half") == 1
    assert breaker.allow()  # the trial
    assert not breaker.allow()  # a second caller while the trial is out
    assert state_of(breaker) == "half_open"


def test_a_successful_trial_closes_it() -> None:
    clock = FakeClock()
    breaker = make("t-close", clock, threshold=1, reset=5.0)
    fail(breaker)
    clock.advance(5.0)
    trial = breaker.allow()
    assert trial is not None

    trial.success()

    assert state_of(breaker) == "closed"
    assert gauge("t-close") == 0
    assert breaker.allow()
    assert breaker.allow()
    assert [transitions("t-close", to) for to in ("open", "half_open", "closed")] == [1, 1, 1]


def test_a_failed_trial_opens_it_again_for_a_full_reset_time() -> None:
    clock = FakeClock()
    breaker = make("t-reopen", clock, threshold=2, reset=5.0)
    fail(breaker)
    fail(breaker)
    clock.advance(5.0)
    trial = breaker.allow()
    assert trial is not None

    clock.advance(3.0)  # the trial takes a while, then fails
    trial.failure()

    assert state_of(breaker) == "open"
    clock.advance(4.9)
    assert not breaker.allow()
    clock.advance(0.1)
    assert breaker.allow()
    assert transitions("t-reopen", "open") == 2


def test_a_released_trial_lets_the_next_caller_try() -> None:
    clock = FakeClock()
    breaker = make("t-release", clock, threshold=1, reset=1.0)
    fail(breaker)
    clock.advance(1.0)
    trial = breaker.allow()
    assert trial is not None
    assert not breaker.allow()

    trial.release()  # the trial was cancelled: no verdict on the provider

    assert state_of(breaker) == "half_open"
    assert breaker.allow()


def test_release_while_closed_changes_nothing() -> None:
    breaker = make("t-noop", FakeClock(), threshold=1)
    permit = breaker.allow()
    assert permit is not None
    permit.release()
    assert state_of(breaker) == "closed"
    assert breaker.allow()


def test_only_the_trial_frees_the_trials_place() -> None:
    clock = FakeClock()
    breaker = make("t-trial", clock, threshold=1, reset=1.0)
    early = breaker.allow()  # let through while closed, still streaming...
    assert early is not None
    fail(breaker)  # ...when another call fails and opens it
    clock.advance(1.0)
    trial = breaker.allow()
    assert trial is not None
    assert not breaker.allow()

    early.release()  # its client stops it: that is not the trial ending
    early.release()  # nor is a second report

    assert not breaker.allow()
    trial.release()
    assert breaker.allow()


def test_a_late_failure_while_open_does_not_extend_the_open_time() -> None:
    clock = FakeClock()
    breaker = make("t-late", clock, threshold=1, reset=10.0)
    early = breaker.allow()
    assert early is not None
    fail(breaker)
    clock.advance(6.0)
    early.failure()  # a call admitted before it opened fails now
    clock.advance(4.0)
    assert state_of(breaker) == "half_open"


def test_transitions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    breaker = make("t-log", clock, threshold=1, reset=1.0)
    with caplog.at_level(logging.INFO):
        fail(breaker)
        clock.advance(1.0)
        trial = breaker.allow()
        assert trial is not None
        trial.success()
    events = [
        (record.msg["previous"], record.msg["state"])
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "llm.breaker"
    ]
    assert events == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, 0.0)])
def test_it_refuses_nonsense_settings(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        CircuitBreaker("t-bad", failure_threshold=threshold, reset_seconds=reset)
