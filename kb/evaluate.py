"""Retrieval evaluation: recall@k and MRR at section level, per mode and per language.

A labelled query set is JSON Lines, one object per query:

    {"id": "r001", "query": "A03", "lang": "en", "kind": "code",
     "expected_source": "cv200_conveyor_manual.md",
     "expected_section": "CV-200 ... > Alarm reference > A03 Belt slip detected"}

A retrieved passage matches when its source equals `expected_source` and its section
equals or starts with `expected_section` (so a chapter-level label accepts any of its
subsections). A query may also list `also`: further acceptable {source, section} pairs.

A query may instead (or also) give `expected_code` (the code as the table writes it) and
`machine_model` (may be ""): a symptom query, scored on the engine's deterministic symptom
answer: `likely_code_recall_at_3` per language is the share of symptom queries whose
expected code is among the first 3 `likely_codes` (kb.symptoms). Queries that name a code
(`"A01"`, `"What does A02 mean?"`) are not symptom queries and are left out of it.

Queries are searched the way the engine searches them: when the query is a known code,
the code's own text (code, title, description) is added to the search, as in
`appliance.engine`. recall@k is the share of queries with a match in the top k; MRR is
the mean reciprocal rank of the first match within the top k (0 when there is none).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kb.errors import KBError
from kb.normalize import code_key, normalize_text
from kb.reader import KnowledgeBase
from kb.types import Passage

MODES = ("fts", "dense", "hybrid")
REQUIRED = ("id", "query", "lang")
LIKELY_K = 3


@dataclass(frozen=True)
class Target:
    source: str
    section: str

    def matches(self, passage: Passage) -> bool:
        return passage.source == self.source and passage.section.startswith(self.section)


@dataclass(frozen=True)
class LabelledQuery:
    id: str
    query: str
    lang: str
    kind: str
    targets: tuple[Target, ...]
    expected_code: str = ""
    machine_model: str = ""


@dataclass
class Score:
    """recall@k and MRR over a group of queries."""

    n: int = 0
    hits: int = 0
    rr_sum: float = 0.0

    def add(self, rank: int | None) -> None:
        self.n += 1
        if rank is not None:
            self.hits += 1
            self.rr_sum += 1.0 / rank

    @property
    def recall(self) -> float:
        return self.hits / self.n if self.n else 0.0

    @property
    def mrr(self) -> float:
        return self.rr_sum / self.n if self.n else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "recall": round(self.recall, 4), "mrr": round(self.mrr, 4)}


@dataclass
class ModeReport:
    overall: Score = field(default_factory=Score)
    by_lang: dict[str, Score] = field(default_factory=dict)
    by_kind: dict[str, Score] = field(default_factory=dict)
    misses: list[dict[str, Any]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_json(),
            "by_lang": {k: v.to_json() for k, v in sorted(self.by_lang.items())},
            "by_kind": {k: v.to_json() for k, v in sorted(self.by_kind.items())},
            "misses": self.misses,
            "notices": self.notices,
        }


@dataclass
class LikelyReport:
    """How often the expected code is among the first LIKELY_K likely codes of a symptom."""

    by_lang: dict[str, Score] = field(default_factory=dict)
    misses: list[dict[str, Any]] = field(default_factory=list)

    def recall(self) -> dict[str, float]:
        return {lang: round(score.recall, 4) for lang, score in sorted(self.by_lang.items())}

    def to_json(self) -> dict[str, Any]:
        return {"k": LIKELY_K, "by_lang": {k: v.to_json() for k, v in sorted(self.by_lang.items())},
                "misses": self.misses}


@dataclass
class EvalReport:
    k: int
    kb_version: int
    queries: int
    modes: dict[str, ModeReport]
    likely: LikelyReport = field(default_factory=LikelyReport)

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "kb_version": self.kb_version, "queries": self.queries,
                "modes": {name: report.to_json() for name, report in self.modes.items()},
                "likely_code_recall_at_3": self.likely.recall(), "likely_codes": self.likely.to_json()}

    def rows(self) -> list[tuple[str, str, int, float, float]]:
        """(mode, group, n, recall, mrr) rows: overall, then each language."""
        out = []
        for name, report in self.modes.items():
            out.append((name, "all", report.overall.n, report.overall.recall, report.overall.mrr))
            for lang, score in sorted(report.by_lang.items()):
                out.append((name, lang, score.n, score.recall, score.mrr))
        return out


def load_queries(path: Path) -> list[LabelledQuery]:
    """Read a JSONL query set; raise KBError naming the line of a bad entry."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise KBError(f"cannot read the query set {path}: {error}") from error
    queries: list[LabelledQuery] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path.name} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise KBError(f"{where}: not valid JSON: {error.msg}") from error
        if not isinstance(item, dict):
            raise KBError(f"{where}: expected a JSON object")
        # expected_section may be "" (any section of the source); everything else must be given.
        retrieval = "expected_source" in item or "expected_code" not in item
        needed = (*REQUIRED, "expected_source", "expected_section") if retrieval else (*REQUIRED, "expected_code")
        missing = [
            name for name in needed
            if not isinstance(item.get(name), str) or (name != "expected_section" and not item[name].strip())
        ]
        if missing:
            raise KBError(f"{where}: missing or empty {', '.join(missing)}")
        ident = str(item["id"])
        if ident in seen:
            raise KBError(f"{where}: id '{ident}' is used twice")
        seen.add(ident)
        targets = [Target(item["expected_source"], item["expected_section"])] if retrieval else []
        for alt in item.get("also") or []:
            if not isinstance(alt, dict) or not alt.get("source"):
                raise KBError(f"{where}: every entry of 'also' needs a source (and optionally a section)")
            targets.append(Target(str(alt["source"]), str(alt.get("section", ""))))
        queries.append(LabelledQuery(id=ident, query=item["query"], lang=item["lang"],
                                     kind=str(item.get("kind", "")), targets=tuple(targets),
                                     expected_code=str(item.get("expected_code") or ""),
                                     machine_model=str(item.get("machine_model") or "")))
    if not queries:
        raise KBError(f"the query set {path} holds no queries")
    return queries


