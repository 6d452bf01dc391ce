"""Hybrid search over one KB version: word/bigram BM25 + trigram BM25 + dense, fused by RRF."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from kb.embed import Embedder
from kb.errors import KBError
from kb.search.bridge import CodeBridge
from kb.search.coverage import coverage
from kb.search.dense import DenseIndex
from kb.search.rerank import CrossEncoderReranker, Tuning, fuse
from kb.search.terms import trigram_query, word_query
from kb.search.variants import Kept, collapse, has_variants
from kb.types import Evidence, Passage


@dataclass
class SearchResult:
    """The passages of one query with everything known about how they were found."""

    passages: list[Passage]
    notices: list[str] = field(default_factory=list)
    rankers: dict[str, int] = field(default_factory=dict)
    mode: str = "hybrid"
    """The search actually run: hybrid, fts (dense off or failed) or dense."""
    dense_error: str | None = None
    """Why dense search did not run although it was asked for (vector index broken, server down)."""


@dataclass
class _Ranked:
    """What the rankers found for one query (a value per call, never kept on the searcher)."""

    rankings: dict[str, list[str]] = field(default_factory=dict)
    fts: dict[str, tuple[int, float]] = field(default_factory=dict)
    similarity: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    coverage: dict[str, float] | None = None
    dense_ran: bool = False
    dense_error: str | None = None


def fts_hits(conn: sqlite3.Connection, table: str, match: str | None, limit: int) -> list[tuple[str, float]]:
    """(chunk id, BM25 score with higher better) best first, from one FTS5 table."""
    if not match:
        return []
    try:
        rows = conn.execute(
            f"SELECT chunk_id, bm25({table}) FROM {table} WHERE {table} MATCH ? ORDER BY bm25({table}) LIMIT ?",  # noqa: S608
            [match, limit],
        ).fetchall()
    except sqlite3.OperationalError as error:
        raise KBError(f"full-text search failed: {error}") from error
    return [(row[0], -float(row[1])) for row in rows]


def fts_rank(conn: sqlite3.Connection, table: str, match: str | None, limit: int) -> list[str]:
    """Chunk ids best first by BM25, from one FTS5 table."""
    return [ident for ident, _ in fts_hits(conn, table, match, limit)]


def rrf(rankings: dict[str, list[str]], k: int, weights: dict[str, float] | None = None) -> dict[str, float]:
    """Reciprocal rank fusion: sum of weight / (k + rank) over every ranking."""
    fused: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = (weights or {}).get(name, 1.0)
        for rank, ident in enumerate(ids, start=1):
            fused[ident] = fused.get(ident, 0.0) + weight / (k + rank)
    return fused


class HybridSearcher:
    """Searches one KB version's chunks; holds configuration only, so threads can share it."""

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
        self.tuning = tuning or Tuning()
        self.bridge = CodeBridge(conn)
        self.reranker = reranker
        self.variants = has_variants(conn)
        """Whether chunks record their machine model (KB versions built before m002 do not)."""

    def _rank(self, text: str, mode: str) -> _Ranked:
        found = _Ranked()
        if mode in {"hybrid", "fts"}:
            words = fts_hits(self.conn, "chunks_words", word_query(text), self.depth)
            found.rankings["words"] = [ident for ident, _ in words]
            found.fts = {ident: (rank, score) for rank, (ident, score) in enumerate(words, start=1)}
            found.rankings["trigram"] = fts_rank(self.conn, "chunks_tri", trigram_query(text), self.depth)
        if mode in {"hybrid", "dense"} and self.dense is not None and self.embedder is not None:
            try:
                vector = self.embedder.embed_query(text)
                hits = self.dense.query(vector, self.depth)
            except KBError as error:
                found.dense_error = str(error)
                found.notices.append("vector index unavailable; full-text search only")
            else:
                found.rankings["dense"] = [i for i, _ in hits]
                found.similarity = dict(hits)
                found.dense_ran = True
        return found

    def rank(self, text: str, *, mode: str = "hybrid") -> tuple[dict[str, list[str]], list[str]]:
        """The rankings of each ranker for a text (used by evaluation), with notices."""
        found = self._rank(text, mode)
        return found.rankings, found.notices

    def search(self, text: str, k: int, *, mode: str = "hybrid", extra: str = "",
               machine_model: str = "") -> SearchResult:
        """Top-k passages for the text (plus optional extra text, e.g. a code's title).

        A text stored once per machine model is one passage (kb.search.variants); with
        `machine_model`, other models' code rows are left out.
        """
        found = self._rank(f"{text} {extra}".strip(), mode)
        rankings = found.rankings
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
        ordered = sorted(fused.items(), key=lambda item: (-item[1], item[0]))
        if self.variants:
            kept = collapse(self.conn, [ident for ident, _ in ordered], depth, machine_model)
        else:
            kept = [Kept(ident, ()) for ident, _ in ordered[:depth]]
        best = [(item.id, fused[item.id]) for item in kept]
        used = mode if mode != "hybrid" else ("hybrid" if found.dense_ran else "fts")
        if mode == "dense" and not found.dense_ran:
            used = "none"
        if not extra and mode != "dense":
            # A query without a known code: how much of it each passage covers decides relevance.
            found.coverage = coverage(self.conn, text, [ident for ident, _ in best])
        models = {item.id: item.machine_models for item in kept}
        passages = self._load([ident for ident, _ in best], dict(best), found, used, models)
        if self.reranker is not None:
            passages = self.reranker.rerank(f"{text} {extra}".strip(), passages, k)
        return SearchResult(passages=passages, notices=found.notices, rankers={n: len(r) for n, r in rankings.items()},
                            mode=used, dense_error=found.dense_error)

    def _load(self, ids: list[str], scores: dict[str, float], found: _Ranked, mode: str,
              models: dict[str, tuple[str, ...]]) -> list[Passage]:
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
            rank, score = found.fts.get(ident, (None, None))
            evidence = Evidence(mode=mode, fts_rank=rank, fts_score=score,
                                dense_similarity=found.similarity.get(ident) if found.dense_ran else None,
                                fts_coverage=None if found.coverage is None else found.coverage.get(ident, 0.0))
            passages.append(
                Passage(id=row[0], source=row[1], section=row[2], page=row[3], lang=row[4], kind=row[5],
                        text=row[6], score=scores[ident], n=n, evidence=evidence,
                        machine_models=models.get(ident, ()))
            )
        return passages
