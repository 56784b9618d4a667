from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from domain.errors import NotFound


def parse_id(raw: str, what: str = "object") -> UUID:
    """A client-supplied ID; malformed ones are simply not found."""
    try:
        return UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"No such {what}.") from None


# Stands in for a malformed id in a filter: no row has the nil UUID as its id (ids are
# random), so it matches nothing, and it still counts toward the filter's limit.
UNMATCHABLE_ID = UUID(int=0)


def parse_ids(raw: Sequence[str]) -> list[UUID]:
    """Client-supplied IDs to filter by, one for each given: a malformed one can match
    nothing, so it becomes UNMATCHABLE_ID (and 101 malformed ids are as many as 101
    good ones for a limit of 100)."""
    parsed: list[UUID] = []
    for value in raw:
        try:
            parsed.append(UUID(value))
        except (ValueError, TypeError, AttributeError):
            parsed.append(UNMATCHABLE_ID)
    return parsed