def code_extra(kbase: KnowledgeBase, text: str, lang: str) -> str:
    """The extra search text the engine adds for a known code ("" for a symptom)."""
    if not code_key(text):
        return ""
    entry = kbase.lookup(text, lang=lang).entry
    return f"{entry.code} {entry.title} {entry.description}".strip() if entry else ""


def first_match(query: LabelledQuery, passages: list[Passage]) -> int | None:
    """1-based rank of the first passage matching any target, or None."""
    for rank, passage in enumerate(passages, start=1):
        if any(target.matches(passage) for target in query.targets):
            return rank
    return None


def evaluate(
    kbase: KnowledgeBase, queries: list[LabelledQuery], *, k: int = 5, modes: tuple[str, ...] = MODES
) -> EvalReport:
    """Search every query in every mode and score the rankings."""
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise KBError(f"unknown retrieval mode {unknown[0]!r} (use {', '.join(MODES)})")
    extras = {q.id: code_extra(kbase, q.query, q.lang) for q in queries}
    reports: dict[str, ModeReport] = {}
    for mode in modes:
        report = ModeReport()
        for query in (q for q in queries if q.targets):
            result = kbase.search(normalize_text(query.query), k, mode=mode, extra=extras[query.id])
            for notice in result.notices:
                if notice not in report.notices:
                    report.notices.append(notice)
            rank = first_match(query, result.passages)
            report.overall.add(rank)
            report.by_lang.setdefault(query.lang, Score()).add(rank)
            report.by_kind.setdefault(query.kind or "-", Score()).add(rank)
            if rank is None:
                report.misses.append({
                    "id": query.id, "query": query.query, "lang": query.lang,
                    "expected": f"{query.targets[0].source} > {query.targets[0].section}",
                    "got": [f"{p.source} > {p.section}" for p in result.passages[:3]],
                })
        reports[mode] = report
    return EvalReport(k=k, kb_version=kbase.version, queries=len(queries), modes=reports,
                      likely=evaluate_likely(kbase, queries))


def evaluate_likely(kbase: KnowledgeBase, queries: list[LabelledQuery]) -> LikelyReport:
    """Score the symptom answer on the queries that give an expected code and name no code."""
    report = LikelyReport()
    for query in queries:
        if not query.expected_code or code_key(query.query) in set(kbase.known_keys()) \
                or kbase.codes_in_text(query.query):
            continue
        match = kbase.likely(normalize_text(query.query), machine_model=query.machine_model, lang=query.lang)
        got = [item.entry.code for item in match.codes[:LIKELY_K]]
        keys, want = [code_key(code) for code in got], code_key(query.expected_code)
        rank = keys.index(want) + 1 if want in keys else None
        report.by_lang.setdefault(query.lang, Score()).add(rank)
        if rank is None:
            report.misses.append({"id": query.id, "query": query.query, "lang": query.lang,
                                  "expected": query.expected_code, "got": got})
    return report
