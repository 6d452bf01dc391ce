"""`shifu intake`: every configured alarm input (serial, OPC UA, MQTT) in one process."""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

import click

from appliance.config import Settings


def register(cli: click.Group) -> None:
    cli.add_command(intake_command)


def endpoint_hosts(config: Settings) -> list[str]:
    """The host of every configured OPC UA server and MQTT broker, as written."""
    hosts = [urlsplit(s.endpoint).hostname or "" for s in config.opcua.servers] + [b.host for b in config.mqtt.brokers]
    return list(dict.fromkeys(h for h in hosts if h))


def ip_allow(config: Settings) -> str:
    """The shifu-intake.service drop-in that lets it reach exactly the configured endpoints (names resolved now)."""
    from kb.errors import ConfigError

    addresses: list[str] = []
    for host in endpoint_hosts(config):
        try:
            found = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
        except OSError as error:
            raise ConfigError(f"cannot resolve {host!r} (an [[opcua.servers]] endpoint or [[mqtt.brokers]] host): "
                              f"{error}; write its IP address in the configuration") from error
        addresses += sorted(found - set(addresses))
    lines = ["# Written by `shifu intake --ip-allow` from the configured endpoints; write it again after changing",
             "# them, then `systemctl daemon-reload` and restart shifu-intake.", "[Service]"]
    lines.append(f"IPAddressAllow={' '.join(addresses)}" if addresses else "# no network inputs: nothing allowed")
    return "\n".join(lines) + "\n"


@click.command("intake")
@click.option(
    "--no-answers", is_flag=True, help="Only store alarms; do not prepare answers (the kiosk answers on open)."
)
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: run until stopped).")
@click.option("--ip-allow", "print_ip_allow", is_flag=True,
              help="Print the systemd drop-in allowing exactly the configured OPC UA and MQTT endpoints, and exit.")
def intake_command(no_answers: bool, duration: float | None, print_ip_allow: bool) -> None:
    """Run every configured alarm input: [[serial.ports]], [[mqtt.brokers]], [[opcua.servers]].

    Each alarm is stored first (with its source), then its answer is prepared in the background.
    Runs until SIGTERM or Ctrl+C; the network inputs' state goes to intake_status.json.
    """
    from appliance.cli.listen import run_until_stopped, store_and_engine
    from appliance.cli.main import settings
    from appliance.intake.message import Stored
    from appliance.intake.runner import Inputs
    from kb.errors import ConfigError

    config = settings()
    if print_ip_allow:
        click.echo(ip_allow(config), nl=False)
        return
    if not (config.serial.ports or config.mqtt.brokers or config.opcua.servers):
        raise ConfigError(
            "no alarm inputs: add [[serial.ports]], [[mqtt.brokers]] or [[opcua.servers]] to the configuration"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    def show(item: Stored) -> None:
        a = item.alarm
        if item.redelivered:
            return
        what = "repeated " if item.repeat else ""
        click.echo(f"#{item.id} {what}{a.source} {a.machine_id or '-'} {a.code or '(' + a.status + ')'} "
                   f"{a.message}".rstrip())

    with store_and_engine(config, no_answers) as (store, engine):
        inputs = Inputs(config, store, engine=engine, on_stored=show)

        def start() -> None:
            inputs.start()
            click.echo(f"listening on {', '.join(inputs.names())}", err=True)

        run_until_stopped(start, inputs.stop, duration)
