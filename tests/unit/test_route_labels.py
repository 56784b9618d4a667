"""Metric labels of HTTP routes: one per route, never one per id."""

from __future__ import annotations

import uuid

from infrastructure.http.middleware import route_label


def test_every_documents_download_shares_one_label() -> None:
    assert route_label(f"/documents/{uuid.uuid4()}/file") == "/documents/{id}/file"
    assert route_label("/documents/not-an-id/file") == "/documents/{id}/file"
    assert route_label("/documents/x") == "other"  # the web app's page, not a download
    assert route_label("/graphql") == "/graphql"
