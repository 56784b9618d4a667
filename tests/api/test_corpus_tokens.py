"""The shared corpus is ingested once per session, but every test gets access tokens
issued for it: they last 15 minutes, and the tests using the corpus span more."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import cast

import jwt
import pytest

from tests.conftest import TEST_JWT_SECRET
from tests.helpers import JSON, ME, REFRESH, Account, GraphQLClient
from tests.knowledge import Corpus, SessionCorpus


@pytest.fixture
def set_up_at() -> float:
    """When this test's function-scoped fixtures began (session ones come before)."""
    return time.time()


def issued_at(token: str) -> float:
    claims = jwt.decode(token, options={"verify_signature": False})
    return float(claims["iat_ms"]) / 1000


async def test_a_tests_corpus_tokens_are_issued_for_it(set_up_at: float, corpus: Corpus) -> None:
    for account in (corpus.owner, corpus.rival):
        assert issued_at(account.access_token) >= set_up_at


def expired(account: Account) -> Account:
    """``account`` as a corpus built 20 minutes ago holds it."""
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    past = int(time.time()) - 20 * 60
    token = jwt.encode(
        {**claims, "iat": past, "iat_ms": past * 1000, "nbf": past, "exp": past + 15 * 60},
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    return replace(account, access_token=token)


async def test_a_corpus_whose_tokens_expired_still_gives_working_ones(
    session_corpus: SessionCorpus, api: GraphQLClient
) -> None:
    aged = session_corpus.current
    session_corpus.current = replace(aged, owner=expired(aged.owner), rival=expired(aged.rival))
    assert await api.error_code(ME, token=session_corpus.current.owner.access_token) == (
        "TOKEN_EXPIRED"
    )
    corpus = await session_corpus.with_fresh_tokens(api)
    for account in (corpus.owner, corpus.rival):
        data = await api.data(ME, token=account.access_token)
        assert cast(JSON, data["me"])["id"] == account.user_id
        assert cast(JSON, data["organization"])["id"] == account.organization_id
    # Twice in a row: the rotated refresh tokens were kept (a used one revokes the session).
    again = await session_corpus.with_fresh_tokens(api)
    assert again.owner.refresh_token != corpus.owner.refresh_token
    assert (await api.data(ME, token=again.owner.access_token))["me"] is not None


async def test_a_corpus_whose_session_ended_still_gives_working_tokens(
    session_corpus: SessionCorpus, api: GraphQLClient
) -> None:
    """A refresh whose answer was lost spent the refresh token kept: presenting it again
    ends the session, and the accounts log in again."""
    kept = session_corpus.current.owner
    assert await api.data(REFRESH, {"token": kept.refresh_token})  # the lost answer
    corpus = await session_corpus.with_fresh_tokens(api)
    data = await api.data(ME, token=corpus.owner.access_token)
    assert cast(JSON, data["me"])["id"] == kept.user_id
    assert cast(JSON, data["organization"])["id"] == kept.organization_id
