"""build_schema(): the Schema with limits, error codes and metrics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from schema.errors import ErrorCodes
from schema.mutation import Mutation
from schema.query import Query
from schema.session_check import RevalidateSocketSession
from schema.subscription import Subscription
from schema.subscription_transport import SubscriptionsOverWebSocket


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


def build_schema(
    limits: SchemaLimits | None = None,
    outer_extensions: Sequence[type[SchemaExtension]] = (),
) -> strawberry.Schema:
    """The schema; ``outer_extensions`` (metrics, logs) wrap the error-code extension."""
    limits = limits or SchemaLimits()
    # Factories, not instances: each operation gets fresh extension objects.
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        # Outermost first: outer extensions see the codes ErrorCodes assigned.
        *outer_extensions,
        ErrorCodes,
        RevalidateSocketSession,
        SubscriptionsOverWebSocket,
        partial(MaxTokensLimiter, max_token_count=limits.max_tokens),
        partial(QueryDepthLimiter, max_depth=limits.max_depth),
        partial(MaxAliasesLimiter, max_alias_count=limits.max_aliases),
    ]
    return QuietSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=True),
        extensions=extensions,
    )
