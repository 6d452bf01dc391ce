"""The engine's events on the wire: server-sent events of `POST /v1/ask`, and back again.

One SSE event per engine event; `event:` is its name, `data:` one line of JSON in the
same shapes as the answer object (appliance/schemas/answer.schema.json):

| event | data |
| --- | --- |
| `code_found` | `{normalized, entry: code or null, candidates, suggestions, machine_model, ambiguous, codes_in_entry}` |
| `likely_codes` | `{codes, repairs}`: for a symptom, `likely_codes` and `similar_repairs` of the answer |
| `history_found` | `{records, summary}` |
| `passages_found` | `{passages, notices}` |
| `partial` | `{generated}`: the answer so far, guarded like the final one (completed strings only) |
| `token` | `{text}`: a raw piece of model output, only with `shifu serve --debug-tokens` |
| `failed` | `{step, message}`: a step failed; the steps before it still stand |
| `done` | the answer object, exactly what `shifu ask --json` prints |

`decode` turns them back into the engine's typed events for the kiosk's remote engine.
This module needs no web framework.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from appliance.engine.types import (
    Answer,
    CodeFound,
    Done,
    Event,
    Failed,
    HistoryFound,
    LikelyCodes,
    Partial,
    PassagesFound,
    Token,
)
from kb.normalize import code_key
from kb.symptoms import ScoredCode, SimilarRepair
from kb.types import CodeEntry, Evidence, FixCount, Passage, RepairRecord

NAMES = {
    CodeFound: "code_found",
    LikelyCodes: "likely_codes",
    HistoryFound: "history_found",
    PassagesFound: "passages_found",
    Partial: "partial",
    Token: "token",
    Failed: "failed",
    Done: "done",
}


def to_data(event: Event) -> dict[str, Any]:
    """The JSON body of one event."""
    if isinstance(event, CodeFound):
        return {
            "normalized": event.normalized,
            "entry": event.entry.to_json() if event.entry else None,
            "candidates": [c.to_json() for c in event.candidates],
            "suggestions": list(event.suggestions),
            "machine_model": event.machine_model,
            "ambiguous": event.ambiguous,
            "codes_in_entry": list(event.codes_in_entry),
        }
    if isinstance(event, LikelyCodes):
        return {"codes": [c.to_json() for c in event.codes], "repairs": [r.to_json() for r in event.repairs]}
    if isinstance(event, HistoryFound):
        return {"records": [r.to_json() for r in event.records], "summary": [s.to_json() for s in event.summary]}
    if isinstance(event, PassagesFound):
        return {"passages": [p.to_json() for p in event.passages], "notices": list(event.notices)}
    if isinstance(event, Partial):
        return {"generated": event.generated}
    if isinstance(event, Token):
        return {"text": event.text}
    if isinstance(event, Failed):
        return {"step": event.step, "message": event.message}
    return event.answer.to_json()


def encode(event: Event) -> str:
    """One server-sent event (ends with the blank line that terminates it)."""
    data = json.dumps(to_data(event), ensure_ascii=False, separators=(",", ":"))
    return f"event: {NAMES[type(event)]}\ndata: {data}\n\n"


def encode_error(message: str) -> str:
    """A failure outside the engine's own events (the stream ends after it)."""
    data = json.dumps({"step": "server", "message": message}, ensure_ascii=False)
    return f"event: failed\ndata: {data}\n\n"


# -- decoding ------------------------------------------------------------------------------
def code_from_json(data: dict[str, Any]) -> CodeEntry:
    return CodeEntry(
        code=str(data["code"]),
        key=code_key(str(data["code"])) or str(data["code"]),
        title=str(data.get("title", "")),
        steps=tuple(data.get("steps") or ()),
        safety=tuple(data.get("safety") or ()),
        severity=str(data.get("severity") or "warning"),
        machine_model=str(data.get("machine_model") or ""),
        lang=str(data.get("lang") or "en"),
    )


def record_from_json(data: dict[str, Any]) -> RepairRecord:
    return RepairRecord(
        date=str(data.get("date", "")), machine_id=str(data.get("machine_id", "")), machine_model="",
        code=str(data.get("code", "")), symptom=str(data.get("symptom", "")), action=str(data.get("action", "")),
        parts=str(data.get("parts", "")), result=str(data.get("result", "")),
    )


def scored_code_from_json(data: dict[str, Any]) -> ScoredCode:
    return ScoredCode(code_from_json(data), float(data.get("score", 0.0)))


