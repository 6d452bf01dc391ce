"""An OpenAI-compatible chat server as the model: llama.cpp's server, llama-cpp-python's, vLLM.

The way out when several kiosks or lines share one GPU box. Requests go to
`{server_url}/chat/completions` with `stream: true`; the answer schema travels as
`response_format` so the server constrains generation like the in-process grammar does:
`{"type": "json_object", "schema": ...}` for llama.cpp servers, or
`{"type": "json_schema", "json_schema": {...}}` for vLLM (`model.response_format`).

A server that cannot be reached, times out or answers 429/5xx is retried with exponential
backoff *before* anything has streamed; once text has reached the operator a failure is a
ModelError at once, and the engine keeps the standard procedure on screen with a notice.
The server applies the chat template of the model it serves.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx

from appliance.llm.base import GenerateOptions, LLMBackend, ModelInfo, StreamStats
from kb.errors import ModelError

T = TypeVar("T")

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
"""Server answers that may go away on their own (busy, restarting, still loading a model)."""


class RetryableError(Exception):
    """A failure worth another attempt (connection refused, timeout, 429/5xx)."""


def with_retries(
    attempt: Callable[[], T],
    *,
    what: str,
    retries: int,
    backoff_s: float,
    retry_on: tuple[type[BaseException], ...] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `attempt` up to 1 + `retries` times with doubling pauses; ModelError when all fail."""
    catch: tuple[type[BaseException], ...] = (RetryableError, httpx.TransportError, *retry_on)
    delay = backoff_s
    last: BaseException | None = None
    for number in range(retries + 1):
        try:
            return attempt()
        except catch as error:
            last = error
        if number < retries:
            sleep(delay)
            delay *= 2
    detail = f"{type(last).__name__}: {last}" if last is not None and str(last) else type(last).__name__
    raise ModelError(
        f"{what} is not answering after {retries + 1} attempts ({detail}); check that the model server is running"
    ) from last


def timeout(total_s: float, connect_s: float) -> httpx.Timeout:
    """Connect quickly or count the server as down; `total_s` bounds each read (and so each pause in a stream)."""
    return httpx.Timeout(total_s, connect=min(connect_s, total_s))


class OpenAIServerBackend(LLMBackend):
    """Chat completions from an OpenAI-compatible server, streamed over SSE."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str = "",
        timeout_s: float = 60.0,
        connect_timeout_s: float = 3.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        response_format: str = "json_object",
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.response_format = response_format
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=self.base_url, timeout=timeout(timeout_s, connect_timeout_s), headers=headers, transport=transport
        )
        self._served: str | None = None
        self._info: ModelInfo | None = None
        self._stats = StreamStats()
        self._lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------
    def load(self) -> None:
        """Ask the server which models it serves; pick the configured one (or the only one)."""
        with self._lock:
            if self._served is not None:
                return
            data = with_retries(self._models, what=f"model server {self.base_url}",
                                retries=self.retries, backoff_s=self.backoff_s)
            ids = [str(m.get("id", "")) for m in data.get("data", []) if isinstance(m, dict)]
            if self.model in ids or not ids:
                served = self.model
            elif len(ids) == 1:
                # A llama.cpp server serves one model under its file name or alias, whatever the
                # request names; use it, and report the name it really has.
                served = ids[0]
            else:
                raise ModelError(
                    f"model server {self.base_url} does not serve {self.model!r} (it serves {', '.join(ids)}); "
                    "set model.server_model to one of these"
                )
            self._served = served
            self._info = ModelInfo(
                backend=self.name, base_id=served, device="remote",
                extra={"url": self.base_url, "requested": self.model},
            )

    def _models(self) -> dict[str, Any]:
        response = self.client.get("/models")
        if response.status_code in RETRY_STATUS:
            raise RetryableError(f"HTTP {response.status_code}")
        if response.status_code == 404:
            return {}  # some servers have no model list; the chat request will tell
        if response.status_code >= 400:
            raise ModelError(f"model server {self.base_url} refused the model list: HTTP {response.status_code} "
                             f"{_short(response.text)}")
        try:
            body = response.json()
        except ValueError as error:
            raise ModelError(f"{self.base_url} is not an OpenAI-compatible server (no JSON from /models)") from error
        return body if isinstance(body, dict) else {}

    def info(self) -> ModelInfo:
        if self._info is None:
            self.load()
        assert self._info is not None
        return self._info

    # -- generation ------------------------------------------------------------------------
    def request_body(self, messages: list[dict[str, str]], options: GenerateOptions) -> dict[str, Any]:
        """The chat/completions request for these messages and options."""
        body: dict[str, Any] = {
            "model": self._served or self.model,
            "messages": messages,
            "stream": True,
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
            "seed": options.seed,
        }
        if options.repeat_penalty != 1.0:
            body["repeat_penalty"] = options.repeat_penalty  # llama.cpp's name; vLLM ignores it
        if options.stop:
            body["stop"] = options.stop
        if options.json_schema is not None:
            if self.response_format == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": options.json_schema, "strict": True},
                }
            else:
                body["response_format"] = {"type": "json_object", "schema": options.json_schema}
        return body

    def _open(self, body: dict[str, Any]) -> httpx.Response:
        request = self.client.build_request("POST", "/chat/completions", json=body)
        response = self.client.send(request, stream=True)
        if response.status_code < 400:
            return response
        try:
            response.read()
            text = _short(response.text)
        finally:
            response.close()
        if response.status_code in RETRY_STATUS:
            raise RetryableError(f"HTTP {response.status_code} {text}")
        raise ModelError(f"model server {self.base_url} refused the request: HTTP {response.status_code} {text}")

    def stream(self, messages: list[dict[str, str]], options: GenerateOptions) -> Iterator[str]:
        self.load()
        body = self.request_body(messages, options)
        self._stats = StreamStats()
        response = with_retries(lambda: self._open(body), what=f"model server {self.base_url}",
                                retries=self.retries, backoff_s=self.backoff_s)
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # SSE comments, event names, keep-alives
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                piece = self._piece(payload)
                if piece:
                    self._stats.completion_tokens += 1
                    yield piece
        except httpx.HTTPError as error:
            raise ModelError(
                f"the model server {self.base_url} stopped in the middle of the answer "
                f"({type(error).__name__}: {error or 'connection lost'})"
            ) from error
        finally:
            response.close()  # also on cancellation: the server stops generating for a closed connection

    def _piece(self, payload: str) -> str:
        try:
            data = json.loads(payload)
        except ValueError as error:
            raise ModelError(f"the model server sent something that is not JSON: {_short(payload)}") from error
        if isinstance(data, dict) and data.get("error"):
            raise ModelError(f"the model server failed while answering: {_short(json.dumps(data['error']))}")
        choices = data.get("choices") if isinstance(data, dict) else None
        if not choices:
            return ""
        choice = choices[0]
        if choice.get("finish_reason"):
            self._stats.finish_reason = str(choice["finish_reason"])
        delta = choice.get("delta") or {}
        content = delta.get("content")
        return content if isinstance(content, str) else ""

    def last_stats(self) -> StreamStats:
        return self._stats

    def close(self) -> None:
        self.client.close()


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
