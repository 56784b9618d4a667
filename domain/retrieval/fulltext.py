"""Turning a question into the texts PostgreSQL's ``websearch_to_tsquery`` reads.

``websearch_to_tsquery`` joins plain words with AND, so a natural question
("how do I rotate the signing key?") matches only chunks that contain every one
of its (non-stop) words: precise and cheap through the GIN index, often empty,
in which case the vector path carries the search. Matching any word instead was
tried and dropped: a common word matches a large part of a corpus, which made it
the most expensive query of a search, and its loose matches made the fused
ranking worse than the vector path alone (bench/README.md, retrieval_eval). A
query that uses the syntax itself (quotes, ``or``, ``-word``) keeps it, unless an
alternative of it wants no word at all (only ``-word``s, or stop words besides): that
would match every chunk without them, all ranked alike.

Nothing reaches PostgreSQL as typed: the question is read the way
``websearch_to_tsquery`` reads it (:func:`_terms`) and written back term by term.
There, every ``-`` before a term is a NOT, even across spaces and the tsquery
operators it skips (``! & | ( ) <``), and NOTs in a row pile up on a stack of 32
in PostgreSQL, which fails the whole statement ("tsquery stack too small"): a rule
of dashes, a markdown table row or a pasted ``--flag`` did. Here one ``-`` right
before a term excludes it (``-word``, ``-"a phrase"``, ``-(word)``, ``(-word)``);
more than one, or one with a space after it, is punctuation, as PostgreSQL's
parser read it in the indexed text. So each term gets one NOT at most, and a query
at most :data:`MAX_TERMS` terms.

Words are what white space (and the skipped operators) separate, punctuation and
all: PostgreSQL's parser reads ``config.yaml``, ``2.5``, an address or a path as one
token, as it did when it indexed the chunks, and keeps combining marks in their
words; cutting them apart here would look for pieces the index does not hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

MAX_TERMS = 32
_WORD = re.compile(r"\w", re.UNICODE)
_NOT_WORD = re.compile(r"\W+", re.UNICODE)
_SYNTAX = re.compile(r'"|(^|[\s!&|()<])-[!&|()<]*\w|\s(or|OR)\s')
# A term: the dashes, tsquery operators (``! & | ( ) <``, ISOPERATOR in PostgreSQL's
# tsquery.c) and spaces before it, then a quoted phrase (to the next quote, or the end)
# or a word (to a space, an operator or a quote), then the operators and spaces after it.
_TERM = re.compile(
    r"(?P<before>[\s!&|()<-]*)"
    r'(?:"(?P<phrase>[^"]*)"?|(?P<word>[^\s"!&|()<-][^\s"!&|()<]*))'
    r"[\s!&|()<]*"
)
# One dash right before its term, operators around it: the term is excluded.
_EXCLUDES = re.compile(r"[\s!&|()<]*-[!&|()<]*")
# websearch_to_tsquery's OR: "or" in any case, then a character that cannot go on a
# word, then something other than white space.
_OR = re.compile(r"or(?=[^\w-].*\S)", re.IGNORECASE | re.DOTALL)
# Quoting needlessly is harmless: any letter outside ASCII counts as ending "or", as it
# does for PostgreSQL in a database whose character type is the C locale.
_OR_WORD = re.compile(r"or(?![A-Za-z0-9_-])", re.IGNORECASE)
# A word as PostgreSQL's parser reads one: letters and digits, or several joined by "-",
# "." or "/" (a hyphenated word, a host name, a path: a word of its own, never a stop word).
_WORDS = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*", re.UNICODE)
# The stop words of PostgreSQL's english configuration (tsearch_data/english.stop), the
# one chunk_search.py searches with: a term made of them asks for nothing.
_ENGLISH_STOP = """
i me my myself we our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves what which
who whom this that these those am is are was were be been being have has had having do
does did doing a an the and but if or because as until while of at by for with about
against between into through during before after above below to from up down in out on
off over under again further then once here there when where why how all any both each
few more most other some such no nor not only own same so than too very s t can will
just don should now
"""
_STOP_WORDS = frozenset(_ENGLISH_STOP.split())


@dataclass(frozen=True, slots=True)
class _Term:
    text: str  # a word as typed, or a phrase's text without its quotes
    phrase: bool
    excluded: bool

    def written(self) -> str:
        # A phrase, or a word websearch_to_tsquery would take for an OR: in quotes.
        quoted = self.phrase or (not self.excluded and _OR_WORD.match(self.text) is not None)
        text = f'"{self.text}"' if quoted else self.text
        return f"-{text}" if self.excluded else text

    def searchable(self) -> bool:
        """Holds a word the english configuration keeps."""
        return any(word.lower() not in _STOP_WORDS for word in _WORDS.findall(self.text))


Item = _Term | None  # None: an OR between the terms around it


def uses_syntax(question: str) -> bool:
    return _SYNTAX.search(question) is not None


def _is_word(token: str) -> bool:
    """Holds a word other than "or", which websearch_to_tsquery reads as OR even with
    punctuation after it ("black or? white")."""
    return _WORD.search(token) is not None and _NOT_WORD.sub("", token).lower() != "or"


def _terms(question: str) -> Iterator[Item]:
    """The terms of ``question`` and the ORs between them, as websearch_to_tsquery reads
    them (its gettoken_query_websearch), but for what a term's dashes mean (see above)."""
    position = 0
    while (term := _TERM.match(question, position)) is not None:
        phrase = term["phrase"]
        text = phrase if phrase is not None else term["word"]
        yield _Term(text, phrase is not None, _EXCLUDES.fullmatch(term["before"]) is not None)
        position = term.end()
        if _OR.match(question, position):
            yield None
            position += 2


def _kept(items: Iterator[Item]) -> list[Item]:
    """The first MAX_TERMS terms holding a word, with an OR only between two of them."""
    kept: list[Item] = []
    count = 0
    for item in items:
        if item is None:
            if kept and kept[-1] is not None:
                kept.append(None)
        elif _is_word(item.text):
            if count == MAX_TERMS:
                break
            kept.append(item)
            count += 1
    return kept[:-1] if kept and kept[-1] is None else kept


def _alternatives(items: Sequence[Item]) -> Iterator[list[_Term]]:
    """The or-separated alternatives: AND binds tighter than OR in a tsquery."""
    alternative: list[_Term] = []
    for item in items:
        if item is None:
            yield alternative
            alternative = []
        else:
            alternative.append(item)
    yield alternative


def _wants_a_word(items: Sequence[Item]) -> bool:
    """Some alternative requires a word, and none only excludes: one that did would
    match every chunk without its words. (An alternative of stop words alone is
    dropped by PostgreSQL.)"""
    wanted = False
    for alternative in _alternatives(items):
        requires = any(not term.excluded and term.searchable() for term in alternative)
        excludes = any(term.excluded and term.searchable() for term in alternative)
        if excludes and not requires:
            return False
        wanted = wanted or requires
    return wanted


def all_words(question: str) -> str:
    """``websearch_to_tsquery`` text matching every word; "" when nothing is searchable."""
    items = _kept(_terms(question))
    if not uses_syntax(question):
        # Plain words, all required: no OR, and no NOT (a plain question has no quotes).
        words = (replace(item, excluded=False) for item in items if item is not None)
        return " ".join(word.written() for word in words)
    if not _wants_a_word(items):
        return ""
    return " ".join("or" if item is None else item.written() for item in items)
