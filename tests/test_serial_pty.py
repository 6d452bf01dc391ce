"""Readers on real pseudo-terminals and pyserial's loop://: nothing valid is lost."""

from __future__ import annotations

import errno
import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance import paths
from appliance.config import load_settings
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.service import AlarmEvent, SerialService
from appliance.serial.status import read_status, summary
from appliance.serial_settings import PortSettings
from appliance.store.opstore import OpStore

GRBL_SESSION = (
    b"\r\nGrbl 1.1h ['$' for help]\r\n[MSG:'$H'|'$X' to unlock]\r\nok\r\n"
    b"<Idle|MPos:0.000,0.000,0.000|FS:0.0,0>\r\n[GC:G0 G54 G17 G21 G90 G94 M5 M9 T0 F0.0 S0]\r\nok\r\n"
    b"error:9\r\nALARM:1\r\n[MSG:Reset to continue]\r\n$130=200.000\r\nok\r\n"
)


class Pty:
    """A pseudo-terminal: we write into the master, the reader opens the slave by name."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.name = os.ttyname(self.slave)
        os.set_blocking(self.master, False)

    def write(self, data: bytes) -> None:
        """Write everything without ever blocking: wait for room when the line is full."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except OSError as error:
                if error.errno != errno.EAGAIN:
                    raise
                select.select([], [self.master], [], 1.0)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def store(home: Path) -> Iterator[AlarmStore]:
    paths.ensure_state()
    opstore = OpStore(paths.ops_db())
    yield AlarmStore(opstore)
    opstore.close()


@pytest.fixture
def pty() -> Iterator[Pty]:
    p = Pty()
    yield p
    p.close()


def service(store: AlarmStore, ports: list[PortSettings], **serial: Any) -> SerialService:
    serial.setdefault("reconnect_min_s", 0.05)
    serial.setdefault("reconnect_max_s", 0.2)
    serial.setdefault("status_interval_s", 0.1)
    events: list[AlarmEvent] = []
    svc = SerialService(load_settings(serial=serial), store, ports=ports, on_alarm=events.append)
    svc.events = events  # type: ignore[attr-defined]
    svc.start()
    for reader in svc.readers:
        assert reader.connected.wait(10), reader.status.last_error
    return svc


def counters(svc: SerialService, index: int = 0) -> dict[str, int]:
    return dict(svc.readers[index].status.counters)


def test_grbl_session_on_a_pty(store: AlarmStore, pty: Pty) -> None:
    svc = service(store, [PortSettings(device=pty.name, parser="grbl", machine="CNC-1", name="cnc1")])
    try:
        pty.write(GRBL_SESSION)
        rows = wait_for(lambda: len(store.alarms()) == 2 and store.alarms(), what="two grbl alarms")
    finally:
        svc.stop()
    assert [(r["code"], r["normalized"], r["machine_id"], r["port"]) for r in reversed(rows)] == [
        ("error:9", "ERROR9", "CNC-1", "cnc1"),
        ("ALARM:1", "ALARM1", "CNC-1", "cnc1"),
    ]
    seen = counters(svc)
    assert (seen["alarms"], seen["garbage"], seen["ignored"]) == (2, 0, 9)


