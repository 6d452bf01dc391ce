"""Run an evaluation set through one or more engine configurations, side by side."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.engine.engine import Engine
from appliance.engine.types import Query
from appliance.evaluation.metrics import ItemResult, score_item, summarize
from kb.errors import InputError, ShifuError


def load_items(path: Path) -> list[dict[str, Any]]:
    """Items of a JSONL evaluation set; a malformed line is an error naming the line."""
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as error:
            raise InputError(f"{path.name} line {number}: not JSON ({error})") from error
        if not isinstance(item, dict) or not item.get("query"):
            raise InputError(f"{path.name} line {number}: an item needs at least a 'query'")
        items.append(item)
    return items


@dataclass
class ConfigResult:
    name: str
    results: list[ItemResult]
    summary: dict[str, Any]
    by_kind: dict[str, dict[str, Any]]
    by_lang: dict[str, dict[str, Any]]
    by_model: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "summary": self.summary, "by_kind": self.by_kind, "by_lang": self.by_lang,
                "by_model": self.by_model, "items": [r.__dict__ for r in self.results]}


def _groups(results: list[ItemResult], key: Callable[[ItemResult], str]) -> dict[str, dict[str, Any]]:
    names = sorted({key(r) for r in results})
    return {name: summarize([r for r in results if key(r) == name]) for name in names}


def run_config(name: str, engine: Engine, items: Iterable[dict[str, Any]],
               progress: Callable[[str], None] = lambda _m: None) -> ConfigResult:
    """Answer every item with the engine (no answer cache) and score it."""
    engine.use_cache = False
    results: list[ItemResult] = []
    for item in items:
        query = Query(text=item["query"], machine_id=item.get("machine") or "", lang=item.get("lang", "en"),
                      source="eval", priority=1)
        try:
            answer = engine.answer(query)
        except ShifuError as error:
            progress(f"{name} {item.get('id')}: {error}")
            continue
        results.append(score_item(item, answer.to_json(), answer.diagnostics))
        progress(f"{name} {item.get('id')} done")
    return ConfigResult(name=name, results=results, summary=summarize(results),
                        by_kind=_groups(results, lambda r: r.kind), by_lang=_groups(results, lambda r: r.lang),
                        by_model=_groups(results, lambda r: f"{r.model or 'none'} · {r.lang}"))
