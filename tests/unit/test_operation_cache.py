"""Validation runs once per operation text; invalid texts are validated every time."""

from __future__ import annotations

from functools import partial

import strawberry
from graphql import ValidationRule
from graphql.language import OperationDefinitionNode
from strawberry.extensions import AddValidationRules

from schema.cached_validation import CachedValidation, ValidTexts

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
            partial(AddValidationRules, [CountingRule]),
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
