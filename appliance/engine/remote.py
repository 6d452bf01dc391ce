"""A remote engine: the Engine API of `shifu serve` over HTTP, for `shifu kiosk --engine URL`.

`RemoteEngine.stream(query)` yields the same typed events as `Engine.stream` (decoded from
the server-sent events of `POST /v1/ask`), and `answer(query)` returns the same Answer;
the kiosk cannot tell the difference. The few other things the kiosk reads from an engine
(`kb()`, `versions`, `backend().info()`, `opstore.add_feedback`, database counts) come
from `GET /v1/status` and `POST /v1/feedback`; alarms arrive through `AlarmFeed`, a
polling thread over `GET /v1/alarms`.

When the server cannot be reached the question fails with a ShifuError, which the kiosk
shows as a notice; it keeps running and the next question tries again.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from appliance.config import Settings
from appliance.engine.types import Answer, Event, Query
from appliance.llm.base import ModelInfo
from appliance.server.events import answer_from_json, decode, parse_sse
from kb.errors import InputError, KBError, ModelError, ShifuError

_COUNT_SQL = re.compile(r"^SELECT count\(\*\) AS n FROM (audit|feedback|alarms)$")


class RemoteError(ShifuError):
    """The engine server could not be reached or refused the request."""


@dataclass
class RemoteKB:
    """What the kiosk shows about the server's active KB version."""

    version: int | None
    meta: dict[str, str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(self._counts)


class RemoteVersions:
    """The server's KB versions (from the last status)."""

    def __init__(self, engine: RemoteEngine) -> None:
        self.engine = engine

    def versions(self) -> list[int]:
        return list(self.engine.status().get("kb", {}).get("versions", []))

    def current(self) -> int | None:
        version = self.engine.status().get("kb", {}).get("version")
        return int(version) if version is not None else None


class RemoteModel:
    """The server's model, as far as the kiosk needs it."""

    def __init__(self, info: ModelInfo) -> None:
        self._info = info

    def info(self) -> ModelInfo:
        return self._info


class RemoteOpStore:
    """Feedback, alarms and counts of the server's operational database."""

    path = None  # there is no local database file to watch

    def __init__(self, engine: RemoteEngine) -> None:
        self.engine = engine

    def add_feedback(self, audit_id: int | None, verdict: str, operator: str = "") -> int:
        if audit_id is None:
            raise RemoteError("this answer has no audit id on the server; ask again before giving feedback")
        data = self.engine.request("POST", "/v1/feedback",
                                   json={"audit_id": audit_id, "verdict": verdict, "operator": operator})
        return int(data["id"])

    def alarms(self, limit: int = 100, after_id: int = 0, lang: str | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, "after_id": after_id}
        if lang:
            params["lang"] = lang
        return list(self.engine.request("GET", "/v1/alarms", params=params))

    def add_alarm(self, *, machine_id: str, code: str, message: str = "", raw: str = "") -> int:
        data = self.engine.request("POST", "/v1/alarms",
                                   json={"machine_id": machine_id, "code": code, "message": message, "raw": raw})
        return int(data["id"])

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Only the row counts the technician screen asks for are available remotely."""
        match = _COUNT_SQL.match(sql.strip())
        if match is None:
            raise RemoteError("SQL queries are not available over HTTP")
        return [{"n": self.engine.status().get("opstore", {}).get(match.group(1), 0)}]


class RemoteEngine:
    """Talks to `shifu serve` at `url`; same `stream`/`answer` API as the local Engine."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        token: str = "",
        timeout_s: float | None = None,
        connect_timeout_s: float = 3.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        read = timeout_s if timeout_s is not None else settings.model.timeout_s + 30
        self.client = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(read, connect=connect_timeout_s),
            transport=transport,
        )
        self.opstore = RemoteOpStore(self)
        self.versions = RemoteVersions(self)
        self.embedder = None  # retrieval runs on the server
        self._status: dict[str, Any] = {}
        self._status_at = 0.0
        self._status_lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One JSON request; errors become RemoteError (InputError for a refused query)."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise RemoteError(f"engine server {self.url} is not answering ({type(error).__name__}: {error})") \
                from error
        _raise_for(response, self.url)
        return response.json()

    def status(self, max_age_s: float = 1.0) -> dict[str, Any]:
        """`GET /v1/status`, cached for a second (the status bar and technician screen read it often)."""
        with self._status_lock:
            if time.monotonic() - self._status_at > max_age_s:
                self._status = dict(self.request("GET", "/v1/status"))
                self._status_at = time.monotonic()
            return self._status

    # -- the Engine API the kiosk uses -----------------------------------------------------
    def kb(self) -> RemoteKB:
        kb = self.status(0).get("kb", {})
        if kb.get("error"):
            raise KBError(f"engine server: {kb['error']}")
        return RemoteKB(kb.get("version"), {"name": str(kb.get("name", ""))}, dict(kb.get("counts", {})))

    def backend(self, wait_s: float = 600.0) -> RemoteModel:
        """The server's model; waits while the server is still loading it."""
        deadline = time.monotonic() + wait_s
        while True:
            model = self.status(0).get("model", {})
            state, info = model.get("state"), model.get("info")
            if state == "ready" and info:
                return RemoteModel(ModelInfo(
                    backend=f"remote:{info.get('backend', '')}", base_id=str(info.get("base") or ""),
                    base_sha256=str(info.get("base_sha256") or ""), adapter_id=str(info.get("adapter") or ""),
                    adapter_sha256=str(info.get("adapter_sha256") or ""), device=str(info.get("device") or ""),
                ))
            if state in {"failed", "disabled"}:
                detail = model.get("error") or "switched off on the server"
                raise ModelError(f"the engine server's model is {state}: {detail}")
            if time.monotonic() > deadline:
                raise ModelError(f"the engine server's model is still {state} after {wait_s:.0f}s")
            time.sleep(0.5)

    def warm(self) -> str | None:
        problems = []
        for step in (self.kb, self.backend):
            try:
                step()
            except ShifuError as error:
                problems.append(str(error))
        return "; ".join(problems) or None

    def stream(self, query: Query, *, use_model: bool = True) -> Iterator[Event]:
        """The engine's events for one question, as they arrive from the server."""
        body = {"query": query.text, "lang": query.lang, "machine": query.machine_id, "no_llm": not use_model}
        try:
            with self.client.stream("POST", "/v1/ask", json=body, headers={"Accept": "text/event-stream"}) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for(response, self.url)
                for name, data in parse_sse(response.iter_lines()):
                    yield decode(name, data)
        except httpx.HTTPError as error:
            raise RemoteError(
                f"lost the engine server {self.url} ({type(error).__name__}: {error or 'connection closed'})"
            ) from error

    def answer(self, query: Query, *, use_model: bool = True) -> Answer:
        """The finished answer (`POST /v1/ask` as JSON)."""
        body = {"query": query.text, "lang": query.lang, "machine": query.machine_id, "no_llm": not use_model}
        return answer_from_json(self.request("POST", "/v1/ask", json=body))

    def close(self) -> None:
        self.client.close()


