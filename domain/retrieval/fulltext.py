"""Turning a question into the texts PostgreSQL's ``websearch_to_tsquery`` reads.

``websearch_to_tsquery`` joins plain words with AND, so a natural question
("how do I rotate the signing key?") matches only chunks that contain every one
of its (non-stop) words: precise, cheap through the GIN index, but often empty.
Search therefore tries every word first (:func:`all_words`) and, when that
finds too few chunks, any of them (:func:`any_word`); ranking (cover density)
puts the chunks that contain more of the words, closer together, first. The
any-word query is the expensive one (a common word matches a large part of a
corpus), which is why it only runs when the precise one falls short. A query
that uses the syntax itself (quotes, ``or``, ``-word``) is passed on as typed.
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


def any_word(question: str) -> str:
    """``websearch_to_tsquery`` text matching any word; "" when nothing is searchable."""
    return question if uses_syntax(question) else " or ".join(_words(question))
