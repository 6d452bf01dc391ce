"""Server LLM backends behind the real engine.

- OpenAI-compatible: a real `python -m llama_cpp.server` serving the embedded SmolLM2 GGUF on
  127.0.0.1 (one thread: this machine is shared; more threads only slow llama.cpp down here).
  The engine answers through it with a parseable generated part; when the server dies in
  the middle of an answer, or is not running at all, the operator still gets the standard
  procedure, `model_available` false and a notice.
- Ollama: the Ollama binary is not installable here, so the backend (the real `ollama`
  client package) talks to a small stand-in of Ollama's HTTP API (`/api/tags`,
  streaming `/api/chat`) that runs inside the tests and answers a fixed, schema-valid JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_chroma_server import free_port, wait_http

from appliance.engine.types import Done, Failed, Token
from appliance.llm.openai_server import OpenAIServerBackend
from kb.errors import ModelError


def start_llama_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    from models.registry import embedded_model_path

    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(embedded_model_path()), "--model_alias", "shifu",
         "--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--n_threads_batch", "1",
         "--n_ctx", "4096"],
        stdout=subprocess.DEVNULL, stderr=open(log, "wb"),
    )
    wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=60, proc=proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One llama.cpp server for the module; its OpenAI base URL."""
    port = free_port()
    proc = start_llama_server(port, tmp_path_factory.mktemp("llama") / "server.log")
    yield f"http://127.0.0.1:{port}/v1"
    stop(proc)


def server_engine(settings, backend, embedder):  # type: ignore[no-untyped-def]
    from appliance import paths
    from appliance.engine import Engine
    from appliance.store.opstore import OpStore
    from kb.versions import VersionStore

    return Engine(settings, VersionStore(paths.kb_dir()), backend_factory=lambda: backend,
                  opstore=OpStore(paths.ops_db()), embedder=embedder)


def events(engine, text: str, lang: str = "en", on_token=None) -> tuple[list[Any], Any]:  # type: ignore[no-untyped-def]
    from appliance.engine import Query

    seen = []
    for event in engine.stream(Query(text, lang=lang), debug_tokens=True):  # raw tokens as the server sent them
        seen.append(event)
        if isinstance(event, Token) and on_token is not None:
            on_token()
            on_token = None
    done = [e for e in seen if isinstance(e, Done)]
    assert len(done) == 1
    return seen, done[0].answer


def test_engine_answers_through_the_llama_cpp_server(llama_server: str, settings, embedder) -> None:  # type: ignore[no-untyped-def]
    import jsonschema

    backend = OpenAIServerBackend(llama_server, "shifu", timeout_s=60, retries=1, backoff_s=0.1)
    engine = server_engine(settings, backend, embedder)
    seen, answer = events(engine, "A01")
    engine.close()
    tokens = "".join(e.text for e in seen if isinstance(e, Token))
    assert answer.model_available is True, answer.notices
    assert answer.code is not None and answer.code.steps  # the standard procedure is there
    assert answer.generated is not None and answer.generated["steps"], answer.generated
    json.loads(tokens)  # what streamed was the schema-constrained JSON
    assert answer.model == {"backend": "openai", "base": "shifu", "base_sha256": "", "adapter": None,
                            "adapter_sha256": None, "device": "remote", "languages": ["zh-TW", "en"],
                            "answer_mode": "free", "verified": None}
    schema = json.loads((Path(__file__).parent.parent / "appliance/schemas/answer.schema.json").read_text())
    jsonschema.validate(answer.to_json(), schema)


def test_server_stopped_mid_answer_keeps_the_standard_procedure(tmp_path: Path, settings, embedder) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    proc = start_llama_server(port, tmp_path / "server.log")
    backend = OpenAIServerBackend(f"http://127.0.0.1:{port}/v1", "shifu", timeout_s=30, retries=1, backoff_s=0.1)
    engine = server_engine(settings, backend, embedder)
    engine.use_cache = False
    try:
        seen, answer = events(engine, "A02", on_token=proc.kill)  # the server dies after the first token
    finally:
        stop(proc)
        engine.close()
    assert any(isinstance(e, Token) for e in seen)
    failed = [e for e in seen if isinstance(e, Failed)]
    assert failed and failed[0].step == "generate", seen[-3:]
    assert answer.model_available is False and answer.generated is None
    assert answer.code is not None and answer.code.code == "A02" and len(answer.code.steps) >= 3
    assert any("standard procedure" in n for n in answer.notices), answer.notices


def test_server_not_running_falls_back_quickly(settings, embedder) -> None:  # type: ignore[no-untyped-def]
    backend = OpenAIServerBackend(f"http://127.0.0.1:{free_port()}/v1", "shifu", timeout_s=5, retries=2,
                                  backoff_s=0.05)
    engine = server_engine(settings, backend, embedder)
    started = time.monotonic()
    seen, answer = events(engine, "A01")
    elapsed = time.monotonic() - started
    engine.close()
    assert answer.model_available is False and answer.code is not None and answer.code.steps
    assert any("3 attempts" in n for n in answer.notices), answer.notices
    assert [e.step for e in seen if isinstance(e, Failed)] == ["model"]
    assert elapsed < 10


def test_openai_request_carries_the_schema() -> None:
    """llama.cpp servers take `json_object` + `schema`; vLLM takes `json_schema`."""
    from appliance.llm.base import GenerateOptions
    from models import prompt

    schema = prompt.answer_schema(2)
    options = GenerateOptions(max_tokens=300, json_schema=schema, repeat_penalty=1.15)
    messages = [{"role": "user", "content": "A01"}]
    llama = OpenAIServerBackend("http://127.0.0.1:9/v1", "shifu").request_body(messages, options)
    assert llama["response_format"] == {"type": "json_object", "schema": schema}
    assert llama["stream"] is True and llama["max_tokens"] == 300 and llama["repeat_penalty"] == 1.15
    vllm = OpenAIServerBackend("http://127.0.0.1:9/v1", "shifu", response_format="json_schema")
    assert vllm.request_body(messages, options)["response_format"]["json_schema"]["schema"] == schema


