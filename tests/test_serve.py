"""`shifu serve`: the engine over HTTP, its OpenAPI description, and kiosks as thin clients.

The HTTP app, uvicorn, SSE, the engine, KB, retrieval and SQLite are the real ones. The
model behind the server is the real embedded GGUF where an answer is generated through
HTTP once; the concurrency tests (two kiosk clients at once) use a scripted backend that
streams a valid answer slowly, so that their timing does not depend on how busy this
shared machine is (generation through a real model server is covered in
test_server_backends.py). Schemathesis runs a bounded number of generated requests
against /openapi.json with the model switched off.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from click.testing import CliRunner
from test_chroma_server import free_port

from appliance.engine import Engine
from appliance.engine.quality import usable
from appliance.engine.types import CodeFound, Done, Partial, Query
from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo

SCHEMA = json.loads((Path(__file__).resolve().parent.parent / "appliance/schemas/answer.schema.json").read_text())
ANSWER = {
    "summary": "The drive motor tripped on overload.",
    "steps": [{"text": "Clear the jammed belt", "cites": [1]}, {"text": "Reset the thermal relay", "cites": []}],
    "safety": ["Lock out first"],
    "parts": [],
    "escalate": False,
}
ANSWER_ZH = {
    "summary": "驅動馬達過載跳脫。",
    "steps": [{"text": "清除卡住的皮帶", "cites": [1]}, {"text": "重設熱過載繼電器", "cites": []}],
    "safety": ["先上鎖掛牌"],
    "parts": [],
    "escalate": False,
}


class SlowScriptedBackend(LLMBackend):
    """Streams ANSWER (ANSWER_ZH when the prompt asks for Chinese) in small pieces, `delay` seconds apart;
    counts streams running at once."""

    name = "scripted"

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.running = 0
        self.most_at_once = 0
        self.lock = threading.Lock()

    def load(self) -> None:
        pass

    def info(self) -> ModelInfo:
        return ModelInfo(backend="scripted", base_id="scripted-test", base_sha256="0" * 64, device="CPU")

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        chinese = any("Answer language: Traditional Chinese" in m["content"] for m in messages)
        text = json.dumps(ANSWER_ZH if chinese else ANSWER, ensure_ascii=False)
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            for i in range(0, len(text), 6):
                time.sleep(self.delay)
                yield text[i : i + 6]
        finally:
            with self.lock:
                self.running -= 1


def make_engine(settings: Any, backend: LLMBackend | None, embedder: Any) -> Engine:
    from appliance import paths
    from appliance.store.opstore import OpStore
    from kb.versions import VersionStore

    return Engine(settings, VersionStore(paths.kb_dir()), backend_factory=(lambda: backend) if backend else None,
                  opstore=OpStore(paths.ops_db()), embedder=embedder)


@pytest.fixture
def client(engine: Engine) -> Iterator[Any]:
    """The app over the real engine and model, in-process (no socket)."""
    from fastapi.testclient import TestClient

    from appliance.server.app import make_server_app

    with TestClient(make_server_app(engine.settings, engine, warm=False)) as test_client:
        yield test_client


class Uvicorn:
    """`shifu serve`'s app under a real uvicorn on 127.0.0.1, in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Uvicorn:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def sse(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    from appliance.server.events import parse_sse

    return list(parse_sse(iter(response.text.splitlines())))


# -- the API -------------------------------------------------------------------------------
def test_ask_returns_the_answer_object_with_a_generated_part(client: Any) -> None:
    response = client.post("/v1/ask", json={"query": "A01", "lang": "en", "machine": "CV-01"})
    assert response.status_code == 200, response.text
    answer = response.json()
    jsonschema.validate(answer, SCHEMA)
    assert answer["code"]["code"] == "A01" and answer["code"]["steps"]
    assert answer["model_available"] is True
    # What the 135M model writes either passes the quality gate or is withheld with a notice.
    generated = answer["generated"]
    if generated is None:
        assert any("no usable explanation" in n for n in answer["notices"])
    else:
        assert generated["lang"] == "en" and (generated["steps"] or generated["summary"])
        assert all(usable(s["text"], "en") for s in generated["steps"])
    assert answer["audit_id"] and answer["lang"] == "en"
    # The answer loaded the model (the server was not warmed): the status now says which one.
    model = client.get("/v1/status").json()["model"]
    assert model["state"] == "ready" and model["info"]["base"] == answer["model"]["base"]


