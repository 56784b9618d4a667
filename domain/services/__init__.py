"""Domain services, and the set of them the API layer is handed."""

from __future__ import annotations

from dataclasses import dataclass

from domain.services.accounts import AccountService
from domain.services.documents import DocumentService
from domain.services.organizations import OrganizationService


@dataclass(frozen=True, slots=True)
class Services:
    """The domain services resolvers may call, built by the composition root."""

    accounts: AccountService
    organizations: OrganizationService
    documents: DocumentService
