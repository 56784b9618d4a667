"""Parsing and validation run once per operation text; invalid texts are checked every time."""

from __future__ import annotations

from functools import lru_cache, partial

import strawberry
from graphql import DocumentNode, ValidationRule, parse
from graphql.language import OperationDefinitionNode

from schema.limit_extensions import ExtraValidationRules, MaxTokens
from schema.operation_cache import (
    BYTES_PER_TOKEN,
    CachedParse,
    CachedValidation,
    DocumentCache,
    ValidTexts,
    retained_bytes,
)

VALIDATIONS: list[str] = []


class CountingRule(ValidationRule):
    def enter_operation_definition(self, node: OperationDefinitionNode, *_args: object) -> None:
        VALIDATIONS.append(node.name.value if node.name else "")


@strawberry.type
class Query:
    @strawberry.field
    def echo(self, text: str) -> str:
        return text


def schema(size: int = 8) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        extensions=[
            partial(ExtraValidationRules, [CountingRule]),
            partial(CachedValidation, ValidTexts(size)),
        ],
    )


async def test_a_valid_text_is_validated_once_and_still_executes() -> None:
    VALIDATIONS.clear()
    checked = schema()
    for word in ("a", "b", "c"):
        result = await checked.execute("query Q($t: String!) { echo(text: $t) }", {"t": word})
        assert result.errors is None and result.data == {"echo": word}
    assert VALIDATIONS == ["Q"]


async def test_an_invalid_text_fails_every_time() -> None:
    VALIDATIONS.clear()
    checked = schema()
    for _ in range(2):
        result = await checked.execute("query Bad { echo(nope: 1) }")
        assert result.errors
    assert VALIDATIONS == ["Bad", "Bad"]


async def test_the_remembered_texts_are_bounded() -> None:
    VALIDATIONS.clear()
    checked = schema(size=2)
    for name in ("A", "B", "C", "A"):
        await checked.execute(f'query {name} {{ echo(text: "x") }}')
    # A was pushed out by C, so it is validated again.
    assert VALIDATIONS == ["A", "B", "C", "A"]


class CountingParse:
    """graphql-core's parse, counting its calls."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, text: str, **options: int) -> DocumentNode:
        self.texts.append(text)
        return parse(text, **options)  # type: ignore[arg-type]  # parse's own options


async def test_a_text_is_parsed_once_and_a_parse_error_keeps_its_message() -> None:
    parses = CountingParse()
    parsed = strawberry.Schema(
        query=Query,
        extensions=[
            partial(MaxTokens, 20),
            partial(CachedParse, lru_cache(maxsize=8)(parses)),
        ],
    )
    text = "query Q($t: String!) { echo(text: $t) }"
    for word in ("a", "b"):
        result = await parsed.execute(text, {"t": word})
        assert result.errors is None and result.data == {"echo": word}
    assert parses.texts == [text]
    # Over the token limit: the cache raises, strawberry reports the same parse error.
    long_text = "{ " + 'echo(text: "x") ' * 10 + "}"
    result = await parsed.execute(long_text)
    assert result.errors is not None
    assert "Document contains more than 20 tokens" in result.errors[0].message
    assert parses.texts == [text, long_text]


def test_documents_are_cached_per_text_and_parse_options() -> None:
    cached = DocumentCache(2, 1_000_000)
    text = '{ echo(text: "x") }'
    assert cached(text) is cached(text)
    assert cached(text, max_tokens=100) is not cached(text)
    assert cached(text, max_tokens=100) == parse(text)


def test_the_cache_is_bounded_by_memory_as_well_as_entries() -> None:
    """A parsed document keeps all its tokens: many big texts must not add up."""
    small = '{ echo(text: "x") }'
    cost = retained_bytes(small, DocumentCache(1, 1)(small))
    assert cost == len(small) + 10 * BYTES_PER_TOKEN  # <SOF> { echo ( text : "x" ) } <EOF>
    cached = DocumentCache(100, budget_bytes=16 * 3 * cost)
    texts = [f'{{ echo(text: "{i}") }}' for i in range(10)]
    for text in texts:
        cached(text)
    # Each costs about `cost`; the budget holds 48 of them but the entries are capped at 100,
    # so all ten stay, and the held estimate is their sum.
    assert len(cached) == 10
    assert cached.held_bytes == sum(len(t) + 10 * BYTES_PER_TOKEN for t in texts)
    tight = DocumentCache(100, budget_bytes=16 * (cost + 10))
    more = [f'{{ echo(text: "{i}") }}' for i in range(30)]
    first = [tight(text) for text in more]
    assert tight.held_bytes <= 16 * (cost + 10)
    assert 10 <= len(tight) <= 16  # the budget, not the entry cap, pushed the oldest out
    assert tight(more[-1]) is first[-1] and tight(more[0]) is not first[0]
    # A document costing over a sixteenth of the budget is parsed, never kept.
    big = "{ " + 'echo(text: "x") ' * 5 + "}"
    held = tight.held_bytes
    assert tight(big) is not tight(big)
    assert tight.held_bytes == held
