"""The supervisor's figures (appliance.report.figures) on a hand-made fixture.

Every expected number is worked out here from the fixture itself (by hand in the comments, or
with the standard library's statistics), never by calling the module under test twice.
"""

from __future__ import annotations

import json
import random
import statistics
from datetime import date, datetime
from pathlib import Path

import pytest

from appliance.report import figures as fig
from appliance.report.data import (
    AlarmRow,
    AuditRow,
    Dataset,
    FeedbackRow,
    Period,
    RepairRow,
    Scope,
    load_operational,
    restrict,
)

T = datetime(2026, 3, 2, 10, 0).astimezone().timestamp()
DAY = 86400.0


def audit(id_: int, query: str, source: str = "keyboard", key: str = "", machine: str = "", model: str = "", *,
          refused: bool = False, likely: tuple[str, ...] = (), available: bool = False, generated: bool = False,
          cached: bool = False, ms: float | None = None, dropped: int = 0) -> AuditRow:
    return AuditRow(id_, T + id_, query, source, key, machine, model, refused, likely, available, generated,
                    cached, ms, dropped)


AUDIT = (
    audit(1, "E-203", "keyboard", "E203", "IM-03", "IM-850", available=True, generated=True, ms=900, dropped=2),
    audit(2, "e 203", "scanner", "E203", "IM-03", "IM-850", available=True, generated=True, cached=True, ms=100),
    audit(3, "a01", "cli", "A01", "CV-01", "CV-200", available=True, ms=400, dropped=3),  # the gate withheld it
    audit(4, "A01", "serial", "A01", "CV-01", "CV-200", available=True, generated=True, ms=1200),  # alarm answer
    audit(5, "E-203", "eval", "E203", "IM-03", "IM-850", available=True, generated=True, ms=5000, dropped=7),  # not counted
    audit(6, "皮帶異音怎麼辦", refused=True, ms=20),
    audit(7, "皮帶 異音 怎麼辦？", refused=True, ms=30),
    audit(8, "conveyor belt squeals at start", "http", refused=True, ms=40),
    audit(9, "Conveyor belt squeals at start!", refused=True, ms=50),
    audit(10, "belt slipping", refused=True, likely=("A04",), ms=60),  # a likely code was offered: no gap
    audit(11, "xyz", "serial", refused=True, ms=70),  # not a person's question
    audit(12, "motor overheating", refused=True, ms=80),
)
ALARMS = (
    AlarmRow(1, T, "CV-01", "CV-200", "A01", 2),  # counts 3: the intake folded two repeats into it
    AlarmRow(2, T + 2 * DAY, "CV-01", "CV-200", "A01", 0),
    AlarmRow(3, T + 40 * DAY, "CV-01", "CV-200", "A01", 0),
    AlarmRow(4, T, "IM-03", "IM-850", "E203", 0),
)
FEEDBACK = (
    FeedbackRow(1, T + 60, 1, None, "fixed"),
    FeedbackRow(2, T + 300, 4, 1, "not_fixed"),
    FeedbackRow(3, T + 900, 4, 1, "fixed"),  # alarm 1 fixed after 15 min
    FeedbackRow(4, T + 2 * DAY + 1800, None, 2, "fixed"),  # alarm 2 fixed after 30 min
    FeedbackRow(5, T + 40 * DAY + 60, None, 3, "call_technician"),
    FeedbackRow(6, T + 120, 3, None, "call_technician"),
    FeedbackRow(7, T + 3600, None, 1, "fixed"),  # pressed again later: the first press counts
)
REPAIRS = (
    RepairRow("2026-03-01", "CV-01", "CV-200", "A01", "tighten belt", "fixed", 30),
    RepairRow("2026-03-10", "CV-01", "CV-200", "A01", "replace belt", "fixed", 50),
    RepairRow("2026-03-12", "CV-01", "CV-200", "A01", "adjust sensor", "not_fixed", 40),
    RepairRow("2026-05-01", "CV-01", "CV-200", "A01", "replace roller", "fixed", 70),
    RepairRow("2026-03-02", "CV-02", "CV-200", "A01", "tighten belt", "fixed", 20),
)
DATA = Dataset(AUDIT, ALARMS, FEEDBACK, REPAIRS, {"E203": "E-203", "A01": "A01"},
               {"CV-01": "L1", "CV-02": "L1", "IM-03": "L2"})


