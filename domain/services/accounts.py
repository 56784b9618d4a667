"""Sign-up, log-in, refresh-token rotation and log-out."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NoReturn
from uuid import UUID, uuid4

from domain.entities import (
    AuditEntry,
    AuthSession,
    Membership,
    Organization,
    OrganizationMembership,
    Principal,
    RefreshTokenRecord,
    Role,
    User,
    UserCredentials,
)
from domain.errors import (
    EmailTaken,
    Forbidden,
    InvalidCredentials,
    InvalidRefreshToken,
    NotFound,
    RefreshTokenReused,
    SignUpClosed,
    ValidationFailed,
)
from domain.ports import (
    AccessTokenCodec,
    Clock,
    PasswordHasher,
    SessionRevocations,
    UnitOfWork,
    UnitOfWorkFactory,
)
from domain.validation import check_password_policy, clean_name, normalize_email

MAX_REFRESH_TOKEN_LENGTH = 200
# How often log_in verifies again when the stored hash changed while it verified.
_LOG_IN_ATTEMPTS = 3


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are 256-bit random strings, so a fast hash is enough at rest."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class IssuedSession(AuthSession):
    """A session just started, with the principal its access token carries: what the
    rest of the request answers for it (its user's organisations, its organisation's
    members) is answered as for that session, not for whatever token the request sent."""

    principal: Principal


@dataclass(frozen=True, slots=True)
class _Verified:
    """The stored hash a password matched, and its replacement when it wants a rehash."""

    verified_hash: str
    new_hash: str | None


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    """What an operator's `foundry create-account` made: the account, and the
    organisation (new, or the one named) it is a member of, with its role there."""

    user_id: UUID
    email: str
    organization_id: UUID
    organization_name: str
    role: Role


# Audit details of what an operator did from the command line (no user is the actor).
_BY_OPERATOR = {"by": "operator"}


@dataclass(frozen=True, slots=True)
class RequestOrigin:
    """Where a request came from, for the audit log."""

    ip: str | None = None


def _personal_organization_name(email: str, organization_name: str | None) -> str:
    """The name asked for, or the default: "<local part of the email>'s organisation"."""
    return clean_name(
        organization_name
        if organization_name is not None
        else f"{email.split('@', maxsplit=1)[0]}'s organisation",
        "organizationName",
    )


async def _add_account(uow: UnitOfWork, user: User, password_hash: str) -> None:
    """``user``, new, in ``uow``, not committed; EmailTaken when its email is used (seen
    here, or an account added meanwhile, which the unique email refuses)."""
    if await uow.users.find_by_email(user.email) is not None:
        raise EmailTaken()
    await uow.users.add(user, password_hash)


async def _found_organization(
    uow: UnitOfWork,
    user: User,
    name: str,
    *,
    action: str,
    origin: RequestOrigin,
    now: datetime,
    by_operator: bool = False,
) -> Organization:
    """A new organisation named ``name`` with ``user`` as its admin, audited in it as
    ``action`` (``auth.sign_up``, or ``auth.organization_created`` for a log-in of a
    user left in no organisation); in ``uow``, not committed. ``by_operator``: an
    operator made the account (`foundry create-account`), so the entry has no actor
    and says ``by: operator``."""
    organization = Organization(id=uuid4(), name=name, created_at=now)
    await uow.organizations.add(organization)
    await uow.memberships.add(Membership(user.id, organization.id, Role.ADMIN, now))
    await uow.audit.record(
        AuditEntry(
            action,
            organization.id,
            None if by_operator else user.id,
            target=f"user:{user.id}",
            ip=origin.ip,
            details=dict(_BY_OPERATOR) if by_operator else None,
        ),
        now,
    )
    return organization


class AccountService:
    """Accounts and sessions; the only place that issues tokens."""

    def __init__(
        self,
        *,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        tokens: AccessTokenCodec,
        revocations: SessionRevocations,
        clock: Clock,
        refresh_token_ttl: timedelta,
        session_max_age: timedelta,
        signup_open: bool = True,
    ) -> None:
        self._uow_factory = uow_factory
        self._hasher = hasher
        self._tokens = tokens
        self._revocations = revocations
        self._clock = clock
        self._refresh_ttl = refresh_token_ttl
        self._session_max_age = session_max_age
        self._signup_open = signup_open

    async def sign_up(
        self, email: str, password: str, organization_name: str | None, origin: RequestOrigin
    ) -> IssuedSession:
        """A new account, as the admin of a new organisation, with a session in it.

        Closed sign-up (FOUNDRY_SIGNUP=closed) refuses every request the same way, before
        anything is read or hashed: nothing is written, and it tells nobody whether an
        email has an account."""
        if not self._signup_open:
            raise SignUpClosed()
        email = normalize_email(email)
        check_password_policy(password, email)
        name = _personal_organization_name(email, organization_name)
        password_hash = await self._hasher.hash(password)
        now = self._clock.now()
        user = User(id=uuid4(), email=email, created_at=now)
        async with self._uow_factory.system() as uow:
            await _add_account(uow, user, password_hash)
            organization = await _found_organization(
                uow, user, name, action="auth.sign_up", origin=origin, now=now
            )
            session = await self._start_session(uow, user, organization, Role.ADMIN, uuid4(), now)
            await uow.commit()
        return session

    async def create_by_operator(
        self,
        email: str,
        password: str,
        *,
        organization_id: UUID | None = None,
        role: Role | None = None,
        organization_name: str | None = None,
    ) -> CreatedAccount:
        """An operator's new account (`foundry create-account`), whatever FOUNDRY_SIGNUP
        says: closed sign-up leaves this as the way in. No session is issued.

        Without ``organization_id``, what sign_up makes: the account and a new
        organisation it administers (named as sign-up names it), audited in it as
        ``auth.sign_up`` with no actor and ``by: operator``. With it, the account joins
        that organisation with ``role`` (VIEWER unless given) and no organisation of its
        own, so its log-in lands there; audited there as ``member.added`` with no actor,
        as add_member records it, and ``by: operator``.

        The email and password follow the sign-up rules (ValidationFailed,
        WeakPassword); a used email is EmailTaken, an unknown organisation NotFound.
        Every refusal writes nothing: it is one transaction."""
        if organization_id is None and role is not None:
            raise ValidationFailed("A role needs an organisation to hold it in.", field="role")
        if organization_id is not None and organization_name is not None:
            raise ValidationFailed(
                "An existing organisation keeps its name.", field="organizationName"
            )
        email = normalize_email(email)
        check_password_policy(password, email)
        # The organisation to join, or the name of the one to found (checked before
        # argon2 runs, as sign-up checks it).
        joins: UUID | str = (
            organization_id
            if organization_id is not None
            else _personal_organization_name(email, organization_name)
        )
        password_hash = await self._hasher.hash(password)
        now = self._clock.now()
        user = User(id=uuid4(), email=email, created_at=now)
        async with self._uow_factory.system() as uow:
            await _add_account(uow, user, password_hash)
            if isinstance(joins, UUID):
                role = role or Role.VIEWER
                organization = await self._join(uow, user, joins, role)
            else:
                organization = await _found_organization(
                    uow,
                    user,
                    joins,
                    action="auth.sign_up",
                    origin=RequestOrigin(),
                    now=now,
                    by_operator=True,
                )
                role = Role.ADMIN
            await uow.commit()
        return CreatedAccount(user.id, email, organization.id, organization.name, role)

    @staticmethod
    async def _join(uow: UnitOfWork, user: User, organization_id: UUID, role: Role) -> Organization:
        """``user``, just added, made a member of the existing organisation with ``role``,
        audited as add_member audits it but with no actor; in ``uow``, not committed."""
        # Locked as add_member locks it: membership changes of the organisation take turns.
        await uow.organizations.lock(organization_id)
        organization = await uow.organizations.get(organization_id)
        if organization is None:
            raise NotFound(f"No organisation has the id {organization_id}.")
        await uow.memberships.add(Membership(user.id, organization.id, role, user.created_at))
        await uow.audit.record(
            AuditEntry(
                "member.added",
                organization.id,
                None,
                target=f"user:{user.id}",
                details={"role": role.value, **_BY_OPERATOR},
            ),
            user.created_at,
        )
        return organization

    async def log_in(
        self,
        email: str,
        password: str,
        organization_id: UUID | None,
        origin: RequestOrigin,
        *,
        charge_new_organization: Callable[[], Awaitable[None]] | None = None,
    ) -> IssuedSession:
        """Argon2 runs with no connection held: a burst of wrong passwords must not keep
        the pool's connections (and transactions) open while it hashes. The transaction
        that starts the session reads the hash again, and a hash changed meanwhile (a
        concurrent log-in's rehash, a new password) is verified again.

        ``charge_new_organization`` runs before a log-in makes a personal organisation
        (see _open_session), so that it costs what a sign-up does; what it raises
        (RateLimited) refuses the log-in, and nothing is written."""
        try:
            email = normalize_email(email)
        except ValidationFailed:
            await self._hasher.verify_dummy(password)
            raise InvalidCredentials() from None
        async with self._uow_factory.system() as uow:
            credentials = await uow.users.find_credentials(email)
        for _ in range(_LOG_IN_ATTEMPTS):
            verified = await self._verify(email, password, credentials, origin)
            async with self._uow_factory.system() as uow:
                # Locked: a password change committing meanwhile either waits for this
                # session (and ends it with the others) or is seen here, before it starts.
                current = await uow.users.find_credentials(email, lock=True)
                if current is not None and current.password_hash == verified.verified_hash:
                    return await self._open_session(
                        uow,
                        current.user,
                        verified.new_hash,
                        organization_id,
                        origin,
                        charge_new_organization=charge_new_organization,
                    )
            credentials = current
        async with self._uow_factory.system() as uow:
            await self._refuse_log_in(uow, email, credentials, origin)

    async def _verify(
        self,
        email: str,
        password: str,
        credentials: UserCredentials | None,
        origin: RequestOrigin,
    ) -> _Verified:
        """``password`` checked against ``credentials`` outside any transaction; a wrong
        one (or no account) is audited and refused."""
        if credentials is None:
            await self._hasher.verify_dummy(password)
        elif await self._hasher.verify(credentials.password_hash, password):
            new_hash = (
                await self._hasher.hash(password)
                if self._hasher.needs_rehash(credentials.password_hash)
                else None
            )
            return _Verified(credentials.password_hash, new_hash)
        async with self._uow_factory.system() as uow:
            await self._refuse_log_in(uow, email, credentials, origin)

    async def _refuse_log_in(
        self,
        uow: UnitOfWork,
        email: str,
        credentials: UserCredentials | None,
        origin: RequestOrigin,
    ) -> NoReturn:
        await uow.audit.record(
            AuditEntry(
                "auth.login_failed",
                None,
                credentials.user.id if credentials else None,
                target=f"email:{email}",
                ip=origin.ip,
            ),
            self._clock.now(),
        )
        await uow.commit()
        raise InvalidCredentials()

    async def _open_session(
        self,
        uow: UnitOfWork,
        user: User,
        new_hash: str | None,
        organization_id: UUID | None,
        origin: RequestOrigin,
        *,
        charge_new_organization: Callable[[], Awaitable[None]] | None = None,
    ) -> IssuedSession:
        """The log-in's session, in ``uow`` (which holds the user's row locked), committed.

        Without ``organization_id``, a user who is no member of any organisation any more
        (removed from the last one) gets a personal organisation, as at sign-up, and the
        session starts there. The user's row lock makes a user's log-ins take turns, so
        the second of two at once sees the first's organisation and makes none. A named
        organisation the user is not in stays NOT_FOUND: the caller asked for that one."""
        if new_hash is not None:
            await uow.users.set_password_hash(user.id, new_hash)
        chosen = await self._current_membership(uow, user.id, organization_id)
        if chosen is None:
            if organization_id is not None:
                raise NotFound("No such organization.")
            if not self._signup_open:
                # Closed sign-up makes no organisations: someone an admin removed does
                # not get a workspace (and disk) of their own by logging in again.
                raise Forbidden(
                    "You are not a member of any organisation; ask an admin to add you."
                )
            if charge_new_organization is not None:
                await charge_new_organization()
            organization = await _found_organization(
                uow,
                user,
                _personal_organization_name(user.email, None),
                action="auth.organization_created",
                origin=origin,
                now=self._clock.now(),
            )
            chosen = OrganizationMembership(organization, Role.ADMIN)
        session = await self._start_session(
            uow, user, chosen.organization, chosen.role, uuid4(), self._clock.now()
        )
        await uow.audit.record(
            AuditEntry(
                "auth.login_succeeded",
                chosen.organization.id,
                user.id,
                target=f"user:{user.id}",
                ip=origin.ip,
            ),
            self._clock.now(),
        )
        await uow.commit()
        return session

    @staticmethod
    async def _current_membership(
        uow: UnitOfWork, user_id: UUID, organization_id: UUID | None
    ) -> OrganizationMembership | None:
        """The user's membership to start a session in (in ``organization_id``, or their
        oldest), held; None when there is none."""
        memberships = await uow.memberships.list_for_user(user_id)
        for candidate in memberships:
            if organization_id is not None and candidate.organization.id != organization_id:
                continue
            # Read again under the organisation's hold: a removal or role change
            # committed meanwhile is seen here (and the next membership is tried), and
            # one not yet begun waits for this session, then revokes or refreshes it
            # with the others.
            await uow.organizations.hold(candidate.organization.id)
            membership = await uow.memberships.get(user_id, candidate.organization.id)
            if membership is not None:
                return OrganizationMembership(candidate.organization, membership.role)
        return None

    async def refresh(
        self,
        refresh_token: str,
        origin: RequestOrigin,
        *,
        charge_user: Callable[[UUID], Awaitable[None]] | None = None,
    ) -> IssuedSession:
        """A new token pair for the session, the presented token used up.

        ``charge_user`` runs with the session's user id once the token is found
        redeemable, before anything is written; what it raises (RateLimited) refuses
        the refresh and leaves the token as it was, still good for a later try."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            raise InvalidRefreshToken()
        now = self._clock.now()
        async with self._uow_factory.system() as uow:
            # Under the organisation's hold (taken by _redeemable), as in log_in: a removal
            # or role change either shows here or waits for this session, then revokes or
            # refreshes it.
            record = await self._redeemable(uow, refresh_token, now, origin)
            if charge_user is not None:
                await charge_user(record.user_id)
            membership = await uow.memberships.get(record.user_id, record.organization_id)
            user = await uow.users.get(record.user_id)
            organization = await uow.organizations.get(record.organization_id)
            if membership is None or user is None or organization is None:
                await uow.refresh_tokens.revoke_family(record.family_id, now)
                await uow.commit()
                raise InvalidRefreshToken()
            await uow.refresh_tokens.mark_used(record.id, now)
            session = await self._start_session(
                uow,
                user,
                organization,
                membership.role,
                record.family_id,
                record.session_started_at,
            )
            await uow.commit()
        return session

    async def switch_organization(
        self,
        refresh_token: str,
        organization_id: UUID,
        origin: RequestOrigin,
        *,
        charge_user: Callable[[UUID], Awaitable[None]] | None = None,
    ) -> IssuedSession:
        """Trade the session's refresh token for a session in another of the user's
        organisations. The old session ends (its access tokens are revoked at once), and
        the new one keeps its start, so switching never extends a session's maximum age.
        The new session is a family of its own that names the old one, so replaying the
        traded token later revokes it as a replay within one family would (_redeemable).
        An organisation the user is not in is NOT_FOUND, and the session's own
        organisation VALIDATION_FAILED (a switch there would change nothing but write
        a token and two audit entries): both leave the token unused.

        ``charge_user`` runs as in refresh: once the token is found redeemable, so
        every exchange a good token makes spends it, the refused ones too."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            raise InvalidRefreshToken()
        now = self._clock.now()
        async with self._uow_factory.system() as uow:
            record = await self._redeemable(uow, refresh_token, now, origin)
            if charge_user is not None:
                await charge_user(record.user_id)
            user = await uow.users.get(record.user_id)
            if user is None:
                await uow.refresh_tokens.revoke_family(record.family_id, now)
                await uow.commit()
                raise InvalidRefreshToken()
            if organization_id == record.organization_id:
                raise ValidationFailed(
                    "The session is in that organisation already.", field="organizationId"
                )
            # Under the target's hold, as in log_in.
            await uow.organizations.hold(organization_id)
            membership = await uow.memberships.get(record.user_id, organization_id)
            organization = await uow.organizations.get(organization_id)
            if membership is None or organization is None:
                raise NotFound("No such organization.")
            # Used, not revoked: a replay of it must be told from an unknown token.
            await uow.refresh_tokens.mark_used(record.id, now)
            session = await self._start_session(
                uow,
                user,
                organization,
                membership.role,
                uuid4(),
                record.session_started_at,
                previous_family_id=record.family_id,
            )
            # One entry in each organisation, naming nothing of the other.
            for organization_id_, target in (
                (record.organization_id, f"session:{record.family_id}"),
                (organization.id, f"user:{user.id}"),
            ):
                await uow.audit.record(
                    AuditEntry(
                        "auth.organization_switched",
                        organization_id_,
                        user.id,
                        target=target,
                        ip=origin.ip,
                    ),
                    now,
                )
            # Redis first, as in log_out: if it cannot be told, nothing is committed.
            await self._revocations.revoke([record.family_id])
            await uow.commit()
        return session

    async def _redeemable(
        self, uow: UnitOfWork, refresh_token: str, now: datetime, origin: RequestOrigin
    ) -> RefreshTokenRecord:
        """The refresh token's record, locked, if it may be traded now, with its
        organisation held. A token used before is a stolen copy or a replay, even in a
        session ended since (a removal from the organisation a switch left): its session
        is revoked, with every session switched to from it, once (_end_replayed_session).
        """
        record = await self._locked(uow, refresh_token)
        if record is None:
            raise InvalidRefreshToken()
        if record.used_at is not None:
            await self._end_replayed_session(uow, record, now, origin)
            raise RefreshTokenReused()
        if record.revoked_at is not None:
            raise InvalidRefreshToken()
        if record.expires_at <= now or record.session_started_at + self._session_max_age <= now:
            raise InvalidRefreshToken()
        return record

    async def _end_replayed_session(
        self, uow: UnitOfWork, record: RefreshTokenRecord, now: datetime, origin: RequestOrigin
    ) -> None:
        """End the session of a replayed token and every session switched to from it,
        unless none of them is left to end: then the replay writes nothing, audits
        nothing and tells no one, however often it comes (the caller refuses it all the
        same)."""
        # The user's sessions still live, wherever they are a member: a session switched
        # to from this one may be, though this one ended (a removal from the
        # organisation the switch left ends only that one).
        live: set[UUID] = set()
        for membership in await uow.memberships.list_for_user(record.user_id):
            live.update(
                await uow.refresh_tokens.live_families_for_member(
                    record.user_id, membership.organization.id
                )
            )
        if not live:
            return
        # When none of the lineage was live, the revocation changed nothing worth telling:
        # leaving without commit rolls it back.
        revoked = await uow.refresh_tokens.revoke_family(record.family_id, now)
        if live.isdisjoint(revoked):
            return
        await self._end_session(
            uow, record, "auth.refresh_token_reused", now, origin, revoked=revoked
        )

    @staticmethod
    async def _locked(uow: UnitOfWork, refresh_token: str) -> RefreshTokenRecord | None:
        """The token's row, locked, after a hold on its organisation: a removal or role
        change locks the organisation, then the member's token rows, so taking the row
        first could deadlock with it."""
        token_hash = hash_refresh_token(refresh_token)
        organization_id = await uow.refresh_tokens.organization_of(token_hash)
        if organization_id is None:
            return None
        await uow.organizations.hold(organization_id)
        return await uow.refresh_tokens.find_for_update(token_hash)

    async def log_out(self, refresh_token: str, origin: RequestOrigin) -> bool:
        """Revoke the whole session the refresh token belongs to, and every session
        switched to from it; False when none of them was left to end."""
        if not refresh_token or len(refresh_token) > MAX_REFRESH_TOKEN_LENGTH:
            return False
        now = self._clock.now()
        async with self._uow_factory.system() as uow:
            record = await self._locked(uow, refresh_token)
            if record is None or record.revoked_at is not None:
                return False
            # Only live tokens are revoked, so a used token's own row says nothing of its
            # session: the session ended already (a log-out, a replay, a removal, a
            # password change) when none of its lineage was left to revoke.
            revoked = await uow.refresh_tokens.revoke_family(record.family_id, now)
            if not revoked:
                return False
            await self._end_session(uow, record, "auth.logout", now, origin, revoked=revoked)
        return True

    async def _end_session(
        self,
        uow: UnitOfWork,
        record: RefreshTokenRecord,
        action: str,
        now: datetime,
        origin: RequestOrigin,
        *,
        revoked: list[UUID],
    ) -> None:
        """Audit the end of the token's session as ``action``, tell Redis about the
        sessions this transaction ``revoked`` (revoke_family), and commit."""
        await uow.audit.record(
            AuditEntry(
                action,
                record.organization_id,
                record.user_id,
                target=f"session:{record.family_id}",
                ip=origin.ip,
            ),
            now,
        )
        # Redis first: if it cannot be told, nothing is committed, and the next attempt
        # (a replay detected again, a log-out retried) does it all (see remove_member).
        await self._revocations.revoke(revoked)
        await uow.commit()

    async def authenticate(self, access_token: str) -> Principal:
        """The principal of a valid, unrevoked access token."""
        principal, issued_at = self._tokens.decode(access_token)
        await self._revocations.check(principal.session_id, issued_at)
        return principal

    def session_changed_since(self, session_id: UUID, moment: float) -> bool:
        """Whether a revocation or refresh of the session was heard since ``moment``
        (``time.monotonic()``): a stream that began before should check it again."""
        return self._revocations.changed_since(session_id, moment)

    async def _start_session(  # noqa: PLR0917  # private helper, called positionally
        self,
        uow: UnitOfWork,
        user: User,
        organization: Organization,
        role: Role,
        family_id: UUID,
        session_started_at: datetime,
        previous_family_id: UUID | None = None,
    ) -> IssuedSession:
        now = self._clock.now()
        refresh_token = secrets.token_urlsafe(32)
        record = RefreshTokenRecord(
            id=uuid4(),
            user_id=user.id,
            organization_id=organization.id,
            family_id=family_id,
            session_started_at=session_started_at,
            # A session ends at its absolute maximum age however often it refreshes.
            expires_at=min(now + self._refresh_ttl, session_started_at + self._session_max_age),
            used_at=None,
            revoked_at=None,
            previous_family_id=previous_family_id,
        )
        await uow.refresh_tokens.add(record, hash_refresh_token(refresh_token), now)
        principal = Principal(user.id, organization.id, role, family_id)
        access = self._tokens.issue(principal)
        return IssuedSession(
            access_token=access.token,
            refresh_token=refresh_token,
            expires_in=access.expires_in,
            user=user,
            organization=organization,
            role=role,
            principal=principal,
        )
