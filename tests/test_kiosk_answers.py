"""The kiosk never guesses a machine's procedure, and a symptom gets the likely code, clearly labelled."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from appliance.engine import Engine


def _screen(engine: Engine, text: str, lang: str) -> dict[str, str]:
    from appliance.engine.local import LocalClient
    from appliance.ui.app import make_app
    from appliance.ui.widgets.answer_view import AnswerView

    engine.settings.model.enabled = False
    engine.settings.kiosk.critical_flash_s = 0
    engine.settings.general.lang = lang
    app = make_app(engine.settings, LocalClient(engine), clock=lambda: "12:00:00")
    shown: dict[str, str] = {}

    async def run() -> None:
        async with app.run_test(size=(120, 60)) as pilot:
            pilot.app.query_one("#query").value = text
            await pilot.press("enter")
            view: Any = app.query_one(AnswerView)
            for _ in range(600):
                if view.state is not None and view.state.answer is not None:
                    break
                await pilot.pause(0.05)
            shown.update(view.shown)

    anyio.run(run)
    return shown


@pytest.mark.parametrize(("lang", "asks", "waits"), [("zh-TW", "請確認是哪一種機台", "確認機台後"),
                                                     ("en", "check which machine", "waits until the machine")])
def test_ambiguous_code_shows_each_model_and_no_procedure(engine: Engine, lang: str, asks: str, waits: str) -> None:
    shown = _screen(engine, "E-001", lang)
    procedure = shown["procedure"]
    assert asks in procedure
    assert "CV-200" in procedure and "IM-850" in procedure
    steps = engine.kb().lookup("E-001", machine_model="CV-200", lang=lang).entry.steps
    assert not any(step in procedure for step in steps), "one model's steps are never shown as the procedure"
    assert waits in shown["generated"]


@pytest.mark.parametrize(("lang", "text", "likely"), [("zh-TW", "皮帶打滑", "可能是 A03"),
                                                      ("en", "belt squeals when starting", "Likely A03")])
def test_symptom_shows_the_likely_code_labelled_with_its_steps(engine: Engine, lang: str, text: str,
                                                               likely: str) -> None:
    shown = _screen(engine, text, lang)
    procedure = shown["procedure"]
    assert procedure.startswith(likely), procedure
    entry = engine.kb().lookup("A03", machine_model="CV-200", lang=lang).entry
    assert all(step in procedure for step in entry.steps)
    assert shown.get("history"), "similar past repairs are shown"


def test_quoted_steps_are_drawn_with_their_source(engine: Engine) -> None:
    """The embedded model quotes (models.toml answer_mode): each drawn step is a sentence of the
    procedure or a source on screen, under a line saying it is quoted."""
    from appliance.engine.local import LocalClient
    from appliance.ui.app import make_app
    from appliance.ui.widgets.answer_view import AnswerView

    engine.settings.model.enabled = True
    engine.settings.general.lang = "en"
    app = make_app(engine.settings, LocalClient(engine), clock=lambda: "12:00:00", watch_alarms=False)
    state: dict[str, Any] = {}

    async def run() -> None:
        async with app.run_test(size=(120, 60)) as pilot:
            pilot.app.query_one("#query").value = "A02"
            await pilot.press("enter")
            view: Any = app.query_one(AnswerView)
            for _ in range(2400):
                if view.state is not None and view.state.answer is not None:
                    break
                await pilot.pause(0.05)
            state.update(shown=dict(view.shown), answer=view.state.answer)

    anyio.run(run)
    answer = state["answer"]
    assert answer.model and answer.model["answer_mode"] == "quote"
    generated = state["shown"]["generated"]
    if answer.generated is None:  # withheld: said so, never fragments
        assert "no usable explanation" in generated
        return
    assert "word for word" in generated
    material = " ".join([*answer.code.steps, *(p.text for p in answer.passages)])
    for step in answer.generated["steps"]:
        assert step["text"] in material and step["text"] in generated
        if not step["cites"]:
            assert f"({step['source']})" in generated
