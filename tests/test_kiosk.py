"""Pilot tests of the kiosk (`appliance.ui`) over the real engine and sample KB.

Why not the real model for every test: on this shared 2-core machine the embedded SmolLM2's
first token takes over a minute (prompt evaluation), so the timing tests (steps before the
first token, a new scan cancelling a stream) use a gate in front of the real backend or a
scripted stream that yields a valid answer. Everything else (KB, retrieval, SQLite, Textual)
is real.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from appliance.engine import Engine
from appliance.engine.local import LocalClient
from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo
from kb.errors import ModelError

# In the kiosk's default language (zh-TW): the quality gate withholds text in a script the
# answer's language does not use.
ANSWER = {
    "summary": "驅動馬達過載跳脫。",
    "steps": [{"text": "清除卡住的皮帶", "cites": [1]}, {"text": "重設熱過載繼電器", "cites": [2]}],
    "safety": ["先上鎖掛牌"],
    "parts": [],
    "escalate": False,
    "cites": [1, 2],
}


class GatedBackend(LLMBackend):
    """The real backend behind a gate: `stream` waits for `release` (or returns empty on `abort`)."""

    name = "gated"

    def __init__(self, real: LLMBackend) -> None:
        self.real = real
        self.release = threading.Event()
        self.abort = threading.Event()
        self.started = threading.Event()

    def load(self) -> None:
        self.real.load()

    def info(self) -> ModelInfo:
        return self.real.info()

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.started.set()
        while not self.release.wait(0.05):
            if self.abort.is_set():
                return
        yield from self.real.stream(messages, options)


class ScriptedBackend(LLMBackend):
    """Yields ANSWER as JSON in small pieces, `delay` seconds apart; records every stream it closed."""

    name = "scripted"

    def __init__(self, delay: float = 0.0, answer: dict[str, Any] | None = None) -> None:
        self.delay = delay
        self.text = json.dumps(answer or ANSWER)
        self.streams = 0
        self.closed = 0
        self.finished = 0

    def load(self) -> None:
        pass

    def info(self) -> ModelInfo:
        return ModelInfo(backend="scripted", base_id="scripted-test", base_sha256="0" * 64, device="CPU")

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.streams += 1
        try:
            for i in range(0, len(self.text), 4):
                if self.delay:
                    time.sleep(self.delay)
                yield self.text[i : i + 4]
            self.finished += 1
        finally:
            self.closed += 1


def engine_with(engine: Engine, factory: Callable[[], LLMBackend]) -> Engine:
    """The same KB, settings, database and embedder as `engine`, with another backend."""
    return Engine(
        engine.settings, engine.versions, backend_factory=factory, opstore=engine.opstore, embedder=engine.embedder
    )


def failing_factory() -> LLMBackend:
    raise ModelError("model file /nowhere/model.gguf does not exist; reinstall it")


async def wait_for(pilot: Any, condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Let the app run until `condition()` is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await pilot.pause(0.05)


# -- fixtures ------------------------------------------------------------------------------
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def no_model(engine: Engine) -> Engine:
    """The real engine with generation switched off (deterministic: procedure, history, sources)."""
    engine.settings.model.enabled = False
    engine.settings.kiosk.alarm_poll_s = 0.2
    return engine


def kiosk(engine: Engine, *, client: LocalClient | None = None, **kwargs: Any) -> Any:
    """The kiosk over `LocalClient(engine)` (or the given client), as `shifu kiosk` builds it."""
    from appliance.ui.app import make_app

    engine.settings.kiosk.critical_flash_s = 0
    return make_app(engine.settings, client or LocalClient(engine), clock=lambda: "12:00:00", **kwargs)


def tech_info(app: Any) -> str:
    """The technician screen's status text as drawn."""
    return str(app.screen.query_one("#tech-info").render().plain)


def view(app: Any) -> Any:
    from appliance.ui.widgets.answer_view import AnswerView

    return app.query_one(AnswerView)


