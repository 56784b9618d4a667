from __future__ import annotations

import io
from pathlib import Path

from infrastructure.cli_ingest import ProgressBar, collect_files


def test_progress_bar_prints_only_changes_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = ProgressBar("ingest", 4, out)
    for done in (0, 0, 1, 1, 1, 4):
        bar.show(done)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert [line.split("]")[1].strip() for line in lines] == ["0/4", "1/4", "4/4"]


def test_collect_files_keeps_supported_files_recursively(tmp_path: Path) -> None:
    root = tmp_path
    (root / "sub").mkdir()
    for name in ("a.pdf", "b.MD", "sub/c.docx", "sub/d.exe", "e.png", "sub/f.txt"):
        (root / name).write_bytes(b"x")
    found = [p.relative_to(root).as_posix() for p in collect_files([root])]
    assert found == ["a.pdf", "b.MD", "sub/c.docx", "sub/f.txt"]
