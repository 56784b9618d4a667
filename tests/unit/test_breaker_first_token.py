"""A call that says the provider is answering (its first token) before it ends.

A half-open trial streaming a long answer used to keep every other call out (each
one degraded) until the whole answer had finished, though its first token already
showed the provider was back.
"""

from __future__ import annotations

from infrastructure.answers.circuit_breaker import CircuitBreaker, Permit
from tests.unit.test_circuit_breaker import FakeClock, fail, make, state_of


def trial_of(name: str, threshold: int = 3) -> tuple[CircuitBreaker, Permit]:
    """A breaker opened by ``threshold`` failures, waited out, and its trial permit."""
    clock = FakeClock()
    breaker = make(name, clock, threshold=threshold, reset=10.0)
    for _ in range(threshold):
        fail(breaker)
    clock.advance(10.0)
    trial = breaker.allow()
    assert trial is not None
    assert not breaker.allow()
    return breaker, trial


def test_a_trial_that_starts_answering_closes_it_at_once() -> None:
    breaker, trial = trial_of("t-first-close")

    trial.responding()

    assert state_of(breaker) == "closed"
    assert breaker.allow()  # other calls go through while the trial still streams
    assert breaker.allow()


def test_until_a_call_succeeds_the_next_failure_opens_it_again() -> None:
    breaker, trial = trial_of("t-first-probation", threshold=3)
    trial.responding()

    fail(breaker)  # one failure, not three: the provider has only just come back

    assert state_of(breaker) == "open"


def test_the_trial_failing_later_in_its_stream_opens_it_again() -> None:
    breaker, trial = trial_of("t-first-late-failure")
    trial.responding()

    trial.failure()

    assert state_of(breaker) == "open"


def test_the_trial_succeeding_ends_the_probation() -> None:
    breaker, trial = trial_of("t-first-success", threshold=3)
    trial.responding()
    trial.success()

    fail(breaker)
    fail(breaker)
    assert state_of(breaker) == "closed"
    fail(breaker)
    assert state_of(breaker) == "open"


def test_a_trial_cancelled_after_answering_leaves_it_closed() -> None:
    breaker, trial = trial_of("t-first-release")
    trial.responding()

    trial.release()

    assert state_of(breaker) == "closed"
    assert breaker.allow()


def test_while_closed_a_first_token_does_not_reset_the_count_of_failures() -> None:
    breaker = make("t-first-closed", FakeClock(), threshold=3)
    fail(breaker)
    fail(breaker)
    permit = breaker.allow()
    assert permit is not None

    permit.responding()
    assert state_of(breaker) == "closed"
    permit.failure()  # cut off mid-answer: the third failure in a row

    assert state_of(breaker) == "open"


def test_responding_after_the_outcome_was_reported_changes_nothing() -> None:
    breaker, trial = trial_of("t-first-after-report")
    trial.release()
    trial.responding()

    assert state_of(breaker) == "half_open"
