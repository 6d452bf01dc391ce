"""A cross-language bridge built from the plant's own bilingual code table.

Most plants keep one code-table row per language (`lang` = zh-TW and en) for the same
code and machine model: titles, descriptions, steps and safety notes that translate each
other line by line. Those aligned lines are a small translation memory. A symptom or a
question in one language finds its nearest aligned lines (BM25 over words and CJK
bigrams) and their counterparts in the other language become an extra query, so an
English question can reach a Chinese manual section and the other way round, without a
multilingual embedding model.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from itertools import permutations

from kb.search.terms import index_terms, word_query


def aligned_pairs(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    """(text, translation) pairs from code rows that share code and machine model."""
    groups: dict[tuple[str, str], dict[str, tuple[str, str, list[str], list[str]]]] = {}
    rows = conn.execute("SELECT code, machine_model, lang, title, description, steps, safety FROM codes").fetchall()
    for code, model, lang, title, description, steps, safety in rows:
        groups.setdefault((code, model), {})[lang] = (title, description, json.loads(steps), json.loads(safety))
    pairs: list[tuple[str, str]] = []
    for by_lang in groups.values():
        for first, second in permutations(sorted(by_lang), 2):
            a, b = by_lang[first], by_lang[second]
            pairs.append((a[0], b[0]))
            if a[1] and b[1]:
                pairs.append((a[1], b[1]))
            for mine, theirs in ((a[2], b[2]), (a[3], b[3])):
                if len(mine) == len(theirs):  # only lists that line up one to one translate each other
                    pairs.extend(zip(mine, theirs, strict=True))
    return [(x, y) for x, y in pairs if x.strip() and y.strip() and x != y]


class CodeBridge:
    """Finds the translations of the code-table lines nearest to a query."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._memory: sqlite3.Connection | None = None
        self._size = 0
        self._lock = threading.Lock()

    def _open(self) -> sqlite3.Connection:
        if self._memory is None:
            memory = sqlite3.connect(":memory:", check_same_thread=False)
            memory.execute("CREATE VIRTUAL TABLE tm USING fts5(body, translation UNINDEXED, tokenize='porter unicode61')")
            pairs = aligned_pairs(self.conn)
            memory.executemany("INSERT INTO tm VALUES (?, ?)", [(index_terms(a), b) for a, b in pairs])
            self._size = len(pairs)
            self._memory = memory
        return self._memory

    def __len__(self) -> int:
        with self._lock:
            self._open()
            return self._size

    def expand(self, text: str, limit: int = 2) -> str:
        """The translations of the `limit` best-matching aligned lines ("" when none match)."""
        match = word_query(text)
        if not match or limit <= 0:
            return ""
        with self._lock:
            memory = self._open()
            if not self._size:
                return ""
            try:
                rows = memory.execute(
                    "SELECT translation FROM tm WHERE tm MATCH ? ORDER BY bm25(tm) LIMIT ?", [match, limit]
                ).fetchall()
            except sqlite3.OperationalError:
                return ""
        return " ".join(row[0] for row in rows)
