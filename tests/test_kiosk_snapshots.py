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
    # The chosen machine lives in the test's own SHIFU_HOME: every snapshot starts with none.
    return make_app(engine.settings, LocalClient(engine), clock=lambda: "12:00:00", watch_alarms=False)


def _ask(*texts: str) -> Any:
    """Type each text and press Enter, waiting for its answer (or, for an `M:` tag, the machine)."""

    async def run_before(pilot: Any) -> None:
        from textual.widgets import Input

        from appliance.ui.widgets.answer_view import AnswerView

        app = pilot.app
        app.query_one(Input).cursor_blink = False
        deadline = time.monotonic() + 60
        while not (app.warm_done.is_set() and app.machines):
            assert time.monotonic() < deadline, "warm-up did not finish"
            await pilot.pause(0.05)
        view = app.query_one(AnswerView)
        for text in texts:
            before = view.state
            app.query_one(Input).value = text
            await pilot.press("enter")
            if text.startswith("M:"):
                while app.machine.machine_id != text[2:]:
                    assert time.monotonic() < deadline, "machine not set"
                    await pilot.pause(0.05)
                continue
            while view.state is before or view.state is None or view.state.answer is None:
                assert time.monotonic() < deadline, "no answer"
                await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        app.clear_notifications()
        await pilot.pause(0.1)

    return run_before


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_idle_screen(snap_compare: Any, engine: Any, lang: str) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=(100, 32), run_before=_ask())


@pytest.mark.parametrize("lang", ["zh-TW", "en"])
def test_code_answered(snap_compare: Any, engine: Any, lang: str) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=(100, 32), run_before=_ask("A01"))


def test_critical_code_at_80x24(snap_compare: Any, engine: Any) -> None:
    assert snap_compare(_app(engine, "zh-TW"), terminal_size=(80, 24), run_before=_ask("P-01"))


# -- the machine context and the questions it raises, at the smallest and a large screen ------
SIZES = [(80, 24), (120, 40)]
LANGS = ["zh-TW", "en"]


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize("lang", LANGS)
def test_machine_chosen(snap_compare: Any, engine: Any, lang: str, size: tuple[int, int]) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=size, run_before=_ask("M:IM-01", "E-001"))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize("lang", LANGS)
def test_ambiguity_question(snap_compare: Any, engine: Any, lang: str, size: tuple[int, int]) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=size, run_before=_ask("E-001"))


@pytest.mark.parametrize("size", SIZES, ids=["80x24", "120x40"])
@pytest.mark.parametrize(("lang", "symptom"), [("zh-TW", "皮帶打滑"), ("en", "belt squeals when starting")],
                         ids=LANGS)
def test_symptom_with_likely_codes(snap_compare: Any, engine: Any, lang: str, symptom: str,
                                   size: tuple[int, int]) -> None:
    assert snap_compare(_app(engine, lang), terminal_size=size, run_before=_ask(symptom))
