"""`shifu serial` (listen on serial lines) and `shifu alarms` (what they reported)."""

from __future__ import annotations

import json
import logging
import time

import click


def register(cli: click.Group) -> None:
    cli.add_command(serial_command)
    cli.add_command(alarms_command)


@click.command("serial")
@click.option(
    "--port", "device", default=None, help="Device path or pyserial URL; without it, [[serial.ports]] from the config."
)
@click.option(
    "--preset",
    default="grbl",
    show_default=True,
    help="Parser for --port: grbl, csv, or a regular expression with named groups code, machine, message.",
)
@click.option("--machine", default="", help="Machine id for alarms on --port.")
@click.option("--baud", type=int, default=115200, show_default=True, help="Baud rate for --port.")
@click.option(
    "--role",
    type=click.Choice(["machine", "scanner"]),
    default="machine",
    show_default=True,
    help="Role of --port: alarms from a machine, or codes from a serial barcode scanner.",
)
@click.option(
    "--no-answers", is_flag=True, help="Only store alarms; do not prepare answers (the kiosk answers on open)."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: run until stopped).")
def serial_command(
    device: str | None, preset: str, machine: str, baud: int, role: str, no_answers: bool, duration: float | None
) -> None:
    """Listen on serial lines: store every alarm, prepare its answer in the background.

    Runs until SIGTERM or Ctrl+C. Alarms go to the operational database, scans from scanner
    ports to its `scans` table, and per-port status to serial_status.json in the state directory.
    """
    from appliance.cli.listen import run_until_stopped, store_and_engine
    from appliance.cli.main import settings
    from appliance.serial.service import AlarmEvent, SerialService
    from appliance.serial_settings import PortSettings
    from kb.errors import SerialError

    config = settings()
    if device:
        ports = [PortSettings(device=device, parser=preset, machine=machine, baud=baud, role=role)]  # type: ignore[arg-type]
    else:
        ports = list(config.serial.ports)
    if not ports:
        raise SerialError("no serial ports: give --port DEV or add [[serial.ports]] to the configuration")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def show(event: AlarmEvent) -> None:
        if event.repeat:
            click.echo(f"#{event.id} repeated  {event.port} {event.machine_id} {event.code}")
        else:
            click.echo(f"#{event.id} {event.port} {event.machine_id} {event.code} {event.message}".rstrip())

    with store_and_engine(config, no_answers) as (store, engine):
        service = SerialService(config, store, engine=engine, ports=ports, store_scans=True, on_alarm=show)

        def start() -> None:
            service.start()
            click.echo(f"listening on {', '.join(p.label() for p in ports)}", err=True)

        run_until_stopped(start, service.stop, duration)


@click.command("alarms")
@click.option("--json", "as_json", is_flag=True, help="Print the alarms as a JSON list.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="How many, newest first.")
def alarms_command(as_json: bool, limit: int) -> None:
    """Alarms received from every input (serial, OPC UA, MQTT, HTTP), newest first, with their source."""
    from appliance import paths
    from appliance.serial.alarm_store import AlarmStore
    from appliance.store.opstore import OpStore

    paths.ensure_state()
    opstore = OpStore(paths.ops_db())
    try:
        rows = AlarmStore(opstore).alarms(limit=limit)
    finally:
        opstore.close()
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no alarms")
        return
    for row in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["received"]))
        repeats = f" x{row['repeats'] + 1}" if row["repeats"] else ""
        answer = row.get("answer_status") or "-"
        click.echo(
            f"#{row['id']:<6} {when} {row['port'] or '':12} {row['machine_id'] or '-':8} {row['code']:10}"
            f"{repeats} [{answer}] {row['message'] or ''}".rstrip()
        )
