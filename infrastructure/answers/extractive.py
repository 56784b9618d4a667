"""The offline answerer: quotes the retrieved sentences that best answer the question.

Nothing is generated, so nothing can be made up: the answer is a few sentences
copied verbatim from the sources (whitespace collapsed), each followed by the
``[n]`` of the source it came from, within ``max_chars`` (a best sentence
longer than that alone is cut at a word, with an ellipsis). Sentences are
scored by the cosine similarity of their embedding to the question's plus the
share of the question's content words they contain; only the best candidates by
word overlap are embedded, which keeps the first token fast. When the embedding
provider is down (after its own retries) the answer ends with
EMBEDDING_UNAVAILABLE, as a search does: nothing can be quoted without it.

Markdown structure is not quoted: a heading shares its section's words and would
win on overlap, so headings (``# ...``, and the text above a ``===`` or ``---``
line), rules and table delimiter rows are left out of the candidates, and a
sentence needs ``min_words`` words with a letter or digit (a ``#``, a dash or a
list marker is no word).
"""

from __future__ import annotations

import asyncio
import functools
import re
from array import array
from collections import OrderedDict
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, replace

from domain.answers.condense import condense_locally, content_words
from domain.answers.ports import (
    AnswerRequest,
    GenerationEvent,
    GenerationFinished,
    GroundingSource,
    TextDelta,
    Turn,
)
from domain.answers.text import snippet, word_pieces
from domain.ingestion.ports import Embedder
from domain.retrieval.embedding_faults import embedding_for_a_caller

NAME = "extractive"
_BLOCK = re.compile(r"\n\s*\n")
_LIST_ITEM = re.compile(r"^\s*(?:[-*•+]|\d{1,3}[.)])\s+")
# CommonMark: one to six #s then a space or the end ("#1 priority" is text), and a
# setext underline of = or - turns the paragraph lines above it into a heading.
_ATX_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]|$)")
_SETEXT_UNDERLINE = re.compile(r"^ {0,3}(?:=+|-+)[ \t]*$")
_THEMATIC_BREAK = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_TABLE_DELIMITER = re.compile(r"^(?=[^|]*\|)(?=[^-]*-)[ \t|:-]+$")  # |:---|---:|
_TABLE_ROW = re.compile(r"^\s*\|")
_WORD_CHARACTER = re.compile(r"[^\W_]")  # a letter or a digit
# Up to two closing quotes/brackets may follow the stop, and stay with their sentence
# (only the space is cut: quotes are verbatim); an opening one may precede the next
# capital.
_CLOSE = "[\"'\u201d\u2019)\\]]"
_SENTENCE_END = re.compile(
    rf"(?:(?<=[.!?])|(?<=[.!?]{_CLOSE})|(?<=[.!?]{_CLOSE}{_CLOSE}))"
    r"\s+(?=[\"'\u201c\u2018(\[]?[A-Z0-9])"
)
_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:Dr|Mr|Mrs|Ms|Prof|St|Sr|Jr|vs|etc|Fig|No|Inc|Ltd|e\.g|i\.e|[A-Z])\.$"
)


@dataclass(frozen=True, slots=True)
class ExtractiveOptions:
    max_chars: int = 700
    max_sentences: int = 5
    # Sentences embedded per answer, and how much of each: embedding is what the first
    # token waits for (about 0.4 ms per token on one core: 4 x 100 characters ~35 ms).
    # In retrieval_eval 4 x 100 quoted better than 8 x 200 (F1 0.440 vs 0.415).
    candidates: int = 4
    embed_chars: int = 100
    cache_size: int = 20_000  # sentence vectors kept (1.5 kB each at 384 dimensions)
    min_words: int = 4
    max_sentence_chars: int = 600
    similarity_weight: float = 0.65
    # A sentence must score at least this share of the best one to be quoted too.
    keep_ratio: float = 0.6


@dataclass(frozen=True, slots=True)
class Sentence:
    source: int
    position: int
    text: str
    terms: frozenset[str]


