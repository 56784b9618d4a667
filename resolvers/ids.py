from __future__ import annotations

from uuid import UUID

from domain.errors import NotFound


def parse_id(raw: str, what: str = "object") -> UUID:
    """A client-supplied ID; malformed ones are simply not found."""
    try:
        return UUID(raw)
    except (ValueError, TypeError, AttributeError):
        raise NotFound(f"No such {what}.") from None
