from __future__ import annotations

from datetime import datetime

import strawberry

from domain.entities import AuditRecord
from domain.services.cursors import encode_cursor
from schema.types.page_info import PageInfo


@strawberry.type(description="One key/value detail of an audit entry.")
class AuditDetail:
    key: str
    value: str


@strawberry.type(
    description=(
        "Who acted; both ids null for an operator's command (foundry create-account, "
        "reset-password)."
    )
)
class AuditActor:
    user_id: strawberry.ID | None
    email: str | None = strawberry.field(
        description="Null when the user is gone or no longer a member."
    )
    api_key_id: strawberry.ID | None


@strawberry.type(description="A sensitive action in your organisation (admins only).")
class AuditEntry:
    id: strawberry.ID
    action: str = strawberry.field(description="e.g. auth.login_succeeded, api_key.revoked.")
    actor: AuditActor
    target: str | None = strawberry.field(description="e.g. user:<id>, document:<id>.")
    ip: str | None
    details: list[AuditDetail]
    created_at: datetime

    @classmethod
    def from_domain(cls, record: AuditRecord) -> AuditEntry:
        key_id = record.details.get("api_key_id")
        return cls(
            id=strawberry.ID(str(record.id)),
            action=record.action,
            actor=AuditActor(
                user_id=strawberry.ID(str(record.actor_user_id)) if record.actor_user_id else None,
                email=record.actor_email,
                api_key_id=strawberry.ID(key_id) if key_id else None,
            ),
            target=record.target,
            ip=record.ip,
            details=[
                AuditDetail(key=key, value=value) for key, value in sorted(record.details.items())
            ],
            created_at=record.created_at,
        )


@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntry

    @classmethod
    def from_domain(cls, record: AuditRecord) -> AuditEntryEdge:
        return cls(
            cursor=encode_cursor(record.created_at, record.id), node=AuditEntry.from_domain(record)
        )


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo
