"""HTML to text with the standard library parser; scripts, styles and templates dropped."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Never text. <head> is not skipped as a whole: HTML5 may omit </head>, and its <title> is text.
# <noscript> holds fallback text and is often left open: kept, so it cannot swallow a page.
_SKIP = frozenset({"script", "style", "template", "svg", "iframe", "object"})
_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "main", "aside", "nav",
        "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "table", "tr", "blockquote",
        "pre", "br", "hr", "dd", "dt", "dl", "figure", "figcaption", "form", "title",
    }
)  # fmt: skip
_LINES = frozenset({"br", "li", "tr"})  # a new line, not a new paragraph
_SPACES = re.compile(r"[ \t\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self._skipping.clear()  # an unclosed <noscript> etc. must not swallow the page
        if tag in _SKIP:
            self._skipping.append(tag)
        elif tag in _BLOCK:
            self.parts.append("\n" if tag in _LINES else "\n\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "body"):
            self._skipping.clear()
        elif self._skipping and self._skipping[-1] == tag:
            self._skipping.pop()
        elif tag in _BLOCK and tag not in _LINES:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (_SPACES.sub(" ", line).strip() for line in "".join(extractor.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
