"""`shifu serve`: the engine over HTTP for kiosks on other terminals and the plant's MES.

A thin shell over one Engine (one model, one priority queue) built by `make_server_app`:

- `POST /v1/ask` `{query, lang, machine}` -> the `shifu ask --json` object, or the engine's
  events as server-sent events when the client sends `Accept: text/event-stream`
  (see `appliance.server.events`); a client that goes away cancels its answer;
- `GET /v1/codes/{code}` the code table row (404 with near misses when unknown);
- `POST /v1/alarms` an alarm from a machine or the MES; `GET /v1/alarms?after_id=&limit=&lang=`
  newest first, with the code's severity and title;
- `POST /v1/feedback` Fixed / Not fixed / Call technician for an answered query (and the alarm
  it was opened from);
- `GET /v1/status` KB (version, versions, counts, vector index), model (state, ids, hashes) and
  database row counts: what the kiosk's status bar and technician screen show;
- `GET /v1/machines` the plant's machines in the active KB;
- `GET /healthz` liveness for systemd and monitoring (no token needed);
- `/openapi.json` and `/docs`.

Input errors are 400 (unacceptable query: empty, too long, control characters) or 422
(malformed body) with the reason; an oversized body is 413; a missing KB or database is
503. With `serve.token` set, every /v1 request needs `Authorization: Bearer TOKEN`.

Everything but `/v1/ask` is answered by a `LocalClient` over the engine, the same object an
in-process kiosk uses, so `RemoteEngine` (`shifu kiosk --engine URL`) decodes exactly what a
local kiosk would read: the protocol of `appliance.engine.client`, never SQL.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from copy import deepcopy
from datetime import date, datetime
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from appliance.config import Settings
from appliance.engine.client import NotFoundError
from appliance.engine.engine import Engine
from appliance.engine.local import LocalClient
from appliance.engine.types import Done, Event
from appliance.engine.types import Query as EngineQuery
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.service import SerialService
from appliance.server import events
from kb.errors import InputError, KBError, ShifuError
from kb.normalize import code_key

Lang = Literal["zh-TW", "en"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AskRequest(Strict):
    """A question: an error code, an alarm line or a symptom."""

    query: str = Field(description="As typed or scanned, e.g. `E-203`, `error:9`, `belt squeals on start`.")
    lang: Lang | None = Field(default=None, description="Answer language; the server's default when empty.")
    machine: str = Field(default="", max_length=64, description="Machine id; picks the machine model's procedure.")
    machine_model: str = Field(default="", max_length=64,
                               description="Machine model when no machine id is known (the inventory's model wins).")
    no_llm: bool = Field(default=False, description="Standard procedure, history and sources only (`--no-llm`).")


class AlarmIn(Strict):
    """An alarm a machine raised (pushed by a gateway or the MES instead of a serial line)."""

    machine_id: str = Field(max_length=64, description="Machine that raised the alarm.")
    code: str = Field(min_length=1, max_length=64, description="Alarm or error code, e.g. `A01`, `ALARM:9`.")
    message: str = Field(default="", max_length=500, description="Text the machine sent with the code.")
    raw: str = Field(default="", max_length=1000, description="The original line, if any.")


class AlarmCreated(Strict):
    id: int
    normalized: str
    answer_status: str | None = Field(
        default=None, description="`pending`: its answer is being prepared in the background; `throttled`: "
        "answered when opened; null: no model on this server.")


class FeedbackIn(Strict):
    """The operator's verdict on an answer (the `audit_id` of the answer object)."""

    audit_id: int = Field(ge=1, le=2**62, description="`audit_id` of the answer.")
    verdict: Literal["fixed", "not_fixed", "call_technician"]
    operator: str = Field(default="", max_length=64, description="Operator or shift id, if signed in.")
    alarm_id: int | None = Field(default=None, ge=1, le=2**62,
                                 description="The alarm the answer was opened from, if any.")


class AcknowledgementOut(Strict):
    """`appliance.engine.client.Acknowledgement`: the OPC UA acknowledgement a "fixed" sent back, and its outcome."""

    id: int
    state: Literal["acknowledged", "refused", "failed", "sending"]
    detail: str
    comment: str
    endpoint: str


class FeedbackCreated(Strict):
    id: int
    acknowledgement: AcknowledgementOut | None = Field(
        default=None, description="Only for an alarm of an OPC UA server with `acknowledge = true`.")