def test_pareto_counts_questions_and_alarms_once_each() -> None:
    rows = fig.pareto(DATA)
    # questions: E-203 x2 (audit 1, 2: two spellings, one key), A01 x1 (audit 3); the serial answer
    # (audit 4) and the eval row (5) are not questions. Alarms: A01 = (1+2) + 1 + 1 = 5, E-203 = 1.
    total = 2 + 1 + 5 + 1
    expected = [("A01", "CV-200", "alarm", 5), ("E-203", "IM-850", "question", 2),
                ("A01", "CV-200", "question", 1), ("E-203", "IM-850", "alarm", 1)]
    assert [(r.code, r.machine_model, r.source, r.count) for r in rows] == expected
    running = 0
    for row, (*_, count) in zip(rows, expected, strict=True):
        running += count
        assert row.share == pytest.approx(count / total)
        assert row.cumulative_share == pytest.approx(running / total)
    assert fig.pareto_by_code(rows) == [("A01", 6, pytest.approx(6 / 9)), ("E-203", 3, pytest.approx(1.0))]


def test_repeat_offenders_within_the_window_and_the_fixes_that_did_not_hold() -> None:
    rows = {(r.source, r.machine_id, r.code): r for r in fig.repeats(DATA, window_days=30)}
    # alarms on CV-01: day 0, day 2 (a repeat), day 40 (38 days later: not one); alarm 1 was marked fixed.
    alarm = rows[("alarm", "CV-01", "A01")]
    assert (alarm.occurrences, alarm.repeats, alarm.fixes_not_held, alarm.line) == (3, 1, 1, "L1")
    # records on CV-01: 03-01 -> 03-10 (9 days: "tighten belt" did not hold), 03-10 -> 03-12 (2 days:
    # "replace belt" did not hold), 03-12 -> 05-01 (50 days: not a repeat).
    record = rows[("record", "CV-01", "A01")]
    assert (record.occurrences, record.repeats, record.fixes_not_held) == (4, 2, 2)
    assert record.failed_fixes == "replace belt | tighten belt"
    assert record.last_seen == "2026-05-01"
    # one IM-03 alarm and one CV-02 record: nothing repeated
    assert set(rows) == {("alarm", "CV-01", "A01"), ("record", "CV-01", "A01")}
    wider = {(r.source, r.machine_id): r for r in fig.repeats(DATA, window_days=60)}
    assert (wider[("alarm", "CV-01")].repeats, wider[("alarm", "CV-01")].fixes_not_held) == (2, 2)
    # 60 days: 03-12 -> 05-01 is a repeat too, but "adjust sensor" did not fix it in the first place
    assert (wider[("record", "CV-01")].repeats, wider[("record", "CV-01")].fixes_not_held) == (3, 2)
    assert wider[("record", "CV-01")].failed_fixes == "replace belt | tighten belt"


def test_time_to_repair_median_and_p90_per_code_and_source() -> None:
    rows = {(r.code, r.source): r for r in fig.repair_time(DATA)}
    records = [30, 50, 40, 70, 20]
    operator = [15.0, 30.0]  # alarm 1: 900 s to its first "fixed" (not the later one); alarm 2: 1,800 s
    for key, values in ((("A01", "record"), records), (("A01", "operator"), operator)):
        row = rows[key]
        assert row.n == len(values)
        assert row.median_min == pytest.approx(statistics.median(values))
        assert row.p90_min == pytest.approx(statistics.quantiles(values, n=10, method="inclusive")[8])
    assert set(rows) == {("A01", "record"), ("A01", "operator")}  # E-203's alarm was never marked fixed


def test_percentile_matches_the_standard_library() -> None:
    values = [random.Random(7).uniform(0, 500) for _ in range(101)]
    for q in (10, 50, 90, 95):
        assert fig.percentile(values, q) == pytest.approx(statistics.quantiles(values, n=100, method="inclusive")[q - 1])
    assert fig.percentile([], 50) is None


def test_first_time_fix_and_procedures_to_review() -> None:
    rows = {(r.code, r.machine_model): r for r in fig.first_time_fix(DATA)}
    # A01 on CV-200: alarm 1 (first press: not fixed), alarm 2 (fixed), alarm 3 (call technician),
    # answer 3 (call technician) -> 4 incidents, 1 fixed first, 3 failed first -> review.
    a01 = rows[("A01", "CV-200")]
    assert (a01.incidents, a01.fixed_first, a01.not_fixed_first, a01.call_technician_first) == (4, 1, 1, 2)
    assert a01.first_time_fix_rate == pytest.approx(1 / 4)
    assert a01.review
    e203 = rows[("E-203", "IM-850")]
    assert (e203.incidents, e203.fixed_first, e203.first_time_fix_rate, e203.review) == (1, 1, 1.0, False)
    # with a higher bar for evidence, A01 is no longer a candidate
    assert not any(r.review for r in fig.first_time_fix(DATA, min_feedback=5))


