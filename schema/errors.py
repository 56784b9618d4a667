"""Turn every GraphQL error into one with a registry code; mask the unexpected ones."""

from __future__ import annotations

import re
from collections.abc import Iterator

import structlog
from graphql import GraphQLError
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import StreamExecutionResult

from domain.errors import DomainError, ErrorCode

log = structlog.get_logger("foundry.graphql")

MASKED_MESSAGE = "Unexpected error."

# strawberry's refusals of a request that names nothing it can run (no query, an unknown
# operationName, an operation type the transport does not allow). Over HTTP the view
# answers them 400; over a WebSocket they arrive as errors of the operation.
_REQUEST_ERRORS = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)

# Messages of strawberry's limiters and graphql-core's parser, mapped to codes.
_MESSAGE_CODES: tuple[tuple[re.Pattern[str], ErrorCode], ...] = (
    (re.compile(r"exceeds maximum operation depth"), ErrorCode.QUERY_TOO_DEEP),
    (re.compile(r"aliases found\. Allowed"), ErrorCode.TOO_MANY_ALIASES),
    (re.compile(r"Document contains more than \d+ tokens"), ErrorCode.TOO_MANY_TOKENS),
    (re.compile(r"^Syntax Error"), ErrorCode.GRAPHQL_PARSE_FAILED),
)


# graphql-core's "Did you mean 'email'?" hints name fields, types and enum values.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")


def without_suggestions(error: GraphQLError) -> GraphQLError:
    """The error without schema hints, for deployments that hide the schema."""
    message = _SUGGESTION.sub("", error.message)
    return error if message == error.message else _with(error, message, error.extensions or {})


def code_for_validation_message(message: str) -> ErrorCode:
    for pattern, code in _MESSAGE_CODES:
        if pattern.search(message):
            return code
    return ErrorCode.GRAPHQL_VALIDATION_FAILED


def classify(error: GraphQLError, request_id: str) -> GraphQLError:
    """The error as the client should see it, with ``extensions.code`` set."""
    original = error.original_error
    if isinstance(original, DomainError):
        extensions: dict[str, object] = {"code": original.code.value, **original.details}
        return _with(error, original.message, extensions)
    if original is None:
        code = (error.extensions or {}).get("code") or code_for_validation_message(error.message)
        return _with(error, error.message, {**(error.extensions or {}), "code": str(code)})
    if isinstance(original, _REQUEST_ERRORS):
        return _with(error, error.message, {"code": ErrorCode.BAD_REQUEST.value})
    if isinstance(original, GraphQLError) and original.original_error is None:
        # Errors strawberry raises itself (e.g. argument coercion) are safe to show.
        code = code_for_validation_message(original.message)
        return _with(error, original.message, {"code": code.value})
    log.error(
        "graphql.unexpected_error",
        request_id=request_id,
        path=list(error.path or []),
        exc_info=(type(original), original, original.__traceback__),
    )
    return _with(error, MASKED_MESSAGE, {"code": ErrorCode.INTERNAL.value, "requestId": request_id})


def _with(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions=extensions,
    )


def first_error_code(errors: list[GraphQLError] | None) -> str:
    if not errors:
        return "ok"
    return str((errors[0].extensions or {}).get("code", ErrorCode.INTERNAL.value))


class ErrorCodes(SchemaExtension):
    """Classifies errors of HTTP results (on_operation) and of each result streamed over
    a WebSocket (on_stream_result), once each."""

    def __init__(self, hide_suggestions: bool = False) -> None:
        self._streamed = False
        self._hide_suggestions = hide_suggestions

    def on_operation(self) -> Iterator[None]:
        yield
        if not self._streamed:
            self._classify(self.execution_context.result)

    def on_stream_result(self, result: StreamExecutionResult) -> Iterator[None]:
        self._streamed = True
        self._classify(result)
        yield

    def _classify(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            request_id = getattr(self.execution_context.context, "request_id", "-")
            classified = [
                error if _is_classified(error) else classify(error, request_id) for error in errors
            ]
            if self._hide_suggestions:
                classified = [without_suggestions(error) for error in classified]
            result.errors = classified  # type: ignore[attr-defined]


def _is_classified(error: GraphQLError) -> bool:
    """Already passed through classify() (a streamed result can be seen twice)."""
    return error.original_error is None and "code" in (error.extensions or {})
