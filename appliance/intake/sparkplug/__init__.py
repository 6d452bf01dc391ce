"""Sparkplug B over MQTT: NDATA/DDATA (and birth) metrics that a subscription's `metrics` table names become alarms.

Topics are `spBv1.0/GROUP/TYPE/EDGE_NODE[/DEVICE]`. The payload is the Sparkplug B protobuf
(`sparkplug_b.proto` beside this file, compiled to `sparkplug_b_pb2`); only the `protobuf`
runtime is needed (pysparkplug pins paho-mqtt below 2, so it is not used).

- NBIRTH/DBIRTH name every metric and give it an alias; later DATA messages may carry only the
  alias, so the aliases are remembered per edge node and device. A birth also carries each
  metric's current value: an alarm metric that is already active at birth is an alarm (the
  duplicate window counts it on the stored row if Shifu has it already). NDEATH forgets a node's
  aliases, DDEATH a device's.
- A metric in `metrics` whose value turns true or non-zero raises the table's code for it; false,
  zero or null clears it (counted, nothing stored). With an empty code the metric's own value is
  the code (`Alarm/Code` = "E-203"; 0 or "" clears).
- Every other metric is telemetry and ignored; STATE, NCMD and DCMD carry no alarms.
- A payload that is not a Sparkplug B protobuf is stored `unparsed` with its bytes. A DATA metric
  whose alias was never seen in a birth (Shifu started after the edge node's NBIRTH, which is not
  retained) cannot be named: it is counted as `unknown_alias` and logged, never guessed.

Sparkplug edge nodes publish DATA with QoS 0, so a broker does not queue them while Shifu is
away, whatever Shifu's session asks for: what happened meanwhile comes with the node's next birth.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError

from appliance.config import MqttSubscription
from appliance.intake.message import AlarmIn, unparsed
from appliance.intake.sparkplug.sparkplug_b_pb2 import Payload
from kb.normalize import code_key

log = logging.getLogger("shifu.mqtt.sparkplug")

MAX_CODE_CHARS = 64
ALARM_TYPES = {"NBIRTH", "DBIRTH", "NDATA", "DDATA"}
_OFF = {"", "0", "false", "off", "no"}


@dataclass
class Decoded:
    """The alarms one message carries and what else it held."""

    alarms: list[AlarmIn] = field(default_factory=list)
    cleared: int = 0
    unknown_alias: int = 0


def _value(metric: Any) -> Any:
    kind = metric.WhichOneof("value")
    if kind is None or metric.is_null:
        return None
    return getattr(metric, kind)


def _active(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _OFF
    if isinstance(value, bool | int | float):
        return bool(value)
    return False


def _value_code(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""  # true/false names no code
    if isinstance(value, int):
        return str(value) if value else ""
    if isinstance(value, str):
        text = value.strip()
        return "" if text.lower() in _OFF else text
    return ""


class SparkplugDecoder:
    """Decodes one subscription's Sparkplug B messages, remembering each node's and device's aliases."""

    def __init__(self, sub: MqttSubscription) -> None:
        self.sub = sub
        self._aliases: dict[tuple[str, str, str], dict[int, str]] = {}
        self._warned: set[tuple[str, str, str]] = set()

    def decode(self, topic: str, payload: bytes) -> Decoded:
        parts = topic.split("/")
        source = f"mqtt:{topic}"
        digest = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()
        if len(parts) < 4 or parts[0] != "spBv1.0":
            return Decoded()  # STATE (spBv1.0/STATE/host) and anything else: no alarms
        group, kind, node = parts[1], parts[2], parts[3]
        device = parts[4] if len(parts) > 4 else ""
        key = (group, node, device)
        if kind == "NDEATH":
            for known in [k for k in self._aliases if k[:2] == (group, node)]:
                del self._aliases[known]
            return Decoded()
        if kind == "DDEATH":
            self._aliases.pop(key, None)
            return Decoded()
        if kind not in ALARM_TYPES:
            return Decoded()
        ident = device or node
        machine = (self.sub.machines.get(ident) or self.sub.machine or ident)[:64]
        try:
            message = Payload.FromString(payload)
        except (DecodeError, ValueError, RuntimeError):
            return Decoded([unparsed(source, payload, machine_id=machine, message_key=digest)])
        birth = kind.endswith("BIRTH")
        if birth:
            self._aliases[key] = {}
        aliases = self._aliases.setdefault(key, {})
        result = Decoded()
        for index, metric in enumerate(message.metrics):
            if metric.HasField("name"):
                name = metric.name
                if birth and metric.HasField("alias"):
                    aliases[metric.alias] = name
            elif metric.HasField("alias") and metric.alias in aliases:
                name = aliases[metric.alias]
            else:
                result.unknown_alias += 1
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("sparkplug %s: metric alias %d was never named in a birth; ignored until the "
                                "next NBIRTH/DBIRTH", topic, metric.alias)
                continue
            if name not in self.sub.metrics:
                continue  # telemetry
            code_template = self.sub.metrics[name]
            value = _value(metric)
            code = code_template if code_template else _value_code(value)
            if not code or (code_template and not _active(value)):
                result.cleared += 1
                continue
            alarm_key = f"{digest}:{index}"
            normalized = code_key(code) if len(code) <= MAX_CODE_CHARS else ""
            if not normalized:
                result.alarms.append(unparsed(source, f"{name}={value}".encode("utf-8", "replace"),
                                              machine_id=machine, message_key=alarm_key))
                continue
            result.alarms.append(AlarmIn(
                source=source, machine_id=machine, code=code, normalized=normalized, message=name[:1000],
                raw=f"{name}={value}"[:1000], message_key=alarm_key,
            ))
        return result
