"""Turning raw model output into a valid, grounded `generated` object.

Citations must name passages that were actually retrieved: any other number is removed
and counted. Output that is cut short or malformed still yields a valid object, with a
notice, so nothing downstream ever sees a broken answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from appliance.engine.partial import complete_json
from kb.types import Passage


@dataclass
class Guarded:
    generated: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    removed_cites: int = 0
    complete: bool = True


def _strings(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if isinstance(v, str | int | float) and str(v).strip()][:limit]


def guard(raw: str, passages: list[Passage], lang: str) -> Guarded:
    """Parse, repair and ground raw model output."""
    notices: list[str] = []
    complete = True
    try:
        data = json.loads(raw)
    except ValueError:
        complete = False
        data = complete_json(raw)
        notices.append(
            "模型回答不完整，已保留可用部分" if lang == "zh-TW" else "the model's answer was cut short; the usable part is kept"
        )
    if not isinstance(data, dict):
        data = {}
    valid_numbers = {p.n: p.id for p in passages}
    removed = 0
    steps: list[dict[str, Any]] = []
    for item in data.get("steps") or []:
        if isinstance(item, dict):
            text = str(item.get("text", "")).strip()
            raw_cites = item.get("cites") or []
        else:
            text, raw_cites = str(item).strip(), []
        if not text:
            continue
        cites: list[int] = []
        for cite in raw_cites if isinstance(raw_cites, list) else []:
            if isinstance(cite, int) and not isinstance(cite, bool) and cite in valid_numbers:
                if cite not in cites:
                    cites.append(cite)
            else:
                removed += 1
        steps.append({"text": text, "cites": cites})
    if removed:
        notices.append(
            f"已移除 {removed} 個無效引用" if lang == "zh-TW" else f"{removed} citation(s) to passages that were not retrieved removed"
        )
    cited_ids: list[str] = []
    for step in steps:
        for number in step["cites"]:
            ident = valid_numbers[number]
            if ident not in cited_ids:
                cited_ids.append(ident)
    generated = {
        "summary": str(data.get("summary", "") or "").strip(),
        "steps": steps,
        "safety": _strings(data.get("safety"), 3),
        "parts": _strings(data.get("parts"), 4),
        "escalate": bool(data.get("escalate", not steps)),
        "cites": cited_ids,
    }
    generated["text"] = render(generated)
    return Guarded(generated=generated, notices=notices, removed_cites=removed, complete=complete)


def render(generated: dict[str, Any]) -> str:
    """The answer as plain text, citations as [n]."""
    lines: list[str] = []
    if generated.get("summary"):
        lines.append(str(generated["summary"]))
    for i, step in enumerate(generated.get("steps", []), start=1):
        marks = "".join(f"[{n}]" for n in step.get("cites", []))
        lines.append(f"{i}. {step['text']}" + (f" {marks}" if marks else ""))
    for note in generated.get("safety", []):
        lines.append(f"! {note}")
    if generated.get("parts"):
        lines.append("Parts: " + ", ".join(generated["parts"]))
    return "\n".join(lines)
