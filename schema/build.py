"""build_schema(): the Schema with limits, error codes and metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial

import strawberry
from graphql import ASTValidationRule, GraphQLError
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.types.base_scalars import DateTimeDefinition
from strawberry.types import ExecutionContext

from schema.errors import ErrorCodes
from schema.limit_extensions import ExtraValidationRules, MaxTokens
from schema.limits import document_limits_rule
from schema.mutation import Mutation
from schema.operation_cache import (
    CachedParse,
    CachedValidation,
    DocumentCache,
    MaxOperationLength,
    ValidTexts,
)
from schema.query import Query
from schema.session_check import RevalidateSocketSession
from schema.storable_text import RejectUnstorableText
from schema.subscription import Subscription
from schema.subscription_transport import SubscriptionsOverWebSocket

# strawberry's own DateTime (the same isoformat on the wire, the same parsing), described
# as what the server sends: every time is timezone-aware UTC, so isoformat() ends in +00:00.
DATE_TIME = replace(
    DateTimeDefinition,
    description="A date and time in ISO 8601 with an explicit UTC offset, always UTC "
    "(+00:00), e.g. 2026-01-31T09:30:00.123456+00:00 (no fraction when it is zero). "
    "Inputs need an offset too (Z or ±hh:mm, any zone).",
)


class QuietSchema(strawberry.Schema):
    """strawberry logs every error with the query text, which can hold passwords and
    tokens; ErrorCodes logs the unexpected ones (without variables) instead."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        return None


@dataclass(frozen=True, slots=True)
class SchemaLimits:
    max_depth: int = 12
    max_aliases: int = 20
    max_tokens: int = 2_000
    # Characters of an operation text (whitespace and string literals are cheap tokens).
    max_chars: int = 50_000
    # Off: introspection is refused and "Did you mean" hints are cut from errors.
    introspection: bool = True
    # Distinct operation texts whose parse and successful validation are remembered.
    validated_texts: int = 1_024
    # Estimated memory the parsed documents may hold.
    parsed_bytes: int = 32 * 1024 * 1024

    def document_cache(self) -> DocumentCache:
        return DocumentCache(self.validated_texts, self.parsed_bytes)


def build_schema(
    limits: SchemaLimits | None = None,
    outer_extensions: Sequence[type[SchemaExtension]] = (),
    documents: DocumentCache | None = None,
) -> strawberry.Schema:
    """The schema; ``outer_extensions`` (metrics, logs) wrap the error-code extension.

    ``documents`` is the parse cache, for callers that parse the same texts too.
    """
    limits = limits or SchemaLimits()
    documents = documents or limits.document_cache()
    rules: list[type[ASTValidationRule]] = [
        document_limits_rule(limits.max_depth, limits.max_aliases)
    ]
    if not limits.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    # Factories, not instances: each operation gets fresh extension objects. Only the
    # outer extensions and ErrorCodes hook the whole operation (a subscription's life):
    # the others act while the text is parsed or validated (schema/limit_extensions.py).
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        # Outermost first: outer extensions see the codes ErrorCodes assigned.
        *outer_extensions,
        partial(ErrorCodes, hide_suggestions=not limits.introspection),
        RevalidateSocketSession,
        SubscriptionsOverWebSocket,
        RejectUnstorableText,
        partial(MaxOperationLength, limits.max_chars),
        partial(MaxTokens, limits.max_tokens),
        partial(CachedParse, documents),
        partial(ExtraValidationRules, rules),
        partial(CachedValidation, ValidTexts(limits.validated_texts)),
    ]
    return QuietSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,
        scalar_overrides={datetime: DATE_TIME},
    )
