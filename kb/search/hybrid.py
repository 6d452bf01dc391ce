"""Hybrid search over one KB version: word/bigram BM25 + trigram BM25 + dense, fused by RRF."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from kb.embed import Embedder
from kb.errors import KBError
from kb.search.bridge import CodeBridge
from kb.search.dense import DenseIndex
from kb.search.rerank import CrossEncoderReranker, Tuning, fuse
from kb.search.terms import trigram_query, word_query
from kb.types import Passage


@dataclass
class SearchResult:
    passages: list[Passage]
    notices: list[str] = field(default_factory=list)
    rankers: dict[str, int] = field(default_factory=dict)


def fts_rank(conn: sqlite3.Connection, table: str, match: str | None, limit: int) -> list[str]:
    """Chunk ids best first by BM25, from one FTS5 table."""
    if not match:
        return []
    try:
        rows = conn.execute(
            f"SELECT chunk_id FROM {table} WHERE {table} MATCH ? ORDER BY bm25({table}) LIMIT ?",  # noqa: S608
            [match, limit],
        ).fetchall()
    except sqlite3.OperationalError as error:
        raise KBError(f"full-text search failed: {error}") from error
    return [row[0] for row in rows]


def rrf(rankings: dict[str, list[str]], k: int, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Reciprocal rank fusion: sum of weight / (k + rank) over every ranking."""
    fused: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = (weights or {}).get(name, 1.0)
        for rank, ident in enumerate(ids, start=1):
            fused[ident] = fused.get(ident, 0.0) + weight / (k + rank)
    return fused


class HybridSearcher:
    """Searches one KB version's chunks."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        dense: DenseIndex | None,
        embedder: Embedder | None,
        rrf_k: int = 60,
        depth: int = 40,
        tuning: Tuning | None = None,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.conn = conn
        self.dense = dense
        self.embedder = embedder
        self.rrf_k = rrf_k
        self.depth = depth
        self.dense_error: str | None = None
        self._similarity: dict[str, float] = {}
        self.tuning = tuning or Tuning()
        self.bridge = CodeBridge(conn)
        self.reranker = reranker

    def rank(self, text: str, *, mode: str = "hybrid") -> tuple[dict[str, list[str]], list[str]]:
        rankings: dict[str, list[str]] = {}
        notices: list[str] = []
        if mode in {"hybrid", "fts"}:
            rankings["words"] = fts_rank(self.conn, "chunks_words", word_query(text), self.depth)
            rankings["trigram"] = fts_rank(self.conn, "chunks_tri", trigram_query(text), self.depth)
        if mode in {"hybrid", "dense"} and self.dense is not None and self.embedder is not None:
            try:
                vector = self.embedder.embed_query(text)
                hits = self.dense.query(vector, self.depth)
                rankings["dense"] = [i for i, _ in hits]
                self._similarity = dict(hits)
            except KBError as error:
                self.dense_error = str(error)
                notices.append("vector index unavailable; full-text search only")
        return rankings, notices

    def search(self, text: str, k: int, *, mode: str = "hybrid", extra: str = "") -> SearchResult:
        """Top-k passages for the text (plus optional extra text, e.g. a code's title)."""
        self._similarity = {}
        rankings, notices = self.rank(f"{text} {extra}".strip(), mode=mode)
        if extra and mode != "dense":
            # The operator's own words count too, not only the code's description.
            rankings["words_query"] = fts_rank(self.conn, "chunks_words", word_query(text), self.depth)
        if not extra and mode != "dense" and self.tuning.bridge > 0:
            # A symptom or question in one language reaches manuals in the other (kb.search.bridge).
            expansion = self.bridge.expand(text, self.tuning.bridge_lines)
            if expansion:
                rankings["bridge"] = fts_rank(self.conn, "chunks_words", word_query(expansion), self.depth)
        fused = fuse(self.conn, rankings, text, self.rrf_k, self.tuning)
        depth = max(k, 20) if self.reranker is not None else k
        best = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:depth]
        passages = self._load([ident for ident, _ in best], dict(best))
        if self.reranker is not None:
            passages = self.reranker.rerank(f"{text} {extra}".strip(), passages, k)
        return SearchResult(passages=passages, notices=notices, rankers={n: len(r) for n, r in rankings.items()})

    def _load(self, ids: list[str], scores: dict[str, float]) -> list[Passage]:
        if not ids:
            return []
        marks = ",".join("?" for _ in ids)
        rows = self.conn.execute(
            f"SELECT id, source, section, page, lang, kind, text FROM chunks WHERE id IN ({marks})",  # noqa: S608
            ids,
        ).fetchall()
        by_id = {row[0]: row for row in rows}
        passages = []
        for n, ident in enumerate((i for i in ids if i in by_id), start=1):
            row = by_id[ident]
            passages.append(
                Passage(id=row[0], source=row[1], section=row[2], page=row[3], lang=row[4], kind=row[5],
                        text=row[6], score=scores[ident], n=n,
                        scores={"similarity": self._similarity.get(ident, 0.0)})
            )
        return passages
