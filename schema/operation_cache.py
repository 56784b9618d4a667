"""Parsing and validating an operation text is done once: clients send the same few texts
again and again, and parsing and validating one cost more than running a small query.

Parsed documents are kept per (text, parse options) in a bounded LRU shared by all
requests (graphql-core never changes a document it executes). strawberry's own
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
from functools import lru_cache
from threading import Lock

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension


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


def document_cache(size: int) -> Callable[..., DocumentNode]:
    """graphql-core's parse behind an LRU of ``size`` documents."""
    return lru_cache(maxsize=size)(parse)


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