def test_factory_chooses_the_backend_from_the_config(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appliance.config import load_settings
    from appliance.engine.factory import make_backend
    from appliance.llm.ollama import OllamaBackend

    monkeypatch.setenv("SHIFU_MODEL__BACKEND", "openai")
    monkeypatch.setenv("SHIFU_MODEL__SERVER_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("SHIFU_MODEL__RETRIES", "0")
    backend = make_backend(load_settings())
    assert isinstance(backend, OpenAIServerBackend) and backend.retries == 0
    with pytest.raises(ModelError, match="not answering after 1 attempts"):
        backend.load()
    monkeypatch.setenv("SHIFU_MODEL__BACKEND", "ollama")
    monkeypatch.setenv("SHIFU_MODEL__SERVER_URL", "http://127.0.0.1:11434")
    ollama = make_backend(load_settings())
    assert isinstance(ollama, OllamaBackend) and ollama.host == "http://127.0.0.1:11434"


# -- Ollama stand-in -----------------------------------------------------------------------
ANSWER = {
    "summary": "Drive motor overload: find what jams the belt.",
    "steps": [{"text": "Lock out, then turn the drive pulley by hand.", "cites": []},
              {"text": "Compare the motor current with 7.5 A.", "cites": []}],
    "safety": ["Lock out before reaching in."],
    "parts": [],
    "escalate": False,
}


class FakeOllama(ThreadingHTTPServer):
    """What the backend needs of Ollama's API; records requests; can fail the first N chats."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OllamaHandler)
        self.requests: list[dict[str, Any]] = []
        self.fail_next = 0
        self.models = ["shifu:latest"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class OllamaHandler(BaseHTTPRequestHandler):
    server: FakeOllama

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/api/tags":
            models = [{"name": m, "model": m, "modified_at": "2025-01-01T00:00:00Z", "size": 1000,
                       "digest": "sha256:" + "ab" * 32, "details": {"format": "gguf", "family": "llama"}}
                      for m in self.server.models]
            self._json(200, {"models": models})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(body)
        if self.path != "/api/chat":
            self._json(404, {"error": "not found"})
            return
        if self.server.fail_next > 0:
            self.server.fail_next -= 1
            self._json(503, {"error": "server busy"})
            return
        name = body["model"] if ":" in body["model"] else body["model"] + ":latest"  # as Ollama resolves it
        if name not in self.server.models:
            self._json(404, {"error": f"model '{body['model']}' not found"})
            return
        text = json.dumps(ANSWER, ensure_ascii=False)
        pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        for piece in pieces:
            line = {"model": body["model"], "created_at": "2025-01-01T00:00:00Z",
                    "message": {"role": "assistant", "content": piece}, "done": False}
            self.wfile.write((json.dumps(line) + "\n").encode())
            self.wfile.flush()
        final = {"model": body["model"], "created_at": "2025-01-01T00:00:00Z",
                 "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                 "prompt_eval_count": 321, "eval_count": len(pieces)}
        self.wfile.write((json.dumps(final) + "\n").encode())


@pytest.fixture
def fake_ollama() -> Iterator[FakeOllama]:
    server = FakeOllama()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_engine_answers_through_ollama(fake_ollama: FakeOllama, settings, embedder) -> None:  # type: ignore[no-untyped-def]
    from appliance.llm.ollama import OllamaBackend
    from models import prompt

    fake_ollama.fail_next = 1  # busy once: retried, the operator never notices
    backend = OllamaBackend(fake_ollama.url, "shifu", retries=2, backoff_s=0.05)
    engine = server_engine(settings, backend, embedder)
    seen, answer = events(engine, "A01")
    engine.close()
    assert answer.model_available is True, answer.notices
    assert answer.generated is not None and answer.generated["summary"] == ANSWER["summary"]
    assert answer.model is not None and answer.model["backend"] == "ollama"
    assert answer.model["base_sha256"] == "ab" * 32  # the model's digest keys the answer cache
    chat = fake_ollama.requests[-1]
    assert len(fake_ollama.requests) == 2 and chat["stream"] is True
    assert chat["format"] == prompt.answer_schema(len(answer.passages[: settings.retrieval.prompt_passages]))
    assert chat["options"]["temperature"] == 0.0 and chat["options"]["num_predict"] >= settings.model.max_tokens
    assert chat["messages"][0]["role"] == "system" and chat["messages"][-1]["role"] == "user"
    assert "".join(e.text for e in seen if isinstance(e, Token)) == json.dumps(ANSWER, ensure_ascii=False)


def test_ollama_without_the_model_says_how_to_create_it(fake_ollama: FakeOllama, settings, embedder) -> None:  # type: ignore[no-untyped-def]
    from appliance.llm.ollama import OllamaBackend

    fake_ollama.models = ["llama3:latest"]
    engine = server_engine(settings, OllamaBackend(fake_ollama.url, "shifu", retries=0), embedder)
    _seen, answer = events(engine, "A01")
    engine.close()
    assert answer.model_available is False and answer.code is not None and answer.code.steps
    assert any("ollama create shifu" in n for n in answer.notices), answer.notices


def test_ollama_down_is_a_model_error() -> None:
    from appliance.llm.ollama import OllamaBackend

    backend = OllamaBackend(f"http://127.0.0.1:{free_port()}", "shifu", retries=1, backoff_s=0.01)
    with pytest.raises(ModelError, match="not answering after 2 attempts"):
        backend.load()