def answered(app: Any) -> bool:
    state = view(app).state
    return state is not None and state.answer is not None


async def submit(pilot: Any, text: str) -> None:
    pilot.app.query_one("#query").value = text
    await pilot.press("enter")


def feedback_rows(engine: Engine) -> list[dict[str, Any]]:
    assert engine.opstore is not None
    return engine.opstore.rows("SELECT * FROM feedback ORDER BY id")


A01_STEP_ZH = "按停止鍵並確認輸送帶上無人作業"
A01_STEP_EN = "Press stop, make sure nobody is working on the belt"


# -- the procedure comes first -------------------------------------------------------------
async def test_steps_visible_before_first_model_token(engine: Engine, llm_backend: LLMBackend) -> None:
    gated = GatedBackend(llm_backend)
    app = kiosk(engine_with(engine, lambda: gated))
    try:
        async with app.run_test(size=(100, 32)) as pilot:
            await submit(pilot, "A01")
            await wait_for(pilot, gated.started.is_set)  # the model has been asked, no token yet
            await pilot.pause(0.2)
            shown = view(app).shown
            assert A01_STEP_ZH in shown["procedure"]
            assert "上鎖掛牌後才可伸手進入滾筒區" in shown["procedure"]  # safety note
            assert "清除卡在尾輪的異物" in shown["history"]  # most frequent fix
            assert "cv200_conveyor_manual.md" in shown["sources"] and "cv200.csv" in shown["sources"]
            assert view(app).state.partial is None  # no explanation yet
            assert "AI 說明產生中" in shown["generated"]
            gated.abort.set()
            await wait_for(pilot, lambda: answered(app))
    finally:
        gated.abort.set()


async def test_explanation_streams_with_cites_and_pending_feedback(engine: Engine) -> None:
    scripted = ScriptedBackend(delay=0.02)
    app = kiosk(engine_with(engine, lambda: scripted))
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "A01")
        await wait_for(pilot, lambda: view(app).state is not None and view(app).state.partial)
        await pilot.press("f2")  # pressed while streaming: stored once the answer has its audit row
        await wait_for(pilot, lambda: answered(app))
        await app.workers.wait_for_complete()
        await pilot.pause(0.1)
        shown = view(app).shown["generated"]
        assert "驅動馬達過載跳脫。" in shown
        assert "清除卡住的皮帶 [1]" in shown
        rows = feedback_rows(engine)
        assert [(r["verdict"], r["audit_id"]) for r in rows] == [("not_fixed", view(app).state.audit_id)]


# -- feedback ------------------------------------------------------------------------------
async def test_feedback_rows_written_with_operator(no_model: Engine) -> None:
    app = kiosk(no_model)
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "OP:1234")
        assert "1234" in app.query_one("#status").render().plain
        await submit(pilot, "A02")
        await wait_for(pilot, lambda: answered(app))
        audit_id = view(app).state.audit_id
        assert audit_id is not None
        await pilot.press("f1")
        await pilot.press("f3")
        await app.workers.wait_for_complete()
        rows = feedback_rows(no_model)
        assert [(r["audit_id"], r["verdict"], r["operator"]) for r in rows] == [
            (audit_id, "fixed", "1234"),
            (audit_id, "call_technician", "1234"),
        ]
        audit = no_model.opstore.rows("SELECT * FROM audit WHERE id = ?", [audit_id])[0]  # type: ignore[union-attr]
        assert (audit["query"], audit["source"]) == ("A02", "keyboard")


