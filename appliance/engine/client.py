"""The one interface the kiosk talks to: ask, alarms, feedback, status, machines.

`EngineClient` is a typing.Protocol with two implementations: `LocalClient`
(`appliance.engine.local`, the engine in this process) and `RemoteEngine`
(`appliance.engine.remote`, `shifu serve` over HTTP). The kiosk (`appliance.ui`) knows only
this module and the engine's event types, so it behaves the same in-process and as a thin
client, and nothing but these typed values crosses HTTP (never SQL).

Each result is a frozen dataclass with `to_json`/`from_json` in the shape the HTTP endpoints
use (`GET /v1/status`, `GET /v1/alarms`, `GET /v1/machines`), so the server and the HTTP
client cannot drift apart. This module imports nothing heavy (no store, no KB reader).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from appliance.engine.types import Event, Query
from kb.errors import ShifuError

Verdict = Literal["fixed", "not_fixed", "call_technician"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
ModelState = Literal["loading", "ready", "disabled", "failed"]
DenseState = Literal["on", "off", "unavailable", "degraded"]


class NotFoundError(ShifuError):
    """The answer or alarm a request refers to does not exist (HTTP 404)."""


@dataclass(frozen=True)
class Alarm:
    """One machine alarm as the kiosk lists it; `severity` and `title` come from the active KB."""

    id: int
    received: float
    """Wall-clock time (seconds since 1970), for people to read; order by `id`."""
    machine_id: str = ""
    code: str = ""
    normalized: str = ""
    message: str = ""
    raw: str = ""
    port: str = ""
    status: str = "new"
    repeats: int = 0
    audit_id: int | None = None
    answer_status: str | None = None
    """pending | ready | failed | throttled, or None when no answer is being prepared."""
    severity: str = ""
    """info | warning | critical, or "" when the active KB does not know the code."""
    title: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "received": self.received, "machine_id": self.machine_id, "code": self.code,
            "normalized": self.normalized, "message": self.message, "raw": self.raw, "port": self.port,
            "status": self.status, "repeats": self.repeats, "audit_id": self.audit_id,
            "answer_status": self.answer_status, "severity": self.severity, "title": self.title,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alarm:
        audit_id = data.get("audit_id")
        return cls(
            id=int(data["id"]), received=float(data.get("received") or 0.0),
            machine_id=str(data.get("machine_id") or ""), code=str(data.get("code") or ""),
            normalized=str(data.get("normalized") or ""), message=str(data.get("message") or ""),
            raw=str(data.get("raw") or ""), port=str(data.get("port") or ""),
            status=str(data.get("status") or "new"), repeats=int(data.get("repeats") or 0),
            audit_id=int(audit_id) if audit_id is not None else None,
            answer_status=str(data["answer_status"]) if data.get("answer_status") else None,
            severity=str(data.get("severity") or ""), title=str(data.get("title") or ""),
        )


AckState = Literal["acknowledged", "refused", "failed", "sending"]


@dataclass(frozen=True)
class Acknowledgement:
    """What became of acknowledging an OPC UA alarm back to its server after the operator's "fixed".

    Only for an alarm from an `[[opcua.servers]]` entry with `acknowledge = true`. `state`:
    acknowledged (the server took it), refused (the server answered with a bad status, named in
    `detail`), failed (no answer: the intake is not running or not connected, a timeout, or the
    event is no condition), sending (still under way when the wait ended; the audit row gets the
    outcome). Every outcome is in the `acknowledgements` table; nothing is retried by itself.
    """

    id: int
    state: AckState
    detail: str = ""
    comment: str = ""
    """The comment sent ("Shifu: fixed", with the operator id only under `acknowledge_comment = "operator"`)."""
    endpoint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "detail": self.detail, "comment": self.comment,
                "endpoint": self.endpoint}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Acknowledgement:
        return cls(int(data["id"]), _choice(data.get("state"), AckState, "failed"), str(data.get("detail") or ""),
                   str(data.get("comment") or ""), str(data.get("endpoint") or ""))


@dataclass(frozen=True)
class FeedbackSaved:
    """The stored verdict's row id, and the acknowledgement sent back to the alarm's OPC UA server, if any."""

    id: int
    acknowledgement: Acknowledgement | None = None

    def to_json(self) -> dict[str, Any]:
        ack = self.acknowledgement
        return {"id": self.id, "acknowledgement": ack.to_json() if ack is not None else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedbackSaved:
        ack = data.get("acknowledgement")
        return cls(int(data["id"]), Acknowledgement.from_json(ack) if ack else None)


@dataclass(frozen=True)
class FloorReport:
    """The technician screen's figures for a period (local dates, both inclusive), from
    `appliance.report.figures`: the Pareto of codes, the repeat offenders and the KB's gaps."""

    first: str
    last: str
    pareto: tuple[tuple[str, int, float], ...] = ()
    """(code, count, cumulative share), most frequent first: alarms and questions together."""
    repeats: tuple[tuple[str, str, int, int], ...] = ()
    """(machine id, code, repeats within the window, fixes that did not hold), worst first."""
    gaps: tuple[tuple[str, int], ...] = ()
    """(an example question, how many asked it in similar words): nothing relevant was found."""

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last,
                "pareto": [{"code": c, "count": n, "cumulative_share": s} for c, n, s in self.pareto],
                "repeats": [{"machine_id": m, "code": c, "repeats": r, "fixes_not_held": f}
                            for m, c, r, f in self.repeats],
                "gaps": [{"example_query": q, "count": n} for q, n in self.gaps]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FloorReport:
        return cls(
            str(data["first"]), str(data["last"]),
            tuple((str(r["code"]), int(r["count"]), float(r["cumulative_share"])) for r in data.get("pareto") or ()),
            tuple((str(r["machine_id"]), str(r["code"]), int(r["repeats"]), int(r["fixes_not_held"]))
                  for r in data.get("repeats") or ()),
            tuple((str(r["example_query"]), int(r["count"])) for r in data.get("gaps") or ()),
        )


