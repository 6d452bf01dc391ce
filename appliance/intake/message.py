"""What every alarm input hands to the intake: a typed, frozen message, and what became of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

MAX_PAYLOAD_BYTES = 64 * 1024
"""An unparsed payload is kept up to this many bytes (the rest is cut off)."""


class Counters(Protocol):
    """Anything that counts an input's events (`PortStatus`, `InputStatus`)."""

    def add(self, name: str, amount: int = 1) -> None: ...


@dataclass(frozen=True)
class AlarmIn:
    """One alarm as an input read it, before it is stored.

    `source` names the input (`serial:PORT`, `opcua:ENDPOINT`, `mqtt:TOPIC`, `http`); `port` is
    the short label the alarm list shows (default: the source). `status = 'unparsed'` marks a
    payload nobody could read: it is stored with its `payload` bytes and never answered.
    `message_key` identifies the message itself (an MQTT topic + payload): the same message
    again inside the duplicate window is a redelivery and changes nothing.
    """

    source: str
    machine_id: str = ""
    code: str = ""
    normalized: str = ""
    message: str = ""
    raw: str = ""
    status: str = "new"
    payload: bytes | None = None
    message_key: str = ""
    port: str = ""
    severity: str = ""
    """info | warning | critical when the input says so (OPC UA), else empty."""
    condition_id: str = ""
    """OPC UA: the ConditionId (a NodeId string) of an alarm condition, for acknowledging it back."""
    event_id: str = ""
    """OPC UA: the event's EventId in hex (Acknowledge names the event it acknowledges)."""

    @property
    def kind(self) -> str:
        """The input kind (`serial`, `opcua`, `mqtt`, `http`): the audit row's source."""
        return self.source.split(":", 1)[0]


@dataclass(frozen=True)
class Stored:
    """What the intake did with one `AlarmIn`.

    `repeat`: counted on the stored row `id` (same machine and code inside the window);
    `redelivered`: the same message again, nothing written; else a new row `id`.
    """

    id: int
    alarm: AlarmIn
    repeat: bool = False
    redelivered: bool = False
    answer_status: str | None = None


def unparsed(source: str, payload: bytes, *, port: str = "", machine_id: str = "", message_key: str = "") -> AlarmIn:
    """A payload nobody could read, kept (capped at `MAX_PAYLOAD_BYTES`) for a person to look at."""
    kept = payload[:MAX_PAYLOAD_BYTES]
    return AlarmIn(
        source=source, machine_id=machine_id, raw=kept[:1000].decode("utf-8", "replace"), status="unparsed",
        payload=kept, message_key=message_key, port=port,
    )
