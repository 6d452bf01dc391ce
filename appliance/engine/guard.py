"""Turning raw model output into a valid, grounded `generated` object.

Citations must name passages that were actually retrieved: any other number is removed
and counted. Output that is cut short or malformed still yields a valid object, with a
notice, so nothing downstream ever sees a broken answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from appliance.engine.partial import complete_json
from kb.types import Passage

# Phone numbers and hotlines: only those in the plant's own code table may appear in an answer.
_PHONE = re.compile(r"(?:\+?\d[\d\s().-]{6,}\d)|(?:\b0800[-\s]?[A-Z0-9-]{3,})", re.IGNORECASE)


_DATE = re.compile(r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b")


@dataclass
class Guarded:
    generated: dict[str, Any]
    notices: list[str] = field(default_factory=list)
    removed_cites: int = 0
    total_cites: int = 0
    removed_contacts: int = 0
    complete: bool = True
    schema_valid: bool = True


def _scrub_contacts(text: str, trusted: str) -> tuple[str, int]:
    removed = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal removed
        digits = re.sub(r"\D", "", match.group(0))
        if _DATE.match(match.group(0).strip()):
            return match.group(0)  # 2024-03-18 is a date, not a phone number
        if len(digits) < 6 and not match.group(0).upper().startswith("0800"):
            return match.group(0)  # part numbers, torques and the like are not phone numbers
        if match.group(0) in trusted or (digits and digits in re.sub(r"\D", "", trusted)):
            return match.group(0)
        removed += 1
        return "[…]"

    return _PHONE.sub(replace, text), removed


def _strings(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if isinstance(v, str | int | float) and str(v).strip()][:limit]


def guard(raw: str, passages: list[Passage], lang: str, trusted: str = "") -> Guarded:
    """Parse, repair and ground raw model output.

    `trusted` is the plant's own text for this query (the code's steps and safety notes):
    phone numbers or hotlines that appear in the output but not there are removed, since a
    manual or an injected passage must not put a number in front of the operator.
    """
    notices: list[str] = []
    complete = True
    schema_valid = True
    try:
        data = json.loads(raw, strict=False)  # the grammar lets raw newlines into strings
    except ValueError:
        schema_valid = False
        complete = False
        data = complete_json(raw)
        notices.append(
            "模型回答不完整，已保留可用部分" if lang == "zh-TW" else "the model's answer was cut short; the usable part is kept"
        )
    if not isinstance(data, dict):
        data = {}
    valid_numbers = {p.n: p.id for p in passages}
    removed = 0
    total = 0
    if not isinstance(data.get("summary"), str) or not isinstance(data.get("steps"), list):
        schema_valid = False
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
            total += 1
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
    generated: dict[str, Any] = {
        "summary": str(data.get("summary", "") or "").strip(),
        "steps": steps,
        "safety": _strings(data.get("safety"), 2),
        "parts": _strings(data.get("parts"), 3),
        "escalate": bool(data.get("escalate", not steps)),
        "cites": cited_ids,
    }
    contacts = 0
    generated["summary"], n = _scrub_contacts(generated["summary"], trusted)
    contacts += n
    for step in generated["steps"]:
        step["text"], n = _scrub_contacts(step["text"], trusted)
        contacts += n
    for key in ("safety", "parts"):
        cleaned = []
        for item in generated[key]:
            text, n = _scrub_contacts(item, trusted)
            contacts += n
            cleaned.append(text)
        generated[key] = cleaned
    if contacts:
        notices.append(
            f"已移除 {contacts} 個非工廠提供的電話號碼" if lang == "zh-TW"
            else f"{contacts} phone number(s) not from the plant's code table removed"
        )
    generated["text"] = render(generated)
    return Guarded(generated=generated, notices=notices, removed_cites=removed, total_cites=total,
                   removed_contacts=contacts, complete=complete, schema_valid=schema_valid and complete)


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
