from __future__ import annotations

import strawberry

from domain.services.accounts import IssuedSession
from schema.types.organization import Organization
from schema.types.user import User


@strawberry.input
class SignUpInput:
    email: str
    password: str
    organization_name: str | None = None


@strawberry.input
class LogInInput:
    email: str
    password: str
    organization_id: strawberry.ID | None = None


@strawberry.type(description="Tokens for a session: send accessToken as a Bearer token.")
class AuthPayload:
    access_token: str
    refresh_token: str
    expires_in: int = strawberry.field(description="Seconds until the access token expires.")
    user: User
    organization: Organization

    @classmethod
    def from_domain(cls, session: IssuedSession) -> AuthPayload:
        # The nested fields answer as for the new session, not the request's token: a
        # refresh or log-in is sent without a valid one, and a switch with the old one.
        return cls(
            access_token=session.access_token,
            refresh_token=session.refresh_token,
            expires_in=session.expires_in,
            user=User.from_domain(session.user, session.principal),
            organization=Organization.from_domain(
                session.organization, session.role, session.principal
            ),
        )
