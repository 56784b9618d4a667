"""GraphiQL is served with its scripts from this server, not a CDN."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import httpx

from infrastructure.http.graphiql import build_graphiql_page


async def test_graphiql_page_and_its_assets_are_local(http: httpx.AsyncClient) -> None:
    page = await http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "unpkg.com" not in page.text
    tags = re.findall(
        r'(?:src|href)="(/graphiql/static/[^"]+)"\s+integrity="(sha384-[^"]+)"', page.text
    )
    assert len(tags) == 7
    for url, integrity in tags:
        asset = await http.get(url)
        assert asset.status_code == 200, url
        digest = base64.b64encode(hashlib.sha384(asset.content).digest()).decode()
        assert integrity == f"sha384-{digest}", url


async def test_only_referenced_files_are_served(http: httpx.AsyncClient) -> None:
    for path in (
        "/graphiql/static/react@18.2.0/package.json",
        "/graphiql/static/react@18.2.0/../../../../pyproject.toml",
        "/graphiql/static/%2e%2e/%2e%2e/README.md",
    ):
        assert (await http.get(path)).status_code == 404, path


def test_missing_assets_fall_back_to_the_cdn(tmp_path: Path) -> None:
    page = build_graphiql_page(tmp_path)
    assert not page.offline
    assert "https://unpkg.com/graphiql@" in page.html
