"""A circuit breaker for a model provider (answers, questions' embeddings): fail fast when down.

Closed, calls go through and consecutive failures are counted; at
``failure_threshold`` it opens and refuses every call for ``reset_seconds``.
Then it is half-open: one trial call at a time goes through, a success closes
it and a failure opens it again for another ``reset_seconds``.

:meth:`CircuitBreaker.allow` hands each call it lets through a :class:`Permit`, and
the adapter reports through it what the call's outcome says about the provider: a
success, a failure, or, for a call that ended without saying anything about the
provider's health (cancelled by the client, a request the provider refused as
invalid), a release, which only frees the half-open trial if this call was it. (A
call let through while the breaker was still closed and ending during the trial does
not free the trial's place.)

A long call can say early that the provider is answering (``Permit.responding``, at
an answer's first token) and report how it ended later. That closes a breaker that
is not closed, so a trial streaming a long answer does not keep every other call
out, but on probation: the consecutive failures stay one short of the threshold
until a call succeeds, so the next failure (this call's own, later in its stream,
included) opens it again, as a failed trial would. While closed it changes nothing:
a call that fails after its first token still counts as one failure.

A trial permit is leased: one still out after its lease (``allow(lease_seconds)``,
the longest the call can take, or :data:`DEFAULT_TRIAL_LEASE_SECONDS`) is presumed
lost, e.g. to a task cancelled before it could report, and the next caller gets
the trial (logged as ``llm.breaker_trial_expired``), so a lost permit can never
hold the breaker half-open.

The state is exported as ``foundry_llm_breaker_state{name}`` (0 closed,
1 half-open, 2 open) and each change counted and logged as ``llm.breaker``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

import structlog
from prometheus_client import Counter, Gauge

BreakerState = Literal["closed", "open", "half_open"]

# The lease of a trial permit whose caller does not say how long it may take.
DEFAULT_TRIAL_LEASE_SECONDS = 300.0

_GAUGE_VALUES: dict[BreakerState, int] = {"closed": 0, "half_open": 1, "open": 2}

BREAKER_STATE = Gauge(
    "foundry_llm_breaker_state",
    "Circuit breaker of a language-model provider: 0 closed, 1 half-open, 2 open.",
    ["name"],
)
BREAKER_TRANSITIONS = Counter(
    "foundry_llm_breaker_transitions_total",
    "Circuit breaker state changes, by the state entered.",
    ["name", "to"],
)

log = structlog.get_logger("foundry.answers")


class Permit:
    """One call the breaker let through; report how it ended once (later reports are
    ignored)."""

    __slots__ = ("_breaker", "_reported")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker
        self._reported = False

    def responding(self) -> None:
        """The provider has started answering; the outcome is still to be reported."""
        if not self._reported:
            self._breaker._responding(self)

    def success(self) -> None:
        """The provider answered: close (from any state, it is the freshest evidence)."""
        if self._report():
            self._breaker._succeeded(self)

    def failure(self) -> None:
        """The provider failed the call (after the adapter's own retries)."""
        if self._report():
            self._breaker._failed(self)

    def release(self) -> None:
        """The call ended without a verdict on the provider."""
        if self._report():
            self._breaker._released(self)

    def _report(self) -> bool:
        first, self._reported = not self._reported, True
        return first


class CircuitBreaker:
    """Counts consecutive failures of one provider; ``clock`` is injectable for tests."""

    def __init__(
        self,
        name: str,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_seconds <= 0:
            raise ValueError("reset_seconds must be positive")
        self.name = name
        self._threshold = failure_threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._trial: Permit | None = None  # the half-open trial still out
        self._trial_expires = 0.0  # when the trial still out is presumed lost
        # The adapter runs on one event loop, but a lock keeps the counters exact
        # should a breaker ever be shared with threads (it is cheap and never awaited).
        self._lock = threading.Lock()
        BREAKER_STATE.labels(name).set(_GAUGE_VALUES["closed"])

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._current_state()

    def allow(self, lease_seconds: float = DEFAULT_TRIAL_LEASE_SECONDS) -> Permit | None:
        """A permit if a call may go out now; in half-open, for one trial at a time.

        ``lease_seconds``: the longest the call can take; a trial permit not reported
        by then is presumed lost and the trial goes to the next caller.
        """
        with self._lock:
            state = self._current_state()
            if state == "closed":
                return Permit(self)
            if state == "open":
                return None
            now = self._clock()
            if self._trial is not None:
                if now < self._trial_expires:
                    return None
                log.warning("llm.breaker_trial_expired", name=self.name)
            self._trial = Permit(self)
            self._trial_expires = now + lease_seconds
            return self._trial

    def _succeeded(self, permit: Permit) -> None:
        with self._lock:
            self._end(permit)
            self._failures = 0
            if self._state != "closed":
                self._enter("closed")

    def _responding(self, permit: Permit) -> None:
        with self._lock:
            self._end(permit)
            if self._current_state() != "closed":
                # No success yet: the next failure opens it again (module docstring).
                self._failures = max(self._failures, self._threshold - 1)
                self._enter("closed")

    def _failed(self, permit: Permit) -> None:
        with self._lock:
            self._end(permit)
            state = self._current_state()
            if state == "half_open":
                self._open()
            elif state == "closed":
                self._failures += 1
                if self._failures >= self._threshold:
                    self._open()
            # Already open: a call let through earlier failed late; the timer stays.

    def _released(self, permit: Permit) -> None:
        with self._lock:
            self._end(permit)

    def _end(self, permit: Permit) -> None:
        if self._trial is permit:
            self._trial = None

    def _current_state(self) -> BreakerState:
        if self._state == "open" and self._clock() - self._opened_at >= self._reset_seconds:
            self._enter("half_open")
        return self._state

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._trial = None  # whatever it was, the next half-open period has its own
        self._enter("open")

    def _enter(self, state: BreakerState) -> None:
        previous, self._state = self._state, state
        BREAKER_STATE.labels(self.name).set(_GAUGE_VALUES[state])
        BREAKER_TRANSITIONS.labels(self.name, state).inc()
        event = log.warning if state == "open" else log.info
        event(
            "llm.breaker",
            name=self.name,
            previous=previous,
            state=state,
            failures=self._failures,
            reset_s=self._reset_seconds if state == "open" else None,
        )
