"""Refuse text that PostgreSQL cannot store, in any input a request carries.

PostgreSQL text holds neither U+0000 nor a lone UTF-16 surrogate (U+D800-U+DFFF,
which JSON can spell as ``"\\ud800"`` and Python decodes without complaint). Either
in any input (a chat title, a question, a search query, an email, a password) would
otherwise fail deep inside a query, a hash or a rate-limit key and reach the client
as INTERNAL. Checking the variables and the document's string literals once, before
validation, covers every field and answers with VALIDATION_FAILED. graphql-core's
lexer already refuses surrogates in literals, so only a NUL is looked for there.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from graphql import DocumentNode, GraphQLError, StringValueNode, Visitor, visit
from strawberry.extensions import SchemaExtension

from domain.errors import ErrorCode

NUL = "\x00"
NUL_MESSAGE = "Text must not contain NUL characters (U+0000)."
SURROGATE_MESSAGE = "Text must not contain lone surrogate code points (U+D800 to U+DFFF)."


def text_problem(value: object) -> str | None:
    """Why ``value`` (a string, or one inside mappings and lists) cannot be stored."""
    if isinstance(value, str):
        if NUL in value:
            return NUL_MESSAGE
        if not value.isascii():
            try:
                value.encode()
            except UnicodeEncodeError:
                return SURROGATE_MESSAGE
        return None
    if isinstance(value, Mapping):
        items: Iterable[object] = value.values()
    elif isinstance(value, list | tuple):
        items = value
    else:
        return None
    return next((problem for item in items if (problem := text_problem(item))), None)


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


class RejectUnstorableText(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        document = execution.graphql_document
        problem = text_problem(execution.variables)
        if (
            problem is None
            and document is not None
            and literals_may_hold_nul(execution.query)
            and document_holds_nul(document)
        ):
            problem = NUL_MESSAGE
        if problem is not None:
            # Set before validation runs: strawberry then skips it and reports this.
            execution.pre_execution_errors = [
                GraphQLError(problem, extensions={"code": ErrorCode.VALIDATION_FAILED.value})
            ]
        yield
