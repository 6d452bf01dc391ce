"""The shift handover on the technician screen (F6 this shift, F7 the one before), on the real engine.

Alarms and operator presses are written through the real operational database and dated
inside fixed shifts; the test works out each alarm's state from what it wrote (fixed: a Fixed
press; escalated: Call technician and no Fixed; open: nothing or only Not fixed) and checks the
client protocol (in-process and over HTTP), the drawn page and snapshots in both languages.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from datetime import time as clock_time
from typing import Any

import pytest

from appliance.engine import Engine
from appliance.engine.local import LocalClient

DAY = date(2026, 3, 11)
NOW = datetime.combine(DAY, clock_time(13, 30)).astimezone()  # in the 06:00-14:00 shift
# (machine, code, minutes after 06:00 on DAY (negative: the night shift before), presses (verdict, minutes later))
ALARMS = [
    ("CV-01", "A01", 30, [("fixed", 15)]),
    ("CV-01", "A01", 200, [("not_fixed", 5)]),  # A01 twice on CV-01: repeated; only Not fixed: open
    ("CV-02", "A03", 90, [("call_technician", 10)]),
    ("IM-01", "E-203", 300, [("call_technician", 5), ("fixed", 40)]),  # fixed after all
    ("CV-02", "A02", -120, [("fixed", 20)]),  # 04:00, the night shift
]


def _stamp(minutes: float) -> float:
    return datetime.combine(DAY, clock_time(6, 0)).astimezone().timestamp() + minutes * 60


def _state(presses: list[tuple[str, int]]) -> str:
    verdicts = [v for v, _ in presses]
    return "fixed" if "fixed" in verdicts else "escalated" if "call_technician" in verdicts else "open"


@pytest.fixture
def shifts(engine: Engine) -> Engine:
    store = engine.opstore
    assert store is not None
    for machine, code, minutes, presses in ALARMS:
        alarm = store.add_alarm(port="http", machine_id=machine, raw=code, code=code, normalized=code.replace("-", ""),
                                message="")
        store.db.conn.execute("UPDATE alarms SET received = ? WHERE id = ?", [_stamp(minutes), alarm])
        for verdict, later in presses:
            feedback = store.add_feedback(None, verdict, "op-7", alarm_id=alarm)
            store.db.conn.execute("UPDATE feedback SET created = ? WHERE id = ?", [_stamp(minutes + later), feedback])
    store.db.conn.commit()
    engine.settings.model.enabled = False
    return engine


def test_handover_of_this_shift_and_the_one_before(shifts: Engine) -> None:
    client = LocalClient(shifts)
    report = client.handover(NOW, "en")
    assert (report.begins, report.ends) == (_stamp(0), _stamp(8 * 60))
    day = [a for a in ALARMS if 0 <= a[2] < 8 * 60]
    assert [(a.machine_id, a.code, a.state) for a in report.alarms] == [(m, c, _state(p)) for m, c, _, p in day]
    fixed = {a.code: a.minutes_to_fix for a in report.alarms if a.state == "fixed"}
    assert fixed == {c: next(t for v, t in p if v == "fixed") for _, c, _, p in day if _state(p) == "fixed"}
    assert report.repeated == (("CV-01", "A01", 2),)
    assert all(a.title for a in report.alarms), "the KB's titles are named"
    night = client.handover(datetime.fromtimestamp(_stamp(-60)).astimezone(), "en")
    assert [(a.code, a.state) for a in night.alarms] == [("A02", "fixed")] and night.repeated == ()


def test_the_server_gives_a_remote_kiosk_the_same_handover(shifts: Engine) -> None:
    from fastapi.testclient import TestClient

    from appliance.engine.client import ShiftReport
    from appliance.server.app import make_server_app

    with TestClient(make_server_app(shifts.settings, shifts, warm=False)) as client:
        got = client.get("/v1/report/handover", params={"at": NOW.isoformat(), "lang": "zh-TW"})
        assert got.status_code == 200, got.text
        assert ShiftReport.from_json(got.json()) == LocalClient(shifts).handover(NOW, "zh-TW")
        assert client.get("/v1/report/handover", params={"at": "yesterday"}).status_code in (400, 422)


def _technician_app(engine: Engine, lang: str, tmp_path: Any) -> Any:
    from appliance.ui.app import make_app
    from appliance.ui.pin import set_pin

    engine.settings.general.lang = lang
    engine.settings.kiosk.critical_flash_s = 0
    return make_app(engine.settings, LocalClient(engine), clock=lambda: "13:30:00", watch_alarms=False,
                    pin_path=set_pin("4321", tmp_path / "pin.json"), machine_file=tmp_path / "m.json",
                    today=lambda: DAY, now=lambda: NOW)


def _open_shift(key: str) -> Any:
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
        while not hasattr(app.screen, "handover"):
            assert time.monotonic() < deadline
            await pilot.pause(0.05)
        await pilot.press(key)
        while app.screen.handover is None:
            assert time.monotonic() < deadline, "handover not read"
            await pilot.pause(0.05)
        await pilot.pause(0.3)
        app.clear_notifications()
        await pilot.pause(0.1)

    return run_before


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_f6_lists_open_alarms_first_and_f7_the_night_shift(shifts: Engine, tmp_path: Any,
                                                                anyio_backend: str) -> None:
    app = _technician_app(shifts, "en", tmp_path)
    async with app.run_test(size=(120, 50)) as pilot:
        await _open_shift("f6")(pilot)
        screen = app.screen
        page = str(screen.query_one("#tech-shift").render().plain)
        assert screen.query_one("#tech-shift").display and not screen.query_one("#tech-info").display
        assert "Handover of this shift" in page and "03-11 06:00 – 03-11 14:00" in page
        assert "4 alarms: 2 fixed · 1 escalated · 1 open" in page
        sections = [page.index(s) for s in ("Open (", "Technician called", "Fixed (")]
        assert sections == sorted(sections), "open alarms come first"
        assert "fixed in 15 min" in page and "fixed in 40 min" in page
        assert page.index("A03") < page.index("Fixed (") < page.index("E-203")
        assert "CV-01    A01        ×2" in page
        await pilot.press("f7")
        while screen.handover is None or screen.page != "shift1":
            await pilot.pause(0.05)
        await pilot.pause(0.2)
        night = str(screen.query_one("#tech-shift").render().plain)
        assert "Handover of the previous shift" in night and "03-10 22:00 – 03-11 06:00" in night
        assert "1 alarms: 1 fixed" in night and "A02" in night and "A03" not in night
        await pilot.press("f2")
        assert screen.query_one("#tech-info").display and not screen.query_one("#tech-shift").display


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_snapshot_of_this_shifts_handover(snap_compare: Any, shifts: Engine, tmp_path: Any, lang: str) -> None:
    assert snap_compare(_technician_app(shifts, lang, tmp_path), terminal_size=(100, 40), run_before=_open_shift("f6"))
