"""`RemoteEngine`: the kiosk's client protocol (`appliance.engine.client`) over `shifu serve`'s HTTP API.

`shifu kiosk --engine URL` uses it in place of the in-process `LocalClient`:

- `stream(query)` yields the same typed events as `Engine.stream`, decoded from the
  server-sent events of `POST /v1/ask` (`appliance.server.events`); closing it cancels the
  answer on the server; `answer(query)` is `POST /v1/ask` as JSON;
- `alarms_since` is `GET /v1/alarms`, `feedback` `POST /v1/feedback`, `status`
  `GET /v1/status`, `machines` `GET /v1/machines`, each decoded into the protocol's typed
  results (their `from_json`); no SQL crosses the wire.

When the server cannot be reached a question fails with a RemoteError (a ShifuError), which
the kiosk shows as a notice; it keeps running and the next question tries again. `status()`
never raises: an unreachable server is a status whose parts carry the error.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import httpx

from appliance.config import Settings
from appliance.engine.client import (
    Alarm,
    EngineStatus,
    FeedbackSaved,
    FloorReport,
    Machine,
    NotFoundError,
    ShiftReport,
    Verdict,
)
from appliance.engine.types import Answer, Event, Query
from appliance.server.events import answer_from_json, decode, parse_sse
from kb.errors import InputError, ShifuError


class RemoteError(ShifuError):
    """The engine server could not be reached or refused the request."""


class RemoteEngine:
    """The `EngineClient` of `shifu serve` at `url` (bearer `token` when the server wants one)."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        token: str = "",
        timeout_s: float | None = None,
        connect_timeout_s: float = 3.0,
        warm_wait_s: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.settings = settings
        self.warm_wait_s = warm_wait_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        read = timeout_s if timeout_s is not None else settings.model.timeout_s + 30
        self.client = httpx.Client(
            base_url=self.url, headers=headers, timeout=httpx.Timeout(read, connect=connect_timeout_s),
            transport=transport,
        )

    # -- plumbing --------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One JSON request; errors become RemoteError (InputError for refused input, NotFoundError for 404)."""
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise RemoteError(f"engine server {self.url} is not answering ({type(error).__name__}: {error})") \
                from error
        _raise_for(response, self.url)
        return response.json()

    # -- the client protocol ---------------------------------------------------------------
    def alarms_since(self, after_id: int, limit: int = 50, *, lang: str | None = None) -> list[Alarm]:
        params: dict[str, Any] = {"limit": limit, "after_id": after_id}
        if lang:
            params["lang"] = lang
        return [Alarm.from_json(row) for row in self.request("GET", "/v1/alarms", params=params)]

    def feedback(
        self, audit_id: int, verdict: Verdict, operator: str = "", alarm_id: int | None = None
    ) -> FeedbackSaved:
        body: dict[str, Any] = {"audit_id": audit_id, "verdict": verdict, "operator": operator}
        if alarm_id is not None:
            body["alarm_id"] = alarm_id
        return FeedbackSaved.from_json(self.request("POST", "/v1/feedback", json=body))

    def status(self) -> EngineStatus:
        try:
            return EngineStatus.from_json(self.request("GET", "/v1/status"))
        except ShifuError as error:
            message = str(error)
            return EngineStatus(kb_error=message, model_state="failed", model_error=message, opstore_error=message)

    def machines(self) -> list[Machine]:
        return [Machine.from_json(row) for row in self.request("GET", "/v1/machines")]

    def floor_report(self, first: date, last: date) -> FloorReport:
        data = self.request("GET", "/v1/report/floor", params={"first": first.isoformat(), "last": last.isoformat()})
        return FloorReport.from_json(data)

    def handover(self, at: datetime, lang: str) -> ShiftReport:
        data = self.request("GET", "/v1/report/handover", params={"at": at.isoformat(), "lang": lang})
        return ShiftReport.from_json(data)

    def warm(self) -> EngineStatus:
        """The server's status once its model has left "loading" (or after `warm_wait_s`)."""
        deadline = time.monotonic() + self.warm_wait_s
        while True:
            status = self.status()
            if status.model_state != "loading" or time.monotonic() > deadline:
                return status
            time.sleep(0.5)

    def stream(self, query: Query, *, use_model: bool = True) -> Iterator[Event]:
        """The engine's events for one question, as they arrive from the server."""
        body = {"query": query.text, "lang": query.lang, "machine": query.machine_id,
                "machine_model": query.machine_model, "no_llm": not use_model}
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
        body = {"query": query.text, "lang": query.lang, "machine": query.machine_id,
                "machine_model": query.machine_model, "no_llm": not use_model}
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
    if response.status_code in {400, 422}:
        raise InputError(str(detail))
    if response.status_code == 404:
        raise NotFoundError(str(detail))
    if response.status_code == 401:
        raise RemoteError(f"engine server {url} refused the token; set serve.token (or --token) to the server's")
    raise RemoteError(f"engine server {url} answered HTTP {response.status_code}: {detail}")
