"""Per-KB calibration of full-text evidence: how much coverage counts as "something relevant"?

The evidence is coverage (kb.search.coverage), which is already on a 0..1 scale, but how
much an off-domain question covers by chance still depends on a KB's vocabulary. At build
time the KB is asked its own questions — its code titles and manual headings, each of which
has a passage that answers it — and a fixed set of off-domain questions in both languages
that no plant KB answers. The threshold is 1.2 times the best off-domain coverage (at least
0.2), and never above half of the weak end (10th percentile) of the KB's own questions. It is
stored in the KB's `meta` table (`fts_threshold`) and read by the engine's relevance decision
when dense search did not run or cannot judge the language.
(Measured on the sample KB: off-domain max 0.22, own questions p10 1.0, threshold 0.26.)
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from kb.search.coverage import best_coverage
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

DEFAULT_THRESHOLD = 0.3
"""Used only by a KB built before calibration existed (no `fts_threshold` in meta)."""


@dataclass(frozen=True)
class Calibration:
    threshold: float
    positive_p10: float
    negative_max: float
    positives: int


def best_score(conn: sqlite3.Connection, text: str) -> float:
    """The best coverage of any chunk for a query (0 when nothing matches)."""
    return best_coverage(conn, text)


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
    threshold = min(low / 2, max(negative_max * 1.2, 0.2))
    return Calibration(round(threshold, 4), round(low, 4), round(negative_max, 4), len(positives))
