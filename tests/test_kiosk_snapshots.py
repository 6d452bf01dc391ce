"""SVG snapshots of the kiosk's main states, in both languages (pytest-textual-snapshot).

The model is switched off so the screens are deterministic: the plant procedure, history
and sources come from the real sample KB; the clock is fixed. Update with
`pytest tests/test_kiosk_snapshots.py --snapshot-update` after a deliberate change.
"""

from __future__ import annotations

import time
from typing import Any

import pytest


def _app(engine: Any, lang: str) -> Any:
    from appliance.engine.local import LocalClient
    from appliance.ui.app import make_app

    engine.settings.model.enabled = False
    engine.settings.general.lang = lang
    engine.settings.kiosk.critical_flash_s = 0
    return make_app(engine.settings, LocalClient(engine), clock=lambda: "12:00:00", watch_alarms=False)


def _ask(text: str | None) -> Any:
    async def run_before(pilot: Any) -> None:
        from textual.widgets import Input

        app = pilot.app
        app.query_one(Input).cursor_blink = False
        deadline = time.monotonic() + 60
        while not app.warm_done.is_set():
            assert time.monotonic() < deadline, "warm-up did not finish"
            await pilot.pause(0.05)
        if text is not None:
            app.query_one(Input).value = text
            await pilot.press("enter")
            from appliance.ui.widgets.answer_view import AnswerView

            view = app.query_one(AnswerView)
            while view.state is None or view.state.answer is None:
                assert time.monotonic() < deadline, "no answer"
                await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        app.clear_notifications()
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_idle_screen(snap_compare: Any, engine: Any, lang: str) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=(100, 32), run_before=_ask(None))


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_code_answered(snap_compare: Any, engine: Any, lang: str) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=(100, 32), run_before=_ask("A01"))


def test_critical_code_at_80x24(snap_compare: Any, engine: Any) -> None:
    assert snap_compare(_app(engine, "zh-TW"), terminal_size=(80, 24), run_before=_ask("P-01"))
