"""OPC UA input (asyncua): Alarms & Conditions events from a controller, handed over to the intake.

One thread per server runs its own asyncio loop: connect (with the configured security and
login), subscribe to events of the configured nodes (default the Server object), then call
`ConditionRefresh` so that alarms which became active while Shifu was disconnected are sent
again. When the connection is lost the client reconnects with back-off (doubling from
`reconnect_min_s` to `reconnect_max_s`) and refreshes again. A refreshed alarm already stored
inside the duplicate window is counted on its row (`repeats`), never stored twice.

How an event becomes an alarm:
- code: the event's `ErrorCode` when it has one (the Machine Tools `AlertType`, OPC 40501-1, or
  any event type carrying that field), else `code_field` (`ConditionName`, `Message`, a vendor
  property), through `pattern` when set;
- machine: `SourceName` through the `machines` table, else the server's fixed `machine`;
- severity: the 1-1000 scale in fixed bands, 1-333 info, 334-666 warning, 667-1000 critical;
- an alarm condition whose `ActiveState/Id` is false (it went inactive) is counted, not stored.
An event whose code field is missing, too long or no code is stored `unparsed` with its fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import threading
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.crypto import security_policies
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import BadCertificateUntrusted, UaStatusCodeError

from appliance.config import OpcuaServer
from appliance.intake import acknowledge
from appliance.intake.intake import Intake
from appliance.intake.message import AlarmIn, unparsed
from appliance.intake.status import InputStatus
from kb.normalize import code_key

log = logging.getLogger("shifu.opcua")

MACHINE_TOOL_NS = "http://opcfoundation.org/UA/MachineTool/"
MAX_CODE_CHARS = 64
REFRESH = (ObjectIds.RefreshStartEventType, ObjectIds.RefreshEndEventType, ObjectIds.RefreshRequiredEventType)
BASE_FIELDS = ("EventId", "EventType", "SourceName", "Time", "Message", "Severity")


def severity_band(value: Any) -> str:
    """The OPC UA 1-1000 severity as info (1-333), warning (334-666) or critical (667-1000)."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        return ""
    if number < 1:
        return ""
    return "info" if number <= 333 else "warning" if number <= 666 else "critical"


def _operand(type_id: int, *path: ua.QualifiedName) -> ua.SimpleAttributeOperand:
    op = ua.SimpleAttributeOperand()
    op.TypeDefinitionId = ua.NodeId(type_id)  # type: ignore[arg-type]
    op.BrowsePath = list(path)
    op.AttributeId = AttributeIds.Value
    return op


def _qualified(name: str, default_ns: int = 0) -> ua.QualifiedName:
    """`Name` or `ns:Name` (a vendor property in namespace index ns)."""
    ns, sep, rest = name.partition(":")
    if sep and ns.isdigit():
        return ua.QualifiedName(rest, int(ns))
    return ua.QualifiedName(name, default_ns)


def event_filter(code_field: str, machine_tool_ns: int) -> ua.EventFilter:
    """Select the base fields, ConditionName, Retain, ConditionId, ActiveState/Id, ErrorCode and `code_field`."""
    evfilter = ua.EventFilter()
    base = ObjectIds.BaseEventType
    clauses = [_operand(base, ua.QualifiedName(name, 0)) for name in BASE_FIELDS]
    clauses.append(_operand(ObjectIds.ConditionType, ua.QualifiedName("ConditionName", 0)))
    clauses.append(_operand(ObjectIds.ConditionType, ua.QualifiedName("Retain", 0)))
    condition_id = _operand(ObjectIds.ConditionType)  # the ConditionId: the condition node itself
    condition_id.AttributeId = AttributeIds.NodeId
    clauses.append(condition_id)
    clauses.append(_operand(ObjectIds.AlarmConditionType, ua.QualifiedName("ActiveState", 0),
                            ua.QualifiedName("Id", 0)))
    # Any event type carrying an ErrorCode: BaseEventType restricts nothing, the path names the field.
    clauses.append(_operand(base, ua.QualifiedName("ErrorCode", machine_tool_ns)))
    names = {"ConditionName", "Retain", "ErrorCode", *BASE_FIELDS}
    if code_field not in names:
        clauses.append(_operand(base, _qualified(code_field)))
    evfilter.SelectClauses = clauses
    return evfilter


