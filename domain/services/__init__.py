"""Domain services, and the set of them the API layer is handed."""

from __future__ import annotations

from dataclasses import dataclass

from domain.entities import Principal
from domain.services.accounts import AccountService
from domain.services.answers import AnswerService
from domain.services.api_keys import ApiKeyService, is_api_key
from domain.services.audit import AuditService
from domain.services.chats import ChatService
from domain.services.documents import DocumentService
from domain.services.organizations import OrganizationService
from domain.services.passwords import PasswordService
from domain.services.search import SearchService


@dataclass(frozen=True, slots=True)
class Services:
    """The domain services resolvers may call, built by the composition root."""

    accounts: AccountService
    passwords: PasswordService
    organizations: OrganizationService
    documents: DocumentService
    search: SearchService
    chats: ChatService
    answers: AnswerService
    api_keys: ApiKeyService
    audit: AuditService

    async def authenticate(self, bearer: str) -> Principal:
        """The principal of a bearer credential: an API key ("kf_...") or an access token."""
        if is_api_key(bearer):
            return await self.api_keys.authenticate(bearer)
        return await self.accounts.authenticate(bearer)
