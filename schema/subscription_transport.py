"""Subscriptions run over WebSocket only.

strawberry would otherwise execute a subscription sent as a plain HTTP request
like a query, whose field cannot produce a single value (a masked INTERNAL
error for the client); refusing it early gives a code that says what to do.
"""

from __future__ import annotations

from collections.abc import Iterator

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from domain.errors import ErrorCode
from schema.context import Context

MESSAGE = "Subscriptions run over a WebSocket at /graphql (graphql-transport-ws or graphql-ws)."


class SubscriptionsOverWebSocket(SchemaExtension):
    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        if (
            execution.operation_type is OperationType.SUBSCRIPTION
            and isinstance(context, Context)
            and not context.over_websocket
        ):
            # Set before validation runs: strawberry then skips it and reports this.
            execution.pre_execution_errors = [
                GraphQLError(MESSAGE, extensions={"code": ErrorCode.WEBSOCKET_REQUIRED.value})
            ]
        yield