def test_csv_noise_wrong_baud_long_line_and_invalid_utf8(store: AlarmStore, pty: Pty) -> None:
    svc = service(store, [PortSettings(device=pty.name, parser="csv", name="belt")], max_line_bytes=4096)
    noise = random.Random(6).randbytes(3000).replace(b",", b";")  # what a wrong baud rate looks like
    try:
        pty.write(b"M3,A01,BELT TENSION\r\n")
        pty.write(b"\x00\x00 hello there\r\n")  # noise
        pty.write(noise + b"\r\n")
        pty.write(b"L" * 65536)  # 64 KiB, no newline
        pty.write(b"\r\nCV-01,A02,TRACKING\r\n")
        pty.write(b"CV-02,E-201,heater \xff\xfe zone\r\n")  # invalid UTF-8 in the message: kept
        pty.write(b"CV-02,E-2\xff01,broken code\r\n")  # invalid byte inside the code: garbage
        pty.write(b"CV-03,A01,last\r\n")
        wait_for(lambda: any(r["machine_id"] == "CV-03" for r in store.alarms()), what="the last csv alarm")
    finally:
        svc.stop()
    rows = list(reversed(store.alarms()))
    assert [(r["machine_id"], r["code"]) for r in rows] == [
        ("M3", "A01"),
        ("CV-01", "A02"),
        ("CV-02", "E-201"),
        ("CV-03", "A01"),
    ]
    assert rows[0]["message"] == "BELT TENSION"
    assert rows[2]["message"] == "heater \ufffd\ufffd zone" and rows[2]["normalized"] == "E201"
    seen = counters(svc)
    assert seen["cut"] == 1
    assert seen["invalid_bytes"] >= 4  # two in the message, one in the code, many in the noise
    assert seen["garbage"] >= 4  # noise, the cut line, the broken code, the wrong-baud bytes
    assert seen["alarms"] == 4


def test_flood_of_10000_lines_loses_nothing(store: AlarmStore, pty: Pty) -> None:
    svc = service(store, [PortSettings(device=pty.name, parser="csv")], duplicate_window_s=60)
    distinct = 10_000
    lines = [f"M{i % 7},E{i},FLOOD {i}\r\n".encode() for i in range(distinct)]
    repeats = [b"M1,E4999,FLOOD 4999\r\n"] * 500  # within the window: counted on alarm E4999, not new rows
    started = time.monotonic()
    try:
        pty.write(b"".join(lines[:5000] + repeats + lines[5000:]))
        wait_for(lambda: counters(svc)["alarms"] + counters(svc)["repeats"] >= distinct + 500, 60, "the flood")
    finally:
        svc.stop()
    elapsed = time.monotonic() - started
    assert store.count() == distinct
    stored = store.opstore.rows("SELECT code, repeats FROM alarms")
    assert {r["code"] for r in stored} == {f"E{i}" for i in range(distinct)}
    assert sum(r["repeats"] for r in stored) == 500
    assert store.opstore.rows("SELECT repeats FROM alarms WHERE code = 'E4999'") == [{"repeats": 500}]
    assert counters(svc)["garbage"] == 0
    print(f"flood: {distinct + 500} lines in {elapsed:.2f}s")


def test_device_disappears_and_comes_back_through_a_symlink(store: AlarmStore, tmp_path: Path) -> None:
    first = Pty()
    by_id = tmp_path / "by-id"
    by_id.mkdir()
    link = by_id / "usb-Arduino_Grbl-if00"
    link.symlink_to(first.name)
    svc = service(store, [PortSettings(device=str(link), parser="grbl", machine="CNC-2")])
    second: Pty | None = None
    try:
        reader = svc.readers[0]
        first.write(b"error:1\r\nok\r\nALARM:2\r\n")
        wait_for(lambda: store.count() == 2, what="alarms before the unplug")
        second = Pty()  # opened before the first goes away, so it surely gets another name
        first.write(b"error:2")  # the unplug cuts this line off
        time.sleep(0.2)
        first.close()
        wait_for(lambda: reader.status.state == "reconnecting", what="the reader to notice")
        time.sleep(0.3)  # a few failed attempts against the vanished device
        new_link = by_id / ".tmp-link"
        new_link.symlink_to(second.name)
        os.replace(new_link, link)  # what udev does on replug
        wait_for(lambda: reader.status.state == "connected", what="the reconnect")
        second.write(b"error:3\r\nALARM:3\r\n")
        wait_for(lambda: store.count() == 4, what="alarms after the replug")
        status = reader.status.to_json()
    finally:
        svc.stop()
        first.close()
        if second is not None:
            second.close()
    assert [r["code"] for r in reversed(store.alarms())] == ["error:1", "ALARM:2", "error:3", "ALARM:3"]
    assert status["reconnects"] == 1 and status["resolved"] == second.name
    assert status["counters"]["garbage"] == 1  # the line cut off by the unplug


