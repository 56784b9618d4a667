"""A parse child that dies may leave its socket reset rather than closed (data it had not
read is discarded with the connection): either is a crash of the parser, PARSE_FAILED
for the document, not an unexpected error."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.ingestion.filetypes import FileKind
from infrastructure.parsing.limits import ParseLimits
from infrastructure.parsing.sandbox import ParserCrashed, SandboxedParser


class _DeadChild:
    """The parse server's connection to a child killed before it answered."""

    def __init__(self, fault: Exception) -> None:
        self._fault = fault
        self.closed = False

    def send(self, message: object) -> None:
        pass

    def poll(self, timeout: float) -> bool:
        return True  # readable: the end of the connection is

    def recv(self) -> object:
        raise self._fault

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("fault", [EOFError(), ConnectionResetError(104, "reset by peer")])
def test_a_child_dying_before_its_answer_is_a_parser_crash(
    fault: Exception, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    parser = SandboxedParser(ParseLimits(), timeout_seconds=1.0, memory_bytes=1 << 28)
    connection = _DeadChild(fault)
    monkeypatch.setattr(parser, "_connect", lambda: connection)
    with pytest.raises(ParserCrashed):
        parser.parse(tmp_path / "any.txt", FileKind.TEXT)
    assert connection.closed
