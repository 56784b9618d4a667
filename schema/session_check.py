"""Re-check a WebSocket's token before each operation on it (log-out, removal, expiry)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension

from schema.context import Context


class RevalidateSocketSession(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if isinstance(context, Context):
            await context.revalidate_socket()
            # A socket's context lives as long as the connection; its loaders must not.
            context.reset_loaders()
        yield
