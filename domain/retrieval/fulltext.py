"""Turning a question into the text PostgreSQL's ``websearch_to_tsquery`` reads.

``websearch_to_tsquery`` joins plain words with AND, so a natural question
("how do I rotate the signing key?") only matches chunks that contain every
one of its words and usually matches nothing. A question without search
syntax is therefore rewritten to OR its words; ranking (cover density) still
puts the chunks that contain more of them, closer together, first. A query
that uses the syntax itself (quotes, ``or``, ``-word``) is passed on as typed.
"""

from __future__ import annotations

import re

MAX_TERMS = 32
_WORD = re.compile(r"\w+", re.UNICODE)
_SYNTAX = re.compile(r'"|(^|\s)-\w|\s(or|OR)\s')


def websearch_text(question: str) -> str:
    """The argument for ``websearch_to_tsquery('english', ...)``; "" when nothing is searchable."""
    if _SYNTAX.search(question):
        return question
    words = _WORD.findall(question)[:MAX_TERMS]
    return " or ".join(word for word in words if word.lower() != "or")
