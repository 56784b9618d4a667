"""GraphiQL without a CDN: strawberry's page, pointed at the same files installed from npm.

`make install` puts the exact package versions the page references under
web/graphiql/node_modules; the page's subresource-integrity hashes still apply,
so a file that differs from the one strawberry pinned is refused by the browser.
Without those files (no Node at install time) the page keeps its unpkg.com URLs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import structlog
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from strawberry.http.ides import get_graphql_ide_html

log = structlog.get_logger("foundry.graphiql")

STATIC_PREFIX = "/graphiql/static/"
DEFAULT_ASSETS_DIR = Path(__file__).resolve().parents[2] / "web" / "graphiql" / "node_modules"
_UNPKG = re.compile(
    r"https://unpkg\.com/(?P<package>(?:@[a-z0-9-]+/)?[a-z0-9.-]+)@(?P<version>[0-9][^/\"]*)"
    r"/(?P<path>[A-Za-z0-9._/-]+)"
)


@dataclass(frozen=True, slots=True)
class GraphiQLPage:
    html: str
    assets: dict[str, Path]  # URL path -> file, exactly the files the page references

    @property
    def offline(self) -> bool:
        return bool(self.assets)

    async def serve_asset(self, request: Request) -> Response:
        file = self.assets.get(request.url.path)
        if file is None:
            return PlainTextResponse("Not found", status_code=404)
        return FileResponse(file, headers={"cache-control": "public, max-age=31536000, immutable"})


def build_graphiql_page(assets_dir: Path = DEFAULT_ASSETS_DIR) -> GraphiQLPage:
    html = get_graphql_ide_html(graphql_ide="graphiql")
    assets: dict[str, Path] = {}
    for match in _UNPKG.finditer(html):
        package, version, path = match.group("package", "version", "path")
        file = assets_dir / package / path
        if not file.is_file() or _installed_version(assets_dir / package) != version:
            log.warning("graphiql.assets_missing", package=package, version=version)
            return GraphiQLPage(html=html, assets={})
        assets[f"{STATIC_PREFIX}{package}@{version}/{path}"] = file
    local_html = _UNPKG.sub(
        lambda m: f"{STATIC_PREFIX}{m.group(1)}@{m.group(2)}/{m.group(3)}", html
    )
    return GraphiQLPage(html=local_html, assets=assets)


def _installed_version(package_dir: Path) -> str | None:
    manifest = package_dir / "package.json"
    if not manifest.is_file():
        return None
    version = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    return version if isinstance(version, str) else None