# -- cancellation --------------------------------------------------------------------------
async def test_new_scan_cancels_running_stream(engine: Engine) -> None:
    scripted = ScriptedBackend(delay=0.05)
    app = kiosk(engine_with(engine, lambda: scripted))
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "A01")
        await wait_for(pilot, lambda: view(app).state is not None and view(app).state.partial)
        await submit(pilot, "A02")
        # The new procedure is on screen at once, and the old model stream gets closed.
        await wait_for(pilot, lambda: "清除尾輪與托輥上的積料" in view(app).shown.get("procedure", ""))
        await wait_for(pilot, lambda: scripted.closed >= 1, timeout=10)
        await wait_for(pilot, lambda: answered(app))
        assert scripted.streams == 2 and scripted.finished == 1
        assert view(app).state.query == "A02"
        assert A01_STEP_ZH not in view(app).shown["procedure"]
        rows = engine.opstore.rows("SELECT query, notices FROM audit ORDER BY id")  # type: ignore[union-attr]
        # Both are audited (feedback needs a row); the cancelled one says so and holds no answer.
        assert [r["query"] for r in rows] == ["A01", "A02"]
        marks = ("cancelled", "已取消")
        assert any(m in rows[0]["notices"] for m in marks) and not any(m in rows[1]["notices"] for m in marks)


# -- kiosk mode ----------------------------------------------------------------------------
async def test_kiosk_keys_do_not_exit(no_model: Engine) -> None:
    app = kiosk(no_model, kiosk_mode=True)
    async with app.run_test(size=(100, 32)) as pilot:
        for key in ("ctrl+q", "ctrl+c", "ctrl+z", "ctrl+backslash", "ctrl+p"):
            await pilot.press(key)
            await pilot.pause(0.05)
            assert app.is_running and app.return_code is None, key
        assert len(app.screen_stack) == 1  # no command palette
        assert any("F9" in n.message for n in app._notifications)


async def test_ctrl_q_quits_outside_kiosk_mode(no_model: Engine) -> None:
    app = kiosk(no_model, kiosk_mode=False)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause(0.2)
        assert not app.is_running


# -- technician mode -----------------------------------------------------------------------
async def test_technician_pin_right_wrong_lockout_idle(no_model: Engine, tmp_path: Any) -> None:
    from appliance.ui.pin import set_pin
    from appliance.ui.screens.pin import PinScreen
    from appliance.ui.screens.technician import TechnicianScreen

    pin_path = set_pin("4321", tmp_path / "pin.json")
    codes = no_model.kb().counts()["codes"]
    now = [1000.0]
    no_model.settings.kiosk.pin_lockout_attempts = 3
    no_model.settings.kiosk.pin_lockout_s = 60
    no_model.settings.kiosk.technician_idle_s = 30
    app = kiosk(no_model, kiosk_mode=True, pin_path=pin_path, monotonic=lambda: now[0])

    async def enter_pin(pilot: Any, pin: str) -> None:
        app.screen.query_one("#pin-input").value = pin
        await pilot.press("enter")
        await pilot.pause(0.1)

    async with app.run_test(size=(100, 32)) as pilot:
        await wait_for(pilot, app.warm_done.is_set)
        # An alarm after start-up: the technician screen must show the database as it is now.
        no_model.opstore.add_alarm(port="/dev/ttyUSB0", machine_id="CV-01", raw="A01", code="A01",  # type: ignore[union-attr]
                                   normalized="A01", message="")
        await pilot.press("f9")
        assert isinstance(app.screen, PinScreen)
        await enter_pin(pilot, "0000")
        assert "2" in app.screen.query_one("#pin-message").render().plain  # tries left
        await enter_pin(pilot, "4321")
        assert isinstance(app.screen, TechnicianScreen)
        # What the technician reads: the active KB version and its contents, and the database's rows.
        await wait_for(pilot, lambda: "alarms 1" in tech_info(app))
        info = tech_info(app)
        assert "使用中 版本 1 " in info and "所有版本: 1\n" in info
        assert f"codes {codes} " in info.replace(",", " ")
        assert "audit 0, feedback 0, alarms 1" in info
        assert "向量索引: 使用中" in info  # the sample KB's vector index is intact
        await pilot.press("escape")
        assert len(app.screen_stack) == 1
        # Three wrong PINs lock technician mode; the right PIN is refused until the lockout ends.
        await pilot.press("f9")
        for _ in range(3):
            await enter_pin(pilot, "9999")
        assert len(app.screen_stack) == 1
        assert app.pin_guard.locked_for() == 60
        await pilot.press("f9")
        assert len(app.screen_stack) == 1
        assert app.check_pin("4321").ok is False
        now[0] += 61
        await pilot.press("f9")
        await enter_pin(pilot, "4321")
        assert isinstance(app.screen, TechnicianScreen)
        # Idle for longer than technician_idle_s: logged out by itself.
        now[0] += 31
        await pilot.pause(1.3)
        assert len(app.screen_stack) == 1
        # F10 from technician mode is the way out of a kiosk.
        await pilot.press("f9")
        await enter_pin(pilot, "4321")
        await pilot.press("f10")
        await pilot.pause(0.2)
        assert not app.is_running


