"""What the status bar and the technician screen show about the KB, the model and serial lines.

Probing may load the model (seconds), so callers run it in a worker thread.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Settings
from appliance.engine import Engine
from kb.errors import ShifuError


@dataclass
class EngineStatus:
    """A snapshot of the engine's health; `model_state` is loading | ready | disabled | failed."""

    kb_version: int | None = None
    kb_name: str = ""
    kb_versions: list[int] = field(default_factory=list)
    kb_counts: dict[str, int] = field(default_factory=dict)
    kb_error: str = ""
    model_state: str = "loading"
    model_id: str = ""
    model_device: str = ""
    model_sha256: str = ""
    adapter_id: str = ""
    model_error: str = ""


@dataclass(frozen=True)
class PortStatus:
    device: str
    machine: str
    role: str
    present: bool


def probe_kb(engine: Engine, status: EngineStatus) -> None:
    """Fill in the KB fields (opens the active version; warms the embedder with one search)."""
    try:
        kb = engine.kb()
        status.kb_version = kb.version
        status.kb_name = str(kb.meta.get("name", ""))
        status.kb_counts = dict(kb.counts())
        status.kb_versions = list(engine.versions.versions())
        status.kb_error = ""
        if engine.embedder is not None and engine.settings.retrieval.dense:
            kb.search("warm up", 1)
    except ShifuError as error:
        status.kb_error = str(error)


def probe_model(engine: Engine, status: EngineStatus) -> None:
    """Fill in the model fields, loading the model if it is not loaded yet."""
    if not engine.settings.model.enabled:
        status.model_state = "disabled"
        return
    try:
        info = engine.backend().info()
    except ShifuError as error:
        status.model_state, status.model_error = "failed", str(error)
        return
    status.model_state = "ready"
    status.model_id, status.model_device = info.base_id, info.device
    status.model_sha256, status.adapter_id = info.base_sha256, info.adapter_id


def serial_ports(settings: Settings) -> list[PortStatus]:
    """Configured serial lines and whether their device node exists right now."""
    return [PortStatus(p.device, p.machine, p.role, os.path.exists(p.device)) for p in settings.serial.ports]


def opstore_counts(engine: Engine) -> dict[str, Any]:
    """Row counts of the operational database (empty when there is none)."""
    store = engine.opstore
    if store is None:
        return {}
    counts: dict[str, Any] = {}
    for table in ("audit", "feedback", "alarms"):
        try:
            counts[table] = store.rows(f"SELECT count(*) AS n FROM {table}")[0]["n"]  # noqa: S608 - fixed names
        except Exception as error:  # the technician screen must open even on a damaged database
            counts[table] = f"error: {error}"
    return counts
