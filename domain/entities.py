"""Plain dataclasses carried between layers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from uuid import UUID


class Role(StrEnum):
    VIEWER = "viewer"
    EDITOR = "editor"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def allows(self, required: Role) -> bool:
        """True when this role is at least as strong as ``required``."""
        return self.rank >= required.rank


_ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True, slots=True)
class User:
    id: UUID
    email: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserCredentials:
    user: User
    password_hash: str


@dataclass(frozen=True, slots=True)
class Organization:
    id: UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Membership:
    user_id: UUID
    organization_id: UUID
    role: Role
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrganizationMembership:
    """An organisation seen through one user's membership (their role in it)."""

    organization: Organization
    role: Role


@dataclass(frozen=True, slots=True)
class Member:
    """A user seen as a member of the current organisation."""

    user: User
    role: Role
    joined_at: datetime


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from an access token for every request."""

    user_id: UUID
    organization_id: UUID
    role: Role
    session_id: UUID
    # Set when an API key authenticated the request. A key has no user: user_id and
    # session_id then hold the key's id (matching no user row, so user-owned rows
    # such as chats stay invisible) and actor_user_id is None.
    api_key_id: UUID | None = None

    @property
    def actor_user_id(self) -> UUID | None:
        """The user behind the request, for authorship and audit; None for an API key."""
        return None if self.api_key_id is not None else self.user_id


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    id: UUID
    user_id: UUID
    organization_id: UUID
    family_id: UUID
    session_started_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None
    # The session this one was switched from (switchOrganization), if any.
    previous_family_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    expires_in: int


@dataclass(frozen=True, slots=True)
class AuthSession:
    """What a successful sign-up, log-in or refresh hands back."""

    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    organization: Organization
    role: Role


@dataclass(frozen=True, slots=True)
class AuditEntry:
    action: str
    organization_id: UUID | None
    actor_user_id: UUID | None
    target: str | None = None
    ip: str | None = None
    details: dict[str, str] | None = None


class DocumentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Document:
    id: UUID
    organization_id: UUID
    uploaded_by: UUID | None
    filename: str
    mime_type: str
    size_bytes: int
    sha256: str
    storage_key: str
    status: DocumentStatus
    error_code: str | None
    page_count: int | None
    chunk_count: int
    attempts: int
    created_at: datetime
    updated_at: datetime
    processed_at: datetime | None


@dataclass(frozen=True, slots=True)
class DocumentEvent:
    """A change of one document, published to every API process by the workers."""

    document: Document
    progress: float | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """Extracted text of one page (``number`` is None for formats without pages)."""

    number: int | None
    text: str


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    pages: list[Page]
    page_count: int | None

    @property
    def char_count(self) -> int:
        return sum(len(page.text) for page in self.pages)


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk before it is stored: offsets index the document's joined page texts."""

    ordinal: int
    text: str
    page: int | None
    char_start: int
    char_end: int
    token_count: int


@dataclass(frozen=True, slots=True)
class DocumentPage:
    """One page of a Relay-style listing."""

    items: list[Document]
    has_next_page: bool
    total_count: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A server-to-server credential of one organisation; only its SHA-256 is stored."""

    id: UUID
    organization_id: UUID
    created_by: UUID | None
    name: str
    key_prefix: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A new key with its plaintext, which is shown this once and never again."""

    key: str
    api_key: ApiKey


@dataclass(frozen=True, slots=True)
class ApiKeyPage:
    items: list[ApiKey]
    has_next_page: bool
    total_count: int


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit log entry, as admins read it."""

    id: UUID
    action: str
    actor_user_id: UUID | None
    actor_email: str | None
    target: str | None
    ip: str | None
    details: dict[str, str]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditPage:
    items: list[AuditRecord]
    has_next_page: bool
