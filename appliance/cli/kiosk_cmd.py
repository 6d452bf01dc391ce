"""`shifu kiosk`: the operator's screen; `shifu kiosk set-pin`: the technician PIN.

Kiosk mode (Ctrl+C/Q/Z/\\ do not leave) comes from `kiosk.kiosk_mode`, is on by default
when systemd starts the kiosk (it sets INVOCATION_ID), and can be forced with --kiosk or
--no-kiosk. Textual is imported only when the screen really starts.

The app gets an engine client (`appliance.engine.client`): `LocalClient` over an engine in
this process, or with `--engine URL` a `RemoteEngine`, a thin client of `shifu serve` on
another PC (or the same one): questions, feedback, alarms and the status all go over HTTP;
the token is `--token`, or `serve.token` from the config.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from appliance.engine.client import EngineClient


def _kiosk_mode(flag: bool | None, configured: bool) -> bool:
    if flag is not None:
        return flag
    return configured or bool(os.environ.get("INVOCATION_ID"))


def _ignore_terminal_signals() -> None:
    """Belt and braces: if the terminal still sends SIGINT/SIGQUIT/SIGTSTP, they do nothing."""
    for name in ("SIGINT", "SIGQUIT", "SIGTSTP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def register(cli: click.Group) -> None:
    @cli.group("kiosk", invoke_without_command=True)
    @click.option(
        "--engine",
        "engine_url",
        default=None,
        metavar="URL",
        help="Use the engine of `shifu serve` at URL (e.g. http://10.0.0.5:8765) instead of a local one.",
    )
    @click.option("--token", default=None, envvar="SHIFU_ENGINE_TOKEN", metavar="TOKEN",
                  help="Bearer token of the engine server (default serve.token).")
    @click.option(
        "--kiosk/--no-kiosk",
        "kiosk",
        default=None,
        help="Force kiosk mode on or off (default: config kiosk.kiosk_mode, or on under systemd).",
    )
    @click.pass_context
    def kiosk(ctx: click.Context, engine_url: str | None, token: str | None, kiosk: bool | None) -> None:
        """The operator's screen: scan or type a code, read the procedure, press F1/F2/F3."""
        if ctx.invoked_subcommand is not None:
            return
        if engine_url and not engine_url.startswith(("http://", "https://")):
            raise click.UsageError(f"--engine wants an http:// or https:// URL, not {engine_url!r}")
        if not sys.stdin.isatty() or not sys.stdout.isatty():
            raise click.UsageError("the kiosk needs a terminal (run it in a terminal, tmux or on tty1)")
        from appliance.cli.main import settings
        from appliance.ui.app import make_app

        config: Any = settings()
        mode = _kiosk_mode(kiosk, config.kiosk.kiosk_mode)
        if mode:
            os.environ.pop("TEXTUAL_ALLOW_SIGNALS", None)
            _ignore_terminal_signals()
        client = _client(config, engine_url, token)
        try:
            make_app(config, client, kiosk_mode=mode).run()
        finally:
            client.close()

    @kiosk.command("set-pin")
    def set_pin_command() -> None:
        """Set the technician PIN (stored as a salted scrypt hash in the state directory)."""
        from appliance import paths
        from appliance.ui.pin import check_pin_format, set_pin

        paths.ensure_state()
        pin = click.prompt("New technician PIN", hide_input=True, confirmation_prompt=True)
        problem = check_pin_format(pin)
        if problem:
            raise click.UsageError(problem)
        path = set_pin(pin)
        click.echo(f"technician PIN stored in {path}")


def _client(config: Any, engine_url: str | None, token: str | None) -> EngineClient:
    """The engine client the kiosk runs over: the server at `engine_url`, or an engine in this process."""
    if engine_url:
        from appliance.engine.remote import RemoteEngine

        return RemoteEngine(engine_url, config, token=token if token is not None else config.serve.token)
    from appliance.engine.factory import make_engine
    from appliance.engine.local import LocalClient

    return LocalClient(make_engine(config))