def similar_repair_from_json(data: dict[str, Any]) -> SimilarRepair:
    success = data.get("fix_success") or {}
    return SimilarRepair(record_from_json(data), float(data.get("score", 0.0)), int(success.get("fixed", 0)),
                         int(success.get("total", 0)))


def fix_from_json(data: dict[str, Any]) -> FixCount:
    return FixCount(action=str(data["action"]), count=int(data["count"]), last_date=str(data.get("last_date", "")))


def passage_from_json(data: dict[str, Any]) -> Passage:
    return Passage(
        id=str(data["id"]), source=str(data.get("source", "")), section=str(data.get("section", "")),
        text=str(data.get("text", "")), page=data.get("page"), score=float(data.get("score", 0.0)),
        n=int(data.get("n", 0)), evidence=evidence_from_json(data.get("evidence") or {}),
        machine_models=tuple(str(m) for m in data.get("machine_models") or ()),
    )


def evidence_from_json(data: dict[str, Any]) -> Evidence:
    def number(name: str) -> float | None:
        value = data.get(name)
        return float(value) if isinstance(value, int | float) else None

    rank = data.get("fts_rank")
    return Evidence(mode=str(data.get("mode", "hybrid")), fts_rank=int(rank) if isinstance(rank, int) else None,
                    fts_score=number("fts_score"), dense_similarity=number("dense_similarity"),
                    fts_coverage=number("fts_coverage"))


def answer_from_json(data: dict[str, Any]) -> Answer:
    """The answer object (`shifu ask --json`) back as an Answer."""
    return Answer(
        query=str(data["query"]),
        lang=str(data["lang"]),
        machine_id=str(data.get("machine_id") or ""),
        machine_model=str(data.get("machine_model") or ""),
        normalized=data.get("normalized"),
        code=code_from_json(data["code"]) if data.get("code") else None,
        candidates=[code_from_json(c) for c in data.get("candidates", [])],
        suggestions=list(data.get("suggestions", [])),
        codes_in_entry=list(data.get("codes_in_entry", [])),
        likely_codes=[scored_code_from_json(c) for c in data.get("likely_codes", [])],
        similar_repairs=[similar_repair_from_json(r) for r in data.get("similar_repairs", [])],
        history=[record_from_json(r) for r in data.get("history", [])],
        history_summary=[fix_from_json(f) for f in data.get("history_summary", [])],
        passages=[passage_from_json(p) for p in data.get("passages", [])],
        generated=data.get("generated"),
        refused=bool(data.get("refused")),
        model_available=bool(data.get("model_available")),
        model=data.get("model"),
        cached=bool(data.get("cached")),
        kb_version=data.get("kb_version"),
        notices=list(data.get("notices", [])),
        timings_ms=dict(data.get("timings_ms", {})),
        audit_id=data.get("audit_id"),
    )


def decode(name: str, data: dict[str, Any]) -> Event:
    """One server-sent event back as the engine's typed event."""
    if name == "code_found":
        return CodeFound(
            normalized=data.get("normalized"),
            entry=code_from_json(data["entry"]) if data.get("entry") else None,
            candidates=tuple(code_from_json(c) for c in data.get("candidates", [])),
            suggestions=tuple(data.get("suggestions", [])),
            machine_model=str(data.get("machine_model", "")),
            ambiguous=bool(data.get("ambiguous")),
            codes_in_entry=tuple(data.get("codes_in_entry", [])),
        )
    if name == "likely_codes":
        return LikelyCodes(tuple(scored_code_from_json(c) for c in data.get("codes", [])),
                           tuple(similar_repair_from_json(r) for r in data.get("repairs", [])))
    if name == "history_found":
        return HistoryFound(
            tuple(record_from_json(r) for r in data.get("records", [])),
            tuple(fix_from_json(f) for f in data.get("summary", [])),
        )
    if name == "passages_found":
        return PassagesFound(
            tuple(passage_from_json(p) for p in data.get("passages", [])), tuple(data.get("notices", []))
        )
    if name == "partial":
        generated = data.get("generated")
        return Partial(generated if isinstance(generated, dict) else {})
    if name == "token":
        return Token(str(data.get("text", "")))
    if name == "failed":
        return Failed(str(data.get("step", "")), str(data.get("message", "")))
    if name == "done":
        return Done(answer_from_json(data))
    raise ValueError(f"unknown event {name!r}")


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event name, data) pairs from the lines of an SSE stream."""
    name, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", list[str]()
        elif line.startswith(":"):
            continue  # comment / keep-alive
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield name, json.loads("\n".join(data))
