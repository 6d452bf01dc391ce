"""The kiosk knows which machine it serves, says so, keeps it, and asks when a code needs it.

Real engine on the sample KB, generation off (deterministic), driven through Textual's Pilot:
asset-tag scans, the F4 list, the settings' fixed machine, a restart, the audit row, and the
function keys that pick a model's row, a likely code or one of several codes in an entry.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.engine import Engine
from appliance.engine.local import LocalClient

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_model(engine: Engine) -> Engine:
    engine.settings.model.enabled = False
    engine.settings.kiosk.critical_flash_s = 0
    return engine


def kiosk(engine: Engine, machine_file: Path) -> Any:
    from appliance.ui.app import make_app

    return make_app(engine.settings, LocalClient(engine), clock=lambda: "12:00:00", watch_alarms=False,
                    machine_file=machine_file)


async def wait_for(pilot: Any, condition: Callable[[], object], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await pilot.pause(0.05)


def view(app: Any) -> Any:
    from appliance.ui.widgets.answer_view import AnswerView

    return app.query_one(AnswerView)


def header(app: Any) -> str:
    return str(app.query_one("#query").border_title)


def notes(app: Any) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


async def submit(pilot: Any, text: str) -> None:
    pilot.app.query_one("#query").value = text
    await pilot.press("enter")


async def ask(pilot: Any, text: str) -> Any:
    """Submit `text` and wait for its complete answer (generation is off: no model)."""
    before = view(pilot.app).state
    await submit(pilot, text)
    await wait_for(pilot, lambda: view(pilot.app).state is not before and view(pilot.app).state is not None
                   and view(pilot.app).state.answer is not None)
    return view(pilot.app).state.answer


async def ready(pilot: Any) -> None:
    await wait_for(pilot, lambda: pilot.app.warm_done.is_set() and pilot.app.machines)


def audit_machine(engine: Engine, audit_id: int) -> str:
    rows = engine.opstore.rows("SELECT machine_id FROM audit WHERE id = ?", [audit_id])  # type: ignore[union-attr]
    return str(rows[0]["machine_id"] or "")


def steps_of(engine: Engine, code: str, model: str, lang: str) -> tuple[str, ...]:
    entry = engine.kb().lookup(code, machine_model=model, lang=lang).entry
    assert entry is not None and entry.machine_model == model
    return tuple(entry.steps)


# -- choosing the machine ------------------------------------------------------------------
async def test_asset_tag_chooses_the_machine_keeps_it_across_a_restart_and_reaches_the_audit(
        no_model: Engine, tmp_path: Path) -> None:
    machine_file = tmp_path / "kiosk-machine.json"
    app = kiosk(no_model, machine_file)
    async with app.run_test(size=(100, 32)) as pilot:
        await ready(pilot)
        assert "未設定" in header(app) and "M:" in header(app)
        await submit(pilot, "m:im-01")  # scanners may send lower case
        await wait_for(pilot, lambda: app.machine.machine_id == "IM-01")
        assert header(app) == "機台: IM-01 · IM-850 · L2"
        assert json.loads(machine_file.read_text())["machine_id"] == "IM-01"
        answer = await ask(pilot, "E-001")
        # The IM-850's own row, not the CV-200's, and no "which machine?" question.
        assert answer.code is not None and answer.code.machine_model == "IM-850"
        assert answer.machine_model == "IM-850" and answer.to_json()["machine_model"] == "IM-850"
        procedure = view(app).shown["procedure"]
        assert all(step in procedure for step in steps_of(no_model, "E-001", "IM-850", "zh-TW"))
        assert not any(step in procedure for step in steps_of(no_model, "E-001", "CV-200", "zh-TW"))
        assert audit_machine(no_model, answer.audit_id) == "IM-01"
        records = view(app).state.records
        assert records and {r.machine_model for r in records} == {"IM-850"}

    restarted = kiosk(no_model, machine_file)
    async with restarted.run_test(size=(100, 32)) as pilot:
        await ready(pilot)
        assert header(restarted) == "機台: IM-01 · IM-850 · L2"
        answer = await ask(pilot, "E-001")
        assert answer.code.machine_model == "IM-850"
        assert audit_machine(no_model, answer.audit_id) == "IM-01"
        await submit(pilot, "M:")  # an empty tag clears the machine
        await wait_for(pilot, lambda: app.machine.machine_id == "" or restarted.machine.machine_id == "")
        assert json.loads(machine_file.read_text())["machine_id"] == ""


async def test_unknown_tag_is_refused_and_the_machine_stays(no_model: Engine, tmp_path: Path) -> None:
    no_model.settings.general.lang = "en"
    app = kiosk(no_model, tmp_path / "m.json")
    async with app.run_test(size=(100, 32)) as pilot:
        await ready(pilot)
        await submit(pilot, "M:CV-02")
        await wait_for(pilot, lambda: app.machine.machine_id == "CV-02")
        await submit(pilot, "M:XX-99")
        await wait_for(pilot, lambda: "XX-99" in notes(app))
        assert "not in the machine list" in notes(app)
        assert app.machine.machine_id == "CV-02" and header(app).startswith("Machine: CV-02")
        assert json.loads((tmp_path / "m.json").read_text())["machine_id"] == "CV-02"


async def test_fixed_machine_cannot_be_changed_at_the_kiosk(no_model: Engine, tmp_path: Path) -> None:
    no_model.settings.kiosk.machine_id = "CV-03"
    (tmp_path / "m.json").write_text(json.dumps({"machine_id": "IM-01"}))  # a fixed machine wins
    app = kiosk(no_model, tmp_path / "m.json")
    async with app.run_test(size=(100, 32)) as pilot:
        await ready(pilot)
        assert header(app) == "機台: CV-03 · CV-200 · L2"
        await submit(pilot, "M:IM-01")
        await wait_for(pilot, lambda: "kiosk.machine_id" in notes(app))
        await pilot.press("f4")
        await pilot.pause(0.2)
        assert app.on_main_screen(), "no machine list for a fixed kiosk"
        answer = await ask(pilot, "E-001")
        assert answer.code.machine_model == "CV-200"
        assert audit_machine(no_model, answer.audit_id) == "CV-03"


async def test_f4_lists_the_inventory_and_the_answer_on_screen_follows_the_choice(
        no_model: Engine, tmp_path: Path) -> None:
    from textual.widgets import OptionList

    app = kiosk(no_model, tmp_path / "m.json")
    async with app.run_test(size=(100, 32)) as pilot:
        await ready(pilot)
        answer = await ask(pilot, "E-001")
        assert answer.code is None and answer.candidates, "no machine yet: the kiosk asks which one"
        before = view(app).state
        await pilot.press("f4")
        await wait_for(pilot, lambda: not app.on_main_screen())
        menu = app.screen.query_one(OptionList)
        ids = [menu.get_option_at_index(i).id for i in range(menu.option_count)]
        assert ids[1:] == [m.machine_id for m in LocalClient(no_model).machines()] and len(ids) == 11
        menu.highlighted = ids.index("MC-02")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.machine.machine_id == "MC-02")
        assert header(app) == "機台: MC-02 · VMC-640 · L4"
        # The E-001 question on screen is asked again for the chosen machine.
        await wait_for(pilot, lambda: view(app).state is not before and view(app).state.answer is not None)
        assert view(app).state.answer.machine_id == "MC-02"


# -- the keys that choose -------------------------------------------------------------------
@pytest.mark.parametrize("key", ["f7", "alt+2"])
async def test_ambiguous_code_names_the_machines_and_a_key_shows_that_models_row(
        no_model: Engine, tmp_path: Path, key: str) -> None:
    no_model.settings.general.lang = "en"
    app = kiosk(no_model, tmp_path / "m.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        answer = await ask(pilot, "E-001")
        models = [c.machine_model for c in answer.candidates]
        assert sorted(models) == ["CV-200", "IM-850"]
        choices = view(app).choices()
        assert [c.machine_model for c, _ in choices] == models
        procedure = view(app).shown["procedure"]
        cv = next(line for line in procedure.splitlines() if "CV-200:" in line)
        assert cv.startswith(("F6 ", "F7 ")) and "CV-01, CV-02, CV-03, CV-04" in cv
        assert "IM-01" not in cv
        second = models[1]
        await pilot.press(key)
        await wait_for(pilot, lambda: view(app).state.answer is not None and view(app).state.answer is not answer)
        shown = view(app).state.answer
        assert shown.code is not None and shown.code.machine_model == second
        assert all(step in view(app).shown["procedure"] for step in steps_of(no_model, "E-001", second, "en"))


async def test_symptom_keys_open_each_likely_code(no_model: Engine, tmp_path: Path) -> None:
    no_model.settings.general.lang = "en"
    app = kiosk(no_model, tmp_path / "m.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        answer = await ask(pilot, "belt squeals when starting")
        likely = [c.entry.code for c in answer.likely_codes]
        assert len(likely) >= 2
        assert "F7" in view(app).shown["procedure"]
        await pilot.press("f7")
        await wait_for(pilot, lambda: view(app).state.answer is not None and view(app).state.answer is not answer)
        assert view(app).state.answer.code.code == likely[1]


async def test_two_codes_in_one_entry_are_a_question(no_model: Engine, tmp_path: Path) -> None:
    app = kiosk(no_model, tmp_path / "m.json")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot)
        answer = await ask(pilot, "A01 後又出現 A03")
        assert answer.code is None and answer.codes_in_entry == ["A01", "A03"]
        procedure = view(app).shown["procedure"]
        assert "F6 A01" in procedure and "F7 A03" in procedure
        await pilot.press("f8")  # no third choice: a notice, nothing asked
        await wait_for(pilot, lambda: "沒有可選擇" in notes(app))
        assert view(app).state.answer is answer
        await pilot.press("f7")
        await wait_for(pilot, lambda: view(app).state.answer is not None and view(app).state.answer is not answer)
        assert view(app).state.answer.code.code == "A03"


# -- what became of acknowledging an OPC UA alarm ------------------------------------------------
@pytest.mark.parametrize(("state", "shown"), [("acknowledged", "Acknowledged on the machine's controller"),
                                              ("refused", "BadConditionBranchAlreadyAcked")])
async def test_fixed_press_shows_the_controllers_acknowledgement(no_model: Engine, tmp_path: Path, state: str,
                                                                 shown: str) -> None:
    """The real engine and database; only the acknowledgement's outcome is scripted (the OPC UA
    round trip itself is tested against a real server in test_opcua_ack.py)."""
    from appliance.engine.client import Acknowledgement, FeedbackSaved, Verdict
    from appliance.ui.app import make_app

    class Acknowledging(LocalClient):
        def feedback(self, audit_id: int, verdict: Verdict, operator: str = "",
                     alarm_id: int | None = None) -> FeedbackSaved:
            saved = super().feedback(audit_id, verdict, operator, alarm_id)
            detail = "" if state == "acknowledged" else "BadConditionBranchAlreadyAcked: already acknowledged"
            return FeedbackSaved(saved.id, Acknowledgement(1, state, detail, "Shifu: fixed",  # type: ignore[arg-type]
                                                           "opc.tcp://127.0.0.1:4840"))

    no_model.settings.general.lang = "en"
    app = make_app(no_model.settings, Acknowledging(no_model), clock=lambda: "12:00:00", watch_alarms=False,
                   machine_file=tmp_path / "m.json")
    async with app.run_test(size=(100, 32)) as pilot:
        await ready(pilot)
        await ask(pilot, "A01")
        await pilot.press("f1")
        await wait_for(pilot, lambda: shown in notes(app))
        assert "opc.tcp://127.0.0.1:4840" in notes(app)