@functools.lru_cache(maxsize=32_768)  # the words of the sources, again with every answer
def stem(word: str) -> str:
    """A light suffix-stripper, enough to match "indexes" with "index"."""
    for suffix, replacement in (("ies", "y"), ("sses", "ss"), ("es", ""), ("s", "")):
        if len(word) > 4 and word.endswith(suffix) and not word.endswith("ss"):
            return word[: -len(suffix)] + replacement
    for suffix in ("ing", "ed"):
        if len(word) > 5 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def terms(text: str) -> frozenset[str]:
    return frozenset(stem(word) for word in content_words(text))


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of a passage, whitespace collapsed, in order."""
    units: list[str] = []
    for block in _BLOCK.split(text):
        for paragraph in _paragraphs(block):
            start = len(units)  # an abbreviation never joins the previous paragraph
            for piece in _SENTENCE_END.split(" ".join(paragraph.split())):
                if (
                    len(units) > start
                    and _ABBREVIATION.search(units[-1])
                    and not _LIST_ITEM.match(piece)
                ):
                    units[-1] = f"{units[-1]} {piece}"  # "Dr. Vance" is one sentence
                else:
                    units.append(piece)
    return [unit.strip() for unit in units if unit.strip()]


def _paragraphs(block: str) -> list[str]:
    """The block's lines to split into sentences: runs of prose lines joined, list items
    and table rows each alone (all lines alone in a list); Markdown headings, rules and
    table delimiter rows left out. Text without Markdown (PDF, DOCX) is joined as is."""
    lines = [line for line in block.split("\n") if line.strip()]
    is_list = any(_LIST_ITEM.match(line) for line in lines)
    is_table = any(_TABLE_DELIMITER.match(line) for line in lines)
    runs: list[list[str]] = []
    after_prose = False  # the last run is prose, with nothing left out since
    for line in lines:
        if _SETEXT_UNDERLINE.match(line) and after_prose:
            runs.pop()  # its lines were a heading's
        if any(
            pattern.match(line)
            for pattern in (_ATX_HEADING, _SETEXT_UNDERLINE, _THEMATIC_BREAK, _TABLE_DELIMITER)
        ):
            after_prose = False
            continue
        item = bool(_LIST_ITEM.match(line) or _TABLE_ROW.match(line)) or (is_table and "|" in line)
        if after_prose and not is_list and not item:
            runs[-1].append(line)
        else:
            runs.append([line])
        after_prose = not item
    return [" ".join(run) for run in runs]


def _without_headings(text: str) -> str:
    """``text`` whitespace collapsed, without its headings and rules."""
    kept = (paragraph for block in _BLOCK.split(text) for paragraph in _paragraphs(block))
    return " ".join(" ".join(kept).split())


def _words(text: str) -> int:
    """Words with a letter or a digit, a list item's marker aside."""
    return sum(
        1 for word in _LIST_ITEM.sub("", text, count=1).split() if _WORD_CHARACTER.search(word)
    )


