"""Stored files are named organisation/document; nothing else parses as a key."""

from __future__ import annotations

import uuid

from domain.ingestion.storage_keys import parse_storage_key, storage_key


def test_a_key_names_its_organisation_and_document() -> None:
    organization, document = uuid.uuid4(), uuid.uuid4()
    assert parse_storage_key(storage_key(organization, document)) == (organization, document)


def test_anything_else_is_not_a_key() -> None:
    organization, document = uuid.uuid4(), uuid.uuid4()
    for other in (
        "notes.txt",
        str(document),
        f"{organization}/{document}/extra",
        f"{organization}/{document}.bak",
        f"{organization}/{str(document).upper()}",  # not the spelling the server writes
        f"{organization.hex}/{document.hex}",
        "",
    ):
        assert parse_storage_key(other) is None, other
