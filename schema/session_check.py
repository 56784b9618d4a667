"""Re-check a WebSocket's token before each operation on it (log-out, removal, expiry).

It runs as the operation's text is parsed, its first step: a parsing hook ends there,
while an operation hook would stay entered for a subscription's whole life.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from strawberry.extensions import SchemaExtension

from schema.context import Context


class RevalidateSocketSession(SchemaExtension):
    async def on_parse(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if isinstance(context, Context):
            await context.revalidate_socket()
            # A socket's context lives as long as the connection; its loaders must not.
            context.reset_loaders()
        yield