def test_gaps_group_refused_questions_by_wording() -> None:
    rows = fig.gaps(DATA)
    # 皮帶異音怎麼辦 has bigrams 皮帶 帶異 異音 音怎 怎麼 麼辦; the spaced one 皮帶 異音 怎麼 麼辦: 4/6 shared.
    assert [r.count for r in rows] == [2, 2, 1]
    by_example = {r.example_query: r for r in rows}
    assert "motor overheating" in by_example
    zh = next(r for r in rows if "皮帶" in r.group)
    assert zh.count == 2 and zh.variants == 2 and zh.example_query in {"皮帶異音怎麼辦", "皮帶 異音 怎麼辦？"}
    en = next(r for r in rows if "squeals" in r.group.lower())
    assert en.count == 2 and en.variants == 2
    # "belt slipping" had a likely code; "xyz" came from a serial line, not a person
    assert all(r.example_query not in {"xyz", "belt slipping"} for r in rows)


def _brute_force(texts: list[str], threshold: float) -> list[list[str]]:
    """The same greedy grouping, comparing each wording with every group (quadratic)."""
    by_text: dict[str, list[str]] = {}
    for text in texts:
        by_text.setdefault(" ".join(text.lower().split()), []).append(text)
    reps: list[frozenset[str]] = []
    members: list[list[str]] = []
    for norm in sorted(by_text, key=lambda t: (-len(by_text[t]), t)):
        terms = fig.wording(norm)
        scores = [(len(terms & rep) / len(terms | rep) if terms or rep else 1.0, -gid) for gid, rep in enumerate(reps)]
        best = max(scores, default=(0.0, 0))
        if scores and best[0] >= threshold:
            members[-best[1]].extend(by_text[norm])
        else:
            reps.append(terms)
            members.append(list(by_text[norm]))
    return members


def test_gap_grouping_is_the_exhaustive_grouping_without_its_cost() -> None:
    rng = random.Random(18)
    words = ["belt", "motor", "squeal", "noise", "hot", "start", "stop", "leak", "oil", "slow", "jam", "door"]
    cjk = ["皮帶", "異音", "馬達", "過熱", "漏油", "卡料", "門", "啟動"]
    texts = []
    for _ in range(600):
        if rng.random() < 0.5:
            texts.append(" ".join(rng.sample(words, rng.randint(1, 4))))
        else:
            texts.append("".join(rng.sample(cjk, rng.randint(1, 3))))
    for threshold in (0.4, 0.5, 0.7):
        assert fig.group_texts(texts, threshold) == _brute_force(texts, threshold)


def test_model_use() -> None:
    use = fig.model_use(DATA)
    counted = [a for a in AUDIT if a.source != "eval"]  # 11 answers; the eval run is left out
    assert use.answers == 11
    assert use.generated == 3 and use.cached == 1 and use.gate_withheld == 1  # audit 1, 2, 4; 2; 3
    assert use.refused == 7
    assert use.gate_dropped == 2 + 3  # audit 1 and 3; the eval run's 7 are not counted
    assert use.generated_share == pytest.approx(3 / 11)
    assert use.cache_hit_share == pytest.approx(1 / 3)
    assert use.gate_withheld_share == pytest.approx(1 / 4)
    latencies = [a.total_ms for a in counted if a.total_ms is not None]
    assert use.latency_p50_ms == pytest.approx(statistics.median(latencies))
    assert use.latency_p95_ms == pytest.approx(statistics.quantiles(latencies, n=20, method="inclusive")[18])


def test_scope_keeps_one_machine_and_its_feedback() -> None:
    scoped = restrict(DATA, Scope(machine_id="IM-03"))
    assert {a.machine_id for a in scoped.audit} == {"IM-03"}
    assert [a.id for a in scoped.alarms] == [4]
    assert [f.id for f in scoped.feedback] == [1]
    assert scoped.repairs == ()
    line = restrict(DATA, Scope(line="L1"))
    assert {r.machine_id for r in line.repairs} == {"CV-01", "CV-02"} and {a.id for a in line.alarms} == {1, 2, 3}


