"""Text PostgreSQL cannot store is refused before validation: NUL characters in an
operation's own string literals, however the literal spells them (operations that
cannot hold one skip the walk), and NULs or lone surrogates anywhere in the variables."""

from __future__ import annotations

import json
from typing import cast

import pytest
from graphql import parse

from domain.ports import RateLimiter
from domain.services import Services
from schema.build import build_schema
from schema.context import Context
from schema.storable_text import (
    NUL_MESSAGE,
    SURROGATE_MESSAGE,
    document_holds_nul,
    literals_may_hold_nul,
    text_problem,
)

NUL_LITERALS = [
    '{ search(query: "a\\u0000b") { chunkId } }',  # fixed-width escape
    '{ search(query: "a\\u{0}b") { chunkId } }',  # variable-width escape
    '{ search(query: "a\x00b") { chunkId } }',  # the raw character
    '{ search(query: """a\x00b""") { chunkId } }',  # in a block string
]


@pytest.mark.parametrize("operation", NUL_LITERALS)
async def test_a_nul_in_a_literal_is_refused_with_its_code(operation: str) -> None:
    assert literals_may_hold_nul(operation)
    assert document_holds_nul(parse(operation))
    result = await build_schema().execute(operation)
    assert result.errors is not None
    assert [error.extensions for error in result.errors] == [{"code": "VALIDATION_FAILED"}]


def test_only_texts_with_a_raw_nul_or_a_unicode_escape_are_walked() -> None:
    assert not literals_may_hold_nul('{ search(query: "plain words") { chunkId } }')
    assert not literals_may_hold_nul('{ search(query: """a \\n b""") { chunkId } }')
    # An escape of another character is walked, and found clean.
    other = '{ search(query: "caf\\u00e9") { chunkId } }'
    assert literals_may_hold_nul(other)
    assert not document_holds_nul(parse(other))
    assert literals_may_hold_nul(None)


async def test_a_clean_literal_reaches_the_resolver() -> None:
    anonymous = Context(
        services=cast(Services, object()),
        request_id="test",
        client_ip=None,
        rate_limiter=cast(RateLimiter, object()),
    )
    result = await build_schema().execute(
        '{ search(query: "plain words") { chunkId } }', context_value=anonymous
    )
    assert result.errors is not None
    assert [(error.extensions or {}).get("code") for error in result.errors] == ["UNAUTHENTICATED"]


def test_variables_are_searched_through_objects_and_lists() -> None:
    assert text_problem({"input": {"tags": ["ok", "a\x00"]}}) == NUL_MESSAGE
    assert text_problem({"input": {"tags": ("ok", {"deep": "\udfff"})}}) == SURROGATE_MESSAGE
    # JSON decodes an escaped surrogate pair as one character, which is fine.
    pair = json.loads('"\\ud83d\\ude00"')
    assert text_problem({"q": f"emoji {pair}, é, 中文", "n": 3, "x": None}) is None
    assert text_problem(None) is None