class AlarmOut(BaseModel):
    """An alarm as the kiosk lists it (`appliance.engine.client.Alarm`)."""

    id: int
    received: float = Field(description="Wall-clock seconds since 1970, for people; order by `id`.")
    machine_id: str
    code: str
    normalized: str
    message: str
    raw: str
    port: str = Field(description="Serial device, `http`, or the input that received it.")
    status: str
    repeats: int
    audit_id: int | None = Field(description="The answer prepared for it, once there is one.")
    answer_status: str | None = Field(description="pending | ready | failed | throttled, or null.")
    severity: str = Field(description="info | warning | critical from the active KB; empty when unknown.")
    title: str = Field(description="The code's title in the active KB (in `lang`); empty when unknown.")


class MachineOut(BaseModel):
    """A machine of the active KB's inventory."""

    machine_id: str
    machine_model: str
    line: str
    location: str


class DenseOut(BaseModel):
    state: Literal["on", "off", "unavailable", "degraded"] = Field(
        description="on; off (configured); unavailable (no vectors for this embedder); degraded (index broken or "
        "being rebuilt: full-text search meanwhile)")
    detail: str


class KBStatusOut(BaseModel):
    version: int | None
    name: str
    versions: list[int]
    counts: dict[str, int]
    error: str = Field(description="Why no KB is usable; empty when one is.")
    dense: DenseOut


class ModelInfoOut(BaseModel):
    backend: str
    base: str
    base_sha256: str
    adapter: str | None
    adapter_sha256: str | None
    device: str
    languages: list[str]


class ModelStatusOut(BaseModel):
    state: Literal["loading", "ready", "disabled", "failed"]
    error: str
    available: bool
    info: ModelInfoOut | None


class OpstoreStatusOut(BaseModel):
    counts: dict[str, int] = Field(description="Rows of audit, feedback and alarms.")
    error: str


class StatusOut(BaseModel):
    """`appliance.engine.client.EngineStatus` on the wire."""

    kb: KBStatusOut
    model: ModelStatusOut
    opstore: OpstoreStatusOut


class Problem(BaseModel):
    detail: str = Field(description="What was wrong and what to do.")


class Health(BaseModel):
    status: Literal["ok"]
    kb_version: int | None
    model: str = Field(description="loading | ready | failed | disabled")


class CodeLookup(BaseModel):
    query: str
    normalized: str | None
    code: dict[str, Any] | None = Field(description="The matched row (answer schema `code`), or null.")
    candidates: list[dict[str, Any]]
    suggestions: list[str]


BEARER = HTTPBearer(auto_error=False, description="`serve.token` from the configuration")
"""Module level: FastAPI resolves the (postponed) annotations of the endpoints in this module's globals."""

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "bad input (for example a body that is not UTF-8 JSON)"},
    401: {"model": Problem, "description": "missing or wrong bearer token"},
    413: {"model": Problem, "description": "request body too large"},
    503: {"model": Problem, "description": "no knowledge base or operational database available"},
}


