"""Ranking adjustments on top of reciprocal rank fusion, and an optional cross-encoder.

`Tuning` holds the fusion weights measured with `shifu kb eval` on the sample KB
(see the README's retrieval section for the figures):

- the dense ranking counts in proportion to the query's share of non-CJK letters, because
  the default embedding model (all-MiniLM-L6-v2) is English-only and ranks Chinese text
  almost at random; set `dense_cjk` to 1.0 when a multilingual model is configured;
- code-table rows count half: the operator already sees the matched code's row, and its
  short, keyword-dense text would otherwise push the manual sections out of the top k;
- the cross-language bridge (`kb.search.bridge`) adds one ranking for symptoms and
  questions, from the translations of the nearest aligned code-table lines.

The cross-encoder reranker is off by default; it runs only when a local model directory
is configured, and never downloads anything.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kb.embed import offline
from kb.errors import KBError
from kb.types import Passage

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Tuning:
    """Weights applied around RRF (1.0 everywhere reproduces plain RRF)."""

    dense_cjk: float = 0.0
    """Weight of the dense ranking for an all-CJK query (Latin queries get 1.0)."""
    code_kind: float = 0.5
    """Factor on the fused score of code-table rows."""
    bridge: float = 1.0
    """Weight of the cross-language bridge ranking (0 switches the bridge off)."""
    bridge_lines: int = 2
    """How many aligned code-table lines the bridge translates."""


def cjk_share(text: str) -> float:
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _CJK.match(ch)) / len(letters)


def ranking_weights(text: str, tuning: Tuning) -> dict[str, float]:
    """RRF weights of the named rankings for this query text."""
    share = cjk_share(text)
    return {"dense": (1.0 - share) + share * tuning.dense_cjk, "bridge": tuning.bridge}


def weigh_kinds(conn: sqlite3.Connection, fused: dict[str, float], tuning: Tuning) -> dict[str, float]:
    """Scale the fused scores of code-table rows by `tuning.code_kind`."""
    if not fused or tuning.code_kind == 1.0:
        return fused
    ids = list(fused)
    marks = ",".join("?" for _ in ids)
    codes = {
        row[0]
        for row in conn.execute(f"SELECT id FROM chunks WHERE kind = 'code' AND id IN ({marks})", ids)  # noqa: S608
    }
    return {ident: score * (tuning.code_kind if ident in codes else 1.0) for ident, score in fused.items()}


def fuse(
    conn: sqlite3.Connection, rankings: dict[str, list[str]], text: str, rrf_k: int, tuning: Tuning
) -> dict[str, float]:
    """Weighted reciprocal rank fusion, then the kind weights."""
    weights = ranking_weights(text, tuning)
    fused: dict[str, float] = {}
    for name, ids in rankings.items():
        weight = weights.get(name, 1.0)
        for rank, ident in enumerate(ids, start=1):
            fused[ident] = fused.get(ident, 0.0) + weight / (rrf_k + rank)
    return weigh_kinds(conn, fused, tuning)


class CrossEncoderReranker:
    """Re-scores the fused top passages with a local sentence-transformers cross-encoder."""

    def __init__(self, model_dir: Path, scorer: Any = None) -> None:
        if scorer is None and not (Path(model_dir) / "config.json").exists():
            raise KBError(f"{model_dir} is not a cross-encoder model directory (no config.json)")
        self.model_dir = Path(model_dir)
        self._model: Any = scorer

    def _load(self) -> Any:
        if self._model is None:
            offline()
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(str(self.model_dir), device="cpu", local_files_only=True)
        return self._model

    def rerank(self, query: str, passages: list[Passage], k: int) -> list[Passage]:
        """The k best passages by cross-encoder score, renumbered from 1."""
        if not passages:
            return []
        scores = self._load().predict([(query, f"{p.section}\n{p.text}") for p in passages])
        order = sorted(range(len(passages)), key=lambda i: -float(scores[i]))[:k]
        out = []
        for n, index in enumerate(order, start=1):
            p = passages[index]
            out.append(Passage(id=p.id, source=p.source, section=p.section, text=p.text, page=p.page, lang=p.lang,
                               score=float(scores[index]), n=n, kind=p.kind,
                               evidence=p.evidence, machine_models=p.machine_models))
        return out
