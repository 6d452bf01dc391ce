"""Typed records of the knowledge base, shared by the engine, CLI and tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CodeEntry:
    """One row of a code table: the plant's standard procedure for a code."""

    code: str
    key: str
    title: str
    steps: tuple[str, ...]
    safety: tuple[str, ...] = ()
    severity: str = "warning"
    machine_model: str = ""
    lang: str = "en"
    description: str = ""
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "machine_model": self.machine_model or None,
            "title": self.title,
            "severity": self.severity,
            "steps": list(self.steps),
            "safety": list(self.safety),
            "lang": self.lang,
        }


@dataclass(frozen=True)
class RepairRecord:
    """One past repair from the plant's records."""

    date: str
    machine_id: str
    machine_model: str
    code: str
    symptom: str
    action: str
    parts: str
    result: str
    technician: str = ""
    duration_min: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "machine_id": self.machine_id,
            "symptom": self.symptom,
            "action": self.action,
            "parts": self.parts,
            "result": self.result,
        }


@dataclass(frozen=True)
class FixCount:
    """A fix that worked before, with how often."""

    action: str
    count: int
    last_date: str

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "count": self.count, "last_date": self.last_date}


@dataclass(frozen=True)
class Evidence:
    """Why one passage was retrieved, from the rankers that ran for this query only."""

    mode: str = "hybrid"
    """The search actually run: hybrid, fts (dense off or unavailable) or dense."""
    fts_rank: int | None = None
    """Rank (1 = best) in the word full-text index for the query, None when it did not match."""
    fts_score: float | None = None
    """BM25 score in the word index (higher is better; comparable within one KB only)."""
    dense_similarity: float | None = None
    """Cosine similarity to the query, None when dense search did not run or did not return it."""
    fts_coverage: float | None = None
    """IDF-weighted share of the query's terms this passage holds (0..1, kb.search.coverage); only for
    queries without a known code, where it decides relevance."""

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "fts_rank": self.fts_rank,
            "fts_score": None if self.fts_score is None else round(self.fts_score, 4),
            "dense_similarity": None if self.dense_similarity is None else round(self.dense_similarity, 4),
            "fts_coverage": None if self.fts_coverage is None else round(self.fts_coverage, 4),
        }


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk of a manual (or of a code table), numbered for citation."""

    id: str
    source: str
    section: str
    text: str
    page: int | None = None
    lang: str = "en"
    score: float = 0.0
    n: int = 0
    kind: str = "manual"
    evidence: Evidence = field(default_factory=Evidence, compare=False)
    machine_models: tuple[str, ...] = ()
    """The machine models this passage's text applies to (a code row stored once per model and
    shown once); empty for manuals and rows for every model."""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "n": self.n,
            "source": self.source,
            "section": self.section,
            "page": self.page,
            "text": self.text,
            "score": round(self.score, 6),
            "evidence": self.evidence.to_json(),
            "machine_models": list(self.machine_models),
        }


@dataclass(frozen=True)
class Chunk:
    """A piece of a source document as stored in the KB (before retrieval)."""

    id: str
    source: str
    section: str
    text: str
    page: int | None
    lang: str
    kind: str = "manual"
    ordinal: int = 0
    machine_model: str = ""
    """The machine model of a code row's chunk ('' for manuals and generic rows)."""
    variant: str = ""
    """Code rows only: one value for every row with the same text (title, description, steps,
    safety, language), whatever its code and model, so search shows the text once."""
