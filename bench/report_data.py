"""A generated year of operational rows (audit, alarms, feedback) for the supervisor's report.

The machines and codes are the sample KB's own (kb/sample: its inventory and code tables), so
the report's labels, models and lines are real; which code breaks when is random but seeded.
A few codes break far more often than the rest (a Pareto worth drawing), some machines repeat,
operators press Fixed / Not fixed / Call technician on a share of answers, and some questions
are symptoms the KB cannot answer, worded a few ways each. Rows are written straight into the
operational database's tables (through its migrations), with their own timestamps.
"""

from __future__ import annotations

import csv
import json
import random
from datetime import datetime
from pathlib import Path

from appliance.store.opstore import OpStore
from kb.normalize import code_key

SAMPLE = Path(__file__).resolve().parent.parent / "kb" / "sample"
GAPS = [
    ["冷卻水塔風扇異音", "冷卻水塔 風扇 有異音", "冷卻水塔的風扇異音很大"],
    ["air compressor keeps cycling", "Air compressor keeps cycling on and off", "compressor keeps cycling"],
    ["機械手臂夾爪無法閉合", "機械手臂 夾爪 無法閉合"],
    ["label printer prints blank labels", "Label printer prints blank labels!"],
    ["除濕機顯示 H3", "除濕機 顯示H3"],
    ["forklift battery charger fault light"],
]


def inventory() -> list[tuple[str, str]]:
    with (SAMPLE / "machines" / "machines.csv").open(encoding="utf-8") as handle:
        return [(row["machine_id"], row["machine_model"]) for row in csv.DictReader(handle)]


def codes_by_model() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted((SAMPLE / "codes").glob("*.csv")):
        with path.open(encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                model = row.get("machine_model") or ""
                if row["code"] not in found.setdefault(model, []):
                    found[model].append(row["code"])
    return found


def generate(db_path: Path, *, audit_rows: int = 2000, alarms: int = 500, year: int = 2025, seed: int = 18) -> None:
    """Write about `audit_rows` answers and `alarms` alarms spread over `year` into `db_path`."""
    rng = random.Random(seed)
    machines = inventory()
    codes = codes_by_model()
    start = datetime(year, 1, 1).astimezone().timestamp()
    span = datetime(year, 12, 31, 23, 59).astimezone().timestamp() - start

    def code_for(model: str) -> str:
        pool = codes.get(model, []) + codes.get("", [])
        # Zipf-like: the first codes of each table break far more often.
        weights = [1 / (i + 1) ** 1.2 for i in range(len(pool))]
        return rng.choices(pool, weights)[0]

    store = OpStore(db_path)
    conn = store.db.conn
    try:
        with conn:
            alarm_rows: list[tuple[int, float, str, str, str]] = []
            for _ in range(alarms):
                machine, model = rng.choice(machines[:4]) if rng.random() < 0.4 else rng.choice(machines)
                code = code_for(model)
                received = start + rng.random() * span
                cursor = conn.execute(
                    "INSERT INTO alarms (received, port, machine_id, raw, code, normalized, message, status, repeats,"
                    " source) VALUES (?, 'ttyUSB0', ?, ?, ?, ?, '', 'new', ?, 'serial:ttyUSB0')",
                    [received, machine, f"{machine},{code}", code, code_key(code), rng.choice([0, 0, 0, 1, 2])],
                )
                alarm_rows.append((int(cursor.lastrowid or 0), received, machine, model, code))
            feedback: list[tuple[int | None, str, float, int | None]] = []
            for alarm_id, received, machine, model, code in alarm_rows:
                # the answer prepared for the alarm, and the operator's verdict on a share of them
                audit_id = _audit(conn, rng, received + 2, code, "serial", machine, model, refused=False)
                if rng.random() < 0.6:
                    verdict = rng.choices(["fixed", "not_fixed", "call_technician"], [0.7, 0.15, 0.15])[0]
                    feedback.append((audit_id, verdict, received + rng.uniform(5, 240) * 60, alarm_id))
            questions = max(0, audit_rows - len(alarm_rows))
            for _ in range(questions):
                created = start + rng.random() * span
                machine, model = rng.choice(machines)
                source = rng.choice(["keyboard", "scanner", "keyboard", "cli", "http"])
                if rng.random() < 0.12:
                    query = rng.choice(rng.choice(GAPS))
                    _audit(conn, rng, created, query, source, machine, model, refused=True)
                    continue
                code = code_for(model)
                audit_id = _audit(conn, rng, created, code, source, machine, model, refused=False)
                if rng.random() < 0.3:
                    verdict = rng.choices(["fixed", "not_fixed", "call_technician"], [0.75, 0.15, 0.1])[0]
                    feedback.append((audit_id, verdict, created + rng.uniform(2, 60) * 60, None))
            conn.executemany("INSERT INTO feedback (audit_id, verdict, created, alarm_id) VALUES (?, ?, ?, ?)",
                             sorted(feedback, key=lambda f: f[2]))
    finally:
        store.close()


def _audit(conn: object, rng: random.Random, created: float, query: str, source: str, machine: str, model: str, *,
           refused: bool) -> int:
    generated = not refused and rng.random() < 0.8
    cached = generated and rng.random() < 0.25
    withheld = not refused and not generated and rng.random() < 0.5
    total = rng.uniform(8, 40) if refused or cached else rng.lognormvariate(7.6, 0.4) if generated else rng.uniform(8, 60)
    key = "" if refused else code_key(query)
    cursor = conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO audit (created, query, normalized, lang, machine_id, source, code, passage_ids, model_available,"
        " cached, answer, notices, timings, refused, likely_codes, machine_model)"
        " VALUES (?, ?, ?, 'zh-TW', ?, ?, ?, '[]', ?, ?, ?, '[]', ?, ?, '[]', ?)",
        [created, query, key or None, machine, source, None if refused else query, int(generated or withheld),
         int(cached), json.dumps({"text": "..."}) if generated else "null", json.dumps({"total": round(total, 1)}),
         int(refused), model],
    )
    return int(cursor.lastrowid or 0)
