"""`shifu kiosk`: the operator's screen; `shifu kiosk set-pin`: the technician PIN.

Kiosk mode (Ctrl+C/Q/Z/\\ do not leave) comes from `kiosk.kiosk_mode`, is on by default
when systemd starts the kiosk (it sets INVOCATION_ID), and can be forced with --kiosk or
--no-kiosk. Textual is imported only when the screen really starts.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import click


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
        help="Use a Shifu engine over HTTP instead of the local one (not supported yet).",
    )
    @click.option(
        "--kiosk/--no-kiosk",
        "kiosk",
        default=None,
        help="Force kiosk mode on or off (default: config kiosk.kiosk_mode, or on under systemd).",
    )
    @click.pass_context
    def kiosk(ctx: click.Context, engine_url: str | None, kiosk: bool | None) -> None:
        """The operator's screen: scan or type a code, read the procedure, press F1/F2/F3."""
        if ctx.invoked_subcommand is not None:
            return
        if engine_url:
            raise click.UsageError("--engine URL is not supported yet; the kiosk uses the local engine")
        if not sys.stdin.isatty() or not sys.stdout.isatty():
            raise click.UsageError("the kiosk needs a terminal (run it in a terminal, tmux or on tty1)")
        from appliance.cli.main import settings
        from appliance.engine.factory import make_engine
        from appliance.ui.app import make_app

        config: Any = settings()
        mode = _kiosk_mode(kiosk, config.kiosk.kiosk_mode)
        if mode:
            os.environ.pop("TEXTUAL_ALLOW_SIGNALS", None)
            _ignore_terminal_signals()
        engine = make_engine(config)
        try:
            make_app(config, engine, kiosk_mode=mode).run()
        finally:
            engine.close()

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
