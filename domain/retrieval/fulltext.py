"""Turning a question into the texts PostgreSQL's ``websearch_to_tsquery`` reads.

``websearch_to_tsquery`` joins plain words with AND, so a natural question
("how do I rotate the signing key?") matches only chunks that contain every one
of its (non-stop) words: precise and cheap through the GIN index, often empty,
in which case the vector path carries the search. Matching any word instead was
tried and dropped: a common word matches a large part of a corpus, which made it
the most expensive query of a search, and its loose matches made the fused
ranking worse than the vector path alone (bench/README.md, retrieval_eval). A
query that uses the syntax itself (quotes, ``or``, ``-word``) is passed on as typed.
"""

from __future__ import annotations

import re

MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)
_SYNTAX = re.compile(r'"|(^|\s)-\w|\s(or|OR)\s')


def uses_syntax(question: str) -> bool:
    return _SYNTAX.search(question) is not None


def _words(question: str) -> list[str]:
    return [word for word in _WORD.findall(question)[:MAX_TERMS] if word.lower() != "or"]


def all_words(question: str) -> str:
    """``websearch_to_tsquery`` text matching every word; "" when nothing is searchable."""
    return question if uses_syntax(question) else " ".join(_words(question))