def _raise_for(response: httpx.Response, url: str) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    if response.status_code == 400:
        raise InputError(str(detail))
    if response.status_code == 401:
        raise RemoteError(f"engine server {url} refused the token; set serve.token (or --token) to the server's")
    raise RemoteError(f"engine server {url} answered HTTP {response.status_code}: {detail}")


class AlarmFeed(threading.Thread):
    """Polls the server's alarms and delivers new rows (the first delivery, even empty, marks history)."""

    def __init__(
        self, engine: RemoteEngine, deliver: Callable[[list[dict[str, Any]]], object], *, interval: float = 1.0,
        lang: str = "zh-TW",
    ) -> None:
        super().__init__(name="shifu-remote-alarms", daemon=True)
        self.engine = engine
        self.deliver = deliver
        self.interval = interval
        self.lang = lang
        self.last_id = 0
        self.errors = 0
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()

    def poll(self) -> list[dict[str, Any]]:
        rows = self.engine.opstore.alarms(limit=50, after_id=self.last_id, lang=self.lang)
        if rows:
            self.last_id = max(int(r["id"]) for r in rows)
        return rows

    def run(self) -> None:
        first = True
        while not self._stop_event.is_set():
            try:
                rows = self.poll()
                if rows or first:
                    self.deliver(rows)
                    first = False
            except Exception:  # a server that is away for a while must not end the feed
                self.errors += 1
            self._stop_event.wait(self.interval)
