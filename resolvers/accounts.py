"""Sign-up, log-in, refresh, organisation switch, log-out, password change and the
caller's own user."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from uuid import UUID

import strawberry

from domain.errors import InvalidRefreshToken, NotFound, RefreshTokenReused, ValidationFailed
from domain.ports import Budget
from domain.rate_limit_keys import client_address_key
from domain.validation import normalize_email
from resolvers.ids import parse_id
from schema.context import Context, Info
from schema.types.auth import AuthPayload, LogInInput, SignUpInput
from schema.types.user import User


async def sign_up(info: Info, input: SignUpInput) -> AuthPayload:
    ctx = info.context
    await ctx.rate_limiter.hit(Budget.SIGNUP_IP, client_address_key(ctx.client_ip))
    await ctx.rate_limiter.hit(Budget.SIGNUP_EMAIL, normalized_email(input.email))
    session = await ctx.services.accounts.sign_up(
        input.email, input.password, input.organization_name, ctx.origin
    )
    return AuthPayload.from_domain(session)


async def log_in(info: Info, input: LogInInput) -> AuthPayload:
    ctx = info.context
    # Per IP first: a client over its own budget must not spend the account's.
    await ctx.rate_limiter.hit(Budget.LOGIN_IP, client_address_key(ctx.client_ip))
    await ctx.rate_limiter.hit(Budget.LOGIN_EMAIL, normalized_email(input.email))
    organization_id = (
        parse_id(input.organization_id, "organization") if input.organization_id else None
    )
    session = await ctx.services.accounts.log_in(
        input.email,
        input.password,
        organization_id,
        ctx.origin,
        # A log-in that makes a personal organisation (its user was removed from every
        # one) spends the sign-up budget, as signUp does: otherwise being removed and
        # logging in again would make organisations faster than sign-up allows.
        charge_new_organization=partial(
            ctx.rate_limiter.hit, Budget.SIGNUP_IP, client_address_key(ctx.client_ip)
        ),
    )
    return AuthPayload.from_domain(session)


def normalized_email(email: str) -> str:
    """One budget per mailbox, however the client spells it: the account's own key (so
    "victim@\\uff45xample.com", with a fullwidth e, spends victim@example.com's budget), or,
    for what is no valid address and so names no account, the text as typed."""
    try:
        return normalize_email(email)
    except ValidationFailed:
        return email.strip().lower()


@contextlib.asynccontextmanager
async def _refused_tokens_counted(ctx: Context) -> AsyncIterator[None]:
    """A refused refresh token spends its address's budget (session_ip). A good one
    spends its user's instead (session_user, _charge_user), never the address's, so a
    client sending junk cannot starve the others behind the same address (an office, a
    carrier's NAT) of their refreshes."""
    try:
        yield
    except (InvalidRefreshToken, RefreshTokenReused):
        await ctx.rate_limiter.hit(Budget.SESSION_IP, client_address_key(ctx.client_ip))
        raise


def _charge_user(ctx: Context) -> Callable[[UUID], Awaitable[None]]:
    """Spends the session_user budget of the user whose token the service verified: each
    exchange writes a token row that stays until the session's maximum age, so a client
    refreshing or switching in a loop is slowed down, and its token, left unused, still
    works once the budget allows."""

    async def charge(user_id: UUID) -> None:
        await ctx.rate_limiter.hit(Budget.SESSION_USER, str(user_id))

    return charge


async def refresh_session(info: Info, refresh_token: str) -> AuthPayload:
    ctx = info.context
    async with _refused_tokens_counted(ctx):
        session = await ctx.services.accounts.refresh(
            refresh_token, ctx.origin, charge_user=_charge_user(ctx)
        )
    return AuthPayload.from_domain(session)


async def switch_organization(
    info: Info, refresh_token: str, organization_id: strawberry.ID
) -> AuthPayload:
    ctx = info.context
    async with _refused_tokens_counted(ctx):
        session = await ctx.services.accounts.switch_organization(
            refresh_token,
            parse_id(organization_id, "organization"),
            ctx.origin,
            charge_user=_charge_user(ctx),
        )
    return AuthPayload.from_domain(session)


async def log_out(info: Info, refresh_token: str) -> bool:
    ctx = info.context
    # No budget: a log-out refused for someone else's junk would leave a session live.
    return await ctx.services.accounts.log_out(refresh_token, ctx.origin)


async def change_password(info: Info, current_password: str, new_password: str) -> bool:
    ctx = info.context
    principal = ctx.require_principal()
    user = await ctx.loaders.user.load(principal.user_id)
    if user is None:
        raise NotFound("Your account no longer exists.")
    # Before the password is verified: guesses made here spend the log-in budget.
    await ctx.rate_limiter.hit(Budget.LOGIN_EMAIL, normalized_email(user.email))
    await ctx.services.passwords.change(principal, current_password, new_password, ctx.origin)
    return True


async def me(info: Info) -> User:
    principal = info.context.require_principal()
    user = await info.context.loaders.user.load(principal.user_id)
    if user is None:
        raise NotFound("Your account no longer exists.")
    return User.from_domain(user)
