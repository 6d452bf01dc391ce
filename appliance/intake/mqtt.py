"""MQTT input (paho-mqtt 2.x): subscribe, parse, hand over to the intake, acknowledge after the commit.

Delivery: QoS 1 on a persistent session (clean session off, a stable client id), so what a
gateway publishes while Shifu is down is delivered when it comes back. paho's network thread
only queues each message; a store thread takes up to `batch` of them, commits them through
`Intake.submit` (synchronous=FULL) and only then sends their PUBACKs (manual acknowledgement).
A crash between receipt and commit therefore loses nothing: the broker delivers the message
again. Messages received on an earlier connection are not acknowledged on the new one (their
packet ids belong to the old one); the broker redelivers them and the intake's message key
(topic + payload inside the duplicate window) keeps them from adding a row or a repeat.

A payload no parser can read (not JSON, no code at the path, no match for the pattern, not
UTF-8, not a Sparkplug B protobuf) is stored as `unparsed` with its raw bytes (at most 64 KiB) and
acknowledged like any other. Sparkplug B (`parser = "sparkplug"`) is decoded in
`appliance.intake.sparkplug`: one message may hold several alarms, or none.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import socket
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.config import MqttBroker, MqttSubscription
from appliance.intake.intake import Intake
from appliance.intake.message import AlarmIn, unparsed
from appliance.intake.sparkplug import SparkplugDecoder
from appliance.intake.status import InputStatus
from kb.normalize import code_key

log = logging.getLogger("shifu.mqtt")

MAX_CODE_CHARS = 64
MAX_TEXT_CHARS = 1000


def default_client_id() -> str:
    """Stable across restarts, so the broker keeps this PC's session: `shifu-<host name>`."""
    return f"shifu-{socket.gethostname()}"[:64]


def _path(data: Any, dotted: str) -> Any:
    for part in dotted.split(".") if dotted else []:
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return str(value).strip()[:MAX_TEXT_CHARS]


def parse(sub: MqttSubscription, topic: str, payload: bytes, *, pattern: re.Pattern[str] | None = None) -> AlarmIn:
    """The alarm a message carries, or an `unparsed` one keeping its bytes."""
    source = f"mqtt:{topic}"
    key = hashlib.sha256(topic.encode("utf-8", "replace") + b"\0" + payload).hexdigest()
    bad = unparsed(source, payload, machine_id=sub.machine, message_key=key)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return bad
    if sub.parser == "json":
        try:
            data = json.loads(text)
        except ValueError:
            return bad
        code = _text(_path(data, sub.code_field))
        machine = _text(_path(data, sub.machine_field)) or sub.machine
        message = _text(_path(data, sub.message_field))
    else:
        match = (pattern or re.compile(sub.pattern)).fullmatch(text.strip())
        if match is None:
            return bad
        groups = match.groupdict()
        code = _text(groups.get("code"))
        machine = _text(groups.get("machine")) or sub.machine
        message = _text(groups.get("message"))
    normalized = code_key(code) if len(code) <= MAX_CODE_CHARS else ""
    if not normalized:
        return bad
    return AlarmIn(source=source, machine_id=machine[:64], code=code, normalized=normalized, message=message,
                   raw=text[:MAX_TEXT_CHARS], message_key=key)


@dataclass(frozen=True)
class _Received:
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


