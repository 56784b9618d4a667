"""Which refresh-token rows still matter, and pruning the ones that never will again.

Every log-in starts a session (a token family) and every refresh adds a row to it, so
the rows of a long-time member run to thousands. A session can still act while its
newest token can be redeemed or an access token issued with one may still be valid;
only those sessions need revoking or refreshing when a membership changes. A row stays
until nothing of its session can act any more: a replay of a used token is recognised
(and ends the sessions it led to) for as long as any of them could otherwise be live.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from domain.ports import UnitOfWorkFactory

# The longest access-token lifetime the settings allow (access_token_ttl_seconds is at
# most a day): what a service assumes when it is not told the configured one.
LONGEST_ACCESS_TOKEN_TTL = timedelta(days=1)
# An access token is issued just after its refresh token's row is written, and verified
# with a few seconds' leeway: a minute covers both (as the revocation entries' does).
ACCESS_TOKEN_MARGIN = timedelta(seconds=60)
# Rows deleted per transaction, so pruning never holds many locks for long.
PRUNE_BATCH = 5_000


def access_tokens_issued_since(now: datetime, access_token_ttl: timedelta) -> datetime:
    """The earliest issue time of an access token that may still be valid at ``now``."""
    return now - access_token_ttl - ACCESS_TOKEN_MARGIN


async def prune_refresh_tokens(
    uow_factory: UnitOfWorkFactory,
    now: datetime,
    *,
    session_max_age: timedelta,
    access_token_ttl: timedelta,
    batch: int = PRUNE_BATCH,
) -> int:
    """Delete the rows of sessions that can never act again; returns how many.

    A session, and every session switched to from it (which keeps its start), ends at
    its start plus ``session_max_age`` however often it refreshes; once its access
    tokens have expired too, a replay of one of its tokens has nothing left to end, so
    it may as well be unknown. The row's own expiry must be that old as well, so a
    session started under a longer maximum age keeps what it still needs.
    """
    issued_since = access_tokens_issued_since(now, access_token_ttl)
    started_before = issued_since - session_max_age
    total = 0
    while True:
        async with uow_factory.system() as uow:
            deleted = await uow.refresh_tokens.delete_ended(started_before, issued_since, batch)
            await uow.commit()
        total += deleted
        if deleted < batch:
            return total
