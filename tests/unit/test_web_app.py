"""The web client's static serving: caching, SPA fallback, containment, the not-built page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from infrastructure.http.web_app import IMMUTABLE, WebApp, content_security_policy


async def _graphql(_: object) -> PlainTextResponse:
    return PlainTextResponse("graphql")


def _client(dist: Path) -> httpx.AsyncClient:
    app = Starlette(
        routes=[
            Route("/graphql", _graphql),
            Route("/{path:path}", WebApp(dist).serve, methods=["GET", "HEAD"]),
        ]
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kf.test")


@pytest.fixture
def dist(tmp_path: Path) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>app</title>")
    (root / "assets" / "index-abc123.js").write_text("console.log(1)")
    (root / "favicon.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("outside")
    return root


@pytest.fixture
async def client(dist: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(dist) as http:
        yield http


async def test_index_is_revalidated_and_carries_security_headers(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and "<title>app</title>" in page.text
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "ws://kf.test" in csp and "frame-ancestors 'none'" in csp


async def test_hashed_assets_are_immutable_and_other_files_revalidated(
    client: httpx.AsyncClient,
) -> None:
    asset = await client.get("/assets/index-abc123.js")
    assert asset.status_code == 200 and asset.headers["cache-control"] == IMMUTABLE
    assert (await client.get("/favicon.svg")).headers["cache-control"] == "no-cache"
    assert (await client.get("/assets/index-old999.js")).status_code == 404
    assert (await client.get("/robots.txt")).status_code == 404


async def test_client_routes_fall_back_to_the_app(client: httpx.AsyncClient) -> None:
    for path in ("/documents", "/chat/8d4c", "/members"):
        page = await client.get(path)
        assert page.status_code == 200 and "<title>app</title>" in page.text, path


async def test_nothing_outside_dist_and_no_reserved_paths(client: httpx.AsyncClient) -> None:
    for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/assets/../../secret.txt"):
        assert "outside" not in (await client.get(path)).text, path
    assert (await client.get("/graphql")).text == "graphql"
    for path in ("/graphql/extra", "/healthz/x", "/graphiql/static/nope.js", "/metricsx"):
        assert (await client.get(path)).status_code == 404, path


async def test_without_a_build_the_page_says_how_to_build(tmp_path: Path) -> None:
    async with _client(tmp_path / "missing") as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert "make install" in page.text and "npm ci --prefix web/app" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_csp_ignores_a_malformed_host() -> None:
    assert "ws:" not in content_security_policy("evil.test; script-src *")
    assert "ws://[::1]:8000" in content_security_policy("[::1]:8000")
