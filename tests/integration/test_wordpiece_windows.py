"""The local model's tokenizer encodes a page a window at a time: the token starts of one
call on the whole text, in memory bounded by the window rather than by the text."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tokenizers import Tokenizer as HfTokenizer

from infrastructure.embeddings.local import WordPieceTokenizer, bundled_model_dir

ROOT = Path(__file__).resolve().parents[2]
WINDOW = WordPieceTokenizer.WINDOW_CHARS

# Prose, accents, CJK, tabs, CRLF line ends, punctuation runs and words over 100
# characters (one [UNK] each), so window ends meet every kind of text.
PARAGRAPH = (
    "Les données sont chiffrées au repos — 東京で会いましょう.\tTabs, too!\r\n"
    "The keeper's log: ship {i} passed the reef at 03:12 UTC... (see §4.2).\n"
    + "x" * 150
    + " https://example.com/a/b?c=d&e=f "
    + "Ünïcödé naïveté {i}!!!???\n\n"
)


def _one_call(text: str) -> list[int]:
    whole = HfTokenizer.from_file(str(bundled_model_dir() / "tokenizer.json"))
    whole.no_truncation()
    return [start for start, _ in whole.encode(text, add_special_tokens=False).offsets]


def test_windows_give_the_starts_of_one_call() -> None:
    text = "".join(PARAGRAPH.format(i=i) for i in range(600))
    assert len(text) > 5 * WINDOW
    starts = WordPieceTokenizer(bundled_model_dir()).token_starts(text)
    assert list(starts) == _one_call(text)


def test_text_without_whitespace_is_cut_anyway() -> None:
    text = "!" * (2 * WINDOW + 17)  # one token per character
    starts = WordPieceTokenizer(bundled_model_dir()).token_starts(text)
    assert list(starts) == list(range(len(text)))
    assert list(WordPieceTokenizer(bundled_model_dir()).token_starts("")) == []


# Chunks 3 million single-token characters in a fresh process and prints how far its
# peak resident memory rose above what it held before, in MiB. One encode call on the
# whole text (and a Python tuple per token) needed about 600 bytes per character:
# some 1.7 GiB here.
MEASURE = textwrap.dedent(
    """
    import gc
    from domain.entities import Page, ParsedDocument
    from domain.ingestion.chunking import ChunkingOptions, chunk_document
    from infrastructure.embeddings.local import WordPieceTokenizer, bundled_model_dir

    def kib(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise LookupError(field)

    tokenizer = WordPieceTokenizer(bundled_model_dir())
    tokenizer.token_starts("warm up")
    text = "!" * 3_000_000
    gc.collect()
    before = kib("VmRSS")
    options = ChunkingOptions()
    drafts = chunk_document(ParsedDocument([Page(None, text)], None), tokenizer, options)
    assert sum(draft.token_count for draft in drafts) == len(text)
    assert max(draft.token_count for draft in drafts) <= options.size_tokens
    print((kib("VmHWM") - before) // 1024)
    """
)


def test_chunking_megabytes_of_text_needs_memory_for_a_window_not_the_text() -> None:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2_000:]
    # The starts themselves take 8 bytes a token (24 MiB); 200 MiB leaves room for the
    # drafts and the allocator, far below the old 1.7 GiB.
    assert int(done.stdout) < 200, done.stdout
