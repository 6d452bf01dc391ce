"""Full-text evidence on a scale that means the same in every KB: how much of the query a passage covers.

A raw BM25 score grows with the number of matching terms and depends on a KB's size and
chunk lengths; a few common words of an off-domain question ("what should I eat tonight")
can outscore a short real symptom. Coverage asks instead: of the query's terms, weighted by
how rare each is in this KB (IDF), what share does the passage contain? A term the KB never
uses weighs as much as its rarest one, so a question about something else covers little.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence

from kb.search.terms import quote, word_terms

# Bigrams of Chinese function words ("what", "how", "this is"): they say nothing about the topic.
CJK_STOP = frozenset(
    "這是 是什 什麼 怎麼 怎樣 為什 麼辦 如何 一個 可以 我們 你們 他們 沒有 不是 就是 還是 要怎 該怎 請問 "
    "一下 時候 的時 候要 這個 那個 是不 不會 會不 有沒 這樣 那樣 因為 所以 但是 如果 現在 今天 應該".split()
)


def _is_cjk(term: str) -> bool:
    return all("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in term)


def coverage(conn: sqlite3.Connection, text: str, candidates: Sequence[str]) -> dict[str, float]:
    """IDF-weighted share (0..1) of the query's word-index terms found in each candidate chunk."""
    terms = [t for t in word_terms(text) if t not in CJK_STOP]
    if not terms or not candidates:
        return {}
    total = int(conn.execute("SELECT count(*) FROM chunks").fetchone()[0]) or 1
    marks = ",".join("?" for _ in candidates)
    weights: dict[str, float] = {}
    hits: dict[str, set[str]] = {}
    _df: dict[str, int] = {}
    for term in terms:
        try:
            df = int(conn.execute("SELECT count(*) FROM chunks_words WHERE chunks_words MATCH ?",
                                  [quote(term)]).fetchone()[0])
            rows = conn.execute(
                f"SELECT chunk_id FROM chunks_words WHERE chunks_words MATCH ? AND chunk_id IN ({marks})",  # noqa: S608
                [quote(term), *candidates],
            ).fetchall()
        except sqlite3.OperationalError:
            continue  # a term the tokenizer reduces to nothing
        weights[term] = math.log((total + 1) / (df + 0.5))
        _df[term] = df
        hits[term] = {row[0] for row in rows}
    # A Chinese bigram across a word boundary (「溫度太高」 gives 「度太」) is absent from every KB;
    # when both its characters belong to terms the KB does use, it is an artefact, not a topic.
    known = "".join(t for t in weights if hits.get(t) is not None and _df.get(t, 0) > 0)
    for term in list(weights):
        if _is_cjk(term) and len(term) == 2 and _df.get(term, 0) == 0 and all(ch in known for ch in term):
            weights[term] = 0.0
    whole = sum(weights.values())
    if whole <= 0:
        return {}
    return {ident: sum(w for t, w in weights.items() if ident in hits[t]) / whole for ident in candidates}


def best_coverage(conn: sqlite3.Connection, text: str, depth: int = 10) -> float:
    """The best coverage of any of the top BM25 chunks for a query (0 when nothing matches)."""
    match = " OR ".join(quote(t) for t in word_terms(text))
    if not match:
        return 0.0
    ids = [row[0] for row in conn.execute(
        "SELECT chunk_id FROM chunks_words WHERE chunks_words MATCH ? ORDER BY bm25(chunks_words) LIMIT ?",
        [match, depth])]
    return max(coverage(conn, text, ids).values(), default=0.0)