class MqttInput:
    """One broker: its subscriptions' messages handed to `intake`, acknowledged once stored."""

    def __init__(self, broker: MqttBroker, intake: Intake) -> None:
        self.broker = broker
        self.intake = intake
        self.client_id = broker.client_id or default_client_id()
        self.status = InputStatus(f"mqtt://{broker.host}:{broker.port}", "mqtt")
        self._patterns = {id(s): re.compile(s.pattern) for s in broker.subscriptions if s.parser == "regex"}
        self._sparkplug = {id(s): SparkplugDecoder(s) for s in broker.subscriptions if s.parser == "sparkplug"}
        self._queue: queue.Queue[_Received] = queue.Queue()
        self._generation = 0
        self._stop_event = threading.Event()
        self._thread = threading.Thread(target=self._store_loop, name=f"mqtt-{broker.host}", daemon=True)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.client = self._make_client()

    def _make_client(self) -> mqtt.Client:
        b = self.broker
        v5 = b.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False, manual_ack=True,
        )
        if b.username:
            client.username_pw_set(b.username, b.password or None)
        if b.tls_ca is not None:
            client.tls_set(ca_certs=str(b.tls_ca), certfile=str(b.tls_cert) if b.tls_cert else None,
                           keyfile=str(b.tls_key) if b.tls_key else None)
        client.reconnect_delay_set(max(1, int(b.reconnect_min_s)), max(1, int(b.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> MqttInput:
        for sub in self.broker.subscriptions:
            self.intake.register(f"mqtt:{sub.topic}", self.status)
        self._thread.start()
        kwargs: dict[str, Any] = {}
        if self.broker.protocol == "5":
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self.broker.session_expiry_s
            kwargs = {"clean_start": False, "properties": props}
        self.client.connect_async(self.broker.host, self.broker.port, self.broker.keepalive_s, **kwargs)
        self.client.loop_start()
        return self

    def stop(self) -> None:
        """Store and acknowledge what was received, then disconnect."""
        self._stop_event.set()
        self._thread.join(timeout=30)
        self.client.disconnect()
        self.client.loop_stop()
        self.status.set(state="stopped")

    # -- paho's network thread -------------------------------------------------------------
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self.status.set(state="reconnecting", last_error=str(reason))
            log.warning("mqtt %s: connection refused: %s", self.status.name, reason)
            return
        self._generation += 1
        if self._generation > 1:
            self.status.add("reconnects")
        log.info("mqtt %s connected as %s", self.status.name, self.client_id)
        self.connected.set()
        if self.broker.subscriptions:
            self.status.set(state="subscribing", last_error="")
            client.subscribe([(s.topic, 1) for s in self.broker.subscriptions])
        else:
            self.status.set(state="connected", last_error="")

    def _on_subscribe(self, *_args: Any) -> None:
        self.status.set(state="connected")  # subscribed: from now on nothing published is missed
        self.subscribed.set()

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self.connected.clear()
        self.subscribed.clear()
        if not self._stop_event.is_set():
            self.status.set(state="reconnecting", last_error=str(reason))
            log.warning("mqtt %s lost: %s; reconnecting", self.status.name, reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._queue.put(_Received(self._generation, msg.mid, msg.qos, msg.topic, bytes(msg.payload)))

    # -- the store thread ------------------------------------------------------------------
    def _store_loop(self) -> None:
        batch: list[_Received] = []
        while True:
            if not batch:
                try:
                    batch.append(self._queue.get(timeout=0.2))
                except queue.Empty:
                    if self._stop_event.is_set():
                        return
                    continue
            while len(batch) < self.broker.batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self._store(batch):
                batch = []
            elif self._stop_event.wait(0.5):
                return  # not stored, not acknowledged: the broker delivers them again

    def _subscription(self, topic: str) -> MqttSubscription | None:
        for sub in self.broker.subscriptions:
            if mqtt.topic_matches_sub(sub.topic, topic):
                return sub
        return None

    def _store(self, batch: list[_Received]) -> bool:
        alarms = []
        for item in batch:
            sub = self._subscription(item.topic)
            if sub is None:  # a retained message of an old subscription, say: kept, never lost
                alarms.append(unparsed(f"mqtt:{item.topic}", item.payload))
                continue
            decoder = self._sparkplug.get(id(sub))
            if decoder is None:
                alarms.append(parse(sub, item.topic, item.payload, pattern=self._patterns.get(id(sub))))
                continue
            # One Sparkplug message holds any number of alarms, or none (telemetry, births, deaths).
            decoded = decoder.decode(item.topic, item.payload)
            alarms.extend(decoded.alarms)
            self.status.add("cleared", decoded.cleared)
            self.status.add("unknown_alias", decoded.unknown_alias)
        try:
            stored = self.intake.submit(alarms)
        except sqlite3.Error as error:
            self.status.add("store_errors")
            self.status.set(last_error=f"cannot store: {error}")
            log.error("mqtt %s: cannot store %d messages (%s); retrying", self.status.name, len(batch), error)
            return False
        self.status.seen(len(batch))
        for result in stored:
            if result.redelivered:
                self.status.add("redelivered")
            elif result.repeat:
                self.status.add("repeats")
            elif result.alarm.status == "unparsed":
                self.status.add("unparsed")
            else:
                self.status.add("alarms")
        generation = self._generation
        for item in batch:
            if item.qos > 0 and item.generation == generation:
                self.client.ack(item.mid, item.qos)
        return True