def test_ask_takes_a_machine_model_when_no_machine_is_known(client: Any) -> None:
    def ask(**extra: str) -> dict[str, Any]:
        response = client.post("/v1/ask", json={"query": "E-001", "lang": "en", "no_llm": True, **extra})
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        jsonschema.validate(answer, SCHEMA)
        return answer

    vague = ask()  # two models have an E-001 and none is named: a question, not a procedure
    assert vague["code"] is None and {c["machine_model"] for c in vague["candidates"]} == {"CV-200", "IM-850"}
    chosen = ask(machine_model="IM-850")
    assert chosen["code"]["machine_model"] == "IM-850" and chosen["machine_model"] == "IM-850"
    # The inventory's model wins over the one sent with it.
    assert ask(machine="CV-01", machine_model="IM-850")["code"]["machine_model"] == "CV-200"


def test_ask_streams_events_when_asked_for(client: Any) -> None:
    response = client.post("/v1/ask", json={"query": "A02", "lang": "en", "no_llm": True},
                           headers={"Accept": "text/event-stream"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    names = [name for name, _ in sse(response)]
    assert names == ["code_found", "history_found", "passages_found", "done"]
    stream = sse(response)
    assert stream[0][1]["entry"]["code"] == "A02" and stream[0][1]["entry"]["steps"]
    jsonschema.validate(stream[-1][1], SCHEMA)  # `done` carries the answer object itself
    assert stream[-1][1]["model_available"] is False


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"query": ""}, 400, "empty"),
        ({"query": "A01\x07"}, 400, "control"),
        ({"query": "x" * 600}, 400, "500"),
        ({"query": "A01", "lang": "fr"}, 422, "lang"),
        ({"query": "A01", "colour": "red"}, 422, "colour"),
        ({"text": "A01"}, 422, "query"),
    ],
)
def test_bad_input_is_400_or_422_with_the_reason(client: Any, body: dict[str, Any], status: int, needle: str) -> None:
    response = client.post("/v1/ask", json=body)
    assert response.status_code == status, response.text
    assert needle in response.text.lower()


