"""The typed GraphQL context: who is calling, the services, per-request DataLoaders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar
from uuid import UUID

from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from domain.chats.entities import MessagePage
from domain.entities import Document, Organization, Principal, User
from domain.errors import DomainError, Unauthenticated
from domain.ports import Budget, RateLimiter
from domain.services import Services
from domain.services.accounts import RequestOrigin

T = TypeVar("T")


@dataclass
class Context:
    services: Services
    request_id: str
    client_ip: str | None
    rate_limiter: RateLimiter
    principal: Principal | None = None
    auth_error: DomainError | None = None
    # The bearer token a WebSocket authenticated with, re-checked while it stays open.
    socket_token: str | None = None
    # time.monotonic() when the check whose outcome ``principal`` holds began: a session
    # notice heard from then on may not be reflected in it.
    authenticated_at: float = 0.0
    # Filled by strawberry from the WebSocket connection_init payload.
    connection_params: dict[str, object] | None = None
    operation_name: str | None = field(default=None)
    over_websocket: bool = False
    # The socket's slot of the user's open-connections budget, released when it closes.
    socket_slot: AbstractAsyncContextManager[None] | None = None
    # Set when the HTTP client hangs up (plain POSTs): see unless_client_leaves.
    client_gone: asyncio.Event | None = None

    @property
    def origin(self) -> RequestOrigin:
        return RequestOrigin(ip=self.client_ip)

    async def authenticate(self, token: str) -> None:
        """Check ``token`` and keep the outcome, unless a check begun later has already
        kept its own. A socket's operations share this context and may check at once:
        ``authenticated_at`` only moves with the outcome it dates, so a stream that
        reads it while a check is under way still sees a session notice heard since the
        principal it reads was checked, and an older check that ends last cannot put
        back a principal that a newer one found revoked."""
        started = time.monotonic()
        principal: Principal | None = None
        error: DomainError | None = None
        try:
            principal = await self.services.authenticate(token)
        except DomainError as exc:  # SERVICE_UNAVAILABLE too: protected fields report it
            error = exc
        if started < self.authenticated_at:
            return
        self.principal, self.auth_error, self.authenticated_at = principal, error, started

    async def revalidate_socket(self) -> None:
        """A socket outlives log-outs, removals and token expiry: check again."""
        if self.socket_token is not None:
            await self.authenticate(self.socket_token)

    async def release_socket_slot(self) -> None:
        """Give the socket's connection slot back, once: when the socket closes, or as
        soon as its session is found ended (the socket serves nothing more meanwhile)."""
        slot, self.socket_slot = self.socket_slot, None
        if slot is not None:
            await slot.__aexit__(None, None, None)

    async def keep_session(self, principal: Principal, recheck_seconds: float) -> None:
        """For a stream that outlives its start (document events, an answer): check the
        socket's session again when this process heard it was revoked or changed, or once
        ``recheck_seconds`` have passed, and end the stream (Unauthenticated) once it is
        no longer ``principal``'s session in ``principal``'s organisation."""
        checked = self.authenticated_at
        if (
            self.principal is None
            or time.monotonic() - checked >= recheck_seconds
            or self.services.accounts.session_changed_since(principal.session_id, checked)
        ):
            await self.revalidate_socket()
        current = self.require_principal()
        if (current.session_id, current.organization_id) != (
            principal.session_id,
            principal.organization_id,
        ):
            raise Unauthenticated("The socket's session changed; subscribe again.")

    async def end_if_signed_out(self, principal: Principal) -> None:
        """For an answer under way: end it (Unauthenticated) once this process heard that
        its socket's session was logged out or its user removed. Whatever else a check
        may find (a changed role, which wants a refresh; the token expiring meanwhile;
        Redis down) lets the answer finish: it was allowed when it began, and takes a
        minute or two at most."""
        if self.principal is None and isinstance(self.auth_error, Unauthenticated):
            # Another operation on the socket checked it since the notice and found the
            # session gone: that check moved authenticated_at past the notice.
            raise Unauthenticated("The session ended while the answer was being written.")
        accounts = self.services.accounts
        if not accounts.session_changed_since(principal.session_id, self.authenticated_at):
            return
        await self.revalidate_socket()
        if isinstance(self.auth_error, Unauthenticated):
            raise Unauthenticated("The session ended while the answer was being written.")

    async def unless_client_leaves(self, work: Coroutine[object, object, T]) -> T:
        """``work``, stopped when the HTTP client hangs up (:func:`unless_set`). Opt-in for
        work that only the client needs (an answer being generated): a mutation with work
        after its commit must run to its end whoever is still listening."""
        return await unless_set(self.client_gone, work)

    async def charge_user(self, budget: Budget) -> Principal:
        """The caller, once one unit of their own ``budget`` is spent (RateLimited when
        it is spent already)."""
        principal = self.require_principal()
        await self.rate_limiter.hit(budget, str(principal.user_id), principal.role)
        return principal

    def require_principal(self) -> Principal:
        if self.principal is not None:
            return self.principal
        raise self.auth_error or Unauthenticated()

    @cached_property
    def loaders(self) -> Loaders:
        return Loaders(self)

    def reset_loaders(self) -> None:
        """Fresh DataLoaders for the next operation on this (WebSocket) context."""
        self.__dict__.pop("loaders", None)


async def unless_set(event: asyncio.Event | None, work: Coroutine[object, object, T]) -> T:
    """``work``'s result; or, when ``event`` is set first, ``work`` cancelled (its own
    clean-up run) and CancelledError, which the view answers nobody. Cancelling the
    caller (a shutdown) cancels ``work`` too, and waits for its clean-up."""
    if event is None:
        return await work
    task = asyncio.ensure_future(work)
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        await asyncio.wait((task,))
        raise
    finally:
        waiter.cancel()
    if not task.done():
        task.cancel()
        await asyncio.wait((task,))
        raise asyncio.CancelledError("the client disconnected")
    return task.result()


MessagePageKey = tuple[UUID, int, str | None]
"""A chat id with the page arguments (first, after)."""


class Loaders:
    """DataLoaders live for one request; a process-wide loader would be a cache bug."""

    def __init__(self, context: Context) -> None:
        self._context = context
        self.user = DataLoader[UUID, User | None](load_fn=self._load_users)
        self.organization = DataLoader[UUID, Organization | None](load_fn=self._load_organizations)
        self.document = DataLoader[UUID, Document | None](load_fn=self._load_documents)
        self.messages = DataLoader[MessagePageKey, MessagePage](load_fn=self._load_messages)

    async def _load_users(self, ids: list[UUID]) -> list[User | None]:
        principal = self._context.require_principal()
        return await self._context.services.organizations.users_by_id(principal, ids)

    async def _load_documents(self, ids: list[UUID]) -> list[Document | None]:
        principal = self._context.require_principal()
        found = await self._context.services.documents.get_many(principal, ids)
        by_id = {document.id: document for document in found}
        return [by_id.get(document_id) for document_id in ids]

    async def _load_messages(self, keys: list[MessagePageKey]) -> list[MessagePage]:
        """Chats listed together share (first, after): one query per distinct pair."""
        principal = self._context.require_principal()
        pages: dict[MessagePageKey, MessagePage] = {}
        groups: dict[tuple[int, str | None], list[UUID]] = {}
        for chat_id, first, after in keys:
            groups.setdefault((first, after), []).append(chat_id)
        for (first, after), chat_ids in groups.items():
            found = await self._context.services.chats.messages(principal, chat_ids, first, after)
            for chat_id, page in found.items():
                pages[(chat_id, first, after)] = page
        return [pages[key] for key in keys]

    async def _load_organizations(self, ids: list[UUID]) -> list[Organization | None]:
        principal = self._context.require_principal()
        return await self._context.services.organizations.organizations_by_id(principal, ids)


Info = StrawberryInfo[Context, None]
