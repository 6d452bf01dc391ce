"""The technician screen's figures (F3 today, F4 this week, F5 this month) on the real engine.

Answers and alarms are written through the real engine and operational database, then dated
on fixed days; the test works out what each period must show from what it wrote and checks
the client protocol (in-process and over HTTP), the drawn screen and snapshots in both languages.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any

import pytest

from appliance.engine import Engine
from appliance.engine.local import LocalClient
from appliance.engine.types import Query

TODAY = date(2026, 3, 11)  # a Wednesday; the sample KB's repair records end in 2025
QUESTIONS = [("A01", TODAY), ("A01", TODAY), ("A01", TODAY), ("A02", TODAY), ("A02", date(2026, 3, 9)),
             ("E-203", date(2026, 3, 2))]
ALARMS = [("CV-01", "A01", date(2026, 3, 2)), ("CV-01", "A01", date(2026, 3, 10)), ("CV-02", "A03", TODAY)]
GAPS = [("what is the capital of France", TODAY), ("what is the capital city of France", date(2026, 3, 10))]


def _stamp(day: date) -> float:
    return datetime.combine(day, clock_time(10, 0)).astimezone().timestamp()


@pytest.fixture
def floor(engine: Engine) -> Engine:
    store = engine.opstore
    assert store is not None
    for text, day in QUESTIONS + GAPS:
        answer = engine.answer(Query(text, lang="en", source="keyboard"), use_model=False)
        assert answer.audit_id is not None
        if (text, day) in GAPS:
            assert answer.refused and not answer.likely_codes, text
        store.db.conn.execute("UPDATE audit SET created = ? WHERE id = ?", [_stamp(day), answer.audit_id])
    for machine, code, day in ALARMS:
        alarm = store.add_alarm(port="http", machine_id=machine, raw=code, code=code, normalized=code, message="")
        store.db.conn.execute("UPDATE alarms SET received = ? WHERE id = ?", [_stamp(day), alarm])
    store.db.conn.commit()
    engine.settings.model.enabled = False
    return engine


def _expected(first: date, last: date) -> list[tuple[str, int]]:
    """Counts per code worked out from what the fixture wrote (questions + alarms in the period)."""
    counts: dict[str, int] = {}
    for code, day in QUESTIONS:
        if first <= day <= last:
            counts[code] = counts.get(code, 0) + 1
    for _machine, code, day in ALARMS:
        if first <= day <= last:
            counts[code] = counts.get(code, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


@pytest.mark.parametrize(("first", "last"), [(TODAY, TODAY), (date(2026, 3, 9), TODAY), (date(2026, 3, 1), TODAY)],
                         ids=["today", "week", "month"])
def test_floor_report_counts_what_was_asked_and_raised(floor: Engine, first: date, last: date) -> None:
    report = LocalClient(floor).floor_report(first, last)
    expected = _expected(first, last)
    assert [(code, count) for code, count, _ in report.pareto] == expected
    assert report.pareto[-1][2] == pytest.approx(1.0)
    assert report.pareto[0][2] == pytest.approx(expected[0][1] / sum(n for _, n in expected))
    # CV-01 raised A01 on the 2nd and the 10th: a repeat within 30 days once both are in the period.
    assert report.repeats == ((("CV-01", "A01", 1, 0),) if first <= date(2026, 3, 2) else ())
    gaps = [day for _, day in GAPS if first <= day <= last]
    assert [count for _, count in report.gaps] == ([len(gaps)] if gaps else [])
    if gaps:
        assert "capital" in report.gaps[0][0]


def test_the_server_gives_a_remote_kiosk_the_same_figures(floor: Engine) -> None:
    from fastapi.testclient import TestClient

    from appliance.engine.client import FloorReport
    from appliance.server.app import make_server_app

    with TestClient(make_server_app(floor.settings, floor, warm=False)) as client:
        got = client.get("/v1/report/floor", params={"first": "2026-03-01", "last": "2026-03-11"})
        assert got.status_code == 200, got.text
        assert FloorReport.from_json(got.json()) == LocalClient(floor).floor_report(date(2026, 3, 1), TODAY)
        backwards = client.get("/v1/report/floor", params={"first": "2026-03-11", "last": "2026-03-01"})
        assert backwards.status_code == 400


def _technician_app(engine: Engine, lang: str, tmp_path: Any) -> Any:
    from appliance.ui.app import make_app
    from appliance.ui.pin import set_pin

    engine.settings.general.lang = lang
    engine.settings.kiosk.critical_flash_s = 0
    return make_app(engine.settings, LocalClient(engine), clock=lambda: "12:00:00", watch_alarms=False,
                    pin_path=set_pin("4321", tmp_path / "pin.json"), machine_file=tmp_path / "m.json",
                    today=lambda: TODAY)


def _open_page(key: str) -> Any:
    async def run_before(pilot: Any) -> None:
        app = pilot.app
        deadline = time.monotonic() + 60
        while not app.warm_done.is_set():
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        await pilot.press("f9")
        await pilot.pause(0.2)
        app.screen.query_one("#pin-input").value = "4321"
        await pilot.press("enter")
        while not hasattr(app.screen, "floor"):
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        await pilot.press(key)
        while app.screen.floor is None:
            assert time.monotonic() < deadline, "figures not read"
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.clear_notifications()
        await pilot.pause(0.1)

    return run_before


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_f5_draws_the_months_chart_repeats_and_gaps(floor: Engine, tmp_path: Any, anyio_backend: str) -> None:
    from textual_plotext import PlotextPlot

    app = _technician_app(floor, "en", tmp_path)
    async with app.run_test(size=(120, 50)) as pilot:
        await _open_page("f5")(pilot)
        screen = app.screen
        head = str(screen.query_one("#tech-floor-head").render().plain)
        assert "This month" in head and "2026-03-01 – 2026-03-11" in head
        body = str(screen.query_one("#tech-floor-text").render().plain)
        rows = [line.split() for line in body.splitlines() if line.startswith("  ") and "cumulative" in line]
        assert [(r[0], int(r[1])) for r in rows] == _expected(date(2026, 3, 1), TODAY)
        assert "CV-01" in body and "1 repeats" in body and "2 × what is the capital" in body
        chart = screen.query_one("#tech-pareto", PlotextPlot)
        assert chart.display and chart.region.height >= 10
        await pilot.press("f3")
        while screen.floor is None:
            await pilot.pause(0.05)
        assert [(c, n) for c, n, _ in screen.floor.pareto] == _expected(TODAY, TODAY)
        await pilot.press("f2")
        assert screen.query_one("#tech-info").display and not screen.query_one("#tech-floor").display


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_snapshot_of_this_weeks_figures(snap_compare: Any, floor: Engine, tmp_path: Any, lang: str) -> None:
    assert snap_compare(_technician_app(floor, lang, tmp_path), terminal_size=(100, 48), run_before=_open_page("f4"))
