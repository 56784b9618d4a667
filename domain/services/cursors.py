"""Opaque keyset cursors: a timestamp and an id, base64-encoded."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from uuid import UUID

from domain.errors import ValidationFailed


def encode_cursor(moment: datetime, identifier: UUID) -> str:
    raw = f"{moment.isoformat()}|{identifier}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, _, identifier = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("naive cursor time")
        # In UTC, as the database compares it: a forged time near year 1 or 9999 can
        # leave datetime's range there (OverflowError), which is an invalid cursor too.
        return moment.astimezone(UTC), UUID(identifier)
    except (ValueError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
        raise ValidationFailed("The cursor is not valid.", field="after") from exc
