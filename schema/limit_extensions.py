"""The token limit and the extra validation rules, set as the text is parsed and validated.

strawberry's MaxTokensLimiter, AddValidationRules and DisableIntrospection set the same
options from ``on_operation``, and an operation hook stays entered for the operation's
whole life: for a subscription that is the life of the socket, about 1 KB of live
context managers per hook per idle subscription (tracemalloc, bench/README.md). Parsing
and validation hooks end before execution starts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from graphql import ASTValidationRule
from strawberry.extensions import SchemaExtension


class MaxTokens(SchemaExtension):
    """graphql-core's parser stops (a syntax error) past ``max_token_count`` tokens.

    Must come before the extension that parses (CachedParse): hooks enter in list order.
    """

    def __init__(self, max_token_count: int) -> None:
        super().__init__()
        self._max_tokens = max_token_count

    def on_parse(self) -> Iterator[None]:
        self.execution_context.parse_options["max_tokens"] = self._max_tokens
        yield


class ExtraValidationRules(SchemaExtension):
    """Adds ``rules`` to the ones graphql-core validates every document with."""

    def __init__(self, rules: Sequence[type[ASTValidationRule]]) -> None:
        super().__init__()
        self._rules = tuple(rules)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = (*context.validation_rules, *self._rules)
        yield
