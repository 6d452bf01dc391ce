"""Terms for the word index: Latin words as they are, CJK runs as overlapping bigrams."""

from __future__ import annotations

import re
import unicodedata

_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[0-9A-Za-z\u00c0-\u024f]+(?:[-_.:][0-9A-Za-z]+)*")
STOPWORDS = frozenset(
    "a an and are as at be by do does for from how i in is it my of on or the this to what when "
    "which why with should can".split()
)


def cjk_bigrams(run: str) -> list[str]:
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_terms(text: str) -> str:
    """Text for the `chunks_words` index: words plus CJK bigrams, space separated."""
    folded = unicodedata.normalize("NFKC", text)
    terms: list[str] = []
    for match in _WORD.finditer(folded):
        word = match.group(0)
        terms.append(word)
        compact = re.sub(r"[-_.:]", "", word)
        if compact != word:  # `E-203` is also findable as `E203`
            terms.append(compact)
    for run in _CJK_RUN.findall(folded):
        terms.extend(cjk_bigrams(run))
    return " ".join(terms)


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def word_terms(text: str) -> list[str]:
    """The distinct query terms of the word index: words (no stopwords) and CJK bigrams."""
    folded = unicodedata.normalize("NFKC", text)
    terms: list[str] = []
    for match in _WORD.finditer(folded):
        word = match.group(0).lower()
        if word not in STOPWORDS:
            terms.append(word)
    for run in _CJK_RUN.findall(folded):
        terms.extend(cjk_bigrams(run))
    return list(dict.fromkeys(terms))[:32]


def quote(term: str) -> str:
    """One term as an FTS5 string (the tokenizer still applies to it)."""
    return _quote(term)


def word_query(text: str) -> str | None:
    """FTS5 MATCH expression for the word index (OR of quoted terms), or None."""
    return " OR ".join(_quote(t) for t in word_terms(text)) or None


def trigram_query(text: str) -> str | None:
    """FTS5 MATCH expression for the trigram index: CJK runs and code-like words (with a digit).

    Chinese needs the trigram index (a phrase longer than two characters); codes need it for
    partial matches (`1002` inside `AL-1002`). Plain Latin words are left to the word index:
    in the trigram index a short common word ("oil", "belt") matches as a substring of
    thousands of chunks, which cost tens of milliseconds at 50k chunks, and leaving them out
    raised recall on the labelled query set (tests/data/retrieval_queries.jsonl).
    """
    folded = unicodedata.normalize("NFKC", text)
    terms: list[str] = []
    for match in _WORD.finditer(folded):
        word = match.group(0).lower()
        if len(word) >= 3 and word not in STOPWORDS and any(c.isdigit() for c in word):
            terms.append(word)
    for run in _CJK_RUN.findall(folded):
        if len(run) >= 3:
            terms.append(run)
    unique = list(dict.fromkeys(terms))[:32]
    return " OR ".join(_quote(t) for t in unique) or None
