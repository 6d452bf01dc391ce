"""Typed values of the engine: the query, the events of a stream, and the answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kb.symptoms import ScoredCode, SimilarRepair
from kb.types import CodeEntry, FixCount, Passage, RepairRecord


@dataclass(frozen=True)
class Query:
    """An operator's question, a scanned code or a machine alarm."""

    text: str
    machine_id: str = ""
    machine_model: str = ""
    """The machine model when no machine id is known (`shifu ask --model`); the inventory's model wins."""
    source: str = "cli"  # keyboard | scanner | serial | cli | http
    lang: str = "zh-TW"
    priority: int = 0  # 0 = operator (first), higher = background work


@dataclass(frozen=True)
class CodeFound:
    """Step 2: the code-table lookup (entry None when the code is unknown or a symptom)."""

    normalized: str | None
    entry: CodeEntry | None
    candidates: tuple[CodeEntry, ...] = ()
    suggestions: tuple[str, ...] = ()
    machine_model: str = ""
    ambiguous: bool = False
    """Rows for several machine models and none for this one: `candidates` holds one per model."""
    codes_in_entry: tuple[str, ...] = ()
    """Several known codes in the entry (as written): the operator chooses one."""


@dataclass(frozen=True)
class LikelyCodes:
    """Step 2, for a symptom: the code rows it most likely is and the past repairs that match it."""

    codes: tuple[ScoredCode, ...]
    repairs: tuple[SimilarRepair, ...]


@dataclass(frozen=True)
class HistoryFound:
    """Step 3: what fixed this code before."""

    records: tuple[RepairRecord, ...]
    summary: tuple[FixCount, ...]


@dataclass(frozen=True)
class PassagesFound:
    """Step 4: numbered passages from hybrid retrieval."""

    passages: tuple[Passage, ...]
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Partial:
    """Step 4, while the model writes: the answer so far, guarded like the final one.

    Holds only completed strings (a step, the summary, a part) that passed the guard and the
    quality gate; every consumer (kiosk, CLI, SSE) draws these and never a raw token.
    """

    generated: dict[str, Any]


@dataclass(frozen=True)
class Token:
    """A raw piece of model output: only for debugging (`shifu serve --debug-tokens`), never drawn."""

    text: str


@dataclass(frozen=True)
class Failed:
    """A step failed; the steps before it still stand."""

    step: str
    message: str


@dataclass
class Answer:
    """Everything one query produced; `to_json` is the `shifu ask --json` object."""

    query: str
    lang: str
    machine_id: str = ""
    machine_model: str = ""
    normalized: str | None = None
    code: CodeEntry | None = None
    candidates: list[CodeEntry] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    codes_in_entry: list[str] = field(default_factory=list)
    likely_codes: list[ScoredCode] = field(default_factory=list)
    similar_repairs: list[SimilarRepair] = field(default_factory=list)
    history: list[RepairRecord] = field(default_factory=list)
    history_summary: list[FixCount] = field(default_factory=list)
    passages: list[Passage] = field(default_factory=list)
    generated: dict[str, Any] | None = None
    refused: bool = False
    """Nothing relevant in the knowledge base: nothing was (or would have been) generated."""
    model_available: bool = False
    model: dict[str, Any] | None = None
    cached: bool = False
    kb_version: int | None = None
    notices: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    audit_id: int | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    """Counts for evaluation (raw schema validity, citations removed); not part of the JSON."""

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "normalized": self.normalized,
            "lang": self.lang,
            "machine_id": self.machine_id or None,
            "machine_model": self.machine_model or None,
            "code": self.code.to_json() if self.code else None,
            "candidates": [c.to_json() for c in self.candidates],
            "suggestions": list(self.suggestions),
            "codes_in_entry": list(self.codes_in_entry),
            "likely_codes": [c.to_json() for c in self.likely_codes],
            "similar_repairs": [r.to_json() for r in self.similar_repairs],
            "history": [r.to_json() for r in self.history],
            "history_summary": [s.to_json() for s in self.history_summary],
            "passages": [p.to_json() for p in self.passages],
            "generated": self.generated,
            "refused": self.refused,
            "model_available": self.model_available,
            "model": self.model,
            "cached": self.cached,
            "kb_version": self.kb_version,
            "notices": list(self.notices),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "audit_id": self.audit_id,
        }


@dataclass(frozen=True)
class Done:
    """Step 7: the finished answer (also sent when only the standard procedure exists)."""

    answer: Answer


Event = CodeFound | LikelyCodes | HistoryFound | PassagesFound | Partial | Token | Failed | Done
