"""Acknowledging OPC UA alarms back to their server when an operator marks them fixed (off by default).

Two processes take part, and the operational database is the only thing between them: the kiosk
(or `shifu serve`) has no IP access at all, while `shifu intake` holds the OPC UA sessions, their
certificates and the only network permission to the controllers.

1. The kiosk's feedback (`LocalClient.feedback`, verdict "fixed", an alarm from an
   `[[opcua.servers]]` entry with `acknowledge = true`) calls `request`: after the feedback row
   is committed, one `acknowledgements` row is written as `requested`, with the comment to send
   ("Shifu: fixed"; the operator id only under `acknowledge_comment = "operator"`), and the call
   waits up to `acknowledge_wait_s` for its outcome.
2. The server's `OpcuaInput` (in `shifu intake`) polls for requested rows of its endpoint while
   connected, claims each one (`sending`, in one transaction, so it is sent at most once), calls
   the condition's `Acknowledge(EventId, Comment)` and writes the outcome: `acknowledged`,
   `refused` (a bad status from the server, named) or `failed` (no answer, not a condition).
3. A request nobody claimed before the wait ended is marked `failed` by the kiosk itself, in the
   same guarded update: it is never sent later. Nothing is retried silently; every outcome stays
   in the table as the audit of what left the PC.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from appliance.config import OpcuaServer, Settings
from appliance.engine.client import Acknowledgement
from appliance.serial.alarm_store import MIGRATIONS
from appliance.store.opstore import OpStore
from kb.store.migrate import migrate

COMMENT = "Shifu: fixed"
FINAL = ("acknowledged", "refused", "failed")
POLL_S = 0.1


def comment_for(server: OpcuaServer, operator: str) -> str:
    """The comment sent with the acknowledgement: nothing about people unless the plant chose so."""
    if server.acknowledge_comment == "operator" and operator.strip():
        return f"{COMMENT} (operator {operator.strip()[:64]})"
    return COMMENT


def server_for(settings: Settings, source: str) -> OpcuaServer | None:
    """The configured server an alarm's `source` (`opcua:ENDPOINT`) came from."""
    for server in settings.opcua.servers:
        if source == f"opcua:{server.endpoint}":
            return server
    return None


# -- the kiosk's side --------------------------------------------------------------------------
def request(
    settings: Settings, store: OpStore, alarm_id: int, feedback_id: int, operator: str = ""
) -> Acknowledgement | None:
    """Acknowledge alarm `alarm_id` on its server, if that server wants it; the outcome, or None.

    Returns None (nothing sent, nothing written) unless the alarm came from an OPC UA server
    configured with `acknowledge = true`.
    """
    migrate(store.db, MIGRATIONS)  # the kiosk may open the database before any intake has
    rows = store.rows("SELECT source, condition_id, event_id FROM alarms WHERE id = ?", [alarm_id])
    if not rows:
        return None
    alarm = rows[0]
    server = server_for(settings, alarm["source"] or "")
    if server is None or not server.acknowledge:
        return None
    comment = comment_for(server, operator)
    state, detail = "requested", ""
    if not alarm["condition_id"] or not alarm["event_id"]:
        state, detail = "failed", "this event is no alarm condition (it has no ConditionId): there is nothing to acknowledge"
    with store.transaction() as conn:
        cursor = conn.execute(
            "INSERT INTO acknowledgements (created, alarm_id, feedback_id, source, condition_id, event_id, comment,"
            " state, detail, finished) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [time.time(), alarm_id, feedback_id, alarm["source"], alarm["condition_id"], alarm["event_id"], comment,
             state, detail or None, time.time() if state == "failed" else None],
        )
        ack_id = int(cursor.lastrowid or 0)
    if state == "requested":
        _wait(store, ack_id, server.acknowledge_wait_s)
    return outcome(store, ack_id, server.endpoint)


def _wait(store: OpStore, ack_id: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _state(store, ack_id) in FINAL:
            return
        time.sleep(POLL_S)
    with store.transaction() as conn:  # only if the intake has not claimed it: then it is never sent
        conn.execute(
            "UPDATE acknowledgements SET state = 'failed', detail = ?, finished = ? WHERE id = ? AND state = 'requested'",
            [f"shifu intake did not send it within {seconds:g} s (is it running and connected to the server?)",
             time.time(), ack_id],
        )
    if _state(store, ack_id) == "sending":  # claimed just now: its call is bounded by the server's timeout
        end = time.monotonic() + seconds
        while time.monotonic() < end and _state(store, ack_id) == "sending":
            time.sleep(POLL_S)


def _state(store: OpStore, ack_id: int) -> str:
    with store.transaction() as conn:
        row = conn.execute("SELECT state FROM acknowledgements WHERE id = ?", [ack_id]).fetchone()
    return str(row[0]) if row else "failed"


def outcome(store: OpStore, ack_id: int, endpoint: str = "") -> Acknowledgement:
    with store.transaction() as conn:
        row = conn.execute("SELECT state, detail, comment FROM acknowledgements WHERE id = ?", [ack_id]).fetchone()
    state = str(row[0]) if row else "failed"
    return Acknowledgement(ack_id, state if state in (*FINAL, "sending") else "failed",  # type: ignore[arg-type]
                           str(row[1] or "") if row else "", str(row[2] or "") if row else "", endpoint)


# -- the intake's side -------------------------------------------------------------------------
@dataclass(frozen=True)
class Pending:
    """A claimed request: send `comment` to acknowledge event `event_id` of condition `condition_id`."""

    id: int
    alarm_id: int
    condition_id: str
    event_id: str
    comment: str


def claim(store: OpStore, source: str, max_age_s: float) -> list[Pending]:
    """Take this input's requested acknowledgements (now `sending`); older than `max_age_s`: failed instead."""
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM acknowledgements WHERE state = 'requested' AND source = ? LIMIT 1",
                        [source]).fetchone() is None:
            return []
        now = time.time()
        conn.execute(
            "UPDATE acknowledgements SET state = 'failed', detail = 'expired before shifu intake could send it',"
            " finished = ? WHERE state = 'requested' AND source = ? AND created < ?", [now, source, now - max_age_s],
        )
        rows = conn.execute(
            "SELECT id, alarm_id, condition_id, event_id, comment FROM acknowledgements"
            " WHERE state = 'requested' AND source = ? ORDER BY id", [source],
        ).fetchall()
        conn.executemany("UPDATE acknowledgements SET state = 'sending' WHERE id = ?", [[r[0]] for r in rows])
    return [Pending(int(r[0]), int(r[1] or 0), str(r[2] or ""), str(r[3] or ""), str(r[4])) for r in rows]


def finish(store: OpStore, ack_id: int, state: str, detail: str = "") -> None:
    if state not in FINAL:
        raise ValueError(f"an acknowledgement ends {', '.join(FINAL)}, not {state!r}")
    with store.transaction() as conn:
        conn.execute("UPDATE acknowledgements SET state = ?, detail = ?, finished = ? WHERE id = ?",
                     [state, detail or None, time.time(), ack_id])