def _text(value: Any, limit: int) -> str:
    if value is None:
        return ""
    if isinstance(value, ua.LocalizedText):
        value = value.Text or ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value)[:limit]


def to_alarm(server: OpcuaServer, fields: dict[str, Any], pattern: re.Pattern[str] | None = None) -> AlarmIn | None:
    """The alarm an event carries; None for an alarm going inactive; `unparsed` when it names no code."""
    limit = server.max_field_chars
    source = f"opcua:{server.endpoint}"
    if pattern is None and server.pattern:
        pattern = re.compile(server.pattern)
    if fields.get("ActiveState/Id") is False:
        return None
    source_name = _text(fields.get("SourceName"), 200)
    machine = server.machines.get(source_name, server.machine)
    message = _text(fields.get("Message"), limit)
    error_code = fields.get("ErrorCode")
    name = server.code_field.partition(":")[2] if ":" in server.code_field else server.code_field
    raw_code = error_code if error_code not in (None, "") else fields.get(name)
    code = _text(raw_code, limit).strip()
    if pattern is not None and code:
        match = pattern.search(code)
        groups = match.groupdict() if match else {}
        code = (groups.get("code") or "").strip() if match else ""
        machine = (groups.get("machine") or "").strip() or machine
        message = (groups.get("message") or "").strip() or message
    event_id = fields.get("EventId")
    event_hex = event_id.hex() if isinstance(event_id, bytes) and event_id else ""
    key = f"opcua:{event_hex}" if event_hex else ""
    condition = fields.get("NodeId")  # the ConditionId when the event is a condition's (acknowledgeable)
    condition_id = condition.to_string() if isinstance(condition, ua.NodeId) and not condition.is_null() else ""
    normalized = code_key(code) if 0 < len(code) <= MAX_CODE_CHARS else ""
    if not normalized:
        shown = {k: _text(v, limit) for k, v in fields.items() if k != "EventId"}
        payload = json.dumps(shown, ensure_ascii=False).encode()
        return unparsed(source, payload, machine_id=machine, message_key=key)
    return AlarmIn(
        source=source, machine_id=machine[:64], code=code, normalized=normalized, message=message,
        raw=f"{source_name}: {code} {message}".strip()[:1000], severity=severity_band(fields.get("Severity")),
        message_key=key, condition_id=condition_id, event_id=event_hex if condition_id else "",
    )


class _Handler:
    def __init__(self, owner: OpcuaInput) -> None:
        self.owner = owner

    def event_notification(self, event: Any) -> None:
        self.owner.received(event.get_event_props_as_fields_dict())


