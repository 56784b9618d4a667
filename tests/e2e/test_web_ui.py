"""The web client in headless Chromium against `foundry up`: the whole newcomer flow.

Runs web/app/e2e/flow.mjs (playwright-core driving Debian's chromium; no browser is
downloaded) and checks what it saw. Screenshots land in the test's temporary directory
and are copied to /tmp/foundry-screenshots/.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.e2e.test_foundry_up import FoundryProcess

ROOT = Path(__file__).resolve().parents[2]
WEB_APP = ROOT / "web" / "app"
SCREENSHOT_COPY = Path("/tmp/foundry-screenshots")  # noqa: S108 (for people to look at)
BUILD_HINT = "build the web client first: `make install` (npm ci + vite build in web/app)"

DOCUMENT = """# The Quenby Island lighthouse

The Zorblax lighthouse on Quenby Island was built in 1847 by the engineer Marisol Teague.
Its lamp burned colza oil and could be seen for twenty-three nautical miles.

## Keepers

The last keeper, Tobias Wren, left the lighthouse in 1962 when the light was automated.
Visitors can climb its 143 steps every Saturday between April and October.
"""


def _prerequisites() -> tuple[str, str]:
    node = shutil.which("node")
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    assert node, "Node.js is needed for the browser test"
    assert Path(chromium).is_file(), "install Debian's chromium: apt-get install -y chromium"
    assert (WEB_APP / "dist" / "index.html").is_file(), BUILD_HINT
    assert (WEB_APP / "node_modules" / "playwright-core").is_dir(), BUILD_HINT
    return node, chromium


def test_sign_up_upload_ask_and_open_a_citation_in_a_browser(tmp_path: Path) -> None:
    node, chromium = _prerequisites()
    document = tmp_path / "lighthouse.md"
    document.write_text(DOCUMENT, encoding="utf-8")
    screenshots = tmp_path / "screenshots"
    downloads = tmp_path / "downloads"
    server = FoundryProcess(tmp_path / "state")
    try:
        server.wait_ready(timeout=180)
        run = subprocess.run(
            [node, "e2e/flow.mjs"],
            cwd=WEB_APP,
            env={
                **os.environ,
                "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
                "FOUNDRY_URL": server.base_url,
                "E2E_DOCUMENT": str(document),
                "E2E_QUESTION": "Who built the Zorblax lighthouse?",
                "E2E_EXPECT": "Marisol Teague",
                "E2E_SCREENSHOTS": str(screenshots),
                "E2E_DOWNLOADS": str(downloads),
                "CHROMIUM": chromium,
            },
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    finally:
        try:
            server.interrupt(timeout=60)  # Ctrl-C: stops the embedded PostgreSQL and Redis too
        finally:
            server.kill()
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, (
        f"browser flow failed:\n{run.stdout}\n{run.stderr}\n--- server log ---\n"
        f"{server.log.read_text()[-4000:]}"
    )
    seen = json.loads(lines[-1])

    assert seen["steps"] == [
        "signed_up",
        "empty_state_shown",
        "upload_error_shown",
        "document_ready",
        "document_downloaded",
        "asked",
        "answer_streamed",
        "citation_opened",
        "chat_named",
        "members_listed",
        "member_added",
        "logged_out",
        "organization_switched",
        "password_changed",
    ]
    # A refused file shows its own error, in plain words and with its code.
    assert "not supported" in seen["uploadErrorText"]
    assert "(UNSUPPORTED_FILE_TYPE)" in seen["uploadErrorText"]
    # Its Download button gave the browser the original file: its name and its very bytes.
    assert seen["downloadedFilename"] == "lighthouse.md"
    downloaded = Path(seen["downloadedPath"])
    assert downloaded.parent == downloads
    assert downloaded.read_bytes() == document.read_bytes()
    # Tokens arrived one after another: the visible answer grew through several versions.
    partial = [text for text in seen["snapshots"] if not text.startswith("Finding")]
    assert len(partial) >= 2, seen["snapshots"]
    assert all(b.startswith(a) for a, b in itertools.pairwise(partial)), partial
    assert seen["liveRegion"] == "polite"
    assert "Marisol Teague" in seen["answer"] and "[1]" in seen["answer"]
    # The citation opened its source: the document and the passage.
    assert seen["sourceFile"] == "lighthouse.md"
    assert "Marisol Teague" in seen["snippet"]
    # Log-out forgot the refresh token (and revoked the session on the server).
    assert seen["refreshTokenAfterLogout"] is None
    assert not [e for e in seen["consoleErrors"] if "Content Security Policy" in e]
    # The colleague chose between their own organisation and the one they were added to.
    assert len(seen["organizationChoices"]) == 2, seen["organizationChoices"]
    assert any(
        "Lighthouse Society" in choice and "Editor" in choice
        for choice in seen["organizationChoices"]
    )
    assert seen["switchedTo"] is True
    assert seen["switchedBack"] is True
    # The Account screen changed the password; logging in with the new one worked.
    assert "signed out on your other devices" in seen["passwordChangedText"]

    SCREENSHOT_COPY.mkdir(parents=True, exist_ok=True)
    names = []
    for shot in map(Path, seen["screenshots"]):
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
        shutil.copy2(shot, SCREENSHOT_COPY / shot.name)
        names.append(shot.name)
    assert {"documents.png", "chat.png", "organization-switched.png"} <= set(names)
    print(f"screenshots: {screenshots} (copied to {SCREENSHOT_COPY})")  # noqa: T201