async def test_no_pin_set_means_no_technician_mode(no_model: Engine, tmp_path: Any) -> None:
    app = kiosk(no_model, kiosk_mode=True, pin_path=tmp_path / "missing.json")
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press("f9")
        app.screen.query_one("#pin-input").value = "1234"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert len(app.screen_stack) == 1
        assert any("set-pin" in n.message for n in app._notifications)


# -- failures ------------------------------------------------------------------------------
async def test_model_failure_keeps_procedure_with_notice(engine: Engine) -> None:
    app = kiosk(engine_with(engine, failing_factory))
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "A01")
        await wait_for(pilot, lambda: answered(app))
        shown = view(app).shown
        assert A01_STEP_ZH in shown["procedure"]
        assert "/nowhere/model.gguf" in shown["notices"]
        assert "模型無法使用" in shown["generated"]
        assert app.status.model_state == "failed"
        assert app.is_running


class ExplodingClient(LocalClient):
    """The real engine's first events, then a bug (the kind of thing the kiosk must survive)."""

    def stream(self, query: Any, *, use_model: bool = True) -> Iterator[Any]:
        for event in super().stream(query, use_model=False):
            yield event
            if type(event).__name__ == "PassagesFound":
                raise RuntimeError("boom in the engine")


async def test_worker_exception_becomes_notice(no_model: Engine) -> None:
    app = kiosk(no_model, client=ExplodingClient(no_model))
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "A01")
        await wait_for(pilot, lambda: "boom" in view(app).shown.get("notices", ""))
        assert A01_STEP_ZH in view(app).shown["procedure"]
        assert app.is_running


# -- language, scanner, alarms, keys ---------------------------------------------------------
async def test_language_switch_relabels_and_reanswers(no_model: Engine) -> None:
    app = kiosk(no_model)
    async with app.run_test(size=(100, 32)) as pilot:
        await submit(pilot, "A01")
        await wait_for(pilot, lambda: answered(app))
        assert "已修復" in app.query_one("#keys").render().plain
        await pilot.press("f5")
        await wait_for(pilot, lambda: answered(app) and A01_STEP_EN in view(app).shown["procedure"])
        assert "Standard procedure" in view(app).shown["procedure"]
        assert "Fixed" in app.query_one("#keys").render().plain
        assert "Scan or type" in app.query_one("#query").placeholder
        await pilot.press("f5")
        await wait_for(pilot, lambda: answered(app) and A01_STEP_ZH in view(app).shown["procedure"])
        langs = [r["lang"] for r in no_model.opstore.rows("SELECT lang FROM audit ORDER BY id")]  # type: ignore[union-attr]
        assert langs == ["zh-TW", "en", "zh-TW"]


async def test_scanner_prefix_and_suffix_are_stripped(no_model: Engine) -> None:
    no_model.settings.kiosk.scanner_prefix = "]C1"
    no_model.settings.kiosk.scanner_suffix = "#"
    app = kiosk(no_model)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press(*"]C1a02#", "enter")
        await wait_for(pilot, lambda: answered(app))
        assert "清除尾輪與托輥上的積料" in view(app).shown["procedure"]
        audit = no_model.opstore.rows("SELECT query, source FROM audit")  # type: ignore[union-attr]
        assert audit == [{"query": "a02", "source": "scanner"}]