class OpcuaInput(threading.Thread):
    """One OPC UA server, read by its own thread and event loop."""

    def __init__(self, server: OpcuaServer, intake: Intake) -> None:
        super().__init__(name=f"opcua-{server.endpoint}", daemon=True)
        self.server = server
        self.intake = intake
        self.source = f"opcua:{server.endpoint}"
        self.status = InputStatus(server.endpoint, "opcua")
        self.pattern = re.compile(server.pattern) if server.pattern else None
        self.connected = threading.Event()
        self.refreshed = threading.Event()
        self._stop_event = threading.Event()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        self.intake.register(self.source, self.status)
        asyncio.run(self._main())
        self.status.set(state="stopped")

    # -- events (on this thread's loop) ------------------------------------------------------
    def received(self, raw: dict[str, Any]) -> None:
        fields = {k: getattr(v, "Value", v) for k, v in raw.items()}
        event_type = fields.get("EventType")
        if isinstance(event_type, ua.NodeId) and event_type.NamespaceIndex == 0 and event_type.Identifier in REFRESH:
            return  # the brackets around a ConditionRefresh, not alarms
        try:
            alarm = to_alarm(self.server, fields, self.pattern)
        except Exception as error:  # a hostile event must not stop the input
            log.warning("opcua %s: cannot read an event: %s", self.server.endpoint, error)
            alarm = unparsed(self.source, repr(fields).encode("utf-8", "replace"), machine_id=self.server.machine)
        self.status.seen()
        if alarm is None:
            self.status.add("cleared")
            return
        try:
            stored = self.intake.submit([alarm])[0]
        except Exception as error:  # sqlite3.Error: counted and logged; the next refresh sends it again
            self.status.add("store_errors")
            log.error("opcua %s: cannot store an alarm: %s", self.server.endpoint, error)
            return
        if stored.redelivered:
            self.status.add("redelivered")
        elif stored.repeat:
            self.status.add("repeats")
        else:
            self.status.add("unparsed" if alarm.status == "unparsed" else "alarms")

    # -- connection ------------------------------------------------------------------------
    async def _main(self) -> None:
        delay = self.server.reconnect_min_s
        first = True
        while not self._stop_event.is_set():
            lost = asyncio.Event()
            try:
                client = await self._connect(lost)
            except Exception as error:
                self.status.set(state="reconnecting", last_error=str(error) or type(error).__name__)
                if first or self.status.last_error != str(error):
                    log.warning("opcua %s: cannot connect: %s; retrying in %.1f s", self.server.endpoint, error, delay)
                first = False
                await self._sleep(delay)
                delay = min(delay * 2, self.server.reconnect_max_s)
                continue
            if not first:
                self.status.add("reconnects")
            first = False
            delay = self.server.reconnect_min_s
            self.status.set(state="connected", last_error="")
            self.connected.set()
            while not self._stop_event.is_set() and not lost.is_set():
                if self.server.acknowledge:
                    await self._acknowledge_requested(client)
                await asyncio.sleep(0.1)
            self.connected.clear()
            self.refreshed.clear()
            if not self._stop_event.is_set():
                self.status.set(state="reconnecting", last_error="connection lost")
                log.warning("opcua %s: connection lost; reconnecting", self.server.endpoint)
            try:
                await asyncio.wait_for(client.disconnect(), timeout=2)
            except Exception:  # the server is gone already
                log.debug("opcua %s: disconnect failed", self.server.endpoint, exc_info=True)

    # -- acknowledging back (appliance.intake.acknowledge) ----------------------------------
    async def _acknowledge_requested(self, client: Client) -> None:
        """Send the acknowledgements operators asked for; each one once, its outcome written."""
        store = self.intake.store.opstore
        try:
            pending = acknowledge.claim(store, self.source, self.server.acknowledge_wait_s)
        except sqlite3.Error as error:  # the database is busy: the requests wait (and fail if they wait too long)
            log.debug("opcua %s: cannot read acknowledgement requests: %s", self.server.endpoint, error)
            return
        for item in pending:
            state, detail = await self._acknowledge(client, item)
            self.status.add({"acknowledged": "acknowledged", "refused": "ack_refused"}.get(state, "ack_failed"))
            if state != "acknowledged":
                log.warning("opcua %s: acknowledging alarm %d %s: %s", self.server.endpoint, item.alarm_id, state,
                            detail)
            try:
                acknowledge.finish(store, item.id, state, detail)
            except sqlite3.Error:
                log.exception("opcua %s: cannot record acknowledgement %d (%s)", self.server.endpoint, item.id, state)

    async def _acknowledge(self, client: Client, item: acknowledge.Pending) -> tuple[str, str]:
        try:
            condition = client.get_node(ua.NodeId.from_string(item.condition_id))
            await asyncio.wait_for(condition.call_method(
                ua.NodeId(ObjectIds.AcknowledgeableConditionType_Acknowledge),  # type: ignore[arg-type]
                ua.Variant(bytes.fromhex(item.event_id), ua.VariantType.ByteString),
                ua.Variant(ua.LocalizedText(item.comment), ua.VariantType.LocalizedText),
            ), timeout=self.server.timeout_s)
        except UaStatusCodeError as error:  # the server said no, and why
            return "refused", f"{type(error).__name__}: {error}"
        except TimeoutError:
            return "failed", f"no answer from the server within {self.server.timeout_s:g} s"
        except Exception as error:  # connection lost, a malformed node id: not sent
            return "failed", f"{type(error).__name__}: {error}"
        return "acknowledged", ""

    async def _sleep(self, seconds: float) -> None:
        end = asyncio.get_running_loop().time() + seconds
        while not self._stop_event.is_set() and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)

    async def _connect(self, lost: asyncio.Event) -> Client:
        s = self.server
        # The watchdog probes the server every timeout_s: a server busy for less is not taken for gone.
        client = Client(s.endpoint, timeout=s.timeout_s, watchdog_intervall=max(1.0, s.timeout_s))

        async def on_lost(_error: Exception) -> None:
            lost.set()

        client.connection_lost_callback = on_lost
        if s.user:
            client.set_user(s.user)
            client.set_password(s.password)
        elif s.certificate_login and s.certificate is not None and s.private_key is not None:
            await client.load_client_certificate(str(s.certificate))  # type: ignore[arg-type]
            await client.load_private_key(str(s.private_key))  # type: ignore[arg-type]
        if s.security_policy != "None":
            if s.certificate is None or s.private_key is None:
                raise ValueError("security_policy Basic256Sha256 needs certificate and private_key")
            await client.set_security(
                security_policies.SecurityPolicyBasic256Sha256, str(s.certificate), str(s.private_key),
                mode=getattr(ua.MessageSecurityMode, s.security_mode),
            )
        if s.security_policy != "None" or s.trusted_certificates:
            client.certificate_validator = self._validator()  # an empty trust list trusts no server
        await client.connect()
        try:
            namespaces = await client.get_namespace_array()
            mt_ns = namespaces.index(MACHINE_TOOL_NS) if MACHINE_TOOL_NS in namespaces else 0
            sub = await client.create_subscription(100, _Handler(self))
            evfilter = event_filter(s.code_field, mt_ns)
            for node in s.nodes:
                await sub.subscribe_events(client.get_node(node), evfilter=evfilter, queuesize=10000)
            # Alarms that became active while we were away are sent again now.
            try:
                await client.get_node(ObjectIds.ConditionType).call_method(
                    ua.NodeId(ObjectIds.ConditionType_ConditionRefresh),  # type: ignore[arg-type]
                    ua.Variant(sub.subscription_id, ua.VariantType.UInt32),
                )
            except UaStatusCodeError as error:  # a server without A&C methods still sends live events
                self.status.add("refresh_refused")
                log.warning("opcua %s: ConditionRefresh refused (%s); live events only", s.endpoint, error)
            self.refreshed.set()
        except Exception:
            await client.disconnect()
            raise
        log.info("opcua %s connected (%d nodes, ConditionRefresh done)", s.endpoint, len(s.nodes))
        return client

    def _validator(self) -> Any:
        """Refuse any server whose certificate is not one of `trusted_certificates`."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        trusted = set()
        for path in self.server.trusted_certificates:
            data = path.read_bytes()
            cert = x509.load_pem_x509_certificate(data) if b"BEGIN CERT" in data else x509.load_der_x509_certificate(data)
            trusted.add(cert.public_bytes(Encoding.DER))

        async def validate(cert: Any, _app: Any) -> None:
            if cert.public_bytes(Encoding.DER) not in trusted:
                raise BadCertificateUntrusted()  # type: ignore[no-untyped-call]

        return validate
