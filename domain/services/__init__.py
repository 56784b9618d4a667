"""Domain services, and the set of them the API layer is handed."""

from __future__ import annotations

from dataclasses import dataclass

from domain.services.accounts import AccountService
from domain.services.answers import AnswerService
from domain.services.chats import ChatService
from domain.services.documents import DocumentService
from domain.services.organizations import OrganizationService
from domain.services.search import SearchService


@dataclass(frozen=True, slots=True)
class Services:
    """The domain services resolvers may call, built by the composition root."""

    accounts: AccountService
    organizations: OrganizationService
    documents: DocumentService
    search: SearchService
    chats: ChatService
    answers: AnswerService
