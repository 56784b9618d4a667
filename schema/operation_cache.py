"""Parsing and validating an operation text is done once: clients send the same few texts
again and again, and parsing and validating one cost more than running a small query.

Parsed documents are kept per (text, parse options) in an LRU shared by all requests
(graphql-core never changes a document it executes), bounded both in entries and in
memory: a parsed document keeps every token of its text (~620 bytes each), so 1,024
documents of 2,000 tokens would hold 1.2 GB, and anyone, signed in or not, chooses the
texts. Texts longer than the schema's limit are refused before they are parsed
(``MaxOperationLength``): whitespace and string literals cost no tokens, so the token
limit alone does not bound the work of reading a text. strawberry's own
ParserCache does the same but lets a parse error escape its error handling (the
error loses its code); here a text that fails to parse is left to strawberry, which
parses it again and reports the error as usual.

strawberry's ValidationCache keys on the parsed document object, which is new for
every request, so it never hits here; this one keys on the operation text. Only
texts that validated without errors are remembered (an invalid one is validated
again, and its errors are built fresh each time). Every validation rule here is a
pure function of the text and the schema, the limiters included (their limits are
fixed when the schema is built), so a text that was valid stays valid.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import suppress
from threading import Lock

from graphql import (
    DocumentNode,
    GraphQLError,
    NameNode,
    OperationDefinitionNode,
    OperationType,
    parse,
)
from strawberry.extensions import SchemaExtension

from domain.errors import ErrorCode

# Measured with tracemalloc: a parsed document of 2,000 tokens retains ~1.24 MB.
BYTES_PER_TOKEN = 640
_PLACEHOLDER = parse("{ __typename }")


def placeholder(operation_name: str | None) -> DocumentNode:
    """A document standing in for a refused text: it holds an operation of the requested
    name, so strawberry finds the operation the client asked for and reports the refusal
    (not "Unknown operation named ...")."""
    if operation_name is None:
        return _PLACEHOLDER
    (anonymous,) = _PLACEHOLDER.definitions
    assert isinstance(anonymous, OperationDefinitionNode)
    named = OperationDefinitionNode(
        operation=OperationType.QUERY,
        name=NameNode(value=operation_name),
        variable_definitions=(),
        directives=(),
        selection_set=anonymous.selection_set,
    )
    return DocumentNode(definitions=(named,))


class MaxOperationLength(SchemaExtension):
    """Refuses operation texts over ``max_chars`` characters before anything parses them.

    An exception raised while parsing escapes strawberry's subscription path, so the
    text is replaced by a placeholder document (nothing parses the real one) and the
    refusal is reported as a pre-execution error, like a validation error.
    """

    def __init__(self, max_chars: int) -> None:
        super().__init__()
        self._max_chars = max_chars
        self._refusal: GraphQLError | None = None

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        text = context.query
        if text is not None and len(text) > self._max_chars:
            self._refusal = GraphQLError(
                f"The operation text is {len(text)} characters long; "
                f"the limit is {self._max_chars}.",
                extensions={"code": ErrorCode.REQUEST_TOO_LARGE.value, "maxChars": self._max_chars},
            )
            context.graphql_document = placeholder(context.operation_name)
        yield

    def on_validate(self) -> Iterator[None]:
        if self._refusal is not None:
            # Set before validation runs: strawberry then skips it and reports this.
            self.execution_context.pre_execution_errors = [self._refusal]
        yield


class CachedParse(SchemaExtension):
    """Parses each distinct text once (pass a factory per schema, sharing ``parse``)."""

    def __init__(self, parse: Callable[..., DocumentNode]) -> None:
        super().__init__()
        self._parse = parse

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query is not None and context.graphql_document is None:
            # On an error strawberry parses the text again and reports it with its code.
            with suppress(GraphQLError):
                context.graphql_document = self._parse(context.query, **context.parse_options)
        yield


def retained_bytes(text: str, document: DocumentNode) -> int:
    """An estimate of the memory ``document`` keeps: its text and its chain of tokens."""
    tokens = 0
    token = document.loc.start_token if document.loc is not None else None
    while token is not None:
        tokens += 1
        token = token.next
    return len(text) + BYTES_PER_TOKEN * max(tokens, 1)


class DocumentCache:
    """graphql-core's parse behind an LRU of at most ``entries`` documents and an estimated
    ``budget_bytes`` of memory; a document costing more than a sixteenth of the budget is
    parsed every time rather than pushing out many small ones."""

    def __init__(self, entries: int, budget_bytes: int) -> None:
        self._entries = entries
        self._budget = budget_bytes
        self._held = 0
        self._documents: OrderedDict[tuple[str, tuple[tuple[str, object], ...]], DocumentNode] = (
            OrderedDict()
        )
        self._costs: dict[tuple[str, tuple[tuple[str, object], ...]], int] = {}
        self._lock = Lock()

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._documents)

    def __call__(self, text: str, **options: object) -> DocumentNode:
        key = (text, tuple(sorted(options.items())))
        with self._lock:
            found = self._documents.get(key)
            if found is not None:
                self._documents.move_to_end(key)
                return found
        document = parse(text, **options)  # type: ignore[arg-type]  # parse's own options
        cost = retained_bytes(text, document)
        if cost > self._budget // 16:
            return document
        with self._lock:
            if key not in self._documents:
                self._documents[key] = document
                self._costs[key] = cost
                self._held += cost
            while len(self._documents) > self._entries or self._held > self._budget:
                old, _ = self._documents.popitem(last=False)
                self._held -= self._costs.pop(old)
        return document


class ValidTexts:
    """A bounded LRU set of digests of operation texts that passed validation."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._digests: OrderedDict[bytes, None] = OrderedDict()
        self._lock = Lock()

    @staticmethod
    def digest(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()

    def __contains__(self, digest: bytes) -> bool:
        with self._lock:
            if digest not in self._digests:
                return False
            self._digests.move_to_end(digest)
            return True

    def add(self, digest: bytes) -> None:
        with self._lock:
            self._digests[digest] = None
            self._digests.move_to_end(digest)
            while len(self._digests) > self._size:
                self._digests.popitem(last=False)


class CachedValidation(SchemaExtension):
    """Skips validation of a text that validated before (pass a factory per schema)."""

    def __init__(self, valid: ValidTexts) -> None:
        super().__init__()
        self._valid = valid

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        text = context.query
        digest = ValidTexts.digest(text) if text is not None else None
        if context.pre_execution_errors is None and digest is not None and digest in self._valid:
            # strawberry validates only while pre_execution_errors is None (an extension
            # that found errors of its own, in the variables say, has set them).
            context.pre_execution_errors = []
        yield
        if digest is not None and context.pre_execution_errors == []:
            self._valid.add(digest)