def test_loader_reads_the_operational_database(tmp_path: Path) -> None:
    """Real SQLite through OpStore: m005's columns, a refusal written before m005, the period's bounds."""
    from appliance.store.opstore import OpStore

    store = OpStore(tmp_path / "ops.sqlite")
    inside = datetime(2026, 3, 5, 12).astimezone().timestamp()
    outside = datetime(2026, 4, 1, 0, 0, 1).astimezone().timestamp()
    refused = store.write_audit({"query": "皮帶異音", "refused": True, "likely_codes": [], "generated": None,
                                 "lang": "zh-TW", "timings_ms": {"total": 12.5}}, source="keyboard")
    likely = store.write_audit({"query": "belt slips", "refused": True, "likely_codes": [{"code": "A04"}],
                                "generated": None}, source="keyboard")
    coded = store.write_audit({"query": "e 203", "normalized": "E203", "code": {"code": "E-203", "machine_model": "IM-850"},
                               "machine_id": "IM-03", "model_available": True, "generated": {"text": "x"},
                               "cached": True}, source="scanner")
    old = store.write_audit({"query": "old row", "notices": ["This is not in the knowledge base. Do not guess."]},
                            source="cli")
    late = store.write_audit({"query": "April"}, source="cli")
    alarm = store.add_alarm(port="ttyUSB0", machine_id="CV-01", raw="M1,A01", code="A01", normalized="A01", message="")
    store.add_feedback(coded, "fixed", alarm_id=alarm)
    with store.db.conn:
        store.db.conn.execute("UPDATE audit SET created = ?", [inside])
        store.db.conn.execute("UPDATE audit SET created = ? WHERE id = ?", [outside, late])
        store.db.conn.execute("UPDATE audit SET refused = NULL WHERE id = ?", [old])  # as before m005
        store.db.conn.execute("UPDATE alarms SET received = ?", [inside])
        store.db.conn.execute("UPDATE feedback SET created = ?", [inside + 60])
    store.close()
    rows, alarms, feedback, spellings = load_operational(tmp_path / "ops.sqlite", Period(date(2026, 3, 1), date(2026, 3, 31)),
                                                         {"CV-01": ("CV-200", "L1")})
    by_id = {r.id: r for r in rows}
    assert set(by_id) == {refused, likely, coded, old}  # April 1st is after the period
    assert by_id[refused].refused and by_id[refused].likely_codes == () and by_id[refused].total_ms == 12.5
    assert by_id[likely].likely_codes == ("A04",)
    assert by_id[old].refused  # judged by the engine's refusal notice
    assert (by_id[coded].key, by_id[coded].machine_model, by_id[coded].generated, by_id[coded].cached) == (
        "E203", "IM-850", True, True)
    assert spellings["E203"] == "E-203"
    assert [(a.key, a.machine_model) for a in alarms] == [("A01", "CV-200")]
    assert [(f.audit_id, f.alarm_id, f.verdict) for f in feedback] == [(coded, alarm, "fixed")]
    assert json.loads(json.dumps(spellings)) == spellings


def test_loader_reads_a_database_from_before_m005(tmp_path: Path) -> None:
    """A database never migrated past m004 (a backup restored from an older appliance) still loads."""
    from appliance.store.opstore import MIGRATIONS
    from kb.store.migrate import connect, migrate

    db = connect(tmp_path / "old.sqlite")
    migrate(db, MIGRATIONS[:4])
    created = datetime(2026, 3, 5, 12).astimezone().timestamp()
    with db.conn:
        db.conn.execute("INSERT INTO audit (created, query, source, answer, notices, timings) VALUES"
                        " (?, '冷卻水塔異音', 'keyboard', 'null', ?, '{\"total\": 9}')",
                        [created, json.dumps(["知識庫中沒有這個問題的資料。請勿自行猜測處理方式，請呼叫技術人員。"])])
        db.conn.execute("INSERT INTO audit (created, query, source, normalized, code, answer, notices, timings)"
                        " VALUES (?, 'E-203', 'keyboard', 'E203', 'E-203', '{\"text\": \"x\"}', '[]', 'not json')",
                        [created])
    db.conn.close()
    rows, _alarms, _feedback, _spellings = load_operational(tmp_path / "old.sqlite",
                                                            Period(date(2026, 3, 1), date(2026, 3, 31)), {})
    assert [(r.refused, r.generated, r.total_ms, r.key) for r in rows] == [(True, False, 9.0, ""),
                                                                           (False, True, None, "E203")]