def test_malformed_and_oversized_bodies(client: Any) -> None:
    response = client.post("/v1/ask", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    response = client.post("/v1/ask", content=b'{"query": "' + b"x" * 70000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and "bytes" in response.json()["detail"]


def test_code_lookup(client: Any) -> None:
    found = client.get("/v1/codes/ａ０１", params={"machine": "CV-01", "lang": "en"})
    assert found.status_code == 200 and found.json()["code"]["title"] == "Drive motor overload"
    missing = client.get("/v1/codes/A99")
    assert missing.status_code == 404 and missing.json()["code"] is None and missing.json()["suggestions"]
    assert client.get("/v1/codes/%21%21").status_code == 400


def test_alarms_in_and_out_and_feedback(client: Any, engine: Engine) -> None:
    created = client.post("/v1/alarms", json={"machine_id": "CV-01", "code": "a-01", "message": "OVERLOAD"})
    assert created.status_code == 201 and created.json()["normalized"] == "A01"
    # Stored, and its answer prepared in the background as for a serial alarm.
    assert created.json()["answer_status"] == "pending"
    deadline = time.monotonic() + 240
    while (row := client.get("/v1/alarms").json()[0])["answer_status"] != "ready":
        assert row["answer_status"] == "pending" and time.monotonic() < deadline, row
        time.sleep(0.1)
    audit = engine.opstore.rows("SELECT * FROM audit WHERE id = ?", [row["audit_id"]])[0]
    assert (audit["source"], audit["code"], audit["model_available"]) == ("http", "A01", 1)
    rows = client.get("/v1/alarms", params={"lang": "en"}).json()
    assert rows[0]["id"] == created.json()["id"] and rows[0]["title"] == "Drive motor overload"
    assert rows[0]["severity"] == "warning" and rows[0]["port"] == "http"
    assert client.get("/v1/alarms", params={"after_id": rows[0]["id"]}).json() == []
    assert client.post("/v1/alarms", json={"machine_id": "CV-01", "code": "!!"}).status_code == 400

    answer = client.post("/v1/ask", json={"query": "A01", "no_llm": True}).json()
    stored = client.post("/v1/feedback", json={"audit_id": answer["audit_id"], "verdict": "fixed", "operator": "7",
                                                "alarm_id": created.json()["id"]})
    assert stored.status_code == 201
    assert engine.opstore.rows("SELECT audit_id, verdict, operator, alarm_id FROM feedback") == [
        {"audit_id": answer["audit_id"], "verdict": "fixed", "operator": "7", "alarm_id": created.json()["id"]}]
    assert client.post("/v1/feedback", json={"audit_id": 999999, "verdict": "fixed"}).status_code == 404
    unknown_alarm = {"audit_id": answer["audit_id"], "verdict": "fixed", "alarm_id": 999999}
    assert client.post("/v1/feedback", json=unknown_alarm).status_code == 404
    assert client.post("/v1/feedback", json={"audit_id": answer["audit_id"], "verdict": "meh"}).status_code == 422
    status = client.get("/v1/status").json()
    assert status["opstore"]["counts"] == {"audit": 2, "feedback": 1, "alarms": 1}
    assert status["kb"]["version"] == 1 and status["kb"]["counts"]["codes"] > 0
    assert status["kb"]["dense"]["state"] == "on"


def test_machines_and_status_describe_the_plant(client: Any, engine: Engine) -> None:
    machines = client.get("/v1/machines").json()
    assert machines[0] == {"machine_id": "CV-01", "machine_model": "CV-200", "line": "L1", "location": "A棟 1F"}
    assert len(machines) == engine.kb().counts()["machines"]
    status = client.get("/v1/status").json()
    assert status["kb"]["versions"] == [1] and status["kb"]["error"] == ""
    assert status["model"] == {"state": "loading", "error": "", "available": False, "info": None}  # warm=False


def test_token_is_required_when_configured(kb_home: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from appliance.config import load_settings
    from appliance.server.app import make_server_app

    settings = load_settings(serve={"token": "s3cret"}, model={"enabled": False})
    engine = make_engine(settings, None, embedder)
    with TestClient(make_server_app(settings, engine, warm=False)) as test_client:
        assert test_client.get("/healthz").json()["status"] == "ok"  # liveness needs no token
        assert test_client.post("/v1/ask", json={"query": "A01"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert test_client.post("/v1/ask", json={"query": "A01"}, headers=wrong).status_code == 401
        right = {"Authorization": "Bearer s3cret"}
        assert test_client.post("/v1/ask", json={"query": "A01"}, headers=right).status_code == 200
        assert test_client.get("/v1/alarms", headers=right).status_code == 200


def test_serve_refuses_the_network_without_a_token(home: Path) -> None:
    from appliance.cli.main import cli
    from appliance.cli.serve_cmd import check_bind, is_loopback

    result = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--port", str(free_port())])
    assert result.exit_code == 2 and "without a token" in result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("shifu.local")
    check_bind("0.0.0.0", "s3cret")  # with a token it may


# -- thin clients ---------------------------------------------------------------------------
@pytest.fixture
def served(kb_home: Path, settings, embedder) -> Iterator[tuple[str, SlowScriptedBackend, Engine]]:  # type: ignore[no-untyped-def]
    from appliance.server.app import make_server_app

    backend = SlowScriptedBackend()
    engine = make_engine(settings, backend, embedder)
    with Uvicorn(make_server_app(settings, engine, warm=True)) as server:
        yield server.url, backend, engine
    engine.close()


def test_two_kiosk_clients_share_one_server(served, settings) -> None:  # type: ignore[no-untyped-def]
    from appliance.engine.remote import RemoteEngine

    url, backend, engine = served
    results: dict[str, list[Any]] = {}
    errors: list[BaseException] = []

    def kiosk(name: str, text: str, lang: str) -> None:
        remote = RemoteEngine(url, settings)
        try:
            results[name] = list(remote.stream(Query(text, machine_id="CV-01", lang=lang)))
        except BaseException as error:  # reported by the test thread
            errors.append(error)
        finally:
            remote.close()

    threads = [threading.Thread(target=kiosk, args=("line1", "A01", "en")),
               threading.Thread(target=kiosk, args=("line2", "A02", "zh-TW"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for name, code in (("line1", "A01"), ("line2", "A02")):
        seen = results[name]
        assert isinstance(seen[0], CodeFound) and seen[0].entry is not None and seen[0].entry.code == code
        assert seen[0].entry.steps  # the standard procedure arrives first, before any token
        assert sum(isinstance(e, Partial) for e in seen) >= 2  # the explanation grows as the model writes
        done = seen[-1]
        assert isinstance(done, Done) and done.answer.model_available and done.answer.generated
        assert done.answer.generated["summary"] == (ANSWER_ZH if name == "line2" else ANSWER)["summary"]
    assert results["line2"][-1].answer.lang == "zh-TW"
    assert results["line1"][-1].answer.audit_id != results["line2"][-1].answer.audit_id
    assert backend.most_at_once == 1  # one model: the engine's queue served them one after the other


def test_remote_engine_gives_the_kiosk_what_a_local_client_does(served, settings) -> None:  # type: ignore[no-untyped-def]
    """The one client protocol: over HTTP, the same typed results as in-process."""
    from appliance.engine.client import EngineClient, NotFoundError
    from appliance.engine.local import LocalClient
    from appliance.engine.remote import RemoteEngine
    from appliance.ui.alarm_watcher import AlarmWatcher
    from kb.errors import InputError

    url, _backend, engine = served
    remote = RemoteEngine(url, settings)
    local = LocalClient(engine)
    assert isinstance(remote, EngineClient) and isinstance(local, EngineClient)
    try:
        answer = remote.answer(Query("A01", lang="en"))
        assert answer.code is not None and answer.model_available and answer.audit_id
        assert remote.feedback(answer.audit_id, "not_fixed", "42").id > 0
        with pytest.raises(NotFoundError, match="999999"):
            remote.feedback(999999, "fixed")
        with pytest.raises(InputError, match="empty"):
            list(remote.stream(Query("   ")))
        status, here = remote.status(), local.status()
        assert status.model_state == "ready" and status.model_id == "scripted-test" and status.model_available
        assert (status.kb_version, status.kb_versions, status.dense) == (1, (1,), "on")
        assert status.kb_counts == here.kb_counts and status.kb_counts["codes"] > 0
        assert status.opstore_counts == here.opstore_counts == {"audit": 1, "feedback": 1, "alarms": 0}
        assert remote.machines() == local.machines() and remote.machines()[0].machine_model == "CV-200"
        # A kiosk that picked one model's row of an ambiguous code sends the model along.
        chosen = [e for e in remote.stream(Query("E-001", machine_model="IM-850", lang="en"), use_model=False)
                  if isinstance(e, CodeFound)]
        assert chosen[0].entry is not None and chosen[0].entry.machine_model == "IM-850"

        delivered: list[list[dict[str, Any]]] = []
        watcher = AlarmWatcher(remote, delivered.append, interval=0.1, lang="en")
        watcher.start()
        _wait(lambda: bool(delivered), 10)  # the first delivery, empty, marks what is history
        remote.request("POST", "/v1/alarms", json={"machine_id": "CV-01", "code": "A02", "message": "TRACKING"})
        _wait(lambda: any(rows for rows in delivered), 10)
        watcher.stop()
        assert delivered[0] == []
        assert [r["title"] for rows in delivered for r in rows] == ["Belt tracking off-centre"]
        _wait(lambda: local.alarms_since(0, 1)[0].answer_status == "ready", 30)  # prepared in the background
        assert remote.alarms_since(0, 10, lang="en") == local.alarms_since(0, 10, lang="en")
        assert remote.alarms_since(0, 10, lang="zh-TW")[0].title != "Belt tracking off-centre"
        assert remote.alarms_since(watcher.last_id, 10) == []
    finally:
        remote.close()
    assert engine.opstore is not None
    assert engine.opstore.rows("SELECT verdict, operator FROM feedback") == [{"verdict": "not_fixed", "operator": "42"}]


def test_closing_a_stream_cancels_the_answer_on_the_server(served, settings) -> None:  # type: ignore[no-untyped-def]
    """A new scan on the kiosk drops the running answer; the server stops generating for it."""
    from appliance.engine.remote import RemoteEngine

    url, backend, engine = served
    backend.delay = 0.2
    remote = RemoteEngine(url, settings)
    stream = remote.stream(Query("A01", lang="en"))
    for event in stream:
        if isinstance(event, Partial):
            break
    stream.close()  # type: ignore[attr-defined]
    remote.close()
    _wait(lambda: backend.running == 0, 10)
    assert engine.opstore is not None
    _wait(lambda: engine.opstore.rows("SELECT notices FROM audit ORDER BY id DESC LIMIT 1"), 10)  # type: ignore[union-attr]
    notices = json.loads(engine.opstore.rows("SELECT notices FROM audit ORDER BY id DESC LIMIT 1")[0]["notices"])
    assert "cancelled" in notices


def test_remote_engine_when_the_server_is_away(settings) -> None:  # type: ignore[no-untyped-def]
    from appliance.engine.remote import RemoteEngine, RemoteError

    remote = RemoteEngine(f"http://127.0.0.1:{free_port()}", settings, connect_timeout_s=1)
    with pytest.raises(RemoteError, match="lost the engine server"):
        list(remote.stream(Query("A01")))
    status = remote.warm()  # never raises: the kiosk shows the status and keeps running
    assert "not answering" in status.kb_error and status.model_state == "failed"
    with pytest.raises(RemoteError, match="not answering"):
        remote.alarms_since(0)


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_kiosk_as_a_thin_client(served, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`shifu kiosk --engine URL`: the real kiosk app over a RemoteEngine shows the remote answer and alarms."""
    from appliance.engine.remote import RemoteEngine
    from appliance.ui.app import make_app
    from appliance.ui.widgets.alarm_list import AlarmList
    from appliance.ui.widgets.answer_view import AnswerView

    url, _backend, engine = served
    assert engine.opstore is not None
    engine.opstore.add_alarm(port="http", machine_id="CV-01", raw="A01", code="A01", normalized="A01", message="")
    remote = RemoteEngine(url, settings)
    app = make_app(settings, remote, kiosk_mode=False, clock=lambda: "12:00:00", pin_path=tmp_path / "pin")
    try:
        async with app.run_test(size=(100, 32)) as pilot:
            await _until(pilot, lambda: app.query_one(AlarmList).option_count == 1)
            app.query_one("#query").value = "A02"
            await pilot.press("enter")
            view = app.query_one(AnswerView)
            await _until(pilot, lambda: view.state is not None and view.state.answer is not None)
            answer = view.state.answer
            assert answer.code is not None and answer.code.code == "A02" and answer.model_available
            assert app.status.model_state == "ready" and app.status.kb_version == 1
            await pilot.press("f1")  # Fixed: stored on the server
            await _until(pilot, lambda: bool(engine.opstore.rows("SELECT id FROM feedback")))  # type: ignore[union-attr]
    finally:
        remote.close()


def _wait(condition: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


async def _until(pilot: Any, condition: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


# -- the OpenAPI description --------------------------------------------------------------
def test_openapi_describes_the_answer_schema(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/ask", "/v1/codes/{code}", "/v1/alarms", "/v1/feedback", "/v1/status", "/v1/machines",
            "/healthz"} <= set(spec["paths"])
    answer = spec["components"]["schemas"]["Answer"]
    assert answer["required"] == SCHEMA["required"]
    assert "#/$defs/" not in json.dumps(spec)


def test_schemathesis_against_openapi(kb_home: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    """Generated requests, valid and invalid (bounded), against every operation: never a 5xx,
    only documented status codes, content types and bodies."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hsettings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.specs.openapi import checks

    from appliance.config import load_settings
    from appliance.server.app import make_server_app

    config = load_settings(model={"enabled": False})
    engine = make_engine(config, None, embedder)
    schema = schemathesis.openapi.from_asgi("/openapi.json", make_server_app(config, engine, warm=False))
    selected = [checks.status_code_conformance, checks.content_type_conformance, checks.response_schema_conformance]
    failures: list[str] = []
    statuses: list[int] = []

    def exercise(operation: Any, mode: Any) -> None:
        @given(operation.as_strategy(generation_mode=mode))
        @hsettings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            response = case.call()
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{operation.label}: {response.status_code} for {case.body!r} {case.path_parameters}")
                return
            try:
                case.validate_response(response, checks=selected)
            except Exception as error:  # collected, so every operation is exercised
                failures.append(f"{operation.label}: {error}"[:600])

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (an operation without parameters)
            assert mode == GenerationMode.NEGATIVE

    for result in schema.get_all_operations():
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            exercise(result.ok(), mode)
    engine.close()
    assert len(statuses) >= 60 and any(s < 300 for s in statuses) and any(400 <= s < 500 for s in statuses)
    assert not failures, "\n".join(failures[:5])
