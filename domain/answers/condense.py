"""Rewriting a follow-up question to stand alone, without a language model.

"How do I install it?" after "What is pgvector?" retrieves nothing useful on
its own. When a question refers back (a pronoun or a demonstrative), opens as a
continuation ("And ...", "What about ...") or is a word or two, the subject words
of the previous question that it lacks are added in brackets: "How do I install
it? (pgvector)". When the previous question referred back too, its own subject is
carried on: "Does it need root?" next becomes
"Does it need root? (install pgvector)", as the previous question was rewritten.
Generative answerers ask their model instead and use this when the model is
unavailable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from domain.answers.ports import Turn
from domain.chats.entities import MessageRole

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_ADDED_TERMS = 12
SHORT_QUESTION_WORDS = 4
# Questions of at most this many words are taken as follow-ups by the offline rewrite.
FOLLOW_ON_MAX_WORDS = 2
# Openings of a question that continues the previous one.
CONTINUATIONS = frozenset(
    [
        ("and",),
        ("or",),
        ("but",),
        ("also",),
        ("so",),
        ("then",),
        ("what", "about"),
        ("how", "about"),
    ]
)
# Earlier questions a follow-up's subject is looked for in, latest first.
MAX_SUBJECT_QUESTIONS = 3

REFERRING_WORDS = frozenset(
    [
        "it",
        "its",
        "it's",
        "itself",
        "they",
        "them",
        "their",
        "theirs",
        "this",
        "that",
        "these",
        "those",
        "he",
        "him",
        "his",
        "she",
        "her",
        "there",
        "such",
        "same",
        "former",
        "latter",
        "one",
        "ones",
        "above",
        "previous",
    ]
)

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "done",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "not",
        "no",
        "nor",
        "so",
        "than",
        "too",
        "very",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "when",
        "where",
        "why",
        "how",
        "i",
        "me",
        "my",
        "we",
        "us",
        "our",
        "you",
        "your",
        "yours",
        "please",
        "tell",
        "explain",
        "describe",
        "give",
        "show",
        "list",
        "also",
        "more",
        "most",
        "less",
        "some",
        "any",
        "all",
        "each",
        "other",
        "others",
        "much",
        "many",
        "way",
        "ways",
        "use",
        "used",
        "using",
        "get",
        "got",
        "make",
        "made",
    ]
)


def words(text: str) -> list[str]:
    return [word.lower() for word in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Lower-cased words that carry meaning (no stopwords or pronouns), in order."""
    return [
        word
        for word in words(text)
        if word not in STOPWORDS and word not in REFERRING_WORDS and not word.isdigit()
    ]


def needs_context(question: str) -> bool:
    found = words(question)
    return len(found) <= SHORT_QUESTION_WORDS or any(word in REFERRING_WORDS for word in found)


def refers_back(question: str) -> bool:
    """Whether an earlier question took its subject from the one before it: it refers
    back, or names nothing. Short is not enough here: "What is pgvector?" opens a
    subject of its own, and the questions before it are about something else."""
    return any(word in REFERRING_WORDS for word in words(question)) or not content_words(question)


def _last_answered_question(history: Sequence[Turn]) -> tuple[str, int] | None:
    """The latest question that got an answer, and its place in ``history``. One left
    without (stopped, failed) is most often the very question being asked again, and
    would add nothing to it."""
    answered = False
    for place in range(len(history) - 1, -1, -1):
        turn = history[place]
        if turn.role is MessageRole.ASSISTANT:
            answered = True
        elif answered:
            return turn.content, place
    return None


def _subject(history: Sequence[Turn]) -> list[str]:
    """The content words of the latest answered question as it was rewritten: its own,
    then, while it referred back, those of the answered question before it, and so on,
    through at most MAX_SUBJECT_QUESTIONS questions and MAX_ADDED_TERMS words."""
    subject: list[str] = []
    earlier = history
    for _ in range(MAX_SUBJECT_QUESTIONS):
        found = _last_answered_question(earlier)
        if found is None:
            break
        previous, place = found
        subject += [word for word in content_words(previous) if word not in subject]
        if len(subject) >= MAX_ADDED_TERMS or not refers_back(previous):
            break
        earlier = earlier[:place]  # what that question was rewritten with
    return subject


def follows_on(question: str) -> bool:
    """Whether a question takes its subject from the conversation, as far as words tell:
    it refers back or names nothing ("Why?"), opens as a continuation ("And on Windows?",
    "What about the price?"), or is a word or two ("Windows?"). A short question with a
    subject of its own ("When are employees paid?", "What is pgvector?") does not: the
    previous subject's words would pull retrieval and the answer back to that subject.
    Stricter than needs_context, which only decides whether a model is asked."""
    found = words(question)
    return (
        refers_back(question)
        or len(found) <= FOLLOW_ON_MAX_WORDS
        or tuple(found[:1]) in CONTINUATIONS
        or tuple(found[:2]) in CONTINUATIONS
    )


def condense_locally(history: Sequence[Turn], question: str) -> str:
    if not follows_on(question):
        return question
    present = set(words(question))
    added = [word for word in _subject(history) if word not in present]
    if not added:
        return question
    return f"{question} ({' '.join(added[:MAX_ADDED_TERMS])})"