def _answer_schema() -> dict[str, Any]:
    text = resources.files("appliance").joinpath("schemas/answer.schema.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def _openapi_components(schema: dict[str, Any]) -> dict[str, Any]:
    """The answer JSON Schema as OpenAPI components (its $defs become Answer_<name>)."""
    schema = deepcopy(schema)
    defs = schema.pop("$defs", {})
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    text = json.dumps({"Answer": schema, **{f"Answer_{k}": v for k, v in defs.items()}})
    text = re.sub(r'"#/\$defs/([A-Za-z0-9_]+)"', r'"#/components/schemas/Answer_\1"', text)
    return dict(json.loads(text))


def make_server_app(settings: Settings, engine: Engine, *, warm: bool | None = None,
                    debug_tokens: bool = False) -> FastAPI:
    """The HTTP app over `engine`; `warm` loads KB and model at start (default from `serve.warm`).

    `debug_tokens` adds the model's raw `token` events to the SSE stream (never drawn by a
    client; for debugging only): by default only guarded `partial` events carry the answer.
    """
    local = LocalClient(engine)
    do_warm = settings.serve.warm if warm is None else warm
    alarm_service: SerialService | None = None
    if engine.opstore is not None:
        # No ports of its own: it stores posted alarms and prepares their answers in the
        # background, behind the operators' questions, exactly as the serial service does.
        alarm_service = SerialService(settings, AlarmStore(engine.opstore), engine=engine, ports=[],
                                      write_status_file=False)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if do_warm:
            threading.Thread(target=local.warm, name="shifu-serve-warm", daemon=True).start()
        if alarm_service is not None:
            alarm_service.start()
        try:
            yield
        finally:
            if alarm_service is not None:
                alarm_service.stop()

    app = FastAPI(
        title="Shifu",
        version="1",
        summary="Offline troubleshooting for the factory floor: codes, procedures, repair history, cited answers.",
        lifespan=lifespan,
    )
    token = settings.serve.token

    def authorize(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if not token:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer ...)",
                                headers={"WWW-Authenticate": "Bearer"})

    limit = settings.serve.max_body_bytes

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(InputError)
    async def input_error(_request: Request, error: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=400)

    @app.exception_handler(NotFoundError)
    async def not_found(_request: Request, error: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(ShifuError)
    async def shifu_error(_request: Request, error: ShifuError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=503)

    guarded = [Depends(authorize)]

    # -- health --------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["health"])
    def healthz() -> Health:
        """Liveness: the server runs; which KB version is active; whether the model is ready."""
        status = local.status()
        return Health(status="ok", kb_version=status.kb_version, model=status.model_state)

    @app.get("/v1/status", dependencies=guarded, response_model=StatusOut, tags=["health"], responses=ERRORS)
    def status() -> Any:
        """The KB (version, name, versions, counts, vector index), the model (state, ids, hashes) and database counts."""
        return local.status().to_json()

    @app.get("/v1/machines", dependencies=guarded, response_model=list[MachineOut], tags=["codes"],
             responses=ERRORS)
    def machines() -> Any:
        """The plant's machines in the active KB (id, model, line, location), by id."""
        return [m.to_json() for m in local.machines()]

    @app.get("/v1/report/floor", dependencies=guarded, tags=["report"], responses=ERRORS)
    def floor_report(
        first: Annotated[date, Query(description="First day (local date, inclusive).")],
        last: Annotated[date, Query(description="Last day (local date, inclusive).")],
    ) -> Any:
        """The technician screen's figures: Pareto of codes, repeat offenders, knowledge-base gaps."""
        if last < first:
            raise InputError(f"last ({last}) is before first ({first})")
        return local.floor_report(first, last).to_json()

    @app.get("/v1/report/handover", dependencies=guarded, tags=["report"], responses=ERRORS)
    def handover_report(
        at: Annotated[datetime, Query(description="A moment of the shift (ISO 8601; local time without an offset).")],
        lang: Annotated[Lang, Query(description="Language of the code titles.")] = "zh-TW",
    ) -> Any:
        """The shift handover for the technician screen: the shift's alarms and their states, repeated codes."""
        return local.handover(at if at.tzinfo else at.astimezone(), lang).to_json()

    # -- ask -----------------------------------------------------------------------------
    ask_responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "The answer object (application/json), or the engine's events (text/event-stream).",
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Answer"}},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **ERRORS,
        400: {"model": Problem, "description": "unacceptable query (empty, too long, control characters)"},
    }

    @app.post("/v1/ask", dependencies=guarded, responses=ask_responses, tags=["answers"],
              response_class=JSONResponse)
    async def ask(body: AskRequest, request: Request) -> Any:
        """Answer a code or a symptom: standard procedure, repair history, sources and the model's answer."""
        query = EngineQuery(text=body.query, machine_id=body.machine, machine_model=body.machine_model,
                            source="http", lang=body.lang or settings.general.lang)
        # Through the client, so the status learns the model from the answers.
        stream = local.stream(query, use_model=not body.no_llm, debug_tokens=debug_tokens)
        # The first step validates the input: a bad query is a 400 before any event is sent.
        first = await run_in_threadpool(_next, stream)
        if "text/event-stream" in request.headers.get("accept", ""):
            return StreamingResponse(_sse(stream, first), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        answer = await run_in_threadpool(_finish, stream, first)
        return JSONResponse(answer)

    # -- codes ---------------------------------------------------------------------------
    @app.get("/v1/codes/{code}", dependencies=guarded, response_model=CodeLookup, tags=["codes"],
             responses={**ERRORS, 404: {"model": CodeLookup, "description": "not in the code table (see suggestions)"},
                        400: {"model": Problem, "description": "not a code"}})
    def lookup(
        code: Annotated[str, Path(max_length=64, description="The code as typed: `E-203`, `ｅ２０３`, `error:9`.")],
        machine: Annotated[str, Query(max_length=64, description="Machine id (picks its model's row).")] = "",
        lang: Annotated[Lang | None, Query(description="Preferred language of the row.")] = None,
    ) -> Any:
        """The code table row for a code, as in the answer object; 404 with near misses when unknown."""
        if not code_key(code):
            raise InputError(f"{code!r} is not a code (letters, digits, dashes and colons)")
        kbase = engine.kb()
        machine_model = kbase.machine_model(machine) if machine else ""
        found = kbase.lookup(code, machine_model=machine_model, lang=lang or settings.general.lang)
        result = CodeLookup(
            query=code, normalized=found.key, code=found.entry.to_json() if found.entry else None,
            candidates=[c.to_json() for c in found.candidates], suggestions=list(found.suggestions),
        )
        if found.entry is None:
            return JSONResponse(result.model_dump(), status_code=404)
        return result

    # -- alarms --------------------------------------------------------------------------
    @app.post("/v1/alarms", dependencies=guarded, status_code=201, response_model=AlarmCreated, tags=["alarms"],
              responses={**ERRORS, 400: {"model": Problem, "description": "not a code"}})
    def add_alarm(alarm: AlarmIn) -> AlarmCreated:
        """Store an alarm (it appears on every kiosk's alarm list); nothing acknowledged is lost."""
        normalized = code_key(alarm.code)
        if not normalized:
            raise InputError(f"{alarm.code!r} is not a code (letters, digits, dashes and colons)")
        if alarm_service is None:
            raise HTTPException(503, "no operational database on this server")
        event = alarm_service.accept("http", alarm.machine_id, alarm.raw or alarm.code, alarm.code, normalized,
                                     alarm.message)
        return AlarmCreated(id=event.id, normalized=normalized, answer_status=event.answer_status)

    @app.get("/v1/alarms", dependencies=guarded, response_model=list[AlarmOut], tags=["alarms"], responses=ERRORS)
    def list_alarms(
        limit: Annotated[int, Query(ge=1, le=500, description="Most rows to return.")] = 50,
        after_id: Annotated[int, Query(ge=0, le=2**62, description="Only alarms with a larger id.")] = 0,
        lang: Annotated[Lang | None, Query(description="Language of the code titles.")] = None,
    ) -> Any:
        """The newest alarms above `after_id`, newest first, with the code's severity and title from the active KB."""
        return [a.to_json() for a in local.alarms_since(after_id, limit, lang=lang)]

    # -- feedback ------------------------------------------------------------------------
    @app.post("/v1/feedback", dependencies=guarded, status_code=201, response_model=FeedbackCreated,
              tags=["answers"], responses={**ERRORS, 404: {"model": Problem, "description": "no such answer or alarm"}})
    def feedback(item: FeedbackIn) -> FeedbackCreated:
        """Record the operator's verdict on an answer (for the technicians and the next training round)."""
        saved = local.feedback(item.audit_id, item.verdict, item.operator, alarm_id=item.alarm_id)
        return FeedbackCreated.model_validate(saved.to_json())

    components = _openapi_components(_answer_schema())

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 description=__doc__, routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_END = object()


def _next(stream: Iterator[Event]) -> Event | None:
    return next(stream, None)


def _finish(stream: Iterator[Event], first: Event | None) -> dict[str, Any]:
    final = first if isinstance(first, Done) else None
    for event in stream:
        if isinstance(event, Done):
            final = event
    if final is None:
        raise KBError("the engine ended without an answer")
    return final.answer.to_json()


async def _sse(stream: Iterator[Event], first: Event | None) -> AsyncIterator[str]:
    """Pump the engine's (blocking) stream in a thread; a disconnect stops it between two events.

    The engine's generator is only ever advanced and closed by the pump thread, so closing
    it (which writes the audit row and releases the model) never races a running step.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()
    cancelled = threading.Event()

    def pump() -> None:
        try:
            if first is not None:
                loop.call_soon_threadsafe(queue.put_nowait, events.encode(first))
            for event in stream:
                if cancelled.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, events.encode(event))
        except Exception as error:  # the client learns about it; the server keeps serving
            loop.call_soon_threadsafe(queue.put_nowait, events.encode_error(str(error)))
        finally:
            stream.close()  # type: ignore[attr-defined]
            try:
                loop.call_soon_threadsafe(queue.put_nowait, _END)
            except RuntimeError:  # the loop is gone (server shutting down)
                pass

    threading.Thread(target=pump, name="shifu-serve-sse", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if item is _END:
                return
            yield str(item)
    finally:
        cancelled.set()
