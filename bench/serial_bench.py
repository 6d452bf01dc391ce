"""Sustained serial alarm intake: lines per second per port, with zero loss.

Real pseudo-terminals (or pyserial `loop://`), the real reader, parser and operational
SQLite database (synchronous=FULL). Every line is a distinct alarm, so a lost line shows
as a missing row. Answer preparation is off: this measures intake and storage, which are
never rate-limited.

    .venv/bin/python -m bench.serial_bench [--ports 2] [--lines 20000] [--preset csv|grbl]
"""

from __future__ import annotations

import argparse
import errno
import os
import select
import tempfile
import threading
import time
import tty

from appliance import paths
from appliance.config import load_settings
from appliance.serial.alarm_store import AlarmStore
from appliance.serial.service import SerialService
from appliance.serial_settings import PortSettings
from appliance.store.opstore import OpStore


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except OSError as error:
            if error.errno != errno.EAGAIN:
                raise
            select.select([], [fd], [], 1.0)


def line(preset: str, port: int, index: int) -> bytes:
    if preset == "grbl":  # Grbl codes have at most three digits; the duplicate window is off
        return f"error:{index % 1000}\r\n".encode()
    return f"M{port},E{index},bench line {index}\r\n".encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=2)
    parser.add_argument("--lines", type=int, default=20_000, help="lines per port")
    parser.add_argument("--preset", choices=["csv", "grbl"], default="csv")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as home:
        os.environ["SHIFU_HOME"] = home
        paths.ensure_state()
        ptys = []
        for _ in range(args.ports):
            master, slave = os.openpty()
            tty.setraw(slave)
            os.set_blocking(master, False)
            ptys.append((master, slave, os.ttyname(slave)))
        settings = load_settings(serial={"duplicate_window_s": 0})  # every line must become a row
        store = AlarmStore(OpStore(paths.ops_db()))
        ports = [
            PortSettings(device=name, parser=args.preset, name=f"p{i}", machine=f"M{i}")
            for i, (_, _, name) in enumerate(ptys)
        ]
        service = SerialService(settings, store, ports=ports, write_status_file=False).start()
        for reader in service.readers:
            reader.connected.wait(10)
        payloads = [b"".join(line(args.preset, i, n) for n in range(args.lines)) for i in range(args.ports)]
        started = time.monotonic()
        writers = [threading.Thread(target=write_all, args=(m, p)) for (m, _, _), p in zip(ptys, payloads, strict=True)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        written_s = time.monotonic() - started
        expected = args.ports * args.lines
        deadline = time.monotonic() + 300
        while store.count() < expected and time.monotonic() < deadline:
            time.sleep(0.01)
        elapsed = time.monotonic() - started
        service.stop()
        stored = store.count()
        per_port = {
            r["port"]: r["n"] for r in store.opstore.rows("SELECT port, count(*) AS n FROM alarms GROUP BY port")
        }
        store.opstore.close()
        for master, slave, _ in ptys:
            os.close(master)
            os.close(slave)

    print(f"serial intake bench: {args.ports} port(s) x {args.lines} {args.preset} lines, SQLite synchronous=FULL")
    for reader in service.readers:
        label = reader.port.label()
        c = reader.status.counters
        print(
            f"  {label}: {per_port.get(label, 0)} stored of {args.lines} written, garbage {c['garbage']}, "
            f"{per_port.get(label, 0) / elapsed:,.0f} lines/s"
        )
    lost = expected - stored
    print(
        f"  total: {stored}/{expected} stored in {elapsed:.2f}s (writers done after {written_s:.2f}s), "
        f"{stored / elapsed:,.0f} lines/s, {stored / elapsed / args.ports:,.0f} lines/s per port, lost {lost}"
    )
    if lost:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