@dataclass(frozen=True)
class ShiftAlarm:
    """One alarm of a shift as the handover lists it (appliance.report.handover)."""

    received: float
    machine_id: str
    code: str
    title: str
    state: str
    """fixed | escalated | open"""
    minutes_to_fix: float | None
    operator: str
    action: str
    """What the repair record of that machine, code and day says was done ('' without one)."""
    repeats: int = 0


@dataclass(frozen=True)
class ShiftReport:
    """The shift handover for the technician screen: the shift's alarms and their states, and the
    codes repeated on one machine; deterministic text only (the printed handover may add a note)."""

    begins: float
    ends: float
    alarms: tuple[ShiftAlarm, ...] = ()
    repeated: tuple[tuple[str, str, int], ...] = ()
    """(machine id, code, times) for codes seen more than once on one machine in the shift."""

    def count(self, state: str) -> int:
        return sum(a.state == state for a in self.alarms)

    def to_json(self) -> dict[str, Any]:
        return {"begins": self.begins, "ends": self.ends,
                "alarms": [a.__dict__ for a in self.alarms],
                "repeated": [{"machine_id": m, "code": c, "times": n} for m, c, n in self.repeated]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ShiftReport:
        return cls(
            float(data["begins"]), float(data["ends"]),
            tuple(ShiftAlarm(float(a["received"]), str(a["machine_id"]), str(a["code"]), str(a["title"]),
                             str(a["state"]), None if a["minutes_to_fix"] is None else float(a["minutes_to_fix"]),
                             str(a["operator"]), str(a["action"]), int(a.get("repeats") or 0))
                  for a in data.get("alarms") or ()),
            tuple((str(r["machine_id"]), str(r["code"]), int(r["times"])) for r in data.get("repeated") or ()),
        )


@dataclass(frozen=True)
class Machine:
    """A machine of the plant's inventory (the active KB's machines table)."""

    machine_id: str
    machine_model: str = ""
    line: str = ""
    location: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"machine_id": self.machine_id, "machine_model": self.machine_model, "line": self.line,
                "location": self.location}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Machine:
        return cls(str(data["machine_id"]), str(data.get("machine_model") or ""), str(data.get("line") or ""),
                   str(data.get("location") or ""))


