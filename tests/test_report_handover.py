"""`shifu report handover`: a shift's alarms (crossing midnight too), their states, printable HTML."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import pytest

from appliance.report.handover import Shift, build_handover, current_shift
from appliance.store.opstore import OpStore
from kb.versions import VersionStore

SHIFU = Path(sys.executable).parent / "shifu"


def at(*parts: int) -> float:
    return datetime(*parts).astimezone().timestamp()  # type: ignore[arg-type]


def test_a_night_shift_ends_the_next_morning() -> None:
    night = Shift.parse(date(2026, 3, 2), "22:00-06:00")
    assert night.begins == datetime(2026, 3, 2, 22).astimezone()
    assert night.ends == datetime(2026, 3, 3, 6).astimezone()
    day = Shift.parse(date(2026, 3, 2), "00:00-24:00")
    assert day.ends == datetime(2026, 3, 3).astimezone()
    # 03:00 on the 3rd belongs to the night shift that began on the 2nd
    assert current_shift(datetime(2026, 3, 3, 3).astimezone()) == night
    assert current_shift(datetime(2026, 3, 3, 6).astimezone()) == Shift.parse(date(2026, 3, 3), "06:00-14:00")
    with pytest.raises(ValueError, match="HH:MM"):
        Shift.parse(date(2026, 3, 2), "22-6")


def _store(path: Path) -> dict[str, int]:
    """Alarms around a night shift (2023-03-05 22:00 - 03-06 06:00) and the operators' presses."""
    store = OpStore(path)
    ids: dict[str, int] = {}
    rows = {
        "before": ("CV-01", "A01", at(2023, 3, 5, 21, 59)),
        "fixed": ("IM-03", "E-202", at(2023, 3, 6, 1, 0)),  # after midnight, inside the shift
        "escalated": ("CV-02", "A11", at(2023, 3, 5, 23, 0)),
        "open": ("CV-01", "A01", at(2023, 3, 5, 22, 30)),
        "again": ("CV-01", "A01", at(2023, 3, 6, 5, 0)),
        "after": ("CV-01", "A01", at(2023, 3, 6, 6, 0)),
    }
    for name, (machine, code, received) in rows.items():
        ids[name] = store.add_alarm(port="ttyUSB0", machine_id=machine, raw=f"{machine},{code}", code=code,
                                    normalized=code.replace("-", ""), message="")
        with store.db.conn:
            store.db.conn.execute("UPDATE alarms SET received = ? WHERE id = ?", [received, ids[name]])
    presses = [("fixed", "not_fixed", at(2023, 3, 6, 1, 10), "OP1"), ("fixed", "fixed", at(2023, 3, 6, 1, 35), "OP2"),
               ("escalated", "call_technician", at(2023, 3, 5, 23, 5), "OP3"),
               ("open", "not_fixed", at(2023, 3, 5, 22, 40), "OP1")]
    for name, verdict, created, operator in presses:
        feedback = store.add_feedback(None, verdict, operator, alarm_id=ids[name])
        with store.db.conn:
            store.db.conn.execute("UPDATE feedback SET created = ? WHERE id = ?", [created, feedback])
    with store.db.conn:
        store.db.conn.execute("UPDATE alarms SET repeats = 2 WHERE id = ?", [ids["again"]])
    store.close()
    return ids


def test_states_repeats_and_what_was_done(tmp_path: Path, built_home: Path) -> None:
    ids = _store(tmp_path / "ops.sqlite")
    versions = VersionStore(built_home / "kb")
    kb_dir = versions.path(versions.current())  # type: ignore[arg-type]
    handover = build_handover(tmp_path / "ops.sqlite", Shift.parse(date(2023, 3, 5), "22:00-06:00"), kb_dir, "en")
    by_id = {a.id: a for a in handover.alarms}
    assert set(by_id) == {ids["fixed"], ids["escalated"], ids["open"], ids["again"]}  # 21:59 and 06:00 are out
    fixed = by_id[ids["fixed"]]
    assert (fixed.state, fixed.operator) == ("fixed", "OP2")
    assert fixed.minutes_to_fix == pytest.approx(35.0)  # 01:00 -> the Fixed press at 01:35
    assert fixed.title == "Thermocouple fault"  # the KB's row for the inventory's model (IM-850)
    assert fixed.action == "更換熱電偶"  # the sample KB's repair record of IM-03 / E-202 on 2023-03-06
    assert (by_id[ids["escalated"]].state, by_id[ids["escalated"]].operator) == ("escalated", "OP3")
    assert by_id[ids["open"]].state == "open" and by_id[ids["again"]].state == "open"
    # A01 on CV-01: 22:30 once, 05:00 with two repeats folded in -> 4 times
    assert handover.repeated == (("CV-01", "A01", 4),)
    assert (handover.count("fixed"), handover.count("escalated"), handover.count("open")) == (1, 1, 2)


def test_cli_writes_printable_html_and_csv(tmp_path: Path, built_home: Path) -> None:
    import shutil

    home = tmp_path / "home"
    shutil.copytree(built_home, home, symlinks=True)
    ids = _store(home / "ops.sqlite")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIFU_")}
    env.update({"SHIFU_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    for lang, words in (("zh-TW", ["交接班報表", "熱電偶異常", "已呼叫技術人員", "更換熱電偶"]),
                        ("en", ["Shift handover", "Thermocouple fault", "escalated", "4 alarms this shift"])):
        out = tmp_path / lang
        result = subprocess.run([str(SHIFU), "report", "handover", "--date", "2023-03-05", "--shift", "22:00-06:00",
                                 "--out", str(out), "--lang", lang], capture_output=True, text=True, env=env,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        page = (out / "handover.html").read_text(encoding="utf-8")
        for word in words:
            assert word in page, word
        assert "@media print" in page and "http" not in page
        with (out / "handover.csv").open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert {int(r["id"]): r["state"] for r in rows} == {ids["fixed"]: "fixed", ids["escalated"]: "escalated",
                                                            ids["open"]: "open", ids["again"]: "open"}
    bad = subprocess.run([str(SHIFU), "report", "handover", "--shift", "late", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "HH:MM" in bad.stderr