class ExtractiveAnswerer:
    name = NAME

    def __init__(self, embedder: Embedder, options: ExtractiveOptions | None = None) -> None:
        self._embedder = embedder
        self._options = options or ExtractiveOptions()
        # Questions about the same documents meet the same sentences again; a cached
        # vector spares the model call the first token waits for. float32, bounded.
        self._cache: OrderedDict[str, array[float]] = OrderedDict()

    async def _sentence_vectors(self, texts: list[str]) -> list[array[float]]:
        # Taken before the model call: while it runs, other answers fill the cache
        # and may push these out.
        distinct = list(dict.fromkeys(texts))
        known = {text: self._cache[text] for text in distinct if text in self._cache}
        missing = [text for text in distinct if text not in known]
        if missing:
            with embedding_for_a_caller("answer"):
                embedded = await self._embedder.embed_sentences(missing)
            for text, values in zip(missing, embedded, strict=True):
                known[text] = array("f", values)
        found: list[array[float]] = []
        for text in texts:
            self._cache[text] = known[text]
            self._cache.move_to_end(text)
            found.append(known[text])
        while len(self._cache) > self._options.cache_size:
            self._cache.popitem(last=False)
        return found

    async def condense(self, history: Sequence[Turn], question: str) -> str:
        return condense_locally(history, question)

    async def stream(self, request: AnswerRequest) -> AsyncGenerator[GenerationEvent, None]:
        answer = await self.compose(request)
        for piece in word_pieces(answer):
            yield TextDelta(piece)
            await asyncio.sleep(0)  # a cancelled stream stops between pieces
        # What was read: the question and the sources. A source's length is stored with
        # its chunk; tokenising ~10 KB of sources again cost ~3 ms of every answer.
        tokenizer = self._embedder.tokenizer
        read = len(tokenizer.token_starts(request.question)) + sum(
            source.token_count
            if source.token_count is not None
            else len(tokenizer.token_starts(source.text))
            for source in request.sources
        )
        yield GenerationFinished(
            model=NAME,
            prompt_tokens=read,
            completion_tokens=len(tokenizer.token_starts(answer)),
        )

    async def compose(self, request: AnswerRequest) -> str:
        """The whole answer: chosen sentences in order of merit, each with its citation."""
        chosen = await self.choose(request.question, request.question_embedding, request.sources)
        if not chosen and request.sources:
            # No passage splits into quotable sentences (lists, tables): quote the best one,
            # without its headings unless it is nothing else.
            first = request.sources[0]
            text = _without_headings(first.text) or " ".join(first.text.split())
            room = self._options.max_chars - len(f" [{first.index}]")
            return f"{_fit(text, room)} [{first.index}]"
        return " ".join(f"{sentence.text} [{sentence.source}]" for sentence in chosen)

    async def choose(
        self,
        question: str,
        question_embedding: Sequence[float],
        sources: Sequence[GroundingSource],
    ) -> list[Sentence]:
        options = self._options
        wanted = terms(question)
        sentences = self._sentences(sources)
        if not sentences:
            return []

        def overlap(sentence: Sentence) -> float:
            return len(wanted & sentence.terms) / len(wanted) if wanted else 0.0

        # Word overlap (with a small preference for better-ranked sources) picks the
        # candidates worth embedding.
        candidates = sorted(
            sentences,
            key=lambda s: (-(overlap(s) + 0.1 / s.source), s.source, s.position),
        )[: options.candidates]
        vectors = await self._sentence_vectors([s.text[: options.embed_chars] for s in candidates])
        weight = options.similarity_weight
        scored = sorted(
            (
                (
                    weight * _dot(question_embedding, vector) + (1 - weight) * overlap(sentence),
                    sentence,
                )
                for sentence, vector in zip(candidates, vectors, strict=True)
            ),
            key=lambda item: (-item[0], item[1].source, item[1].position),
        )
        best = scored[0][0]
        chosen: list[Sentence] = []
        length = 0
        for score, candidate in scored:
            if len(chosen) >= options.max_sentences:
                break
            if chosen and (score < best * options.keep_ratio or score <= 0):
                break
            if any(_same(candidate.text, other.text) for other in chosen):
                continue
            citation = len(f" [{candidate.source}] ")
            # The best sentence may be over the budget alone: then its beginning, cut at
            # a word, rather than an answer longer than the budget.
            sentence = (
                candidate
                if chosen
                else replace(candidate, text=_fit(candidate.text, options.max_chars - citation))
            )
            extra = len(sentence.text) + citation
            if length + extra > options.max_chars:
                continue
            chosen.append(sentence)
            length += extra
        return chosen

    def _sentences(self, sources: Sequence[GroundingSource]) -> list[Sentence]:
        options = self._options
        found: list[Sentence] = []
        for source in sources:
            for position, text in enumerate(split_sentences(source.text)):
                if _words(text) < options.min_words or len(text) > options.max_sentence_chars:
                    continue
                if sum(map(str.isalpha, text)) < len(text) / 2:
                    continue  # code, tables, numbers
                found.append(Sentence(source.index, position, text, terms(text)))
        return found


def _fit(text: str, room: int) -> str:
    """``text`` (whitespace collapsed) in at most ``room`` characters: cut at a word,
    with an ellipsis, when it is longer."""
    # snippet() may go one character over its limit, for the ellipsis.
    return text if len(text) <= room else snippet(text, room - 1)


def _dot(left: Sequence[float], right: Sequence[float]) -> float:
    return sum(a * b for a, b in zip(left, right, strict=True))


def _same(left: str, right: str) -> bool:
    a, b = left.lower(), right.lower()
    return a in b or b in a
