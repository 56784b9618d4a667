"""The web client (web/app, built by Vite into web/app/dist) served at `/`.

Hashed files under /assets/ are cached for a year (their names change with their
content); index.html and other top-level files are revalidated on every load, so a
new build is picked up at once. Any other GET of a path without a file extension gets
index.html: the client routes itself (SPA fallback); a missing file is a 404.
Without a build, `/` explains how to make one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, Response

DEFAULT_DIST_DIR = Path(__file__).resolve().parents[2] / "web" / "app" / "dist"
ASSETS_PREFIX = "assets/"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Paths other routes own; a miss under them is a 404, never the app's page.
RESERVED_PREFIXES = ("graphql", "graphiql/", "healthz", "readyz", "metrics")
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")

# The "not built" page is static HTML with one inline style element.
_INLINE_STYLE = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

NOT_BUILT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Knowledge Foundry</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem }
</style>
</head>
<body>
<h1>Knowledge Foundry is running</h1>
<p>The web client has not been built. It needs Node.js 20+ and npm; then run</p>
<pre>make install</pre>
<p>or, by hand: <code>npm ci --prefix web/app &amp;&amp; npm run build --prefix web/app</code>,
and reload this page.</p>
<p>The GraphQL API works without it: <a href="/graphql">/graphql</a> (GraphiQL).</p>
</body></html>
"""


def content_security_policy(host: str | None) -> str:
    """Same-origin everything; the GraphQL WebSocket is named explicitly for browsers
    whose 'self' does not cover ws:/wss: (CSP level 2)."""
    sockets = ""
    if host and _HOST.match(host):
        sockets = f" ws://{host} wss://{host}"
    return (
        "default-src 'self'; "
        "script-src 'self'; "
        "style-src 'self'; "
        "img-src 'self' data:; "
        "font-src 'self'; "
        f"connect-src 'self'{sockets}; "
        "object-src 'none'; "
        "base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    )


def _security_headers(request: Request, cache_control: str) -> dict[str, str]:
    return {
        "cache-control": cache_control,
        "content-security-policy": content_security_policy(request.headers.get("host")),
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "x-frame-options": "DENY",
    }


@dataclass(frozen=True, slots=True)
class WebApp:
    dist_dir: Path = DEFAULT_DIST_DIR

    @property
    def built(self) -> bool:
        return (self.dist_dir / "index.html").is_file()

    async def serve(self, request: Request) -> Response:
        path = request.path_params.get("path", "")
        if path.startswith(RESERVED_PREFIXES):
            return PlainTextResponse("Not found", status_code=404)
        if not self.built:
            return HTMLResponse(
                NOT_BUILT_HTML, headers=_security_headers(request, REVALIDATE) | _INLINE_STYLE
            )
        file = self._file(path)
        if file is not None:
            cache = IMMUTABLE if path.startswith(ASSETS_PREFIX) else REVALIDATE
            return FileResponse(file, headers=_security_headers(request, cache))
        if path.startswith(ASSETS_PREFIX) or "." in path.rsplit("/", 1)[-1]:
            # A missing file (say a stale page's old hashed script): a 404, not index.html.
            return PlainTextResponse("Not found", status_code=404)
        return FileResponse(
            self.dist_dir / "index.html",
            media_type="text/html",
            headers=_security_headers(request, REVALIDATE),
        )

    def _file(self, path: str) -> Path | None:
        if not path or "\x00" in path:
            return None
        root = self.dist_dir.resolve()
        candidate = (root / path).resolve()
        if not candidate.is_relative_to(root) or not candidate.is_file():
            return None
        return candidate