def test_loop_url_and_status_file(store: AlarmStore, home: Path) -> None:
    svc = service(store, [PortSettings(device="loop://", parser="grbl", machine="CNC-3", name="loop")])
    try:
        svc.readers[0].serial.write(b"ok\r\nALARM:6\r\n")
        wait_for(lambda: store.count() == 1, what="the loop alarm")
        live = wait_for(
            lambda: (s := read_status()) and s["ports"][0]["counters"]["alarms"] == 1 and s, what="serial_status.json"
        )
    finally:
        svc.stop()
    assert (home / "serial_status.json").exists()
    assert live["ports"][0]["state"] == "connected" and not live["stale"]
    assert summary(live) == "loop ok"
    final = read_status()
    assert final is not None and final["ports"][0]["state"] == "stopped"


def test_missing_device_is_retried_with_backoff(store: AlarmStore, tmp_path: Path) -> None:
    link = tmp_path / "usb-not-plugged"
    svc = SerialService(
        load_settings(serial={"reconnect_min_s": 0.05, "reconnect_max_s": 0.4}),
        store,
        ports=[PortSettings(device=str(link))],
        write_status_file=False,
    )
    svc.start()
    try:
        reader = svc.readers[0]
        wait_for(lambda: reader.status.retry_in_s >= 0.4, what="the backoff to reach its ceiling")
        assert reader.status.state == "reconnecting" and "does not exist" in reader.status.last_error
        late = Pty()
        try:
            link.symlink_to(late.name)
            assert reader.connected.wait(5)
            late.write(b"M9,A01,late\n")
            wait_for(lambda: store.count() == 1, what="the alarm after plugging in")
        finally:
            svc.stop()
            late.close()
    finally:
        svc.stop()


def test_scanner_port_feeds_operator_input(store: AlarmStore, pty: Pty) -> None:
    got: list[str] = []
    settings = load_settings(serial={"status_interval_s": 0.1})
    svc = SerialService(
        settings,
        store,
        ports=[PortSettings(device=pty.name, role="scanner", name="scan")],
        store_scans=True,
        on_scan=lambda e: got.append(e.text),
        write_status_file=False,
    )
    svc.start()
    try:
        assert svc.readers[0].connected.wait(10)
        pty.write(b"A01\r\nE-203\r\nbad \xff scan\r\n")
        first = svc.scans.get(timeout=5)
        second = svc.scans.get(timeout=5)
    finally:
        svc.stop()
    assert (first.text, second.text, first.port) == ("A01", "E-203", "scan")
    assert got == ["A01", "E-203"]
    assert [row["text"] for row in store.take_scans()] == ["A01", "E-203"]
    assert store.take_scans() == []  # taken once
    assert store.count() == 0  # scans are not alarms


def test_kiosk_restart_while_alarms_keep_arriving(store: AlarmStore, pty: Pty) -> None:
    svc = service(store, [PortSettings(device=pty.name, parser="csv")])
    total = 600
    writer = threading.Thread(
        target=lambda: [pty.write(f"M1,K{i},x\n".encode()) or time.sleep(0.001) for i in range(total)]
    )
    writer.start()
    seen: list[int] = []
    try:
        for _ in range(4):  # the kiosk starts, reads what is new, and goes away again
            kiosk = OpStore(paths.ops_db())
            seen += [r["id"] for r in reversed(kiosk.alarms(limit=10_000, after_id=max(seen, default=0)))]
            kiosk.close()
            time.sleep(0.1)
        writer.join()
        wait_for(lambda: store.count() == total, what="every alarm")
        kiosk = OpStore(paths.ops_db())
        seen += [r["id"] for r in reversed(kiosk.alarms(limit=10_000, after_id=max(seen, default=0)))]
        kiosk.close()
    finally:
        svc.stop()
    assert seen == sorted(seen) and len(seen) == total == len(set(seen))
