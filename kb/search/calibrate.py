"""Per-KB calibration of full-text evidence: when is a BM25 score "something relevant"?

BM25 scores depend on a KB's size, vocabulary and chunk lengths, so one fixed threshold
cannot serve the sample KB and a vendor's corpus alike. At build time the KB is asked
its own questions — its code titles and manual headings, each of which has a passage that
answers it — and a fixed set of off-domain questions in both languages that no plant KB
answers. The threshold sits between the two: below the weak end of the KB's own questions,
above the strong end of the off-domain ones. It is stored in the KB's `meta` table
(`fts_threshold`) and read by the engine's relevance decision when dense search did not run.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

from kb.search.terms import word_query

# Questions no factory knowledge base answers (both languages the kiosk speaks).
OFF_DOMAIN = (
    "what is the weather forecast for tomorrow",
    "recipe for chocolate cake with strawberries",
    "who won the football world cup final",
    "how do I renew my passport online",
    "best hiking trails near the mountains",
    "translate this poem into French",
    "stock market prices today",
    "birthday party ideas for children",
    "how many calories are in a banana",
    "movie recommendations for the weekend",
    "明天天氣如何",
    "晚餐要吃什麼比較好",
    "週末去哪裡看電影",
    "如何申請護照",
    "今天股市行情",
    "生日派對的點子",
    "推薦一本好看的小說",
    "香蕉有多少熱量",
)

DEFAULT_THRESHOLD = 1.0
"""Used only by a KB built before calibration existed (no `fts_threshold` in meta)."""


@dataclass(frozen=True)
class Calibration:
    threshold: float
    positive_p10: float
    negative_max: float
    positives: int


def best_score(conn: sqlite3.Connection, text: str) -> float:
    """The best BM25 score (higher is better) of any chunk for a query, 0 when nothing matches."""
    match = word_query(text)
    if not match:
        return 0.0
    row = conn.execute(
        "SELECT bm25(chunks_words) FROM chunks_words WHERE chunks_words MATCH ? ORDER BY bm25(chunks_words) LIMIT 1",
        [match],
    ).fetchone()
    return -float(row[0]) if row and row[0] is not None else 0.0


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * (len(ordered) - 1))))]


def calibrate(conn: sqlite3.Connection, *, limit: int = 400) -> Calibration:
    """The full-text threshold for one KB's FTS index."""
    questions: list[str] = [row[0] for row in conn.execute("SELECT DISTINCT title FROM codes WHERE title != ''")]
    for (section,) in conn.execute("SELECT DISTINCT section FROM chunks WHERE kind = 'manual' AND section != ''"):
        questions.append(str(section).split(" > ")[-1])
    questions = [q for q in dict.fromkeys(questions) if word_query(q)][:limit]
    positives = [s for s in (best_score(conn, q) for q in questions) if s > 0]
    negatives = [best_score(conn, q) for q in OFF_DOMAIN]
    negative_max = max(negatives, default=0.0)
    if not positives:
        return Calibration(DEFAULT_THRESHOLD, 0.0, negative_max, 0)
    low = _quantile(positives, 0.10)
    if negative_max <= 0:
        threshold = low / 2
    else:
        # Geometric midpoint: scores spread over orders of magnitude between KBs.
        threshold = math.sqrt(low * negative_max) if negative_max < low else negative_max * 1.05
    return Calibration(round(threshold, 4), round(low, 4), round(negative_max, 4), len(positives))
