"""The table of limits: one per budget, optionally one per (budget, role).

Rates are "count/seconds" (GCRA: a burst of ``count``, then ``count`` per
``seconds`` evenly); concurrency budgets are a bare "count" of open slots.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from domain.entities import Role
from domain.ports import Budget

CONCURRENCY_BUDGETS = frozenset({Budget.WEBSOCKETS_USER, Budget.SUBSCRIPTIONS_USER})

# Sign-in budgets fail closed when Redis is down: brute force must not get through
# an outage. The others fail open: an outage must not stop people working.
FAIL_CLOSED_BUDGETS = frozenset(
    {Budget.LOGIN_IP, Budget.LOGIN_EMAIL, Budget.SIGNUP_IP, Budget.SIGNUP_EMAIL}
)

# Charged before anyone is known (sign-in), or per user across all their organisations
# (refreshes): no role applies, so a "budget:role" limit of these is refused at start-up
# rather than accepted and never used.
ROLELESS_BUDGETS = frozenset(
    {
        Budget.LOGIN_IP,
        Budget.LOGIN_EMAIL,
        Budget.SIGNUP_IP,
        Budget.SIGNUP_EMAIL,
        Budget.SESSION_IP,
        Budget.SESSION_USER,
    }
)

DEFAULT_LIMITS: Mapping[Budget, str] = {
    Budget.LOGIN_IP: "100/300",
    Budget.LOGIN_EMAIL: "10/300",
    Budget.SIGNUP_IP: "300/3600",
    Budget.SIGNUP_EMAIL: "10/3600",
    # Refused refresh tokens only (a good one spends nothing): far more than clients
    # whose session just ended make, behind however many users share an address.
    Budget.SESSION_IP: "300/300",
    # Refreshes and switches with a good token, per user (all their sessions together):
    # each writes a token row kept until the session's maximum age. A tab refreshes
    # every 14 minutes; the burst covers many tabs and devices, reloads and switches at
    # once, and one every 5 s after it is some 170 times a tab's pace, while a client
    # looping on refreshSession writes at most 17,280 rows a day instead of millions.
    Budget.SESSION_USER: "60/300",
    Budget.UPLOAD_ORGANIZATION: "600/3600",
    Budget.ASK_USER: "120/600",
    Budget.SEARCH_USER: "600/60",
    # Each call resets a document and queues a whole ingestion again: a fifth of the
    # upload budget, with a burst for retrying a batch of failed documents at once.
    Budget.REPROCESS_ORGANIZATION: "120/3600",
    # Cheap single-row writes, but nothing else bounds how many chat rows one user makes:
    # ask_user's burst (a chat per question), and far above what a person clicks.
    Budget.CHATS_USER: "120/60",
    # Onboarding a team fits in the burst; beyond it, one a minute keeps addMember's
    # account lookup from serving as a fast account-existence probe.
    Budget.MEMBERS_USER: "60/3600",
    # Each download reads a whole original file from disk (up to UPLOAD_MAX_FILE_BYTES):
    # a person opens a few, and a script fetching a whole library gets a burst, then one
    # every 2 s, so one account cannot keep the disk and the network busy for everyone.
    Budget.DOWNLOAD_USER: "300/600",
    Budget.WEBSOCKETS_USER: "20",
    Budget.SUBSCRIPTIONS_USER: "100",
}

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_COUNT = re.compile(r"^\s*(\d+)\s*$")


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` per ``period_seconds`` (a rate) or ``count`` open slots (period 0)."""

    count: int
    period_seconds: float = 0.0

    @property
    def emission_interval_ms(self) -> float:
        """GCRA's spacing between two requests at the sustained rate."""
        return self.period_seconds * 1000 / self.count


def parse_limit(budget: Budget, text: str) -> Limit:
    if budget in CONCURRENCY_BUDGETS:
        match = _COUNT.match(text)
        if match is None or int(match.group(1)) < 1:
            raise ValueError(f"rate limit {budget.value}: expected a count >= 1, got {text!r}")
        return Limit(int(match.group(1)))
    match = _RATE.match(text)
    if match is None or int(match.group(1)) < 1 or float(match.group(2)) <= 0:
        raise ValueError(f"rate limit {budget.value}: expected 'count/seconds', got {text!r}")
    return Limit(int(match.group(1)), float(match.group(2)))


@dataclass(frozen=True, slots=True)
class RatePolicies:
    """Limits by budget, with per-role overrides."""

    limits: Mapping[Budget, Limit]
    by_role: Mapping[tuple[Budget, Role], Limit]

    def limit(self, budget: Budget, role: Role | None = None) -> Limit:
        if role is not None and (budget, role) in self.by_role:
            return self.by_role[(budget, role)]
        return self.limits[budget]


def parse_policies(overrides: Mapping[str, str]) -> RatePolicies:
    """The defaults with ``overrides`` ("budget" or "budget:role" -> limit) applied."""
    limits = {budget: parse_limit(budget, text) for budget, text in DEFAULT_LIMITS.items()}
    by_role: dict[tuple[Budget, Role], Limit] = {}
    for name, text in overrides.items():
        budget_name, _, role_name = name.strip().partition(":")
        try:
            budget = Budget(budget_name)
            role = Role(role_name.lower()) if role_name else None
        except ValueError:
            known = ", ".join(b.value for b in Budget)
            raise ValueError(
                f"unknown rate limit {name!r}: budgets are {known}, roles viewer/editor/admin"
            ) from None
        if role is None:
            limits[budget] = parse_limit(budget, text)
        elif budget in ROLELESS_BUDGETS:
            raise ValueError(
                f"rate limit {name!r}: {budget.value} is spent before a role is known, so it "
                "takes no per-role limit"
            )
        else:
            by_role[(budget, role)] = parse_limit(budget, text)
    return RatePolicies(limits, by_role)
