"""`shifu export DEST`: the loop data (audit log, feedback, alarms) as CSV and JSONL.

It lives with the operational database's schema (`appliance.store.opstore`): the KB layer
knows nothing of the appliance's tables.

The export is a folder `shifu-export-<UTC time>/` written under a temporary name and renamed
when complete. It holds `audit`, `feedback` and `alarms`, each as `.csv` (UTF-8 with header,
JSON-valued columns as JSON text) and `.jsonl` (one object per line, JSON-valued columns
decoded, flags as booleans), plus `export.json` (format, time, row counts, columns).
Times are given twice: `*_unix` (seconds since 1970, float) and ISO 8601 UTC text.

audit.{csv,jsonl} - one row per answered query:
    id, created (ISO), created_unix, query, normalized, lang, machine_id, source (cli|kiosk|serial|http),
    code, kb_version, passage_ids (JSON list of chunk ids), model_id, model_sha256, adapter_id,
    adapter_sha256, model_available (bool), cached (bool), answer (JSON: generated text or null),
    notices (JSON list), timings (JSON object, milliseconds), machine_model, refused (bool), likely_codes
    (JSON list), gate_dropped (generated strings the quality gate dropped; empty: nothing generated),
    model_verified (bool: the pair was checked against the registry's hashes; false: a file named in
    the configuration; empty: no model answered or a server backend)
feedback.{csv,jsonl} - one row per operator verdict:
    id, audit_id (-> audit.id), verdict (fixed|not_fixed|call_technician), operator, created (ISO), created_unix,
    alarm_id (-> alarms.id when the answer was opened from an alarm, else empty)
alarms.{csv,jsonl} - one row per alarm from a serial port:
    id, received (ISO), received_unix, port, machine_id, raw, code, normalized, message, status, repeats,
    audit_id (-> audit.id or empty)
work_orders.{csv,jsonl} - one draft per Call technician press, for the plant's CMMS:
    id, created (ISO), created_unix, status (open), machine_id, machine_model, code, title, query (what the
    operator entered), operator, steps (JSON list: the standard procedure shown), generated (JSON: the
    model's explanation shown, or null), tried (JSON list of the earlier presses on the same answer or
    alarm: verdict, created in Unix seconds, operator), alarm_id (-> alarms.id or empty), alarm_received (ISO),
    alarm_received_unix, audit_id (-> audit.id), feedback_id (-> feedback.id)
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kb.errors import ShifuError

EXPORT_FORMAT = 1
JSON_COLUMNS = {"passage_ids", "answer", "notices", "timings", "steps", "generated", "tried", "likely_codes"}
FLAG_COLUMNS = {"model_available", "cached", "refused", "model_verified"}
TABLES: dict[str, tuple[str, list[str]]] = {
    "audit": ("created", [
        "id", "created", "created_unix", "query", "normalized", "lang", "machine_id", "source", "code",
        "kb_version", "passage_ids", "model_id", "model_sha256", "adapter_id", "adapter_sha256",
        "model_available", "cached", "answer", "notices", "timings", "machine_model", "refused", "likely_codes",
        "gate_dropped", "model_verified",
    ]),
    "feedback": ("created", ["id", "audit_id", "verdict", "operator", "created", "created_unix", "alarm_id"]),
    "alarms": ("received", [
        "id", "received", "received_unix", "port", "machine_id", "raw", "code", "normalized", "message",
        "status", "repeats", "audit_id",
    ]),
    "work_orders": ("created", [
        "id", "created", "created_unix", "status", "machine_id", "machine_model", "code", "title", "query",
        "operator", "steps", "generated", "tried", "alarm_id", "alarm_received", "alarm_received_unix", "audit_id",
        "feedback_id",
    ]),
}


def _iso(value: Any) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _decode(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _rows(conn: sqlite3.Connection, table: str) -> list[dict[str, Any]]:
    _time_column, columns = TABLES[table]
    cursor = conn.execute(f"SELECT * FROM {table} ORDER BY id")  # noqa: S608 - table names are fixed above
    names = [d[0] for d in cursor.description]
    out = []
    for raw in cursor.fetchall():
        row = dict(zip(names, raw, strict=True))
        for column in columns:  # every time is given twice: `X_unix` as stored and `X` as ISO text
            if column.endswith("_unix"):
                row[column] = row.get(column[:-5])
                row[column[:-5]] = _iso(row[column])
        out.append({c: row.get(c) for c in columns})
    return out


def _write(path: Path, text_rows: Callable[[Any], None]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        text_rows(handle)
        handle.flush()
        os.fsync(handle.fileno())


def export_loop_data(ops_db: Path, dest: Path, progress: Callable[[str, int], None] | None = None) -> Path:
    """Write the export folder under `dest`; return its path."""
    if not ops_db.exists():
        raise ShifuError(f"there is no operational database at {ops_db}; nothing to export")
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    final = dest / f"shifu-export-{stamp}"
    partial = dest / f".shifu-export-{stamp}.partial"
    partial.mkdir(parents=True)
    conn = sqlite3.connect(f"file:{ops_db}?mode=ro", uri=True)
    counts: dict[str, int] = {}
    try:
        conn.execute("BEGIN")  # one snapshot for all three tables
        for table, (_time, columns) in TABLES.items():
            rows = _rows(conn, table)
            counts[table] = len(rows)

            def write_csv(handle: Any, rows: list[dict[str, Any]] = rows, columns: list[str] = columns) -> None:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)

            def write_jsonl(handle: Any, rows: list[dict[str, Any]] = rows) -> None:
                for row in rows:
                    item = {k: (_decode(v) if k in JSON_COLUMNS
                                else bool(v) if k in FLAG_COLUMNS and v is not None else v)
                            for k, v in row.items()}
                    handle.write(json.dumps(item, ensure_ascii=False) + "\n")

            _write(partial / f"{table}.csv", write_csv)
            _write(partial / f"{table}.jsonl", write_jsonl)
            if progress is not None:
                progress(table, len(rows))
    finally:
        conn.close()
    summary = {"format": EXPORT_FORMAT, "created": _iso(datetime.now(UTC).timestamp()), "counts": counts,
               "columns": {t: c for t, (_time, c) in TABLES.items()}}
    _write(partial / "export.json", lambda h: h.write(json.dumps(summary, indent=1)))
    os.replace(partial, final)
    return final
