"""A verified access token is remembered; its time-bound claims are still checked each use."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import jwt
import pytest

from domain.entities import Principal, Role
from domain.errors import TokenExpired, Unauthenticated
from infrastructure.auth.tokens import LEEWAY_SECONDS, JwtAccessTokenCodec

SECRET = "unit-test-secret-" + "k" * 40


class FixedClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class WallClock:
    """What the codec compares the claims with, moved by the test."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def _codec(wall: WallClock, remembered: int = 4) -> JwtAccessTokenCodec:
    return JwtAccessTokenCodec(
        SECRET,
        "knowledge-foundry",
        "knowledge-foundry-api",
        timedelta(minutes=15),
        FixedClock(),
        wall_clock=wall,
        remembered=remembered,
    )


def _principal() -> Principal:
    return Principal(uuid4(), uuid4(), Role.EDITOR, uuid4())


def _counting_decode(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def counting(token: str, *args: object, **kwargs: object) -> object:
        calls.append(token)
        return real(token, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", counting)
    return calls


def test_a_token_is_verified_once_then_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_decode(monkeypatch)
    codec = _codec(WallClock())
    principal = _principal()
    token = codec.issue(principal).token
    first = codec.decode(token)
    assert first[0] == principal
    assert codec.decode(token) == first
    assert calls == [token]


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    wall = WallClock()
    codec = _codec(wall)
    token = codec.issue(_principal()).token
    codec.decode(token)
    wall.offset = 15 * 60 + LEEWAY_SECONDS - 2  # inside the leeway: still accepted
    codec.decode(token)
    wall.offset = 15 * 60 + LEEWAY_SECONDS + 1
    with pytest.raises(TokenExpired):
        codec.decode(token)
    with pytest.raises(TokenExpired):  # and stays refused, verified afresh by pyjwt
        codec.decode(token)


def test_a_remembered_token_is_refused_before_it_is_valid() -> None:
    wall = WallClock()
    codec = _codec(wall)
    token = codec.issue(_principal()).token
    codec.decode(token)
    wall.offset = -60  # the clock went back a minute
    with pytest.raises(Unauthenticated):
        codec.decode(token)


def test_only_verified_tokens_are_remembered_and_the_memory_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codec = _codec(WallClock(), remembered=2)
    good = [codec.issue(_principal()).token for _ in range(3)]
    forged = jwt.encode(jwt.decode(good[0], options={"verify_signature": False}), "x" * 48)
    calls = _counting_decode(monkeypatch)
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            codec.decode(forged)
    assert calls.count(forged) == 2  # a failed verification is never remembered
    for token in good:
        codec.decode(token)
    codec.decode(good[0])  # the oldest was dropped: verified again
    codec.decode(good[2])  # still remembered
    assert [calls.count(token) for token in good] == [2, 1, 1]
