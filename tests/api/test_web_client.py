"""The real app serves the web client at `/` without shadowing the API's own routes."""

from __future__ import annotations

import httpx


async def test_root_serves_the_client_next_to_the_api(http: httpx.AsyncClient) -> None:
    for path in ("/", "/documents", "/chat/some-id"):
        page = await http.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html"), path
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"], path
        assert page.headers["x-content-type-options"] == "nosniff", path
    graphiql = await http.get("/graphql", headers={"accept": "text/html"})
    assert "graphiql" in graphiql.text.lower()
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    assert (await http.get("/graphiql/static/missing.js")).status_code == 404
    assert (await http.post("/", content=b"{}")).status_code == 405
