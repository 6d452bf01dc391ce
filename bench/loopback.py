"""Real servers on loopback for the intake benchmarks and tests: Mosquitto and an asyncua OPC UA server.

`Broker` runs the Debian `mosquitto` with a generated configuration on a free 127.0.0.1 port
(persistence on, `max_queued_messages` raised); `Controller` runs an asyncua `Server` on its own
event-loop thread with a Machine Tools-style `AlertType` (ErrorCode) and plain `AlarmConditionType`
conditions. Nothing here is a fake; nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from asyncua import Server, ua
from asyncua.server.user_managers import CertificateUserManager
from paho.mqtt.enums import CallbackAPIVersion

from appliance.intake.opcua import MACHINE_TOOL_NS


def mosquitto() -> str:
    """The broker's path (Debian installs it in /usr/sbin); `make setup` installs it."""
    path = shutil.which("mosquitto", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))
    if path is None:
        raise RuntimeError("mosquitto is not installed; `make setup` installs it")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """Mosquitto with persistence (sessions survive a restart) and a queue big enough for a burst."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        # max_queued_messages defaults to 1000: a bigger backlog for an absent client would be dropped.
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {folder}/\nmax_queued_messages 50000\nmax_inflight_messages 100\n"
            f"log_dest file {folder}/mosquitto.log\nuser {pwd.getpwuid(os.getuid()).pw_name}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([mosquitto(), "-c", str(self.config)])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def publisher(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"gateway-{port}")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def publish_all(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
    for info in infos:
        info.wait_for_publish(30)


class Controller:
    """A controller's OPC UA server: a Machine Tools-style AlertType with ErrorCode and a plain alarm.

    Each plain alarm is a condition node (`ns=1;s=cond-NAME`) whose `Acknowledge` behaves as a
    controller's does: accepted once for the condition's latest EventId (recorded in `acks`),
    BadEventIdUnknown for an older or unknown one, BadConditionBranchAlreadyAcked the second time.
    With `certificate` and `private_key` it only offers Basic256Sha256 SignAndEncrypt; with
    `user_certificate` only that certificate may log in (X509 identity token), anonymous is refused.
    """

    def __init__(self, port: int, *, certificate: Path | None = None, private_key: Path | None = None,
                 user_certificate: Path | None = None) -> None:
        self.port = port
        self.user_certificate = user_certificate
        self.endpoint = f"opc.tcp://127.0.0.1:{port}/shifu-test/"
        self.certificate, self.private_key = certificate, private_key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Any = None
        self.latest: dict[str, bytes] = {}
        self.acks: list[tuple[str, bytes, str]] = []
        self.calls = 0

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(20)

    async def _start(self) -> None:
        users = None
        if self.user_certificate is not None:  # only this certificate may log in; anonymous is refused
            users = CertificateUserManager()
            await users.add_user(self.user_certificate, name="shifu")
        server = Server(user_manager=users)
        server.iserver.bind_condition_methods = True  # ConditionRefresh, as a controller with A&C has it
        await server.init()
        server.set_endpoint(self.endpoint)
        if self.certificate is not None and self.private_key is not None:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            if self.user_certificate is not None:
                server.set_security_IDs(["Basic256Sha256"])  # X509 identity tokens only: no anonymous login
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        ns = await server.register_namespace(MACHINE_TOOL_NS)
        self.alert_type = await server.create_custom_event_type(
            ns, "AlertType", ua.ObjectIds.BaseEventType, [("ErrorCode", ua.VariantType.String)]
        )
        self.alerts = await server.get_event_generator(self.alert_type, server.nodes.server)
        self.alarms = await server.get_event_generator(ua.ObjectIds.AlarmConditionType, server.nodes.server)
        server.link_method(server.get_node(ua.ObjectIds.AcknowledgeableConditionType_Acknowledge), self._acknowledge)
        self.conditions: set[str] = set()
        await server.start()
        self.server = server

    async def _acknowledge(self, condition: ua.NodeId, event_id: ua.Variant, comment: ua.Variant) -> Any:
        self.calls += 1
        name = condition.to_string()
        if self.latest.get(name) != event_id.Value:
            return ua.StatusCode(ua.StatusCodes.BadEventIdUnknown)
        if any(done == name for done, _, _ in self.acks):
            return ua.StatusCode(ua.StatusCodes.BadConditionBranchAlreadyAcked)
        self.acks.append((name, event_id.Value, comment.Value.Text))
        return []

    def start(self) -> None:
        self.call(self._start())

    def stop(self) -> None:
        if self.server is not None:
            self.call(self.server.stop())
            self.server = None

    def alert(self, code: Any, severity: int = 800, source: str = "Spindle-1", message: str = "alert") -> None:
        async def fire() -> None:
            self.alerts.event.ErrorCode = code
            self.alerts.event.Severity = severity
            self.alerts.event.SourceName = source
            await self.alerts.trigger(message=message)

        self.call(fire())

    def alarm(self, name: str, severity: int = 500, active: bool = True, retain: bool = True) -> None:
        async def fire() -> None:
            ev = self.alarms.event
            ev.ConditionName = name
            ev.Severity = severity
            ev.SourceName = "Press-2"
            ev.Retain = retain
            setattr(ev, "ActiveState/Id", active)
            ev.NodeId = ua.NodeId(f"cond-{name}", 1)
            if name not in self.conditions:  # the condition instance the event belongs to
                await self.server.nodes.objects.add_object(ev.NodeId, ua.QualifiedName(name, 1))
                self.conditions.add(name)
            await self.alarms.trigger(message=f"{name} active" if active else f"{name} cleared")
            self.latest[ev.NodeId.to_string()] = ev.EventId.Value

        self.call(fire())

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
