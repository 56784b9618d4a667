"""Turning a question into the texts PostgreSQL's ``websearch_to_tsquery`` reads.

``websearch_to_tsquery`` joins plain words with AND, so a natural question
("how do I rotate the signing key?") matches only chunks that contain every one
of its (non-stop) words: precise and cheap through the GIN index, often empty,
in which case the vector path carries the search. Matching any word instead was
tried and dropped: a common word matches a large part of a corpus, which made it
the most expensive query of a search, and its loose matches made the fused
ranking worse than the vector path alone (bench/README.md, retrieval_eval). A
query that uses the syntax itself (quotes, ``or``, ``-word``) is passed on as typed,
unless it wants no word at all (only ``-word``s): that would match every chunk without
them, all ranked alike.

Words are what whitespace separates, punctuation and all: PostgreSQL's parser reads
``config.yaml``, ``2.5``, an address or a path as one token, as it did when it indexed
the chunks, and keeps combining marks in their words; cutting them apart here would
look for pieces the index does not hold.
"""

from __future__ import annotations

import re

MAX_TERMS = 32
_WORD = re.compile(r"\w", re.UNICODE)
_NOT_WORD = re.compile(r"\W+", re.UNICODE)
_SYNTAX = re.compile(r'"|(^|\s)-\w|\s(or|OR)\s')


def uses_syntax(question: str) -> bool:
    return _SYNTAX.search(question) is not None


def _is_word(token: str) -> bool:
    """Holds a word other than "or", which websearch_to_tsquery reads as OR even with
    punctuation after it ("black or? white")."""
    return _WORD.search(token) is not None and _NOT_WORD.sub("", token).lower() != "or"


def _words(question: str) -> list[str]:
    return [token for token in question.split()[:MAX_TERMS] if _is_word(token)]


def _wants_a_word(question: str) -> bool:
    return any(
        not token.startswith("-") and _is_word(token)
        for token in question.replace('"', " ").split()
    )


def all_words(question: str) -> str:
    """``websearch_to_tsquery`` text matching every word; "" when nothing is searchable."""
    if uses_syntax(question):
        return question if _wants_a_word(question) else ""
    return " ".join(_words(question))
