"""Refuse NUL characters in any text a request carries.

PostgreSQL text cannot hold U+0000, so a NUL in any input (a chat title, a question,
a search query, an audit filter) would otherwise fail deep inside a query and reach
the client as INTERNAL. Checking the variables and the document's string literals
once, before validation, covers every field and answers with VALIDATION_FAILED.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

from domain.errors import ErrorCode

NUL = "\x00"
MESSAGE = "Text must not contain NUL characters (U+0000)."


def holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, Mapping):
        return any(holds_nul(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    return False


class _NulLiteralFinder(Visitor):
    found = False

    def enter_string_value(self, node: StringValueNode, *_args: Any) -> None:
        if NUL in node.value:
            self.found = True


def literals_may_hold_nul(text: str | None) -> bool:
    """False when no string literal of ``text`` can hold U+0000: graphql-core reads one
    only from a raw NUL or a ``\\u`` escape (block strings have no such escapes), so most
    operations skip walking their document (~0.1 ms each)."""
    return text is None or NUL in text or "\\u" in text


def document_holds_nul(document: DocumentNode) -> bool:
    finder = _NulLiteralFinder()
    visit(document, finder)
    return finder.found


class RejectNulText(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        if holds_nul(execution.variables) or (
            document is not None
            and literals_may_hold_nul(execution.query)
            and document_holds_nul(document)
        ):
            # Set before validation runs: strawberry then skips it and reports this.
            execution.pre_execution_errors = [
                GraphQLError(MESSAGE, extensions={"code": ErrorCode.VALIDATION_FAILED.value})
            ]
        yield
