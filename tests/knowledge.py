"""A small corpus of real prose for retrieval and answer tests, and a helper to ingest it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import cast

import httpx

from tests.helpers import (
    JSON,
    REFRESH,
    Account,
    GraphQLClient,
    upload_outcomes,
    wait_for_document,
)

LIGHTHOUSE = """# Skerry Point Lighthouse

The Skerry Point lighthouse was built in 1874 by the engineer Margaret Vance. Its tower \
is 41 metres tall and made of granite quarried on the island.

The lamp is visible for 22 nautical miles in clear weather. Since 1998 the light has been \
fully automated and no keeper lives on the island.

Visitors can climb the 212 steps of the tower on Saturdays between May and September.
"""

PAYROLL = """Payroll policy

Employees are paid on the last working day of each month. Overtime is paid at one and a \
half times the normal hourly rate when a manager approves it in advance.

Expense claims must be submitted within 30 days with receipts attached. Claims above 500 \
euros need the approval of a director.
"""

ESPRESSO = """# Using the office espresso machine

Fill the water tank with filtered water only. Descale the machine every four weeks with \
the citric acid sachets kept in the second drawer.

If the red light blinks, the drip tray is full and must be emptied before the machine \
works again.
"""

# Another organisation's notes on the same lighthouse, with different facts.
RIVAL_LIGHTHOUSE = """# Skerry Point Lighthouse (harbour trust notes)

According to the harbour trust, the Skerry Point lighthouse was designed by Tomas Reyes \
and first lit in 1901. Its lamp reaches 17 nautical miles.
"""

ORGANISATION_FILES = [
    ("lighthouse.md", LIGHTHOUSE.encode(), "text/markdown"),
    ("payroll-policy.txt", PAYROLL.encode(), "text/plain"),
    ("espresso.md", ESPRESSO.encode(), "text/markdown"),
]
RIVAL_FILES = [("lighthouse.md", RIVAL_LIGHTHOUSE.encode(), "text/markdown")]


async def ingest(
    http: httpx.AsyncClient, api: GraphQLClient, token: str, files: list[tuple[str, bytes, str]]
) -> dict[str, str]:
    """Upload through the API, wait for the worker to finish; filename -> document id."""
    outcomes = await upload_outcomes(http, token, files)
    ids: dict[str, str] = {}
    for outcome in outcomes:
        document = cast(JSON, outcome["document"])
        ready = await wait_for_document(api, token, str(document["id"]))
        assert ready["status"] == "READY", ready
        ids[str(outcome["filename"])] = str(document["id"])
    return ids


@dataclass(frozen=True)
class Corpus:
    """An organisation with ORGANISATION_FILES and a rival one with RIVAL_FILES, all READY."""

    owner: Account
    documents: dict[str, str]
    rival: Account
    rival_documents: dict[str, str]


@dataclass
class SessionCorpus:
    """The corpus ingested once per session, holding its accounts' newest refresh tokens:
    refreshSession rotates them, and presenting a used one revokes the whole session."""

    current: Corpus

    async def with_fresh_tokens(self, api: GraphQLClient) -> Corpus:
        """The corpus with access tokens issued now. They last 15 minutes, and a test may
        run long after the corpus was built."""
        # Kept after each account: a failure in between must not leave a spent token here.
        self.current = replace(self.current, owner=await renewed(api, self.current.owner))
        self.current = replace(self.current, rival=await renewed(api, self.current.rival))
        return self.current


async def renewed(api: GraphQLClient, account: Account) -> Account:
    """``account`` with tokens issued now: refreshed, or logged in again once its session
    has ended (a refresh whose answer was lost spends the token kept, and presenting a
    spent token ends the session)."""
    body = await api.execute(REFRESH, {"token": account.refresh_token})
    if body.get("errors"):
        return await api.log_in(account.email, account.organization_id)
    session = cast(JSON, cast(JSON, body["data"])["refreshSession"])
    return replace(
        account,
        access_token=cast(str, session["accessToken"]),
        refresh_token=cast(str, session["refreshToken"]),
    )


async def build_corpus(base_url: str) -> Corpus:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        api = GraphQLClient(http)
        owner = await api.sign_up()
        rival = await api.sign_up()
        documents = await ingest(http, api, owner.access_token, ORGANISATION_FILES)
        rival_documents = await ingest(http, api, rival.access_token, RIVAL_FILES)
    return Corpus(owner, documents, rival, rival_documents)