@dataclass(frozen=True)
class EngineStatus:
    """What the status bar and the technician screen show: KB, vector index, model, database.

    The defaults are the state before anything was asked (model "loading", no KB yet).
    """

    kb_version: int | None = None
    kb_name: str = ""
    kb_versions: tuple[int, ...] = ()
    kb_counts: Mapping[str, int] = field(default_factory=dict)
    kb_error: str = ""
    dense: DenseState = "off"
    """on: dense search runs; off: switched off; unavailable: this KB or embedder has no vectors;
    degraded: the vector index is missing or incomplete (searches run on full text meanwhile)."""
    dense_detail: str = ""
    model_state: ModelState = "loading"
    model_error: str = ""
    model_backend: str = ""
    model_id: str = ""
    model_sha256: str = ""
    model_device: str = ""
    model_languages: tuple[str, ...] = ()
    adapter_id: str = ""
    adapter_sha256: str = ""
    opstore_counts: Mapping[str, int] = field(default_factory=dict)
    """Rows of the operational database (audit, feedback, alarms); empty when there is none."""
    opstore_error: str = ""

    @property
    def model_available(self) -> bool:
        return self.model_state == "ready"

    def to_json(self) -> dict[str, Any]:
        return {
            "kb": {"version": self.kb_version, "name": self.kb_name, "versions": list(self.kb_versions),
                   "counts": dict(self.kb_counts), "error": self.kb_error,
                   "dense": {"state": self.dense, "detail": self.dense_detail}},
            "model": {"state": self.model_state, "error": self.model_error, "available": self.model_available,
                      "info": None if self.model_state != "ready" else {
                          "backend": self.model_backend, "base": self.model_id,
                          "base_sha256": self.model_sha256, "adapter": self.adapter_id or None,
                          "adapter_sha256": self.adapter_sha256 or None, "device": self.model_device,
                          "languages": list(self.model_languages)}},
            "opstore": {"counts": dict(self.opstore_counts), "error": self.opstore_error},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineStatus:
        kb, model, ops = data.get("kb") or {}, data.get("model") or {}, data.get("opstore") or {}
        dense, info = kb.get("dense") or {}, model.get("info") or {}
        version = kb.get("version")
        state = str(model.get("state") or "loading")
        return cls(
            kb_version=int(version) if version is not None else None, kb_name=str(kb.get("name") or ""),
            kb_versions=tuple(int(v) for v in kb.get("versions") or ()),
            kb_counts={str(k): int(v) for k, v in (kb.get("counts") or {}).items()},
            kb_error=str(kb.get("error") or ""),
            dense=_choice(dense.get("state"), DenseState, "off"), dense_detail=str(dense.get("detail") or ""),
            model_state=_choice(state, ModelState, "loading"), model_error=str(model.get("error") or ""),
            model_backend=str(info.get("backend") or ""), model_id=str(info.get("base") or ""),
            model_sha256=str(info.get("base_sha256") or ""), model_device=str(info.get("device") or ""),
            model_languages=tuple(str(x) for x in info.get("languages") or ()),
            adapter_id=str(info.get("adapter") or ""), adapter_sha256=str(info.get("adapter_sha256") or ""),
            opstore_counts={str(k): int(v) for k, v in (ops.get("counts") or {}).items()},
            opstore_error=str(ops.get("error") or ""),
        )


def _choice(value: Any, kind: Any, default: Any) -> Any:
    return value if value in get_args(kind) else default


@runtime_checkable
class EngineClient(Protocol):
    """Everything the kiosk asks of an engine, in-process or over HTTP."""

    def stream(self, query: Query, *, use_model: bool = True) -> Iterator[Event]:
        """The engine's events for one question; closing the iterator cancels the answer.

        InputError (empty, too long, control characters) is raised before any event.
        """
        ...

    def alarms_since(self, after_id: int, limit: int = 50, *, lang: str | None = None) -> list[Alarm]:
        """The newest `limit` alarms with an id above `after_id`, newest first (titles in `lang`)."""
        ...

    def feedback(
        self, audit_id: int, verdict: Verdict, operator: str = "", alarm_id: int | None = None
    ) -> FeedbackSaved:
        """Store the operator's verdict on an answer (and the alarm it was opened from); the row id.

        "fixed" on an alarm from an OPC UA server with `acknowledge = true` also acknowledges the
        condition on that server (through `shifu intake`, which holds the connection) and waits for
        the outcome, at most that server's `acknowledge_wait_s`: `FeedbackSaved.acknowledgement`.
        NotFoundError when the answer (or alarm) is unknown.
        """
        ...

    def status(self) -> EngineStatus:
        """The current state; cheap, loads nothing."""
        ...

    def machines(self) -> list[Machine]:
        """The plant's machines in the active KB, by id."""
        ...

    def floor_report(self, first: date, last: date) -> FloorReport:
        """The technician screen's figures from `first` to `last` (local dates, inclusive)."""
        ...

    def handover(self, at: datetime, lang: str) -> ShiftReport:
        """The handover of the shift (`report.shifts`) that holds `at`, titles in `lang`."""
        ...

    def warm(self) -> EngineStatus:
        """Open the KB and load the model now (seconds to minutes); the status afterwards. Never raises."""
        ...

    def close(self) -> None:
        """Release connections and the model."""
        ...
