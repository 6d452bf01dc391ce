"""`shifu intake`: every configured alarm input (serial, OPC UA, MQTT) in one process."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

import click


def register(cli: click.Group) -> None:
    cli.add_command(intake_command)


@click.command("intake")
@click.option(
    "--no-answers", is_flag=True, help="Only store alarms; do not prepare answers (the kiosk answers on open)."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: run until stopped).")
def intake_command(no_answers: bool, duration: float | None) -> None:
    """Run every configured alarm input: [[serial.ports]], [[mqtt.brokers]], [[opcua.servers]].

    Each alarm is stored first (with its source), then its answer is prepared in the background.
    Runs until SIGTERM or Ctrl+C; the network inputs' state goes to intake_status.json.
    """
    from appliance import paths
    from appliance.cli.main import settings
    from appliance.intake.message import Stored
    from appliance.intake.runner import Inputs
    from appliance.serial.alarm_store import AlarmStore
    from appliance.store.opstore import OpStore
    from kb.errors import ConfigError

    config = settings()
    if not (config.serial.ports or config.mqtt.brokers or config.opcua.servers):
        raise ConfigError(
            "no alarm inputs: add [[serial.ports]], [[mqtt.brokers]] or [[opcua.servers]] to the configuration"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    paths.ensure_state()
    store = AlarmStore(OpStore(paths.ops_db()))
    engine: Any = None
    if not no_answers:
        from appliance.engine.factory import make_engine

        engine = make_engine(config)

    def show(item: Stored) -> None:
        a = item.alarm
        if item.redelivered:
            return
        what = "repeated " if item.repeat else ""
        click.echo(f"#{item.id} {what}{a.source} {a.machine_id or '-'} {a.code or '(' + a.status + ')'} "
                   f"{a.message}".rstrip())

    inputs = Inputs(config, store, engine=engine, on_stored=show)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    inputs.start()
    click.echo(f"listening on {', '.join(inputs.names())}", err=True)
    deadline = None if duration is None else time.monotonic() + duration
    try:
        while not stop.is_set():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            stop.wait(0.5 if left is None else min(0.5, left))
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        inputs.stop()
        if engine is not None:
            engine.close()
        store.opstore.close()