async def test_critical_alarm_opens_with_arrows_and_enter(no_model: Engine) -> None:
    app = kiosk(no_model)
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=(100, 32)) as pilot:
        from appliance.ui.widgets.alarm_list import AlarmList

        await pilot.pause(0.5)  # first poll (empty database)
        no_model.opstore.add_alarm(
            port="/dev/ttyUSB0",
            machine_id="IM-01",
            raw="E-001",  # type: ignore[union-attr]
            code="E-001",
            normalized="E001",
            message="EMERGENCY STOP",
        )
        await wait_for(pilot, lambda: app.query_one(AlarmList).option_count == 1, timeout=10)
        assert bells  # a critical alarm arriving rings the bell
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: answered(app))
        assert "確認按下緊急停止的原因與人員安全" in view(app).shown["procedure"]
        assert app.query_one("#answer-header").has_class("critical")
        audit = no_model.opstore.rows("SELECT query, machine_id, source FROM audit")  # type: ignore[union-attr]
        assert audit == [{"query": "E-001", "machine_id": "IM-01", "source": "serial"}]
        await pilot.press("f1")  # the verdict names the alarm it answers
        await app.workers.wait_for_complete()
        alarm_id = no_model.opstore.rows("SELECT id FROM alarms")[0]["id"]  # type: ignore[union-attr]
        assert [(r["verdict"], r["alarm_id"]) for r in feedback_rows(no_model)] == [("fixed", alarm_id)]


async def test_page_keys_scroll_and_escape_clears(no_model: Engine) -> None:
    app = kiosk(no_model)
    async with app.run_test(size=(80, 24)) as pilot:
        await submit(pilot, "A01")
        await wait_for(pilot, lambda: answered(app))
        await pilot.pause(0.1)
        await pilot.press("pagedown")
        await pilot.pause(0.1)
        assert view(app).scroll_y > 0
        await pilot.press("pageup")
        await pilot.pause(0.1)
        assert view(app).scroll_y == 0
        await pilot.press("escape")
        assert view(app).state is None
        assert "請掃描或輸入" in view(app).shown["welcome"]


# -- pure parts and the CLI ----------------------------------------------------------------
def test_read_entry() -> None:
    from appliance.ui.scanner import read_entry

    assert read_entry(" ]C1E-203# ", prefix="]C1", suffix="#").text == "E-203"
    assert read_entry("]C1E-203#", prefix="]C1", suffix="#").scanned
    assert read_entry("belt squeals").scanned is False
    assert read_entry("op:1234").operator == "1234"


def test_set_pin_command_stores_salted_hash(home: Any) -> None:
    from click.testing import CliRunner

    from appliance.cli.main import cli
    from appliance.ui.pin import pin_file, verify_pin

    result = CliRunner().invoke(cli, ["kiosk", "set-pin"], input="2468\n2468\n")
    assert result.exit_code == 0, result.output
    stored = pin_file().read_text()
    assert "2468" not in stored and '"salt"' in stored
    assert verify_pin("2468") is True and verify_pin("2469") is False
    first_salt = json.loads(stored)["salt"]
    CliRunner().invoke(cli, ["kiosk", "set-pin"], input="2468\n2468\n")
    assert json.loads(pin_file().read_text())["salt"] != first_salt
    short = CliRunner().invoke(cli, ["kiosk", "set-pin"], input="12\n12\n")
    assert short.exit_code == 2


def test_kiosk_engine_url_must_be_http(home: Any) -> None:
    from click.testing import CliRunner

    from appliance.cli.main import cli

    result = CliRunner().invoke(cli, ["kiosk", "--engine", "box:8000"])
    assert result.exit_code == 2 and "http://" in result.output
