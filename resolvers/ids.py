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


def parse_ids(raw: Sequence[str]) -> list[UUID]:
    """Client-supplied IDs to filter by; malformed ones can match nothing, so they are dropped."""
    parsed: list[UUID] = []
    for value in raw:
        try:
            parsed.append(UUID(value))
        except (ValueError, TypeError, AttributeError):
            continue
    return parsed
